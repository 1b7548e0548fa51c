"""Query latency and throughput of hrnn beside the same computation in numpy.

Each hrnn benchmark has a numpy twin in the same group (same weights from ``get_weights()``, same
state from ``user_state``): ``O @ h + bo``, argpartition and a sort of the top 25. numpy runs with
its BLAS's default thread count and with one thread (``numpy-1t``). Compare within a group only;
on a shared machine absolute times drift between runs. ``compare.py`` prints the same figures
(p50/p99, ratios) as one table.
"""
from __future__ import annotations

import itertools

import pytest

import _common
from _common import K

HIDDEN = pytest.mark.parametrize("hidden", _common.HIDDEN)
NUMPY_THREADS = pytest.mark.parametrize("threads", [None, 1], ids=["numpy", "numpy-1t"])


# ------------------------------------------------------------------------ recommend, one user

@HIDDEN
def test_recommend_hrnn(benchmark, bench_setup, hidden):
    model, _, _, users, _ = bench_setup(hidden)
    benchmark.group = f"recommend 1 user, hidden {hidden}, {_common.N_ITEMS:,} items"
    items, _ = benchmark(model.recommend, users[1], K)
    assert len(items) == K


@HIDDEN
def test_recommend_new_session_hrnn(benchmark, bench_setup, hidden):
    """A session-start query: the user GRU's step and the mix before the same scoring."""
    model, _, _, users, _ = bench_setup(hidden)
    benchmark.group = f"recommend 1 user, hidden {hidden}, {_common.N_ITEMS:,} items"
    items, _ = benchmark(model.recommend, users[1], K, new_session=True)
    assert len(items) == K


@HIDDEN
def test_recommend_new_session_neighbors_hrnn(benchmark, bench_setup, hidden):
    """A session-start query that mixes in the neighbours' votes (``session_start_neighbors``):
    the int8 pass keeps the best 200 items instead of 25, and 100 of about 500 candidate
    sessions vote (an index of 300,000 synthetic events over the catalogue)."""
    model, _, _, users, _ = bench_setup(hidden)
    benchmark.group = f"recommend 1 user, hidden {hidden}, {_common.N_ITEMS:,} items"
    engine = model._engine  # noqa: SLF001 - the bench model's own log has no shared items
    alone = model.recommend(users[1], K, new_session=True)[0]
    engine.set_neighbors(_common.session_index(model), 100, 500, 0.5)
    try:
        items, _ = benchmark(model.recommend, users[1], K, new_session=True)
    finally:
        engine.clear_neighbors()
    assert len(items) == K and list(items) != list(alone)  # the votes were mixed in


@HIDDEN
@NUMPY_THREADS
def test_recommend_numpy(benchmark, bench_setup, blas, hidden, threads):
    model, O, bo, users, states = bench_setup(hidden)
    benchmark.group = f"recommend 1 user, hidden {hidden}, {_common.N_ITEMS:,} items"
    with blas.threads(threads):
        items, _ = benchmark(_common.numpy_recommend, O, bo, states[1], K)
    assert len(items) == K


# ---------------------------------------------------------------------- put_events, one event

@HIDDEN
def test_put_events_hrnn(benchmark, bench_setup, hidden):
    model = bench_setup(hidden)[0]
    benchmark.group = f"put_events 1 event, hidden {hidden}"
    clock = itertools.count(2_100_000_000)  # 1 s apart: every event continues the session
    item = model.item_ids_[7]
    user = f"bench-put-{hidden}"
    benchmark(lambda: model.put_events(user, item, next(clock)))


@HIDDEN
def test_put_events_numpy_step(benchmark, bench_setup, hidden):
    model, _, _, users, _ = bench_setup(hidden)
    benchmark.group = f"put_events 1 event, hidden {hidden}"
    w = model.get_weights()
    u, h = model.user_state(users[2])
    benchmark(_common.numpy_step, w, u, h, 7, 1.0)


# ---------------------------------------------------------------- recommend_batch, 1,000 users

@HIDDEN
def test_recommend_batch_hrnn(benchmark, bench_setup, hidden):
    model, _, _, users, _ = bench_setup(hidden)
    benchmark.group = f"recommend_batch {len(users):,} users, hidden {hidden}"
    benchmark.extra_info["users"] = len(users)
    items, _ = benchmark.pedantic(model.recommend_batch, (users, K), rounds=5, warmup_rounds=1)
    assert items.shape == (len(users), K)


@HIDDEN
@NUMPY_THREADS
def test_recommend_batch_numpy(benchmark, bench_setup, blas, hidden, threads):
    _, O, bo, users, states = bench_setup(hidden)
    benchmark.group = f"recommend_batch {len(users):,} users, hidden {hidden}"
    benchmark.extra_info["users"] = len(users)
    with blas.threads(threads):
        items, _ = benchmark.pedantic(_common.numpy_recommend_batch, (O, bo, states, K),
                                      rounds=5, warmup_rounds=1)
    assert items.shape == (len(users), K)
