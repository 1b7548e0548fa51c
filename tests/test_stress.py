"""Concurrency stress and resource faults: nothing crashes, nothing is lost.

- Eight Python threads call ``recommend``, ``put_events``, ``recommend_batch`` and ``user_state``
  on one fitted model for a few seconds while another thread saves it again and again; afterwards
  every event that was accepted is in its user's state (compared with a sequential replay on an
  identical model), every rejected one changed nothing, every saved file loads and holds, for each
  user, the state after one of that user's calls (no torn state).
- Absurd sizes (a huge negative sample, a huge batch, millions of users in one batch) under an
  address-space limit: the call works or raises MemoryError / ValueError; the process survives.

HRNN_STRESS_SECONDS (default 2) sets how long each stress phase runs.
"""
from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import hrnn
from conftest import planted_log

FAST = dict(hidden_dimension=32, n_sample=32, batch_size=16, bptt=8, show_progress=False, epochs=1)
SECONDS = float(os.environ.get("HRNN_STRESS_SECONDS", "2"))
N_THREADS = 8
N_USERS, N_ITEMS = 64, 60
UNDER_ASAN = "asan" in os.environ.get("LD_PRELOAD", "")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A saved fitted model (loading it gives bit-identical copies) and its last timestamp."""
    users, items, ts = planted_log(n_users=N_USERS, n_items=N_ITEMS, length=20)
    m = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    m.set_params(num_threads=2)  # recommend_batch runs its own OpenMP threads inside
    path = tmp_path_factory.mktemp("stress") / "base.hrnn"
    m.save(path)
    return path, float(ts.max())


class Worker:
    """One thread's share: its own users (so that each user's events have one order), a log of
    every call that was accepted, and checks of every answer."""

    def __init__(self, k, model, own_users, others, t0, stop, new_users=0):
        self.k, self.m, self.own, self.others = k, model, list(own_users), others
        self.rng = random.Random(k)
        self.clock = {u: t0 for u in self.own}
        self.log = []  # (user, items, timestamps, session) in the order they were accepted
        self.stop, self.new_users, self.created = stop, new_users, 0
        self.counts = collections.Counter()
        self.error = None

    def put(self):
        rng = self.rng
        if self.new_users and rng.random() < 0.2:
            user = f"new-{self.k}-{self.created}"
            self.created += 1
            self.clock[user] = 2e9
            self.own.append(user)
        else:
            user = rng.choice(self.own)
        n = rng.randint(1, 3)
        items, ts = [], []
        for j in range(n):
            self.clock[user] += rng.choice([0.0, 5.0, 90.0, 4000.0])  # some cross session_gap
            ts.append(self.clock[user])
            items.append(rng.randrange(N_ITEMS) if rng.random() > 0.05 else f"unk-{self.k}-{j}")
        session = None if rng.random() < 0.8 else rng.choice(["a", "b", ["a"] * n])
        self.m.put_events(user, items, ts, session_id=session)
        self.log.append((user, items, ts, session))
        self.counts["put"] += 1

    def put_stale(self):
        user = self.rng.choice(self.own)  # every one of them has events (from 1.6e9 on)
        try:
            self.m.put_events(user, [1], [1.0])
        except ValueError:
            self.counts["rejected"] += 1
        else:
            raise AssertionError("an event older than the user's last one was accepted")

    def recommend(self):
        rng = self.rng
        user = rng.choice(self.own + self.others + ["nobody", -1])
        k, exclude = rng.randint(1, 30), rng.random() < 0.5
        ids, scores = self.m.recommend(user, k, exclude_interacted=exclude)
        # (a user who has seen every item gets nothing new)
        assert len(ids) == len(scores) and (len(ids) == k or exclude and len(ids) < k)
        assert np.isfinite(scores).all() and np.all(np.diff(scores) <= 0)
        self.counts["recommend"] += 1

    def recommend_batch(self):
        rng = self.rng
        users = [rng.choice(self.own + self.others + ["nobody"]) for _ in range(rng.randint(1, 20))]
        exclude = rng.random() < 0.5
        ids, scores = self.m.recommend_batch(users, 10, exclude_interacted=exclude)
        assert ids.shape == scores.shape == (len(users), 10)
        found = np.isfinite(scores)
        assert (found | np.isneginf(scores)).all() and (found.all() or exclude)
        assert all(v is None for v in ids[~found])
        self.counts["batch"] += 1

    def state(self):
        u, h = self.m.user_state(self.rng.choice(self.own))
        assert np.isfinite(u).all() and np.isfinite(h).all()

    def run(self):
        ops = [self.put] * 5 + [self.put_stale, self.recommend, self.recommend, self.recommend,
                                 self.recommend_batch, self.state]
        try:
            while not self.stop.is_set():
                self.rng.choice(ops)()
        except BaseException as e:  # reported by the main thread
            self.error = e


def start(workers, saver=None):
    threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
    if saver is not None:
        threads.append(threading.Thread(target=saver, daemon=True))
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    workers[0].stop.set()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "a thread hangs (deadlock?)"


def replay(base_path, workers):
    """The same accepted calls, one after another, on a fresh copy: {user: [state after each]}."""
    r = hrnn.load(base_path)
    states = collections.defaultdict(list)
    known = set(r.known_user_ids.tolist())
    for w in workers:
        for user in w.own:
            if user in known:
                states[user].append(r.user_state(user)[1].tobytes())
        for user, items, ts, session in w.log:
            r.put_events(user, items, ts, session_id=session)
            states[user].append(r.user_state(user)[1].tobytes())
    return r, states


def assert_same_users(m, r, workers):
    assert set(m.known_user_ids.tolist()) == set(r.known_user_ids.tolist())
    assert m.unknown_item_events_ == r.unknown_item_events_
    for w in workers:
        for user in w.own:
            a, b = m.user_state(user), r.user_state(user)
            np.testing.assert_array_equal(a[0], b[0], err_msg=f"user state of {user!r}")
            np.testing.assert_array_equal(a[1], b[1], err_msg=f"session state of {user!r}")
            # same history: the interacted items are excluded alike
            assert list(m.recommend(user, N_ITEMS, exclude_interacted=True)[0]) == \
                list(r.recommend(user, N_ITEMS, exclude_interacted=True)[0])


def test_threads_query_put_events_and_save_lose_nothing(base, tmp_path):
    base_path, t_max = base
    m = hrnn.load(base_path)
    stop = threading.Event()
    users = list(range(N_USERS))
    workers = [Worker(k, m, users[k::N_THREADS], users, t_max + 1, stop) for k in range(N_THREADS)]
    saved, save_errors = [], []

    def saver():
        try:
            while not stop.is_set():
                path = tmp_path / f"save-{len(saved)}.hrnn"
                m.save(path)
                saved.append(path)
        except BaseException as e:
            save_errors.append(e)

    start(workers, saver)
    errors = [w.error for w in workers if w.error is not None] + save_errors
    assert not errors, errors
    total = sum((w.counts for w in workers), collections.Counter())
    assert total["put"] > 100 and total["recommend"] > 50 and total["rejected"] > 0, total
    assert len(saved) >= 2

    r, states = replay(base_path, workers)
    assert_same_users(m, r, workers)

    # Every file loads and holds, for each user, the state after one of that user's calls.
    for path in saved:
        loaded = hrnn.load(path)
        for user in users:
            h = loaded.user_state(user)[1].tobytes()
            assert h in states[user], f"{path.name}: a torn or unknown state for user {user}"


def test_threads_creating_users_while_others_query_lose_nothing(base):
    """New users appear (the store grows under a write lock) while other threads read states."""
    base_path, t_max = base
    m = hrnn.load(base_path)
    stop = threading.Event()
    users = list(range(N_USERS))
    workers = [Worker(k, m, users[k::N_THREADS], users, t_max + 1, stop, new_users=1)
               for k in range(N_THREADS)]
    start(workers)
    errors = [w.error for w in workers if w.error is not None]
    assert not errors, errors
    assert sum(w.created for w in workers) > 50
    r, _ = replay(base_path, workers)
    assert_same_users(m, r, workers)


class EngineProxy:
    """The model's engine, with a hook run right after dump_users (inside save) or put_event."""

    def __init__(self, engine, after_dump=None, after_put=None):
        self._engine, self._after_dump, self._after_put = engine, after_dump, after_put

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def dump_users(self):
        out = self._engine.dump_users()
        if self._after_dump is not None:
            self._after_dump()
        return out

    def put_event(self, *args):
        self._engine.put_event(*args)
        if self._after_put is not None:
            self._after_put()


def in_other_thread(fn, wait=1.0):
    """Run fn in another thread and wait a little for it (a lock held by save makes it wait)."""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(wait)
    return t


def test_save_while_put_events_creates_a_user_writes_a_file_that_loads(base, tmp_path):
    base_path, t_max = base
    m = hrnn.load(base_path)
    threads = []
    m._engine = EngineProxy(m._engine, lambda: threads.append(in_other_thread(
        lambda: m.put_events("arrives during save", [1], [t_max + 5]))))
    m.save(tmp_path / "m.hrnn")
    for t in threads:
        t.join(10)
    hrnn.load(tmp_path / "m.hrnn")


def test_a_saved_file_counts_exactly_the_unknown_items_in_its_histories(base, tmp_path):
    """An unknown item's event and its count go in together: a save that starts between the
    two (here: right after the engine took the event) waits for both."""
    base_path, t_max = base
    m = hrnn.load(base_path)
    m.put_events(0, ["unknown-1"], [t_max + 1])
    threads = []
    m._engine = EngineProxy(m._engine, after_put=lambda: threads.append(in_other_thread(
        lambda: m.save(tmp_path / "m.hrnn"))))
    m.put_events(1, "unknown-2", t_max + 2)
    for t in threads:
        t.join(10)
    saved = hrnn.load(tmp_path / "m.hrnn")
    in_histories = int((saved._engine.dump_users()["history_items"] == -1).sum())
    assert in_histories == sum(saved.unknown_item_events_.values()) == 2
    assert m.unknown_item_events_ == {"unknown-1": 1, "unknown-2": 1}
    copy = m.unknown_item_events_
    copy["unknown-1"] += 5  # a copy: the model's counts are its own
    assert m.unknown_item_events_["unknown-1"] == 1
    assert not hasattr(hrnn.HRNN(), "unknown_item_events_")  # a fitted attribute


# ------------------------------------------------------------------------------ resource faults

FAULTS = textwrap.dedent("""
    import json, resource, sys, time
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import numpy as np
    import hrnn
    from conftest import planted_log

    out = {}
    FAST = dict(hidden_dimension=32, n_sample=32, batch_size=16, bptt=8, show_progress=False,
                epochs=1, random_state=0, num_threads=2)
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)

    def outcome(name, fn):
        t0 = time.perf_counter()
        try:
            fn()
            out[name] = "ok"
        except (MemoryError, ValueError) as e:
            out[name] = type(e).__name__
        out[name + " seconds"] = round(time.perf_counter() - t0, 2)

    good = hrnn.HRNN(**FAST).fit((users, items, ts))
    before = good.recommend(3, 5)[0].tolist()

    # 2**20 negatives of dimension 256 on a catalogue of 30: GBs of candidate rows per step.
    m = hrnn.HRNN(**dict(FAST, hidden_dimension=256, n_sample=2**20))
    outcome("n_sample 2**20", lambda: m.fit((users, items, ts)))
    # A fitted model refitted with absurd settings: afterwards it answers as before, or says it
    # is not fitted; it must not serve an untrained model.
    good.set_params(n_sample=2**20, hidden_dimension=256)
    outcome("refit n_sample 2**20", lambda: good.fit((users, items, ts)))
    try:
        after = good.recommend(3, 5)[0].tolist()
        out["after failed refit"] = "same" if after == before else "changed"
    except RuntimeError:
        out["after failed refit"] = "not fitted"
    # The largest batch the parameter range allows, on 40 users.
    outcome("batch_size 65536", lambda: hrnn.HRNN(**dict(FAST, batch_size=65536)).fit(
        (users, items, ts)))
    model = hrnn.HRNN(**FAST).fit((users, items, ts))
    outcome("recommend_batch 2e6 unknown users",
            lambda: model.recommend_batch(np.arange(10**9, 10**9 + 2 * 10**6), 5))
    outcome("put_events 1e6 events", lambda: model.put_events(
        "big", np.arange(10**6) % 30, 2e9 + np.arange(10**6, dtype=float)))
    outcome("recommend after 1e6 events", lambda: model.recommend("big", 5, True))
    outcome("fit after all that", lambda: hrnn.HRNN(**FAST).fit((users, items, ts)))
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def faults():
    if UNDER_ASAN:
        pytest.skip("an address-space limit and ASan's shadow memory clash")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(__file__)] + [p for p in [env.get("PYTHONPATH")] if p])
    # 3 GiB of address space: the interpreter, numpy, pandas and the OpenMP threads' stacks and
    # arenas take about 1.5 GiB of it before any work.
    proc = subprocess.run([sys.executable, "-c", FAULTS, str(3 << 30)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"exit status {proc.returncode}: {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_absurd_sizes_raise_memory_error_or_work_and_the_process_survives(faults):
    for name in ("n_sample 2**20", "refit n_sample 2**20", "batch_size 65536"):
        assert faults[name] in ("ok", "MemoryError", "ValueError"), (name, faults)
    assert faults["fit after all that"] == "ok", faults


def test_millions_of_users_in_one_batch_and_one_user_with_a_million_events(faults):
    assert faults["recommend_batch 2e6 unknown users"] in ("ok", "MemoryError"), faults
    assert faults["put_events 1e6 events"] == "ok", faults
    assert faults["recommend after 1e6 events"] == "ok", faults


def test_the_largest_batch_size_fits_a_small_log_in_3_gib(faults):
    assert faults["batch_size 65536"] in ("ok", "ValueError"), faults


def test_a_failed_refit_leaves_the_model_as_it_was(faults):
    assert faults["refit n_sample 2**20"] == "ok" or faults["after failed refit"] in (
        "same", "not fitted"), faults


def test_a_window_larger_than_the_machines_memory_is_refused_before_it_is_allocated():
    """batch_size and n_sample within their ranges, but together about 660 GB of logit buffers:
    a ValueError naming both (not std::bad_alloc half-way, nor the OOM killer)."""
    if os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") > 600e9:
        pytest.skip("this machine could hold the window")
    n = 70_000  # enough users with 2 events for every one of the 65,536 lanes
    users = np.repeat(np.arange(n), 2)
    data = (users, users % 50, 1.6e9 + np.arange(2 * n, dtype=float))
    m = hrnn.HRNN(batch_size=65536, n_sample=2**20, hidden_dimension=256, epochs=1,
                  transition_weight=0.0, show_progress=False, random_state=0)
    with pytest.raises(ValueError, match="batch_size 65536 with n_sample 1048576.*GB of training "
                                         "buffers.*lower batch_size or n_sample"):
        m.fit(data)
