"""Training end to end: determinism, a planted pattern, threads, and the fitted states."""
from __future__ import annotations

import contextlib
import os
import signal
import threading

import numpy as np
import pytest

import hrnn
from hrnn import _training
from conftest import planted_log
from hrnn.synthetic import make_log

FAST = dict(hidden_dimension=32, n_sample=32, batch_size=16, bptt=8, show_progress=False)


def top1(model):
    """The item each user's state ranks first, in the user's own item ids."""
    w = model.get_weights()
    h = model._engine.dump_users()["Hs"]
    out = w["E"] if model.tie_embeddings else w["O"]
    best = model.item_ids_[np.argmax(h @ out.T + w["bo"], axis=1)]
    assert list(best) == list(model.recommend_batch(model.user_ids_, 1)[0][:, 0])
    return best


def test_same_seed_one_thread_is_bit_identical(planted):
    a = hrnn.HRNN(epochs=2, random_state=7, num_threads=1, dropout=0.2, **FAST).fit(planted)
    b = hrnn.HRNN(epochs=2, random_state=7, num_threads=1, dropout=0.2, **FAST).fit(planted)
    for name, value in a.get_weights().items():
        np.testing.assert_array_equal(value, b.get_weights()[name], err_msg=name)
    assert [h["loss"] for h in a.history_] == [h["loss"] for h in b.history_]


def test_different_seeds_differ(planted):
    a = hrnn.HRNN(epochs=1, random_state=1, num_threads=1, **FAST).fit(planted)
    b = hrnn.HRNN(epochs=1, random_state=2, num_threads=1, **FAST).fit(planted)
    assert not np.array_equal(a.get_weights()["E"], b.get_weights()["E"])


@pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
@pytest.mark.parametrize("optimizer", ["adagrad", "adam"])
@pytest.mark.parametrize("tie", [False, True])
def test_planted_pattern_is_learned(planted, loss, optimizer, tie):
    lr = 0.05 if optimizer == "adagrad" else 0.01
    m = hrnn.HRNN(epochs=8, random_state=0, num_threads=2, loss=loss, optimizer=optimizer,
                  learning_rate=lr, tie_embeddings=tie, **FAST).fit(planted)
    losses = [h["loss"] for h in m.history_]
    assert losses[-1] < 0.5 * losses[0]
    users, items, _ = planted
    last = items.reshape(len(np.unique(users)), -1)[:, -1]
    expected = (last[np.searchsorted(np.unique(users), m.user_ids_)] + 1) % 60
    assert np.mean(top1(m) == expected) > 0.95


def test_threads_train_the_same_model_up_to_rounding(planted):
    a = hrnn.HRNN(epochs=1, random_state=3, num_threads=1, **FAST).fit(planted)
    b = hrnn.HRNN(epochs=1, random_state=3, num_threads=2, **FAST).fit(planted)
    np.testing.assert_allclose(a.history_[0]["loss"], b.history_[0]["loss"], rtol=1e-4)


def test_states_cover_every_user(planted):
    m = hrnn.HRNN(epochs=1, random_state=0, num_threads=1, **FAST).fit(planted)
    users = m._engine.dump_users()
    assert users["U"].shape == (m._log.n_users, 32)
    assert np.isfinite(users["U"]).all() and np.isfinite(users["Hs"]).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_states_of_every_user_match_the_one_at_a_time_step(threads):
    """The states after training run users in blocks of lanes (products across lanes); each must
    equal the single-lane step replayed over the user's history: long and empty histories, many
    sessions, and unknown items (a zero input vector) included."""
    rng = np.random.default_rng(0)
    H, n_items, n_users = 24, 50, 150
    eng = hrnn._core.Engine(n_items, H, True, 3)
    for name in ("u0", "b0", "bg", "bs", "bu"):
        eng.set_param(name, rng.normal(0, 0.5, eng.get_param(name).shape).astype(np.float32))
    lengths = rng.integers(0, 90, n_users)
    lengths[:3] = [0, 1, 200]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = rng.integers(0, n_items, offsets[-1]).astype(np.int32)
    items[offsets[7]:offsets[8]][::3] = -1
    gaps = rng.choice([5.0, 60.0, 4000.0], offsets[-1])
    ts = np.cumsum(gaps)
    new_session = np.zeros(offsets[-1], np.uint8)
    for u in range(n_users):
        a, b = offsets[u], offsets[u + 1]
        if b > a:
            new_session[a] = 1
            new_session[a + 1:b] = gaps[a + 1:b] > 1800
    eng.compute_states(offsets, items, ts, new_session, num_threads=threads)
    u0 = eng.get_param("u0")
    for u in range(n_users):
        a, b = offsets[u], offsets[u + 1]
        step_gaps = np.diff(ts[a:b], prepend=ts[a] if b > a else 0).astype(np.float32)
        want_u, want_h = eng.advance(u0, np.zeros(H, np.float32), True, items[a:b], step_gaps,
                                     new_session[a:b])
        if a == b:
            want_u, want_h = u0, np.zeros(H, np.float32)
        got_u, got_h = eng.user_state(u)[:2]
        np.testing.assert_allclose(got_u, want_u, rtol=1e-5, atol=1e-6, err_msg=f"user {u}")
        np.testing.assert_allclose(got_h, want_h, rtol=1e-5, atol=1e-6, err_msg=f"user {u}")


def test_callback_stops_training(planted):
    seen = []

    def cb(model, epoch, stats):
        seen.append((epoch, stats["loss"]))
        return epoch == 1

    m = hrnn.HRNN(epochs=5, random_state=0, **FAST).fit(planted, callbacks=[cb])
    assert [e for e, _ in seen] == [0, 1] and len(m.history_) == 2


def test_recency_weights_change_training(planted):
    a = hrnn.HRNN(epochs=1, random_state=0, num_threads=1, recency_mask=True, **FAST).fit(planted)
    b = hrnn.HRNN(epochs=1, random_state=0, num_threads=1, recency_mask=False, **FAST).fit(planted)
    assert a.history_[0]["loss"] != b.history_[0]["loss"]


def test_build_info():
    info = hrnn.build_info()
    assert set(info) >= {"openmp", "cuda_compiled"}


def sessions_log():
    users, items, ts = planted_log(n_users=100, length=40)
    return users, items, ts + (np.tile(np.arange(40), 100) // 10) * 86_400.0


def test_validation_scores_every_epoch_and_early_stopping_keeps_the_best():
    data = sessions_log()
    m = hrnn.HRNN(epochs=6, random_state=0, num_threads=1, **FAST)
    m.fit(data, validation=True, early_stopping_rounds=2, metric="mrr@20")
    scores = [h["val_mrr@20"] for h in m.history_]
    assert all(0.0 <= s <= 1.0 for s in scores) and max(scores) > 0.9
    assert m.best_epoch_ == int(np.argmax(scores))
    assert len(m.history_) <= 6


@pytest.mark.parametrize("rounds, epochs_run", [(1, 2), (2, 3), (3, 4)])
def test_early_stopping_waits_exactly_its_rounds(monkeypatch, rounds, epochs_run):
    """Validation scores that only fall after the first epoch: training stops once `rounds`
    epochs have passed without a better one; the first epoch is the best."""
    scores = iter([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    monkeypatch.setattr(_training, "validation_scores",
                        lambda *a: {"val_recall@20": next(scores), "val_mrr@20": 0.0})
    m = hrnn.HRNN(epochs=6, random_state=0, num_threads=1, **FAST)
    m.fit(sessions_log(), validation=True, early_stopping_rounds=rounds)
    assert len(m.history_) == epochs_run and m.best_epoch_ == 0


def test_recency_half_life_defaults_to_a_quarter_of_the_span():
    ts = np.array([1_000.0, 5_000.0, 401_000.0])
    assert hrnn.data.training_half_life(ts, True, None) == 100_000.0
    assert hrnn.data.training_half_life(ts, True, 50.0) == 50.0
    assert hrnn.data.training_half_life(ts, False, 50.0) is None


def test_validation_needs_two_sessions_and_early_stopping_needs_validation(planted):
    with pytest.raises(ValueError, match="2 sessions"):
        hrnn.HRNN(epochs=1, **FAST).fit(planted, validation=True)
    with pytest.raises(ValueError, match="validation=True"):
        hrnn.HRNN(epochs=1, **FAST).fit(planted, early_stopping_rounds=2)
    with pytest.raises(ValueError, match="metric"):
        hrnn.HRNN(epochs=1, **FAST).fit(planted, validation=True, metric="auc")


@contextlib.contextmanager
def signal_after(seconds: float, signum: int, handler):
    """Send ``signum`` to this process after ``seconds``, handled by ``handler`` meanwhile."""
    previous = signal.signal(signum, handler)
    timer = threading.Timer(seconds, lambda: os.kill(os.getpid(), signum))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signum, previous)


def test_ctrl_c_stops_training_cleanly_and_leaves_a_usable_model():
    users, items, ts = planted_log(n_users=400, length=60)
    m = hrnn.HRNN(epochs=10_000, random_state=0, num_threads=1, **FAST)
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored: make
    # sure Ctrl-C raises KeyboardInterrupt here, as in a terminal.
    with signal_after(1.0, signal.SIGINT, signal.default_int_handler):
        with pytest.warns(RuntimeWarning, match="interrupted"):
            m.fit((users, items, ts))
    assert 1 <= len(m.history_) < 10_000
    ids, scores = m.recommend(users[0], 5)
    assert len(ids) == 5 and np.isfinite(scores).all()


def test_ctrl_c_in_the_first_half_skips_choosing_the_weight():
    """The auto weight is chosen after half the epochs; a fit stopped before that returns at once,
    with the fallback weight, and says so. (Ctrl-C after 2 s: well after fit's setup, which a
    Ctrl-C interrupts with KeyboardInterrupt, even on a loaded machine.)"""
    log = make_log(n_events=40_000, n_users=400, n_items=500, seed=2).drop_duplicates()
    m = hrnn.HRNN(epochs=10_000, random_state=0, num_threads=1, **FAST)
    with signal_after(2.0, signal.SIGINT, signal.default_int_handler):
        with pytest.warns(RuntimeWarning, match=r"interrupted.*transition weight 0\.5 and the session-start "
                                                r"mix 0\.25 \(sources kept\) and no neighbours' share in "
                                                r"session starts \(not chosen"):
            m.fit(log)
    assert m.transition_weight_ == 0.5 and m.transition_weight_scores_ == {}


def test_another_signal_handlers_exception_is_not_taken_for_ctrl_c():
    """A service's SIGTERM handler that raises SystemExit must stop fit with SystemExit (the
    model as it was), not be swallowed as a Ctrl-C."""
    users, items, ts = planted_log(n_users=400, length=60)
    m = hrnn.HRNN(epochs=10_000, random_state=0, num_threads=1, **FAST)

    def shut_down(*_):
        raise SystemExit(3)

    with signal_after(1.0, signal.SIGTERM, shut_down):
        with pytest.raises(SystemExit):
            m.fit((users, items, ts))
    with pytest.raises(RuntimeError, match="not fitted"):
        m.recommend(users[0])


def test_ctrl_c_while_evaluate_fits_gives_no_metrics():
    users, items, ts = planted_log(n_users=400, length=60)
    model = hrnn.HRNN(epochs=10_000, random_state=0, num_threads=1, **FAST)
    with signal_after(2.0, signal.SIGINT, signal.default_int_handler):
        with pytest.raises(KeyboardInterrupt, match="no metrics"), \
                pytest.warns(RuntimeWarning, match="interrupted"):
            hrnn.evaluate(model, (users, items, ts))


def test_the_type_stub_names_what_the_native_module_has():
    import ast
    from pathlib import Path
    stub = ast.parse((Path(hrnn.__file__).parent / "_core.pyi").read_text())
    names = {n.name for n in stub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    members = [n for c in stub.body if isinstance(c, ast.ClassDef) for n in c.body]
    methods = ({n.name for n in members if isinstance(n, ast.FunctionDef) and not n.name.startswith("__")}
               | {n.target.id for n in members if isinstance(n, ast.AnnAssign)})
    cuda_only = {"cuda_status", "cuda_attach", "cuda_window_loss_grad"}
    if not hrnn.build_info()["cuda_compiled"]:
        names -= cuda_only
    assert names == {n for n in dir(hrnn._core) if not n.startswith("_")}
    assert methods == {n for n in dir(hrnn._core.Engine) if not n.startswith("_")}


def test_the_type_stub_gives_the_native_argument_names():
    """A keyword call written from the stub must work: every name matches pybind11's signature."""
    import ast
    import re
    from pathlib import Path
    stub = ast.parse((Path(hrnn.__file__).parent / "_core.pyi").read_text())
    functions = [(hrnn._core, n) for n in stub.body if isinstance(n, ast.FunctionDef)]
    functions += [(hrnn._core.Engine, n) for c in stub.body if isinstance(c, ast.ClassDef)
                  for n in c.body if isinstance(n, ast.FunctionDef) and not n.decorator_list]
    checked = 0
    for owner, fn in functions:
        native = getattr(owner, fn.name, None)
        if native is None:  # the CUDA functions in a build without CUDA
            continue
        signature = native.__doc__.splitlines()[0]
        names = re.findall(r"(\w+): ", signature[signature.index("(") + 1:signature.rindex(")")])
        assert [a.arg for a in fn.args.args] == names, (fn.name, signature)
        checked += 1
    assert checked >= 25


def test_a_build_without_openmp_says_once_that_it_runs_on_one_thread(monkeypatch):
    monkeypatch.setattr(_training._core, "build_info", lambda: {"openmp": False})
    monkeypatch.setattr(_training, "_warned_single_threaded", False)
    users, items, ts = planted_log(n_users=30, length=40)
    fast = dict(hidden_dimension=32, n_sample=8, epochs=1, show_progress=False, random_state=0)
    hrnn.HRNN(num_threads=1, **fast).fit((users, items, ts))  # asks for one thread: nothing to say
    with pytest.warns(RuntimeWarning, match="built without OpenMP: num_threads=2 runs on one thread") as caught:
        hrnn.HRNN(num_threads=2, **fast).fit((users, items, ts))
    assert caught[0].filename == __file__
    hrnn.HRNN(num_threads=0, **fast).fit((users, items, ts))  # once per process
