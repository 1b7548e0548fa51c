"""Baselines: the shared recommender contract, then what each model should learn on tiny logs."""
import time

import numpy as np
import pandas as pd
import pytest

from hrnn.baselines import Markov, Popularity, RepeatRule, SessionKNN

MODELS = [Popularity, Markov, RepeatRule, SessionKNN]


def make_log(n_users=40, n_items=30, seed=0, prefix="i"):
    """Users with 2-4 sessions; the next item is mostly the following item id (a chain)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t = 1_000_000 + int(rng.integers(0, 10_000))
        item = int(rng.integers(n_items))
        for _ in range(int(rng.integers(2, 5))):
            for _ in range(int(rng.integers(2, 8))):
                rows.append((f"u{u}", f"{prefix}{item}" if prefix else item, t))
                t += int(rng.integers(10, 600))
                item = (item + 1) % n_items if rng.random() < 0.7 else int(rng.integers(n_items))
            t += 5000 + int(rng.integers(0, 100_000))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def table(rows):
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])


@pytest.fixture(scope="module")
def log():
    return make_log()


@pytest.fixture(scope="module", params=MODELS, ids=lambda c: c.__name__)
def fitted(request, log):
    return request.param().fit(log)


# ------------------------------------------------------------------------------- the contract

class TestContract:
    def test_recommend_shapes_and_order(self, fitted, log):
        ids, scores = fitted.recommend("u3", num_results=10)
        assert len(ids) == 10 == len(set(ids.tolist()))
        assert scores.dtype == np.float32
        assert np.all(np.diff(scores) <= 0)
        assert set(ids.tolist()) <= set(log["item_id"])

    @pytest.mark.parametrize("bad", [0, 501, -1, 2.5, True, "3", None])
    def test_num_results_range(self, fitted, bad):
        with pytest.raises(ValueError, match="num_results"):
            fitted.recommend("u3", num_results=bad)
        with pytest.raises(ValueError, match="num_results"):
            fitted.recommend_batch(["u3"], num_results=bad)

    def test_more_results_than_items(self, fitted, log):
        n_items = log["item_id"].nunique()
        ids, _ = fitted.recommend("u1", num_results=500)
        assert sorted(ids.tolist()) == sorted(log["item_id"].unique().tolist())
        ids, scores = fitted.recommend_batch(["u1", "u2", "nobody"], num_results=500)
        assert ids.shape == scores.shape == (3, n_items)

    def test_unknown_user_gets_popularity(self, fitted, log):
        ids, _ = fitted.recommend("nobody", num_results=10)
        expected, _ = Popularity().fit(log).recommend("someone else", num_results=10)
        assert ids.tolist() == expected.tolist()

    def test_batch_matches_single(self, fitted):
        users = ["u0", "u5", "nobody", "u7", "u0"]
        ids, scores = fitted.recommend_batch(users, num_results=8)
        assert ids.shape == scores.shape == (5, 8) and scores.dtype == np.float32
        for row, user in enumerate(users):
            one_ids, one_scores = fitted.recommend(user, num_results=8)
            assert ids[row].tolist() == one_ids.tolist()
            np.testing.assert_allclose(scores[row], one_scores, rtol=1e-6)

    def test_batch_of_one_id(self, fitted):
        """One id, a string or a scalar, is one user (as HRNN.recommend_batch takes it): not the
        string's characters, not a TypeError from iterating an int."""
        one, _ = fitted.recommend("u12", num_results=5)
        ids, _ = fitted.recommend_batch("u12", num_results=5)
        assert ids.shape == (1, 5) and ids[0].tolist() == one.tolist()
        ids, _ = fitted.recommend_batch(7, num_results=5)  # an unknown user
        assert ids.shape == (1, 5)
        ids, _ = fitted.recommend_batch(np.array(["u12", "u3"]), num_results=5)
        assert ids.shape == (2, 5) and ids[0].tolist() == one.tolist()

    def test_exclude_interacted(self, fitted, log):
        seen = set(log.loc[log["user_id"] == "u4", "item_id"])
        ids, _ = fitted.recommend("u4", num_results=10, exclude_interacted=True)
        assert len(ids) == 10 and not seen & set(ids.tolist())
        b_ids, b_scores = fitted.recommend_batch(["u4"], num_results=10, exclude_interacted=True)
        assert b_ids[0].tolist() == ids.tolist()
        # Asking for everything: the row is padded with None, scored -inf (as HRNN's).
        n_items = log["item_id"].nunique()
        b_ids, b_scores = fitted.recommend_batch(["u4"], num_results=500, exclude_interacted=True)
        assert b_ids.shape == (1, n_items)
        ids, _ = fitted.recommend("u4", num_results=500, exclude_interacted=True)
        assert len(ids) == n_items - len(seen)
        assert b_ids[0, :len(ids)].tolist() == ids.tolist() and np.isfinite(b_scores[0, :len(ids)]).all()
        assert b_ids[0, len(ids):].tolist() == [None] * len(seen) and np.isneginf(b_scores[0, len(ids):]).all()

    @pytest.mark.parametrize("query", [dict(exclude_items=["i1", "i5", "not-an-item"]),
                                       dict(include_items=["i1", "i2", "i9", "not-an-item"]),
                                       dict(include_items=["i1", "i2", "i3"], exclude_items=["i2"],
                                            exclude_interacted=True)])
    def test_batch_takes_the_item_filters_of_recommend(self, fitted, query):
        users = ["u0", "u4", "nobody"]
        ids, scores = fitted.recommend_batch(users, num_results=8, **query)
        assert ids.shape == scores.shape == (3, 8)
        for row, user in enumerate(users):
            one, one_scores = fitted.recommend(user, num_results=8, **query)
            n = len(one)
            assert ids[row, :n].tolist() == one.tolist()
            np.testing.assert_allclose(scores[row, :n], one_scores, rtol=1e-6)
            assert ids[row, n:].tolist() == [None] * (8 - n) and np.isneginf(scores[row, n:]).all()

    def test_include_and_exclude_items(self, fitted):
        ids, _ = fitted.recommend("u2", include_items=["i1", "i2", "not-an-item"])
        assert sorted(ids.tolist()) == ["i1", "i2"]
        full, _ = fitted.recommend("u2", num_results=5)
        ids, _ = fitted.recommend("u2", num_results=5, exclude_items=[full[0], "not-an-item"])
        assert full[0] not in ids.tolist() and ids[0] == full[1]
        ids, _ = fitted.recommend("u2", include_items=["i1"], exclude_items=("i1",))
        assert len(ids) == 0
        ids, _ = fitted.recommend("u2", include_items="i3")  # a single id is one id
        assert ids.tolist() == ["i3"]

    def test_put_events_new_user_and_unknown_items(self, log):
        for cls in MODELS:
            model = cls().fit(log)
            model.put_events("fresh", ["i1", "never-seen", "i2"], [10.0, 20.0, 30.0])
            model.put_events("fresh", "i3", 40.0)  # one event as scalars
            model.put_events("fresh", np.array([], dtype=object), [])  # nothing: no change
            ids, _ = model.recommend("fresh", exclude_interacted=True)
            assert not {"i1", "i2", "i3"} & set(ids.tolist())
            model.put_events("fresh", ["never-seen"], [50.0])  # last item unknown: no crash
            assert len(model.recommend("fresh")[0]) == 25
            model.put_events("fresh", (i for i in ["i4"]), (t for t in [60.0]))  # iterables

    @pytest.mark.parametrize("items, ts, match, error", [
        (["i1"], [1.0], "older", ValueError),                 # before the user's last event
        (["i1", "i2"], [3e9], "got 2 item ids", ValueError),  # lengths differ
        (["i1"], [float("nan")], "finite", ValueError),
        (["i1"], [-5.0], ">= 0", ValueError),
        (["i1"], [2e12], "year 5000", ValueError),            # milliseconds
        (["i1", "i2"], [3e9, 2e9], "time order", ValueError),
        (["i1"], ["yesterday"], "numbers", TypeError),
        (["i1"], [True], "numbers", TypeError),
    ])
    def test_put_events_rejects_and_changes_nothing(self, log, items, ts, match, error):
        for cls in MODELS:
            model = cls().fit(log)
            before = model.recommend_batch(["u1"], num_results=30)
            with pytest.raises(error, match=match):
                model.put_events("u1", items, ts)
            after = model.recommend_batch(["u1"], num_results=30)
            np.testing.assert_array_equal(before[0], after[0])
            np.testing.assert_array_equal(before[1], after[1])

    def test_put_events_ids_and_per_event_sessions(self, log):
        """The ids HRNN takes (strings, integers; not None, True or 2.0), and one session id per
        event as HRNN honours them (numpy strings are the same sessions as Python ones)."""
        for cls in MODELS:
            model = cls().fit(log)
            for bad, error in ((None, ValueError), (True, TypeError), (2.0, TypeError), ((1,), TypeError)):
                with pytest.raises(error, match="user_id"):
                    model.put_events(bad, ["i1"], [4e9])
                with pytest.raises(error, match="user_id"):
                    model.recommend(bad)
            model.put_events("s", ["i1", "i2", "i3"], [4e9, 4e9 + 1, 4e9 + 2], session_id=["a", "a", "b"])
            model.put_events("s", ["i4"], [4e9 + 3], session_id=np.array(["b"]))
            model.put_events("s", ["i1", "i2"], [4e9 + 4, 4e9 + 5], session_id=[np.str_("b"), "c"])
            h = model._hist
            assert h.new[h.index["s"]].tolist() == [True, False, True, False, False, True], cls
            with pytest.raises(ValueError, match="one per event"):
                model.put_events("s", ["i1", "i2"], [5e9, 5e9], session_id=["a", "b", "c"])
            # A user trained without session ids: its first session id goes by the gap, as in HRNN.
            t = h.ts[h.index["u1"]][-1]
            model.put_events("u1", ["i1"], [t + 10], session_id="x")
            model.put_events("u1", ["i2"], [t + 20], session_id="y")
            assert h.new[h.index["u1"]][-2:].tolist() == [False, True], cls
            # One session id, but a gap beyond session_gap: a new session (as in fit and HRNN;
            # RepeatRule's default session_gap=None never splits by time).
            model.put_events("u1", ["i3", "i4"], [t + 30, t + 5000], session_id="y")
            model.put_events("u1", ["i1"], [t + 9000], session_id="y")
            by_time = model._session_gap() is not None
            assert h.new[h.index["u1"]][-3:].tolist() == [False, by_time, by_time], cls

    def test_not_fitted(self):
        for cls in MODELS:
            with pytest.raises(RuntimeError, match="not fitted"):
                cls().recommend("u1")
            with pytest.raises(RuntimeError, match="not fitted"):
                cls().put_events("u1", ["a"], [1.0])

    def test_params_and_clone(self, log):
        model = RepeatRule(decay=0.7, history_length=20).fit(log)
        twin = model.clone()
        assert twin.get_params() == model.get_params() and not hasattr(twin, "_hist")
        with pytest.raises(ValueError, match="history_length"):
            model.set_params(history_length=0)
        assert model.history_length == 20
        assert "decay=0.7" in repr(model)

    @pytest.mark.parametrize("cls, params", [
        (Popularity, {"recency_half_life": -1}), (Markov, {"session_gap": -5}),
        (Markov, {"session_gap": "1h"}), (RepeatRule, {"decay": 0}),
        (RepeatRule, {"decay": 1.5}), (RepeatRule, {"transition_weight": -1}),
        (RepeatRule, {"smoothing": 0}), (RepeatRule, {"history_length": 2.5}),
        (SessionKNN, {"k": 0}), (SessionKNN, {"sample_size": True}),
    ])
    def test_invalid_hyperparameters(self, cls, params):
        with pytest.raises(ValueError, match=next(iter(params))):
            cls(**params)

    def test_int_ids_and_columns(self):
        df = make_log(prefix="").rename(columns={"user_id": "who"})
        model = Markov().fit(df, columns={"USER_ID": "who"})
        ids, _ = model.recommend("u1", num_results=3)
        assert ids.dtype.kind == "i"
        model.put_events("u1", [np.int64(3)], [5e6])
        assert model.recommend("u1", num_results=1)[0][0] == 4  # 3 -> 4 is the usual successor


# ------------------------------------------------------------------------------ what they learn

class TestPopularity:
    def test_counts_and_recency(self):
        df = table([("a", "x", 0), ("b", "x", 10), ("c", "x", 20), ("a", "y", 10_000),
                    ("b", "y", 10_010), ("c", "z", 20)])
        ids, scores = Popularity(exclude_seen=False).fit(df).recommend("a", num_results=3)
        assert ids.tolist() == ["x", "y", "z"] and scores.tolist() == [3.0, 2.0, 1.0]
        ids, _ = Popularity(recency_half_life=600, exclude_seen=False).fit(df).recommend("a", num_results=3)
        assert ids.tolist() == ["y", "x", "z"]
        for bad in (0, 0.5, -1):  # (0 used to mean "unweighted" silently; HRNN's bound is 1 s too)
            with pytest.raises(ValueError, match="recency_half_life"):
                Popularity(recency_half_life=bad)


class TestMarkov:
    def test_successors_rank_first(self):
        df = table([("a", "x", 0), ("a", "y", 10), ("b", "x", 0), ("b", "y", 10),
                    ("c", "x", 0), ("c", "z", 10), ("d", "w", 0), ("d", "w", 5), ("e", "w", 0)])
        model = Markov().fit(df)
        model.put_events("new", ["x"], [100.0])
        ids, scores = model.recommend("new", num_results=4)
        assert ids.tolist()[:2] == ["y", "z"]
        assert scores[0] > scores[1] > 1.0 > scores[2]  # evidence above the back-off

    def test_session_gap(self):
        df = table([("a", "x", 0), ("a", "y", 5000), ("b", "q", 0), ("b", "q", 1), ("c", "q", 0)])
        model = Markov(session_gap=1800).fit(df)
        model.put_events("new", ["x"], [1e4])
        assert model.recommend("new", num_results=1)[0][0] == "q"  # x -> y spans sessions
        model = Markov(session_gap=None).fit(df)
        model.put_events("new", ["x"], [1e4])
        assert model.recommend("new", num_results=1)[0][0] == "y"


class TestRepeatRule:
    def test_learns_where_repeats_happen(self):
        # Every user revisits the item viewed two events earlier, never the latest one.
        rows = []
        for u in range(30):
            seq = []
            for j in range(10):
                seq += [f"n{u}_{j}", f"m{u}_{j}", f"n{u}_{j}"]
            rows += [(f"u{u}", it, 100 * t) for t, it in enumerate(seq)]
        model = RepeatRule().fit(table(rows))
        assert model._curve[1] > 0.2 and model._curve[0] == 0.0
        model.put_events("new", ["p", "n0_1", "m0_1"], [1.0, 2.0, 3.0])
        ids, _ = model.recommend("new", num_results=3)
        assert ids[0] == "n0_1"  # two back, not the latest (m0_1)

    def test_no_repeats_puts_seen_items_last(self, log):
        ml_like = log.drop_duplicates(["user_id", "item_id"])
        model = RepeatRule().fit(ml_like)
        assert model._curve.sum() == 0.0
        seen = set(ml_like.loc[ml_like["user_id"] == "u3", "item_id"])
        ids, _ = model.recommend("u3", num_results=500)
        assert set(ids[-len(seen):].tolist()) == seen

    def test_fixed_decay_shape(self, log):
        model = RepeatRule(decay=0.5, history_length=10).fit(log)
        np.testing.assert_allclose(model._curve[1:] / model._curve[:-1], 0.5)

    def test_history_length_set_after_fit_applies_at_the_next_fit(self, log):
        model = RepeatRule(history_length=3).fit(log)
        before = model.recommend_batch(["u1", "u2"], 10)
        model.set_params(history_length=1000)  # longer than the fitted repeat curve
        after = model.recommend_batch(["u1", "u2"], 10)
        np.testing.assert_array_equal(before[0], after[0])
        assert len(model.fit(log)._curve) == 1000


class TestSessionKNN:
    def test_neighbour_sessions_vote(self):
        rows = [(f"s{u}", it, 10 * j) for u in range(6)
                for j, it in enumerate(["a", "b", "c"] if u < 3 else ["d", "e", "f", "g"])]
        rows += [("pop", "z", j) for j in range(20)]
        model = SessionKNN(k=10).fit(table(rows))
        model.put_events("new", ["a"], [1000.0])
        ids, scores = model.recommend("new", num_results=4)
        assert set(ids[:3].tolist()) == {"a", "b", "c"} and ids[3] == "z"
        assert (scores[:3] > 1).all() and scores[3] < 1

    def test_own_session_is_not_a_neighbour(self):
        rows = [("me", "p", 0), ("me", "q", 10)] + [("other", "r", 0), ("other", "s", 5),
                                                     ("third", "r", 0), ("third", "t", 5)]
        model = SessionKNN(exclude_seen=False).fit(table(rows))
        _, scores = model.recommend("me", num_results=5)
        assert (scores < 1).all()  # only the popularity back-off: no session matches but its own
        model.put_events("me", ["r"], [20.0])  # same session, now shares r with two others
        ids, scores = model.recommend("me", num_results=5)
        assert set(ids[scores > 1].tolist()) == {"r", "s", "t"}

    def test_session_ids_from_put_events(self):
        rows = [(f"s{u}", it, 10 * j) for u in range(4) for j, it in enumerate(["a", "b"])]
        rows += [(f"t{u}", it, 10 * j) for u in range(4) for j, it in enumerate(["c", "d"])]
        model = SessionKNN(exclude_seen=False).fit(table(rows))
        model.put_events("new", ["a"], [100.0], session_id="one")
        model.put_events("new", ["c"], [101.0], session_id="two")  # a new session: only c counts
        ids, scores = model.recommend("new", num_results=2)
        assert set(ids.tolist()) == {"c", "d"} and (scores > 1).all()


@pytest.mark.slow
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_threads_creating_users_lose_no_event(cls, log):
    """put_events grows the histories that queries read: calls from many threads take turns."""
    import sys
    import threading
    model = cls().fit(log)
    errors = []

    def work(t):
        try:
            for k in range(300):
                model.put_events(f"t{t}_{k}", ["i1", "i2"], [5e6 + k, 5e6 + k + 1])
                model.recommend(f"t{t}_{k}", num_results=3, exclude_interacted=True)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    ids, _ = model.recommend_batch([f"t{t}_{k}" for t in range(4) for k in range(300)], 40, exclude_interacted=True)
    assert not np.isin(ids, ["i1", "i2"]).any()  # every new user has both events


def test_vectorised_speed():
    """About 270k events, 4000 users: fit and a full batch take seconds, not minutes."""
    big = make_log(n_users=4000, n_items=5000, seed=1)
    big = pd.concat([big] * 5, ignore_index=True)
    big["timestamp"] += np.repeat(np.arange(5), len(big) // 5) * 10_000_000
    for cls in MODELS:
        t0 = time.perf_counter()
        model = cls().fit(big)
        model.recommend_batch(big["user_id"].unique(), num_results=25)
        assert time.perf_counter() - t0 < 30, cls.__name__


@pytest.mark.parametrize("n_items, exclude, block", [(3000, False, None), (3000, True, None),
                                                     (40, True, None), (40, True, 100)])
def test_sparse_top_k_matches_dense(n_items, exclude, block, monkeypatch):
    """The candidate-list top-k (large catalogues) and the dense blocks (small ones; ``block``:
    two rows per block) equal a dense argsort; ties go to the more popular item, then the lower
    index."""
    from hrnn import _baseline_history
    from hrnn._baseline_history import sparse_top_k, top_k
    if block:
        monkeypatch.setattr(_baseline_history, "DENSE_BLOCK", block)
    rng = np.random.default_rng(n_items)
    n_rows, k, m = 7, 12, 60
    rows, items = rng.integers(0, n_rows, m), rng.integers(0, n_items, m)
    values = rng.choice([-0.5, 0.0, 0.25, 1.0, 3.0], m)
    scale = rng.choice([0.0, 1.0, 2.0], n_rows)
    backoff = rng.integers(0, 5, n_items) / 5.0  # many ties
    order = np.argsort(-backoff, kind="stable")
    excluded = (rng.integers(0, n_rows, 30), rng.integers(0, n_items, 30)) if exclude else None
    best, scores = sparse_top_k(rows, items, values, scale, backoff, order, k, n_rows, excluded)
    dense = scale[:, None] * backoff[None, :]
    np.add.at(dense, (rows, items), values)
    if exclude:
        dense[excluded] = -np.inf
    expected = order[top_k(dense[:, order], k)]
    np.testing.assert_array_equal(best, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(dense, expected, axis=1))
    assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.parametrize("n_items", [50, 10**9])
def test_coalesce(n_items):
    """Duplicate (row, item) pairs summed in input order, sorted by row then item, whether the
    keys are counted (few possible keys) or sorted (many)."""
    from hrnn._baseline_history import coalesce
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 6, 300)
    items = rng.choice(rng.integers(0, n_items, 20), 300)
    values = rng.normal(size=300)
    expected = {}
    for r, i, v in zip(rows.tolist(), items.tolist(), values.tolist()):
        expected[(r, i)] = expected.get((r, i), 0.0) + v
    r, i, v = coalesce(rows, items, values, n_items)
    assert list(zip(r.tolist(), i.tolist())) == sorted(expected)
    assert v.tolist() == [expected[key] for key in sorted(expected)]  # the same additions
    empty = coalesce(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), n_items)
    assert all(len(a) == 0 for a in empty)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_batch_matches_single_on_a_large_catalogue(cls):
    """With 3000 items the batch takes the sparse candidate path; recommend is dense."""
    model = cls().fit(make_log(n_users=80, n_items=3000, seed=3))
    users = ["u0", "u9", "nobody", "u33"]
    for exclude in (False, True):
        ids, scores = model.recommend_batch(users, num_results=30, exclude_interacted=exclude)
        for row, user in enumerate(users):
            one_ids, one_scores = model.recommend(user, num_results=30,
                                                  exclude_interacted=exclude)
            assert ids[row].tolist() == one_ids.tolist()
            np.testing.assert_allclose(scores[row], one_scores, rtol=1e-6)


def test_top_k_ties_by_index():
    from hrnn._baseline_history import top_k
    scores = np.array([[0.0, 1.0, 1.0, 1.0, 1.0, 2.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    np.testing.assert_array_equal(top_k(scores, 3), [[5, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(top_k(scores, 6)[0], [5, 1, 2, 3, 4, 0])


def test_empty_batch(log):
    ids, scores = Markov().fit(log).recommend_batch([], num_results=5)
    assert ids.shape == scores.shape == (0, 5)


def test_put_events_takes_event_types_and_values(log):
    """The baselines take HRNN's put_events arguments; without event filters they record all."""
    for cls in MODELS:
        model = cls().fit(log)
        model.put_events("typed", ["i1", "i2"], [4e9, 4e9 + 1], event_type=["view", "buy"], event_value=2)
        h = model._hist
        assert h.items[h.index["typed"]].tolist() == [model._item_pos["i1"], model._item_pos["i2"]], cls
        with pytest.raises(TypeError, match="event_value"):
            model.put_events("typed", ["i1"], [4e9 + 2], event_value="high")
