"""Many Python threads on one model: no crash, no torn state, no lost event."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import hrnn
from conftest import planted_log

FAST = dict(hidden_dimension=32, n_sample=32, batch_size=16, bptt=8, show_progress=False, epochs=1)


def run_threads(work, n: int) -> None:
    """``work(k)`` for k < n, on n threads at once; returns when all are done."""
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_threads_recommend_and_put_events_lose_nothing():
    users, items, ts = planted_log(n_users=50)
    m = hrnn.HRNN(random_state=0, num_threads=2, **FAST).fit((users, items, ts))
    replay = hrnn.HRNN(random_state=0, num_threads=2, **FAST).fit((users, items, ts))
    t0 = ts.max() + 1
    n_threads, n_events = 8, 150
    errors = []

    def work(k):
        try:
            user = f"thread-{k}"
            for j in range(n_events):
                m.put_events(user, [int((k + j) % 60)], [t0 + j])
                ids, scores = m.recommend(user, 5)
                assert len(ids) == 5 and np.isfinite(scores).all()
                if j % 25 == 0:
                    m.recommend_batch([0, 1, user], 10)
                    m.put_events(k, [j % 60], [t0 + 1000 * k + j])  # shared training users too
        except Exception as e:  # reported to the main thread
            errors.append(e)

    run_threads(work, n_threads)
    assert not errors
    for k in range(n_threads):
        user = f"thread-{k}"
        replay.put_events(user, [int((k + j) % 60) for j in range(n_events)],
                          [t0 + j for j in range(n_events)])
        np.testing.assert_allclose(m.user_state(user)[1], replay.user_state(user)[1], rtol=1e-5, atol=1e-6)
        replay.put_events(k, [j % 60 for j in range(0, n_events, 25)],
                          [t0 + 1000 * k + j for j in range(0, n_events, 25)])
        np.testing.assert_allclose(m.user_state(k)[1], replay.user_state(k)[1], rtol=1e-5, atol=1e-6)



def test_threads_racing_on_one_user_commit_whole_calls_in_time_order():
    """Calls for one user are computed outside its lock and committed only onto the state they
    started from: every call lands whole or fails whole (an older one than what landed is refused),
    and the user ends as the accepted calls replayed in time order."""
    users, items, ts = planted_log(n_users=50)
    m = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    replay = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    t0, n_threads, rounds, size = ts.max() + 1, 6, 8, 1000
    accepted, errors = [[] for _ in range(n_threads)], []
    start = threading.Barrier(n_threads)

    def work(k):
        start.wait()
        for r in range(rounds):
            when = t0 + (r * n_threads + k) * 10_000.0 + np.arange(size)
            batch = ([int((k * 7 + r + j) % 60) for j in range(size)], when)
            try:
                m.put_events(0, *batch)
                accepted[k].append(((r, k), batch))
            except ValueError as e:
                if "older than this user's last event" not in str(e):
                    errors.append(e)
            except Exception as e:  # reported to the main thread
                errors.append(e)

    run_threads(work, n_threads)
    assert not errors
    landed = sorted(b for calls in accepted for b in calls)
    assert len(landed) >= rounds
    engine_state = lambda model: model._engine.user_state(model._user_index[0])  # noqa: E731
    n_before = engine_state(replay)[3]
    for _, (batch_items, when) in landed:
        replay.put_events(0, batch_items, when)
    (u, h, last_ts, n_events), want = engine_state(m), engine_state(replay)
    assert n_events == n_before + size * len(landed) == want[3]
    assert last_ts == landed[-1][1][1][-1] == want[2]
    np.testing.assert_allclose(u, want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, want[1], rtol=1e-5, atol=1e-6)


def test_a_reload_racing_a_long_put_leaves_one_whole_outcome():
    """The store replaced (load_users) while a call for one of its users runs: the call is redone on
    the new records or lands before them, never half on each."""
    users, items, ts = planted_log(n_users=50)
    m = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    e, user = m._engine, m._user_index[0]
    snapshot = e.dump_users()
    n = 20_000
    batch = (np.arange(n, dtype=np.int32) % 60, ts.max() + 1.0 + np.arange(n))
    expected = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    expected._engine.put_events(user, *batch)
    with_call = expected._engine.user_state(user)
    before = e.user_state(user)
    for _ in range(5):
        e.load_users(snapshot)
        put = threading.Thread(target=e.put_events, args=(user, *batch))
        put.start()
        e.load_users(snapshot)
        put.join()
        got = e.user_state(user)
        outcome = with_call if got[3] == with_call[3] else before
        assert got[2:] == outcome[2:]
        np.testing.assert_allclose(got[0], outcome[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1], outcome[1], rtol=1e-5, atol=1e-6)

@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_can_still_train_and_query():
    """libgomp's threads do not survive fork(): a child of a process that ran hrnn on 2 threads
    hung in its first parallel region (pre-fork servers). Such a child now runs single-threaded."""
    users, items, ts = planted_log(n_users=200)
    m = hrnn.HRNN(random_state=0, num_threads=2, **FAST).fit((users, items, ts))
    expected = m.recommend_batch(users[:50], 10)[0]
    with warnings.catch_warnings():  # (Python 3.12 warns of fork() in a multi-threaded process)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if both calls return what the parent gets
        code = 1
        try:
            same = np.array_equal(m.recommend_batch(users[:50], 10)[0], expected)
            hrnn.HRNN(random_state=0, num_threads=2, **FAST).fit((users, items, ts))
            code = 0 if same else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")


def test_models_dropped_while_other_threads_query_free_their_users_cleanly():
    """A dropped model frees its users without the GIL (other threads run meanwhile); models
    created, filled and dropped while another thread queries leave it answering the same."""
    users, items, ts = planted_log(n_users=60)
    kept = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    expected = kept.recommend_batch(users[:20], 5)[0]
    stop, errors, answers = threading.Event(), [], [0]

    def query():
        try:
            while not stop.is_set():
                assert np.array_equal(kept.recommend_batch(users[:20], 5)[0], expected)
                answers[0] += 1
        except Exception as e:  # reported to the main thread
            errors.append(e)

    thread = threading.Thread(target=query)
    thread.start()
    try:
        for k in range(4):
            m = hrnn.HRNN(random_state=k, num_threads=1, **FAST).fit((users, items, ts))
            for u in range(2000):
                m.put_events(f"new-{u}", [int(items[u % len(items)])], [float(ts.max()) + u])
            del m
    finally:
        stop.set()
        thread.join()
    assert not errors and answers[0] > 0


def test_a_model_alive_at_interpreter_exit_is_freed_cleanly():
    """At exit, models still referenced are freed while the interpreter finalizes (the GIL is not
    released then)."""
    code = ("import hrnn\n"
            "from hrnn.synthetic import make_log\n"
            "df = make_log(n_events=3000, n_users=60, n_items=50, seed=1).drop_duplicates()\n"
            "m = hrnn.HRNN(epochs=1, hidden_dimension=32, n_sample=16, show_progress=False).fit(df)\n"
            "m.put_events('someone', [df['ITEM_ID'].iloc[0]], [4e9])\n"
            "print('ok', len(m.known_user_ids))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok 61")


class _CountingEngine:
    """The model's engine, counting the users it scores; Ctrl-C after its first recommend_batch."""

    def __init__(self, engine):
        self._engine, self.users = engine, 0

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def recommend_batch(self, users, **kw):
        out = self._engine.recommend_batch(users, **kw)
        self.users += len(users)
        signal.raise_signal(signal.SIGINT)
        return out


def test_a_large_batch_runs_in_chunks_and_stops_between_them(monkeypatch):
    users, items, ts = planted_log(n_users=50)
    m = hrnn.HRNN(random_state=0, num_threads=2, **FAST).fit((users, items, ts))
    batch = list(users[:45]) + ["unknown"] * 5
    whole = m.recommend_batch(batch, 7, exclude_items=[1, 2])
    monkeypatch.setattr(sys.modules["hrnn.model"], "BATCH_CHUNK", 8)
    chunked = m.recommend_batch(batch, 7, exclude_items=[1, 2])
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])
    counting = m._engine = _CountingEngine(m._engine)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            m.recommend_batch(batch, 7)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert counting.users == 8  # the first chunk's, not the whole batch's 50
