"""The recent lists that the trainer builds for each training window (the target's repeat
occurrences and the extra candidate columns, docs/engine.md "Repeat score"), against a literal
reading of their definition on plans like the planner's: lanes that continue a long history, switch
users within a window, and go idle."""
import numpy as np
import pytest

import reference as ref
from hrnn import _core

WINDOW = 200  # kRepeatWindow


def make_log(rng, n_users=12):
    """Users' events back to back: items from a small per-user pool (many repeats; some -1)."""
    items, ts, starts = [], [], []
    for _ in range(n_users):
        starts.append(len(items))
        n = int(rng.choice([3, 40, 260, 420]))
        pool = rng.integers(0, 60, 8)
        t = float(rng.integers(0, 10**6))
        for _ in range(n):
            r = rng.random()
            items.append(-1 if r < 0.03 else int(rng.choice(pool)) if r < 0.7 else int(rng.integers(0, 60)))
            t += float(rng.choice([5, 70, 400, 7000, 200000]))
            ts.append(t)
    starts.append(len(items))
    return np.array(items, np.int32), np.array(ts), np.array(starts)


def make_plan(rng, starts, T, B):
    """start / pos [T, B] as lanes move: each lane enters a user anywhere in its history (a lane
    carried over from an earlier window) or at its start, one event per step, then takes another
    user or idles. The events are the function's log, not the users': a step may also declare a
    user start at its own event."""
    start = np.zeros((T, B), np.int64)
    pos = np.full((T, B), -1, np.int64)
    n_users = len(starts) - 1
    for b in range(B):
        t = int(rng.integers(0, 3))  # some lanes idle first
        while t < T and rng.random() < 0.9:
            u = int(rng.integers(n_users))
            s, e = starts[u], starts[u + 1]
            p = s if rng.random() < 0.5 else int(rng.integers(s, e - 1))
            while t < T and p + 1 < e:
                if rng.random() < 0.03:
                    s = p  # the next event as another user's first: a new run without a gap in pos
                start[t, b], pos[t, b] = s, p
                p += 1
                t += 1
    return start, pos


def literal(items, ts, start, pos, negatives):
    out = {k: [] for k in ("rep_pos", "rep_age", "ext_items", "ext_pos", "ext_age")}
    rep_off, ext_off, occ_off = [0], [0], [0]
    for s, p in zip(start.ravel().tolist(), pos.ravel().tolist()):
        if p >= 0:
            y = int(items[p + 1])
            others = {}
            for j in range(max(s, p - WINDOW + 1), p + 1):
                it = int(items[j])
                if it < 0:
                    continue
                pb, ab = ref.pos_bucket(p - j), ref.age_bucket((ts[p] - ts[j]) / 60.0)
                if it == y:
                    out["rep_pos"].append(pb)
                    out["rep_age"].append(ab)
                elif negatives:
                    others.setdefault(it, []).append((pb, ab))
            for it in sorted(others):
                out["ext_items"].append(it)
                out["ext_pos"] += [pb for pb, _ in others[it]]
                out["ext_age"] += [ab for _, ab in others[it]]
                occ_off.append(len(out["ext_pos"]))
        rep_off.append(len(out["rep_pos"]))
        ext_off.append(len(out["ext_items"]))
    return {**out, "rep_offsets": rep_off, "ext_offsets": ext_off, "ext_occ_offsets": occ_off}


@pytest.mark.parametrize("negatives", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_recent_lists_match_their_definition(seed, negatives):
    rng = np.random.default_rng(seed)
    items, ts, starts = make_log(rng)
    T, B = (32, 5) if seed % 2 else (7, 16)
    start, pos = make_plan(rng, starts, T, B)
    assert (pos >= 0).any() and (pos < 0).any()
    expected = literal(items, ts, start, pos, negatives)
    assert len(expected["rep_pos"]) > 0 and (len(expected["ext_items"]) > 0) == negatives
    for threads in (1, 2, 3):
        got = _core.recent_lists(items, ts, start, pos, negatives=negatives, num_threads=threads)
        assert set(got) == set(expected)
        for key, want in expected.items():
            np.testing.assert_array_equal(got[key], np.asarray(want), err_msg=f"{key}, {threads} threads")


def test_recent_lists_reject_steps_outside_the_log():
    items, ts = np.zeros(5, np.int32), np.arange(5.0)
    start, pos = np.zeros((2, 1), np.int64), np.array([[3], [4]])  # event 4 has no target
    with pytest.raises(ValueError, match="step 1"):
        _core.recent_lists(items, ts, start, pos)
    with pytest.raises(ValueError, match="step 0"):
        _core.recent_lists(items, ts, np.array([[2], [0]]), np.array([[1], [-1]]))
