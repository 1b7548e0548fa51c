"""The defining rules of the baselines, pinned by scores hand-computed on tiny logs.

test_baselines.py checks what each model learns (rankings); these tests fix the arithmetic of
RepeatRule's mixture, SessionKNN's similarity, the shared tie and exclusion rules, and how
put_events splits sessions, so that a changed constant or a dropped term shows up.
"""
import math

import numpy as np
import pandas as pd
import pytest

from hrnn._transitions import repeat_share
from hrnn.baselines import Markov, Popularity, RepeatRule, SessionKNN


def table(rows):
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])


def sessions(spec):
    """{user: (start time, items)} -> one session per user, events 10 s apart."""
    return table([(u, it, t0 + 10 * j) for u, (t0, items) in spec.items()
                  for j, it in enumerate(items)])


def scores_of(model, user):
    ids, scores = model.recommend(user, num_results=500)
    return dict(zip(ids.tolist(), scores.tolist()))


# --------------------------------------------------------------------------------- RepeatRule

# No user ever repeats an item, so the repeat curve is 0 and every score is the "new" part.
# a -> b twice, a -> c once, d -> e twice. Popularity a 3, b 2, c 1, d 2, e 2 (total 10).
NO_REPEATS = table([("u1", "a", 0), ("u1", "b", 1), ("u2", "a", 0), ("u2", "b", 1),
                    ("u3", "a", 0), ("u3", "c", 1), ("u4", "d", 0), ("u4", "e", 1),
                    ("u5", "d", 0), ("u5", "e", 1)])


@pytest.mark.parametrize("weight", [1.0, 0.5])
def test_repeat_rule_new_item_mixture(weight):
    """History d, a (a latest), transition_decay 0.5, smoothing 3:
    position weights 1, 0.5 normalised -> a 2/3, d 1/3; denominators out + smoothing: a 3+3=6,
    d 2+3=5; popularity mass 2/3*3/6 + 1/3*3/5 = 8/15, spread over the unseen items b, c, e by
    popularity / 5 (a and d, 5 of the 10 events, are seen).
      b = 2/3*2/6 + 8/15*2/5 = 98/225;  e = 1/3*2/5 + 8/15*2/5 = 78/225;
      c = 2/3*1/6 + 8/15*1/5 = 49/225   (they sum to 1 = (1 - r) with r = 0)
    and transition_weight scales the whole new part."""
    model = RepeatRule(transition_decay=0.5, smoothing=3.0, transition_weight=weight)
    model.fit(NO_REPEATS)
    model.put_events("q", ["d", "a"], [10.0, 11.0])
    got = scores_of(model, "q")
    expected = {"b": 98 / 225, "e": 78 / 225, "c": 49 / 225, "a": 0.0, "d": 0.0}
    assert list(got) == ["b", "e", "c", "a", "d"]  # seen items last, the more popular first
    for item, value in expected.items():
        assert got[item] == pytest.approx(weight * value, rel=1e-6, abs=1e-7), item


def test_repeat_rule_repeat_share_is_capped():
    """Everyone repeats the latest item (x x x x, y y): q[0] = (3 + 1) / (3 + 1) = 1. A user whose
    latest item is x has r = min(1, 0.95), so 0.05 is left for new items: the only transition
    out of x is x -> x (seen), so it all goes to popularity over the unseen y (2) and z (1)."""
    df = table([("u1", "x", t) for t in range(4)] + [("u2", "y", 0), ("u2", "y", 1),
                                                     ("u3", "z", 0)])
    model = RepeatRule().fit(df)
    model.put_events("q", ["x"], [10.0])
    got = scores_of(model, "q")
    assert got["x"] == pytest.approx(1.0, rel=1e-6)
    assert got["y"] == pytest.approx(0.05 * 2 / 3, rel=1e-5)
    assert got["z"] == pytest.approx(0.05 * 1 / 3, rel=1e-5)


def test_fixed_decay_keeps_the_learned_repeat_total():
    """x x x and a b c d, history_length 3: q[0] = 2 repeats / 5 chances = 0.4, q[1] = q[2] = 0.
    decay=0.5 reshapes q to 1 : 0.5 : 0.25 with the same total 0.4 -> q = (8, 4, 2) / 35.
    A user whose history is a, x (x latest) gets q[0] for x and q[1] for a: newest is p = 0."""
    df = table([("u1", "x", 0), ("u1", "x", 1), ("u1", "x", 2),
                ("u2", "a", 0), ("u2", "b", 1), ("u2", "c", 2), ("u2", "d", 3)])
    for decay, x, a in ((None, 0.4, 0.0), (0.5, 8 / 35, 4 / 35)):
        model = RepeatRule(decay=decay, history_length=3).fit(df)
        model.put_events("q", ["a", "x"], [10.0, 11.0])
        got = scores_of(model, "q")
        assert got["x"] == pytest.approx(x, rel=1e-6, abs=1e-7), decay
        assert got["a"] == pytest.approx(a, rel=1e-6, abs=1e-7), decay


# --------------------------------------------------------------------------------- SessionKNN
# Scores of items with votes are 1 + votes / max votes (+ 1e-6 * back-off); the queries are new
# users, so no training session is excluded as the user's own.

def knn(spec, **params):
    return SessionKNN(**params).fit(sessions(spec))


def test_sknn_linear_position_decay():
    """Session a, b: weights 1/2, 2/2. sim(a p) = 0.5 / sqrt(2*2) = 0.25, sim(b q) = 1/2 = 0.5."""
    model = knn({"s1": (0, ["a", "p"]), "s2": (100, ["b", "q"])})
    model.put_events("me", ["a", "b"], [1000.0, 1010.0])
    got = scores_of(model, "me")
    assert got["q"] == pytest.approx(2.0, abs=1e-5)
    assert got["p"] == pytest.approx(1.5, abs=1e-5)


def test_sknn_repeated_item_keeps_its_latest_weight():
    """Session a, b, a: a weighs 3/3 (not 1/3), b 2/3; two distinct items.
    sim(a p) = 1 / sqrt(2*2) = 1/2, sim(b q) = (2/3) / 2 = 1/3 -> p 2, q 1 + (1/3)/(1/2)."""
    model = knn({"s1": (0, ["a", "p"]), "s2": (100, ["b", "q"])})
    model.put_events("me", ["a", "b", "a"], [1000.0, 1010.0, 1020.0])
    got = scores_of(model, "me")
    assert got["p"] == pytest.approx(2.0, abs=1e-5)
    assert got["q"] == pytest.approx(1 + 2 / 3, abs=1e-5)


def test_sknn_similarity_divides_by_the_neighbours_length():
    """Session a: sim(a p) = 1/sqrt(1*2), sim(a q r s) = 1/sqrt(1*4) = 1/2. a itself gets both
    votes, the maximum: p = 1 + (1/sqrt2) / (1/sqrt2 + 1/2), q = 1 + (1/2) / (1/sqrt2 + 1/2)."""
    model = knn({"s1": (0, ["a", "p"]), "s2": (100, ["a", "q", "r", "s"])})
    model.put_events("me", ["a"], [1000.0])
    got = scores_of(model, "me")
    top = 1 / math.sqrt(2) + 0.5
    assert got["p"] == pytest.approx(1 + (1 / math.sqrt(2)) / top, abs=1e-5)
    assert got["q"] == pytest.approx(1 + 0.5 / top, abs=1e-5)


def test_sknn_similarity_counts_every_shared_item():
    """Session a, b (weights 1/2, 1) with sample_size 2: each item reaches its one most recent
    session, a -> s1 (a b p) and b -> s2 (b q). s1 is reached through a alone but shares a and b:
    sim(s1) = (1/2 + 1) / sqrt(2*3), sim(s2) = 1 / sqrt(2*2). b gets both votes, the maximum."""
    model = knn({"s1": (0, ["a", "b", "p"]), "s2": (100, ["b", "q"])}, sample_size=2)
    model.put_events("me", ["a", "b"], [1000.0, 1010.0])
    got = scores_of(model, "me")
    s1, s2 = 1.5 / math.sqrt(6), 0.5
    assert got["p"] == pytest.approx(1 + s1 / (s1 + s2), abs=1e-5)
    assert got["q"] == pytest.approx(1 + s2 / (s1 + s2), abs=1e-5)


def test_sknn_overlap_a_few_rows_at_a_time(monkeypatch):
    """The dense table of the current sessions, split into chunks of 2 rows, gives the same lists."""
    from hrnn import baselines
    from hrnn.synthetic import make_log
    log = make_log(3_000, n_users=60, n_items=80, seed=3).drop_duplicates(["USER_ID", "ITEM_ID", "TIMESTAMP"])
    model = SessionKNN().fit(log)
    users = list(model._hist.ids[:25])
    whole = model.recommend_batch(users, num_results=10)
    monkeypatch.setattr(baselines, "_OVERLAP_CELLS", 2 * model.n_items)
    parts = model.recommend_batch(users, num_results=10)
    np.testing.assert_array_equal(parts[0], whole[0])
    np.testing.assert_array_equal(parts[1], whole[1])


def test_sknn_only_k_neighbours_vote():
    """k=1: only the more similar a p (1/sqrt2 > 1/2) votes; q, r, s fall back to popularity."""
    model = knn({"s1": (0, ["a", "p"]), "s2": (100, ["a", "q", "r", "s"])}, k=1)
    model.put_events("me", ["a"], [1000.0])
    got = scores_of(model, "me")
    assert got["p"] > 1 and max(got["q"], got["r"], got["s"]) < 1


def test_sknn_equal_neighbours_the_more_recent_votes():
    """k=1 and two equally similar neighbours: the one that ended later wins."""
    model = knn({"old": (0, ["a", "p"]), "new": (5000, ["a", "q"])}, k=1)
    model.put_events("me", ["a"], [9000.0])
    got = scores_of(model, "me")
    assert got["q"] > 1 > got["p"]


def test_sknn_sample_size_takes_the_most_recent_sessions():
    """sample_size=1 with one item in the session: only a's most recent session is a candidate,
    although the older one is more similar (1/sqrt2 against 1/sqrt3)."""
    model = knn({"old": (0, ["a", "p"]), "new": (5000, ["a", "q", "r"])}, sample_size=1)
    model.put_events("me", ["a"], [9000.0])
    got = scores_of(model, "me")
    assert got["q"] > 1 > got["p"]
    # Without the limit both are candidates (and a p, the more similar, leads).
    model = knn({"old": (0, ["a", "p"]), "new": (5000, ["a", "q", "r"])}, sample_size=2)
    model.put_events("me", ["a"], [9000.0])
    got = scores_of(model, "me")
    assert got["p"] > got["q"] > 1


def test_sknn_reads_the_whole_current_session():
    """Session a, b, c: the oldest event still counts. a 1/3, b 2/3, c 1, three items:
    sim(a p) = (1/3)/sqrt(3*2), sim(b c q) = (2/3 + 1)/sqrt(3*3) = 5/9."""
    model = knn({"s1": (0, ["a", "p"]), "s2": (100, ["b", "c", "q"])})
    model.put_events("me", ["a", "b", "c"], [1000.0, 1010.0, 1020.0])
    got = scores_of(model, "me")
    assert got["p"] == pytest.approx(1 + (1 / 3 / math.sqrt(6)) / (5 / 9), abs=1e-5)


def test_sknn_long_session_keeps_its_positions():
    """A 1002-event session is read from its last 1000 events, which keep positions 3..1002 of
    1002. o at position 3 weighs 3/1002, z (the last) 1: p = 1 + (3/1002)/1 (unknown filler
    items take positions but are no evidence)."""
    model = knn({"s1": (0, ["o", "p"]), "s2": (100, ["z", "q"])})
    items = ["junk", "junk", "o"] + ["junk"] * 998 + ["z"]
    model.put_events("me", items, 1000.0 + np.arange(len(items)))
    got = scores_of(model, "me")
    assert got["q"] == pytest.approx(2.0, abs=1e-5)
    assert got["p"] == pytest.approx(1 + 3 / 1002, abs=1e-6)


@pytest.mark.parametrize("calls", [[(["a", "b"], [0.0, 5000.0])],
                                   [(["a"], [0.0]), (["b"], [5000.0])]],
                         ids=["one call", "two calls"])
def test_put_events_gap_starts_a_new_session(calls):
    """A gap over session_gap (1800) ends the session, within a call or between calls: only b's
    neighbour votes."""
    model = knn({"s1": (0, ["a", "p"]), "s2": (100, ["b", "q"])})
    for items, ts in calls:
        model.put_events("me", items, ts)
    got = scores_of(model, "me")
    assert got["q"] > 1 > got["p"]


@pytest.mark.parametrize("calls", [[(["a", "b"], [0.0, 100.0])],
                                   [(["a"], [0.0]), (["b"], [100.0])]],
                         ids=["one call", "two calls"])
def test_put_events_gap_equal_to_session_gap_stays_in_the_session(calls):
    """A new session needs a gap *longer* than session_gap: at exactly 100 s both items count."""
    model = knn({"s1": (0, ["a", "p"]), "s2": (100, ["b", "q"])}, session_gap=100.0)
    for items, ts in calls:
        model.put_events("me", items, ts)
    got = scores_of(model, "me")
    assert got["p"] > 1 and got["q"] > 1


def test_equal_votes_are_ordered_by_popularity_in_the_scores():
    """a, p, q all get the same vote; the 1e-6 * back-off term makes the score of p (9 events,
    back-off 0.9) strictly higher than q's (back-off 0.1), not only its rank."""
    df = pd.concat([sessions({"s1": (0, ["a", "p", "q"])}),
                    table([("fan", "p", 10_000 + 10 * j) for j in range(8)])])
    model = SessionKNN().fit(df)
    model.put_events("me", ["a"], [50_000.0])
    ids, scores = model.recommend("me", num_results=3)
    assert ids[0] == "p" and set(ids[1:].tolist()) == {"a", "q"}
    assert scores[0] > scores[1] >= scores[2] > 1


# ----------------------------------------------------------------------- shared (base) rules

def test_popularity_ties_keep_first_appearance_order():
    """Equally popular items come in catalogue order, the order of first appearance in the
    table (not alphabetical, not reversed), in recommend and recommend_batch alike."""
    df = table([("a", "y", 0), ("b", "x", 1), ("c", "z", 2), ("d", "w", 3), ("d", "w", 4)])
    model = Popularity().fit(df)
    assert model.recommend("a", num_results=4)[0].tolist() == ["w", "y", "x", "z"]
    assert model.recommend_batch(["a"], num_results=4)[0][0].tolist() == ["w", "y", "x", "z"]


def test_unknown_item_in_history_excludes_nothing_else():
    """An unknown item in a history is not an item index: exclude_interacted leaves out the
    user's one known item and nothing more (the last catalogue item, z, stays)."""
    df = table([("u1", "x", 0), ("u1", "y", 1), ("u2", "y", 0), ("u2", "z", 1)])
    model = Markov().fit(df)
    model.put_events("me", ["x", "never-seen"], [10.0, 11.0])
    ids, _ = model.recommend("me", num_results=10, exclude_interacted=True)
    assert sorted(ids.tolist()) == ["y", "z"]
    ids, scores = model.recommend_batch(["me"], num_results=3, exclude_interacted=True)
    assert sorted(ids[0, :2].tolist()) == ["y", "z"] and ids[0, 2] is None  # (padding, as HRNN's)
    assert np.isinf(scores[0, 2]) and np.isfinite(scores[0, :2]).all()


def test_batch_exclusion_on_a_large_catalogue():
    """610 items: recommend_batch takes the sparse path (candidates = evidence + the head of the
    popularity list). A user who consumed all 10 hot items must get the next 5 items, the
    singletons in catalogue order, not hot items nor -inf padding."""
    rows = [(f"f{u}", f"h{j}", 100 * u + j) for u in range(20) for j in range(10)]
    rows += [("me", f"h{j}", 10_000 + j) for j in range(10)]
    rows += [(f"v{u}", f"s{u}", 20_000 + u) for u in range(600)]
    model = Popularity().fit(table(rows))
    expected = [f"s{u}" for u in range(5)]
    ids, scores = model.recommend_batch(["me", "f0"], num_results=5, exclude_interacted=True)
    assert ids[0].tolist() == expected and ids[1].tolist() == expected
    np.testing.assert_array_equal(scores, 1.0)
    assert model.recommend("me", num_results=5, exclude_interacted=True)[0].tolist() == expected


# ------------------------------------------------------------------------------- exclude_seen

def test_repeat_share_by_hand():
    """u0: a b a (one repeat), u1: c c d (one), u2: two unknown items (never a repeat): 2 of 8."""
    offsets, items = np.array([0, 3, 6, 8]), np.array([0, 1, 0, 2, 2, 3, -1, -1])
    assert repeat_share(offsets, items, 4) == pytest.approx(0.25)
    assert repeat_share(np.array([0]), np.zeros(0, dtype=np.int64), 4) == 0.0


NEVER_AGAIN = [("u1", "x", 0), ("u1", "y", 1), ("u2", "x", 0), ("u2", "z", 1), ("u3", "x", 5)]
ONE_IN_SIX = NEVER_AGAIN + [("u1", "x", 2)]
# 1 repeat in 200 events: under the 1% of "auto".
RARE_REPEATS = ONE_IN_SIX + [(f"v{u}", it, 0) for u in range(97) for it in ("y", "z")]


@pytest.mark.parametrize("cls", [Popularity, Markov, SessionKNN])
def test_exclude_seen_follows_the_logs_repeats(cls):
    """"auto" leaves a user's items out of every answer (as exclude_interacted=True) where under
    1% of the training events re-consume an item, and keeps them where one in six does; True and
    False force it either way."""
    for rows, auto in ((NEVER_AGAIN, True), (ONE_IN_SIX, False), (RARE_REPEATS, True)):
        for setting, expected in (("auto", auto), (True, True), (False, False)):
            model = cls(exclude_seen=setting).fit(table(rows))
            assert model.exclude_seen_ is expected, (len(rows), setting)
            ids = model.recommend("u1", num_results=10)[0].tolist()
            assert sorted(ids) == (["z"] if expected else ["x", "y", "z"])
            batch = model.recommend_batch(["u1"], num_results=10)[0][0].tolist()
            assert [i for i in batch if i is not None] == ids
            assert model.get_params()["exclude_seen"] == setting
            assert model.clone().exclude_seen == setting


@pytest.mark.parametrize("value", ["yes", 1, None, "AUTO"])
def test_exclude_seen_rejects_other_values(value):
    with pytest.raises(ValueError, match="exclude_seen must be True, False or 'auto'"):
        Popularity(exclude_seen=value)


def test_repeat_rule_learns_its_own_exclusion():
    """RepeatRule has no switch: its repeat curve says whether seen items come back."""
    model = RepeatRule().fit(table(NEVER_AGAIN))
    assert model.exclude_seen_ is False and "exclude_seen" not in model.get_params()
