"""The transition counts and the repeat curve (hrnn._transitions) behind Markov, RepeatRule and
HRNN's transition prior, hand-counted on tiny logs."""
import numpy as np
import pandas as pd
import pytest

import hrnn
from hrnn._transitions import repeat_curve, transition_table
from hrnn.baselines import RepeatRule


def table(rows):
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])


def test_repeat_curve_counts_the_longest_distance():
    """x y x with length 2: x at 2 repeats x at 0 (distance 2, the last one the curve holds).
    Chances: distance 1 after events 0 and 1 (2), distance 2 after event 0 only (1).
    q = [0/2, 1/1]."""
    curve = repeat_curve(np.array([0, 3]), np.array([0, 1, 0]), 2, 2)
    np.testing.assert_array_equal(curve, [0.0, 1.0])


def test_repeat_curve_by_hand():
    """Two users, length 3. u0: a b a b (idx 0-3); u1: c c (idx 4-5).
    Repeats: a at 2 (distance 2), b at 3 (distance 2), c at 5 (distance 1).
    Chances of distance >= d, per event min(next occurrence - j, events left): u0 2, 2, 1, 0;
    u1 1, 0 -> distance 1: 4, distance 2: 2, distance 3: 0.  q = [1/4, 2/2, 0]."""
    curve = repeat_curve(np.array([0, 4, 6]), np.array([0, 1, 0, 1, 2, 2]), 3, 3)
    np.testing.assert_allclose(curve, [0.25, 1.0, 0.0])


@pytest.mark.parametrize("chunk", [1, 5, 37])
def test_repeat_curve_in_chunks_of_users(chunk):
    """Whole users a few events at a time give the curve of all at once: users longer than a
    chunk, users without events (at the start too) and unknown items (-1) included."""
    rng = np.random.default_rng(chunk)
    lengths = rng.integers(0, 12, 40)
    lengths[:2] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = rng.integers(-1, 6, offsets[-1])
    whole = repeat_curve(offsets, items, 6, 9, chunk=10**9)
    assert whole.any()
    np.testing.assert_array_equal(repeat_curve(offsets, items, 6, 9, chunk=chunk), whole)


def test_repeat_rule_uses_the_repeat_at_its_full_history_length():
    """RepeatRule(history_length=2) learns q = [0, 1] from x y x: a user with x two events back
    gets x first, scored q[1] = 1 (the 0.95 cap limits only the share left to new items)."""
    model = RepeatRule(history_length=2).fit(table([("u1", "x", 0), ("u1", "y", 1), ("u1", "x", 2),
                                                    ("u2", "z", 0)]))
    model.put_events("me", ["x", "y"], [10.0, 11.0])
    ids, scores = model.recommend("me", num_results=3)
    assert ids[0] == "x" and scores[0] == pytest.approx(1.0, rel=1e-6)


# ------------------------------------------------------------- HRNN's prior: training users only

def percentile_log():
    """Nine users of 4 events (distinct items, no repeats: 3 transitions each) and one of 20
    alternating p q p q ... (19 transitions, 18 repeats). The 0.9 length percentile is
    4 + 0.1 * 16 = 5.6, so max_user_history_length_percentile=0.9 leaves the long user out."""
    rows = [(f"u{u}", f"i{u}_{j}", 60 * j) for u in range(9) for j in range(4)]
    rows += [("long", "pq"[j % 2], 60 * j) for j in range(20)]
    return table(rows)


def test_transition_table_counts_only_training_users():
    """The arrays of a log of users 0 (a b a) and 1 (c d): with only user 1 training, the
    table holds c -> d alone and no repeats."""
    offsets = np.array([0, 3, 5])
    items = np.array([0, 1, 0, 2, 3])
    new_session = np.array([1, 0, 0, 1, 0])
    arrays = (offsets, items, np.arange(5.0), new_session)
    ptr, succ, counts, out, _, curve = transition_table(arrays, np.array([1]), np.ones(4))
    np.testing.assert_array_equal(ptr, [0, 0, 0, 1, 1])
    assert succ.tolist() == [3] and counts.tolist() == [1.0]
    np.testing.assert_array_equal(out, [0, 0, 1, 0])
    assert not curve.any()


def test_hrnn_prior_leaves_out_users_the_percentile_filter_drops():
    fast = dict(hidden_dimension=32, n_sample=8, batch_size=4, bptt=4, epochs=1, random_state=0,
                num_threads=1, show_progress=False, transition_weight=0.5)
    model = hrnn.HRNN(max_user_history_length_percentile=0.9, **fast)
    model.fit(percentile_log(), check_minimums=False)
    t = model._engine.get_transitions()
    # 9 users x 3 transitions, each pair once; none out of p or q, which stay recommendable.
    assert t["counts"].sum() == 27 and t["out"].sum() == 27
    index = {item: i for i, item in enumerate(model.item_ids_.tolist())}
    for item in "pq":
        assert t["offsets"][index[item] + 1] == t["offsets"][index[item]]
    assert not np.any(t["repeat_curve"])  # the long user's repeats are not counted either
    assert model.popularity_[index["p"]] == model.popularity_[index["q"]] == 0  # nor its events
    # Keeping everyone: the long user's 19 transitions and its repeats join.
    model = hrnn.HRNN(max_user_history_length_percentile=1.0, **fast)
    t = model.fit(percentile_log(), check_minimums=False)._engine.get_transitions()
    assert t["counts"].sum() == 27 + 19 and t["repeat_curve"][1] > 0
