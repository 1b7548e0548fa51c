"""Reduced-precision scoring (cpp/include/hrnn/quant.h): the int8 pass with exact float32 rescoring
of its candidates returns exactly what scoring every item in float32 returns (kernels="exact"):
the same items, the same scores bit for bit, the same order of ties, with exclusions, inclusions,
repeat boosts, every instruction set this CPU has, one or two threads."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hrnn
from hrnn import _core

KERNELS = ("generic", "avx2", "avx512", "auto")


def make_engine(n_items, hidden, n_users=30, seed=0, tied=True, events=8, repeat=True):
    """An engine with random weights and users whose states come from a few random events."""
    rng = np.random.default_rng(seed)
    e = _core.Engine(n_items, hidden, tied, seed)
    e.set_param("bo", rng.normal(0, 0.2, n_items).astype(np.float32))
    if repeat:  # non-zero repeat boosts on each user's recent items
        e.set_param("rc", rng.normal(0, 0.5, 8).astype(np.float32))
        e.set_param("rd", rng.normal(0, 0.5, 8).astype(np.float32))
    e.ensure_users(n_users)
    for u in range(n_users):
        items = rng.integers(0, n_items, events).astype(np.int32)
        e.put_events(u, items, np.sort(rng.uniform(0, 1e5, events)))
    return e


def supported(engine, kernels):
    try:
        engine.recommend_batch(np.zeros(1, dtype=np.int64), k=1, kernels=kernels)
    except ValueError as exc:
        assert "cannot run here" in str(exc)
        return False
    return True


def assert_same_as_exact(engine, users, k, threads=(1, 2), **query):
    users = np.asarray(users, dtype=np.int64)
    ref_items, ref_scores = engine.recommend_batch(users, k=k, kernels="exact", num_threads=1,
                                                   **query)
    assert not np.isnan(ref_scores).any()
    checked = 0
    for kernels in KERNELS:
        if not supported(engine, kernels):
            continue
        for nt in threads:
            items, scores = engine.recommend_batch(users, k=k, kernels=kernels, num_threads=nt,
                                                   **query)
            np.testing.assert_array_equal(items, ref_items, err_msg=f"{kernels}, {nt} threads")
            np.testing.assert_array_equal(scores, ref_scores, err_msg=f"{kernels}, {nt} threads")
            checked += 1
        one = np.stack([engine.recommend_batch(users[j:j + 1], k=k, kernels=kernels, **query)[0][0]
                        for j in range(min(len(users), 5))])
        np.testing.assert_array_equal(one, ref_items[:len(one)],
                                      err_msg=f"{kernels}, one user per call")
    assert checked >= 2 * 2  # generic and auto at least
    return ref_items, ref_scores


@pytest.mark.parametrize("hidden", [32, 43, 61])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("k", [1, 25, 300])
def test_every_kernel_set_returns_the_exact_top_k(hidden, tied, k):
    e = make_engine(5_003, hidden, tied=tied, seed=hidden + k)
    assert_same_as_exact(e, range(30), k)


def test_exclusions_inclusions_and_history_match_exact():
    e = make_engine(3_000, 43, seed=3)
    users = np.arange(30)
    top, _ = e.recommend_batch(users, k=10, kernels="exact")
    exclude = np.unique(np.concatenate([top[:, :3].ravel(), [0, 1, 2999]])).astype(np.int32)
    items, _ = assert_same_as_exact(e, users, 25, exclude=exclude)
    assert not np.isin(items, exclude).any()
    include = np.random.default_rng(0).choice(3_000, 200, replace=False).astype(np.int32)
    items, _ = assert_same_as_exact(e, users, 25, include=include)
    assert np.isin(items, include).all()
    assert_same_as_exact(e, users, 25, exclude_interacted=True, exclude=exclude)


def test_the_scores_are_those_of_float64_up_to_rounding():
    e = make_engine(4_000, 43, seed=5, repeat=False)  # no boosts: the score is O h + bo
    items, scores = assert_same_as_exact(e, range(20), 25)
    O, bo = e.get_param("E").astype(np.float64), e.get_param("bo").astype(np.float64)
    for u in range(20):
        x = O @ e.user_state(u)[1].astype(np.float64) + bo
        np.testing.assert_allclose(scores[u], x[items[u]], rtol=1e-5, atol=1e-6)
        assert x[items[u][-1]] >= np.sort(x)[-25] - 1e-5


def test_k_at_least_the_catalogue_lists_every_item_then_pads():
    e = make_engine(37, 32, seed=1)
    items, scores = assert_same_as_exact(e, range(10), 50)
    assert (np.sort(items[:, :37], axis=1) == np.arange(37)).all()
    assert (items[:, 37:] == -1).all() and np.isneginf(scores[:, 37:]).all()
    assert (np.diff(scores[:, :37], axis=1) <= 0).all()


def test_ties_go_to_the_lower_item_index():
    e = make_engine(2_000, 43, seed=2, repeat=False)
    E, bo = e.get_param("E"), e.get_param("bo")
    E[1000:2000], bo[1000:2000] = E[0:1000], bo[0:1000]  # every score twice
    e.set_param("E", E), e.set_param("bo", bo)
    items, scores = assert_same_as_exact(e, range(20), 40)
    assert (scores[:, 0::2] == scores[:, 1::2]).all()
    assert (items[:, 0::2] + 1000 == items[:, 1::2]).all()


@pytest.mark.parametrize("spread", [1e-3, 1e-5])
def test_near_ties_finer_than_the_int8_steps(spread):
    # rows that differ by far less than one int8 step: only a correct error bound keeps them all
    e = make_engine(3_000, 43, seed=11)
    rng = np.random.default_rng(11)
    base = rng.normal(size=43).astype(np.float32)
    E = base + spread * rng.normal(size=(3_000, 43)).astype(np.float32)
    e.set_param("E", E.astype(np.float32))
    e.set_param("bo", (spread * rng.normal(size=3_000)).astype(np.float32))
    assert_same_as_exact(e, range(30), 25)


def test_int8_rounding_errors_aligned_against_the_ranking():
    # Every item's int8 rounding error points along (or against) the state, nearly as far as the
    # error bound allows: 10 winners whose estimate is too low, 500 decoys whose estimate is too
    # high by 1.6x the winners' true lead. A bound half as large as the one used drops the winners.
    H, n_winners, n_decoys = 43, 10, 500
    e = make_engine(2_000, H, seed=12, repeat=False, n_users=1)
    h = e.user_state(0)[1].astype(np.float64)
    k0 = int(np.argmax(np.abs(h)))
    rng = np.random.default_rng(12)
    n = rng.integers(-100, 101, H).astype(np.float64)
    s = 1.0 / 127.0
    sign = np.sign(h)
    sign[k0] = 0.0
    E = np.empty((2_000, H))
    E[:] = s * n
    E[:n_winners] += s * 0.499 * sign
    E[n_winners:n_winners + n_decoys] -= s * 0.499 * sign
    E[:, k0] = 1.0  # the largest entry of every row: its scale is 1/127 and it has no error
    lead = 0.499 * s * np.abs(h[np.arange(H) != k0]).sum()  # the winners' true advantage / 2
    bo = np.full(2_000, -10.0)
    bo[:n_winners] = 0.0
    bo[n_winners:n_winners + n_decoys] = 1.6 * lead
    e.set_param("E", E.astype(np.float32))
    e.set_param("bo", bo.astype(np.float32))
    items, _ = assert_same_as_exact(e, [0], n_winners)
    assert sorted(items[0]) == list(range(n_winners))


def test_all_equal_scores():
    e = make_engine(1_500, 32, seed=4, repeat=False)
    e.set_param("E", np.zeros((1_500, 32), dtype=np.float32))
    e.set_param("bo", np.full(1_500, 0.25, dtype=np.float32))
    items, scores = assert_same_as_exact(e, range(5), 30)
    assert (items == np.arange(30)).all() and (scores == np.float32(0.25)).all()


def test_a_zero_state_ranks_by_the_bias():
    e = _core.Engine(3_000, 43, True, 0)
    bo = np.random.default_rng(0).normal(size=3_000).astype(np.float32)
    bo[7] = bo[8] = bo.max() + 1  # a tie at the top
    e.set_param("bo", bo)
    for name in e.param_names():  # every recurrent weight zero: states stay exactly zero
        if name not in ("E", "bo"):
            e.set_param(name, np.zeros_like(e.get_param(name)))
    e.ensure_users(3)
    for u in range(3):
        e.put_events(u, np.array([u], dtype=np.int32), np.array([1.0]))
        assert not e.user_state(u)[1].any()
    items, scores = assert_same_as_exact(e, range(3), 20)
    assert (items == np.argsort(-bo, kind="stable")[:20]).all()
    assert (scores == np.sort(bo)[::-1][:20]).all()


@pytest.mark.parametrize("scale", [1e-38, 1e-30, 1e-6, 1e3, 1e30, 1e36, 2e37, 1e38])
def test_very_small_and_large_weights(scale):
    e = make_engine(3_000, 43, seed=6)
    e.set_param("E", e.get_param("E") * np.float32(scale))
    e.set_param("bo", e.get_param("bo") * np.float32(scale))
    assert_same_as_exact(e, range(20), 25)


def test_a_large_hidden_dimension_narrows_the_query_integers():
    e = make_engine(1_000, 700, seed=7, n_users=10)  # 127 * 700 * 32639 would overflow int32
    assert_same_as_exact(e, range(10), 25)


def test_a_single_query_split_over_two_threads():
    e = make_engine(1_100_000, 4, seed=8, n_users=6, events=3)  # large enough to be split
    assert_same_as_exact(e, range(6), 25, threads=(2,))
    for u in range(6):
        one = e.recommend_batch(np.array([u]), k=25, num_threads=2)
        two = e.recommend_batch(np.array([u]), k=25, kernels="exact", num_threads=1)
        np.testing.assert_array_equal(one[0], two[0])


def test_non_finite_weights_fall_back_to_exact_scoring():
    e = make_engine(2_000, 32, seed=9)
    E = e.get_param("E")
    E[5, 3] = np.nan
    E[6, 0] = np.inf
    e.set_param("E", E)
    items, scores = e.recommend_batch(np.arange(10), k=25, kernels="auto")
    ref = e.recommend_batch(np.arange(10), k=25, kernels="exact")
    np.testing.assert_array_equal(items, ref[0])
    np.testing.assert_array_equal(scores, ref[1])
    assert not np.isin(items, [5]).any() and not np.isnan(scores).any()


def test_a_non_finite_state_returns_nothing_rather_than_nan():
    e = make_engine(500, 32, seed=10, n_users=2)
    e.set_param("Wsx", np.full_like(e.get_param("Wsx"), np.nan))
    e.put_events(0, np.array([1], dtype=np.int32), np.array([2e5]))
    assert np.isnan(e.user_state(0)[1]).all()
    items, scores = e.recommend_batch(np.array([0, 1]), k=5)
    assert (items[0] == -1).all() and np.isneginf(scores[0]).all()
    assert (items[1] >= 0).all() and np.isfinite(scores[1]).all()


@pytest.mark.parametrize("n_items, hidden", [(1, 1), (37, 32), (5_003, 43), (1_000, 256)])
def test_the_scoring_table_is_a_byte_per_weight_plus_a_scale_and_a_bias(n_items, hidden):
    e = _core.Engine(n_items, hidden, True, 0)
    padded_items = -(-n_items // 16) * 16
    assert e.scoring_table_bytes() == padded_items * (-(-hidden // 4) * 4 + 8)


def test_unknown_kernel_names_are_rejected():
    e = make_engine(100, 32, n_users=1)
    with pytest.raises(ValueError, match="kernels must be"):
        e.recommend_batch(np.array([0]), k=5, kernels="sse9")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_items=st.integers(1, 400), hidden=st.integers(1, 70), k=st.integers(1, 60),
       seed=st.integers(0, 2**31), tied=st.booleans())
def test_random_engines_match_exact(n_items, hidden, k, seed, tied):
    e = make_engine(n_items, hidden, n_users=4, seed=seed, tied=tied, events=3)
    assert_same_as_exact(e, range(4), k, threads=(1,))


def test_the_public_recommend_is_the_exact_top_k():
    rng = np.random.default_rng(0)
    n = 4_000
    df = pd.DataFrame({"USER_ID": rng.integers(0, 60, n), "ITEM_ID": rng.integers(0, 700, n),
                       "TIMESTAMP": np.sort(rng.uniform(1.6e9, 1.7e9, n))})
    m = hrnn.HRNN(hidden_dimension=40, epochs=2, n_sample=64, num_threads=1, random_state=0,
                  show_progress=False).fit(df, check_minimums=False)
    for u in m.user_ids_[:15]:
        ids, scores = m.recommend(u, 30, exclude_interacted=True)
        ref_items, ref_scores = m._engine.recommend_batch(
            np.array([m._user_index[u]]), k=30, exclude_interacted=True, kernels="exact")
        assert list(ids) == list(m.item_ids_[ref_items[0]])
        np.testing.assert_array_equal(scores, ref_scores[0])


def test_a_large_batch_is_prepared_in_parallel_with_the_same_answers():
    # Over 256 users the states, exclusions and boosts are gathered by several threads: the
    # answers must not depend on it, for cold users, repeats and exclusions alike.
    e = make_engine(2_000, 43, n_users=300, seed=21)
    users = np.concatenate([np.arange(300), [-1, 5, -1, 299], np.arange(300)[::-1]]).astype(np.int64)
    exclude = np.arange(0, 2_000, 97, dtype=np.int32)
    for query in ({}, {"exclude_interacted": True, "exclude": exclude}):
        one = e.recommend_batch(users, k=20, num_threads=1, **query)
        two = e.recommend_batch(users, k=20, num_threads=2, **query)
        np.testing.assert_array_equal(two[0], one[0])
        np.testing.assert_array_equal(two[1], one[1])
        for j in (0, 300, 302, 305, len(users) - 1):  # a user's row is its own query's answer
            alone = e.recommend_batch(users[j:j + 1], k=20, num_threads=1, **query)
            np.testing.assert_array_equal(alone[0][0], one[0][j])
