"""benchmarks/torch_hrnn.py, the PyTorch model that ``compare.py --train`` times hrnn against:
it computes what hrnn computes, and forms an epoch's windows as hrnn's trainer does.

Skipped without torch (``pip install torch==2.13.0``, or ``pip install '.[bench]'``); run with
``python -m pytest benchmarks/test_torch_hrnn.py``.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest


@pytest.fixture(scope="module")
def th():
    torch = pytest.importorskip("torch", reason="pip install torch==2.13.0 (or hrnn[bench])")
    import torch_hrnn
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: threads only wait for each other on a shared machine
    yield torch_hrnn
    torch.set_num_threads(threads)


def random_events(th, rng, n_users=30, max_len=9, n_items=6, users=None):
    lengths = rng.integers(0, max_len + 1, n_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    steps = rng.choice([5.0, 40.0, 700.0, 4000.0, 90_000.0, 900_000.0], n)
    return th.Events(offsets=offsets, items=rng.integers(-1, n_items, n).astype(np.int32),
                     timestamps=np.cumsum(steps), new_session=(steps > 1800).astype(np.uint8),
                     weights=rng.uniform(0.5, 2.0, n).astype(np.float32),
                     users=np.arange(n_users) if users is None else users,
                     popularity=np.ones(n_items))


# ------------------------------------------------------------------------------ same math

def test_same_math_as_hrnn(th):
    errors = th.check_same_math()
    assert {"window loss", "session states", "user states", "gradient of E", "gradient of Wuh",
            "gradient of rV", "state after a user's history", "recommend scores"} <= set(errors)
    assert max(errors.values()) <= 1e-4


def test_the_check_catches_another_gru(th, monkeypatch):
    """The other common GRU variant (reset gate applied after the recurrent product)."""
    import torch
    import torch.nn.functional as F

    def reset_after(a, h, Wh):
        H = h.shape[-1]
        r, z = torch.sigmoid(a[..., :2 * H] + F.linear(h, Wh[:2 * H])).chunk(2, dim=-1)
        n = torch.tanh(a[..., 2 * H:] + r * F.linear(h, Wh[2 * H:]))
        return n + z * (h - n)

    monkeypatch.setattr(th, "gru", reset_after)
    with pytest.raises(AssertionError, match="does not compute hrnn's"):
        th.check_same_math()


def test_the_check_catches_wrong_repeat_buckets(th, monkeypatch):
    """Ages bucketed in hours instead of minutes: the repeat boosts differ from recommend's."""
    monkeypatch.setattr(th, "AGE_EDGES_MINUTES", th.AGE_EDGES_MINUTES * 60)
    with pytest.raises(AssertionError, match="recommend scores"):
        th.check_same_math()


# ------------------------------------------------------------------------------ the planner

def planner_loop(offsets, order, B):
    """cpp/src/trainer.cpp's plan_window, step by step: (event of each lane's input, fresh)."""
    lanes = [None] * B                      # [next input position, end] of the lane's user
    nxt = 0
    grid, fresh = [], []
    while True:
        row, frow = [-1] * B, [False] * B
        for b in range(B):
            if lanes[b] is None or lanes[b][0] + 1 >= lanes[b][1]:
                lanes[b] = None
                while nxt < len(order):
                    u = order[nxt]
                    nxt += 1
                    if offsets[u + 1] - offsets[u] >= 2:
                        lanes[b] = [offsets[u], offsets[u + 1]]
                        frow[b] = True
                        break
                if lanes[b] is None:
                    continue
            row[b] = lanes[b][0]
            lanes[b][0] += 1
        if all(r < 0 for r in row):
            return np.array(grid).reshape(-1, B), np.array(fresh).reshape(-1, B)
        grid.append(row)
        fresh.append(frow)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("B", [1, 3, 8])
def test_lanes_walk_users_as_hrnn_planner(th, seed, B):
    rng = np.random.default_rng(seed)
    ev = random_events(th, rng)
    order = rng.permutation(30)
    grid, fresh = th.lane_schedule(ev.offsets, order, B)
    lanes = min(B, int(np.sum(np.diff(ev.offsets) >= 2)))
    want_grid, want_fresh = planner_loop(ev.offsets, order, lanes)
    np.testing.assert_array_equal(grid, want_grid)
    np.testing.assert_array_equal(fresh, want_fresh)


def recent_loop(ev, start, p):
    """cpp/src/trainer.cpp's add_recent: the target's (pos, age) occurrences and the other items'
    (item, [(pos, age), ...]) among the last L events up to p."""
    y = ev.items[p + 1]
    rep, ext = [], {}
    for j in range(max(start, p - 199), p + 1):
        if ev.items[j] < 0:
            continue
        pos = min(p - j, 4) if p - j < 8 else (5 if p - j < 16 else 6 if p - j < 32 else 7)
        minutes = (ev.timestamps[p] - ev.timestamps[j]) / 60.0
        age = sum(minutes >= e for e in (1, 5, 30, 180, 1440, 4320, 10080))
        if ev.items[j] == y:
            rep.append((pos, age))
        else:
            ext.setdefault(int(ev.items[j]), []).append((pos, age))
    return rep, sorted(ext.items())


def test_repeat_lists_as_hrnn_planner(th):
    rng = np.random.default_rng(0)
    ev = random_events(th, rng, n_users=8, max_len=260, users=np.array([0, 2, 3, 5, 6]))
    recent = th.RecentLists(ev)
    events = np.arange(len(ev.items))
    got = recent.lists(np.concatenate([events, [-1]]))
    user = np.repeat(np.arange(8), np.diff(ev.offsets))
    checked = 0
    for p in events:
        u = user[p]
        trained = u in ev.users and p + 1 < ev.offsets[u + 1]
        rep, ext = recent_loop(ev, ev.offsets[u], p) if trained else ([], [])
        a, b = got["rep_offsets"][p], got["rep_offsets"][p + 1]
        assert list(zip(got["rep_pos"][a:b], got["rep_age"][a:b])) == rep
        a, b = got["ext_offsets"][p], got["ext_offsets"][p + 1]
        assert got["ext_items"][a:b].tolist() == [i for i, _ in ext]
        for k, (_, occ) in zip(range(a, b), ext):
            c, d = got["ext_occ_offsets"][k], got["ext_occ_offsets"][k + 1]
            assert list(zip(got["ext_pos"][c:d], got["ext_age"][c:d])) == occ
        checked += bool(rep) and bool(ext)
    assert got["rep_offsets"][-1] == got["rep_offsets"][-2]      # the idle (t, b): no lists
    assert checked > 100 and max(np.diff(ev.offsets)) > 200


def test_an_epoch_predicts_every_training_event_once(th):
    rng = np.random.default_rng(3)
    ev = random_events(th, rng, n_users=40, users=np.arange(0, 40, 2))
    trainer = th.Trainer(ev, 8, batch_size=5, bptt=4, n_sample=3)
    seen = []
    for win, events in trainer.windows():
        ok = events >= 0
        np.testing.assert_array_equal(win["targets"][ok], ev.items[events[ok] + 1])
        np.testing.assert_array_equal(win["weights"][ok], ev.weights[events[ok] + 1])
        assert win["negatives"].shape == (4, 3)
        seen += events[ok].tolist()
    want = [p for u in ev.users for p in range(ev.offsets[u], ev.offsets[u + 1] - 1)]
    assert sorted(seen) == sorted(want)


def test_training_lowers_the_loss(th):
    import hrnn
    from hrnn.synthetic import make_log

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = th.Events.like_hrnn(hrnn.HRNN(), make_log(n_events=6000, n_items=300, seed=2))
    trainer = th.Trainer(ev, 32, batch_size=16, bptt=8, n_sample=64)
    first, second = trainer.epoch(), trainer.epoch()
    assert first["events"] == second["events"] == ev.n_targets
    assert second["loss"] < first["loss"] - 0.1


# ------------------------------------------------------------------------------ compare.py

def test_compare_without_torch_says_how_to_add_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch fails
    monkeypatch.delitem(sys.modules, "torch_hrnn", raising=False)
    import compare
    assert compare._torch_model() is None
    assert "pip install torch==2.13.0 (or hrnn[bench]) to add the PyTorch column" in \
        capsys.readouterr().out
