"""The evaluation protocols: splits, leakage, hand-computed metrics, and the real data sets."""
import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hrnn
from hrnn.base import Recommender
from hrnn.baselines import Markov, Popularity, RepeatRule, SessionKNN
from hrnn.data import read_interactions
from hrnn.evaluate import evaluate, split_next_item, split_personalize

PERSONALIZE_KEYS = {"precision@5", "precision@10", "precision@25", "ndcg@5", "ndcg@10",
                    "ndcg@25", "mrr@25", "coverage", "n_users", "fit_seconds", "eval_seconds"}
NEXT_ITEM_KEYS = {"recall@20", "mrr@20", "first_recall@20", "n_events", "n_users",
                  "fit_seconds", "eval_seconds"}


def make_log(n_users=60, n_items=30, seed=0):
    """Users with 1-4 sessions (gaps of more than 1800 s between them) of 1-7 events."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        t = 1_000_000 + int(rng.integers(0, 10_000))
        for _ in range(int(rng.integers(1, 5))):
            for _ in range(int(rng.integers(1, 8))):
                rows.append((f"u{u}", f"i{int(rng.integers(n_items))}", t))
                t += int(rng.integers(10, 600))
            t += 5000 + int(rng.integers(0, 100_000))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


class Spy(Recommender):
    """Records what it is fitted on, every put_events and every recommend_batch in ``journal``
    (a list shared by its clones, since evaluate only ever touches a clone)."""

    def __init__(self, journal=None):
        self.journal = journal

    def fit(self, data, columns=None):
        df = read_interactions(data, columns)
        self.journal.append(("fit", df.copy()))
        self._items = pd.unique(df["ITEM_ID"])
        return self

    def put_events(self, user_id, item_ids, timestamps, session_id=None):
        self.journal.append(("put", user_id, list(item_ids), list(timestamps), session_id))

    def recommend_batch(self, user_ids, num_results=25, exclude_interacted=False, new_session=False):
        self.journal.append(("rec", list(user_ids), exclude_interacted, new_session))
        k = min(num_results, len(self._items))
        ids = np.tile(self._items[:k], (len(user_ids), 1))
        return ids, np.zeros(ids.shape, dtype=np.float32)


class Fixed(Recommender):
    """Recommends the same given list to everyone."""

    def __init__(self, items=(), num_threads=1):
        self.items = items
        self.num_threads = num_threads

    def fit(self, data, columns=None):
        return self

    def put_events(self, user_id, item_ids, timestamps, session_id=None):
        pass

    def recommend_batch(self, user_ids, num_results=25, exclude_interacted=False, new_session=False):
        ids = np.tile(np.array(self.items[:num_results], dtype=object), (len(user_ids), 1))
        return ids, np.zeros(ids.shape, dtype=np.float32)


def keyset(df):
    return set(zip(df["USER_ID"], df["ITEM_ID"], df["TIMESTAMP"]))


# ----------------------------------------------------------------------------------- splits

class TestSplits:
    def test_personalize_split(self):
        df = read_interactions(make_log())
        s = split_personalize(df, random_state=1)
        held = set(s.inputs["USER_ID"])
        eligible = (df["USER_ID"].value_counts() >= 2).sum()
        assert len(held) == round(0.1 * eligible) and held == set(s.truth["USER_ID"])
        assert not held & set(s.train["USER_ID"])
        assert len(s.train) + len(s.inputs) + len(s.truth) == len(df)
        assert keyset(s.train) | keyset(s.inputs) | keyset(s.truth) == keyset(df)
        for user, events in df[df["USER_ID"].isin(held)].groupby("USER_ID"):
            truth = s.truth[s.truth["USER_ID"] == user]
            inputs = s.inputs[s.inputs["USER_ID"] == user]
            assert len(truth) == max(1, len(events) // 10) and len(inputs) >= 1
            assert inputs["TIMESTAMP"].max() <= truth["TIMESTAMP"].min()
            assert inputs["TIMESTAMP"].is_monotonic_increasing

    def test_personalize_split_is_seeded(self):
        df = make_log()
        a, b = split_personalize(df, random_state=7), split_personalize(df, random_state=7)
        pd.testing.assert_frame_equal(a.truth, b.truth)
        pd.testing.assert_frame_equal(a.train, b.train)
        others = [set(split_personalize(df, random_state=s).truth["USER_ID"]) for s in range(5)]
        assert len({frozenset(o) for o in others}) > 1

    def test_personalize_split_errors(self):
        with pytest.raises(ValueError, match="holdout_fraction"):
            split_personalize(make_log(), holdout_fraction=1.0)
        with pytest.raises(ValueError, match="at least 2 users"):
            split_personalize(pd.DataFrame({"USER_ID": ["a", "a"], "ITEM_ID": [1, 2],
                                            "TIMESTAMP": [1, 2]}))

    def test_next_item_split(self):
        df = read_interactions(make_log())
        s = split_next_item(df)
        assert len(s.train) + len(s.test) == len(df)
        for user, events in df.groupby("USER_ID"):
            ts = np.sort(events["TIMESTAMP"].to_numpy())
            starts = np.flatnonzero(np.r_[True, np.diff(ts) > 1800])
            test = s.test.loc[s.test["USER_ID"] == user, "TIMESTAMP"].to_numpy()
            if len(starts) < 2:
                assert len(test) == 0
            else:
                np.testing.assert_array_equal(test, ts[starts[-1]:])

    def test_users_with_two_events_can_be_held_out(self):
        """Two events are enough for the protocol: one in, one to find."""
        rows = [(f"u{u}", f"i{(u + k) % 7}", 100 * u + k) for u in range(20) for k in range(2)]
        s = split_personalize(pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"]))
        assert s.truth["USER_ID"].nunique() == 2 and len(s.truth) == len(s.inputs) == 2

    def test_next_item_train_keeps_the_input_row_order(self):
        """As documented for the splits: the training part is the input's rows, in input order."""
        df = read_interactions(make_log()).sample(frac=1.0, random_state=3).reset_index(drop=True)
        train = split_next_item(df).train
        position = {key: i for i, key in enumerate(zip(df["USER_ID"], df["ITEM_ID"], df["TIMESTAMP"]))}
        rows = [position[key] for key in zip(train["USER_ID"], train["ITEM_ID"], train["TIMESTAMP"])]
        assert rows == sorted(rows) and 0 < len(rows) < len(df)

    def test_next_item_split_session_ids(self):
        df = pd.DataFrame({"USER_ID": ["a"] * 4 + ["b"] * 2, "ITEM_ID": [1, 2, 3, 4, 5, 6],
                           "TIMESTAMP": [1, 2, 3, 4, 1, 2], "SESSION_ID": [0, 0, 1, 1, 2, 2]})
        s = split_next_item(df)
        assert s.test["ITEM_ID"].tolist() == [3, 4] and s.train["ITEM_ID"].tolist() == [1, 2, 5, 6]


# ---------------------------------------------------------------------------------- leakage

class TestLeakage:
    def test_personalize(self):
        df = read_interactions(make_log())
        journal = []
        evaluate(Spy(journal), df, random_state=3)
        s = split_personalize(df, random_state=3)
        kinds = [e[0] for e in journal]
        assert kinds[0] == "fit" and kinds.count("fit") == 1 and kinds[-1] == "rec"
        assert kinds.count("rec") == 1 and set(kinds[1:-1]) == {"put"}
        fit_keys = keyset(journal[0][1])
        held = set(s.truth["USER_ID"])
        assert not fit_keys & (keyset(s.truth) | keyset(s.inputs))
        assert not held & set(journal[0][1]["USER_ID"])
        put = {(e[1], i, t) for e in journal if e[0] == "put" for i, t in zip(e[2], e[3])}
        assert put == keyset(s.inputs)  # all of the input, none of the truth
        assert len([e for e in journal if e[0] == "put"]) == len(held)  # one call per user
        assert set(journal[-1][1]) == held

    def test_next_item(self):
        df = read_interactions(make_log())
        journal = []
        evaluate(Spy(journal), df, protocol="next-item")
        s = split_next_item(df)
        assert not keyset(journal[0][1]) & keyset(s.test)
        sessions = {u: list(zip(g["ITEM_ID"], g["TIMESTAMP"])) for u, g in
                    s.test.groupby("USER_ID", sort=False)}
        put = {u: [] for u in sessions}
        n_predicted = 0
        for entry in journal[1:]:
            if entry[0] == "put":
                put[entry[1]] += list(zip(entry[2], entry[3]))
            else:  # rec: each user has exactly the events before the one being predicted
                for u in entry[1]:
                    j = len(put[u])
                    assert put[u] == sessions[u][:j] and j < len(sessions[u])
                    n_predicted += 1
                # Asked for as a session start exactly when it predicts the test sessions' first events.
                assert entry[3] is (not any(put[u] for u in entry[1]))
        assert n_predicted == len(s.test)  # every test event predicted once (the first too)

    @pytest.mark.parametrize("protocol", ["personalize", "next-item"])
    def test_session_ids_reach_put_events(self, protocol):
        """With a SESSION_ID column every put_events call carries its events' session (the
        model's own sessions, not ones guessed from time gaps); nothing is excluded from the
        lists the protocol scores (a re-consumed item is a hit, as in Personalize)."""
        df = read_interactions(make_log())
        df["SESSION_ID"] = df.groupby("USER_ID").cumcount() // 3
        session = dict(zip(zip(df["USER_ID"], df["TIMESTAMP"]), df["SESSION_ID"]))
        journal = []
        evaluate(Spy(journal), df, protocol=protocol, random_state=3)
        puts = [e for e in journal if e[0] == "put"]
        assert len({e[4] for e in puts}) > 1
        for _, user, _, stamps, sid in puts:
            assert {session[(user, t)] for t in stamps} == {sid}
        assert {e[2] for e in journal if e[0] == "rec"} == {False}

    def test_first_events_are_asked_as_session_starts(self):
        journal = []
        evaluate(Spy(journal), make_log(), protocol="next-item")
        recs = [e for e in journal if e[0] == "rec"]
        assert recs[0][3] is True and {e[3] for e in recs[1:]} == {False}

    def test_a_recommender_without_session_starts_is_asked_plainly(self):
        """A recommender from outside hrnn need not know new_session: its first events are asked
        for like any other event."""
        class Plain(Fixed):
            def recommend_batch(self, user_ids, num_results=25):
                return super().recommend_batch(user_ids, num_results)

        df = make_log()
        plain = evaluate(Plain(items=("i1", "i2", "i3")), df, protocol="next-item")
        fixed = evaluate(Fixed(items=("i1", "i2", "i3")), df, protocol="next-item")
        for key in ("recall@20", "mrr@20", "first_recall@20"):
            assert plain[key] == fixed[key]
        assert fixed["first_recall@20"] > 0

    @pytest.mark.parametrize("protocol", ["personalize", "next-item"])
    def test_returned_estimator(self, protocol):
        df = read_interactions(make_log())
        journal, quiet = [], []
        spy = Spy(journal)
        out = evaluate(spy, df, protocol=protocol, random_state=3, return_estimator=True)
        evaluate(Spy(quiet), df, protocol=protocol, random_state=3)
        model = out.pop("estimator")
        assert isinstance(model, Spy) and model is not spy and model.journal is journal
        assert set(out) == (PERSONALIZE_KEYS if protocol == "personalize" else NEXT_ITEM_KEYS)
        extra = journal[len(quiet):]
        assert [e[:1] for e in journal[:len(quiet)]] == [e[:1] for e in quiet]
        if protocol == "personalize":
            assert extra == []  # left as the protocol left it
            return
        # next-item: only the test sessions' last events, one each, so that the model has seen
        # every event of the log.
        s = split_next_item(df)
        last = s.test.groupby("USER_ID", sort=False).tail(1)
        assert [e[0] for e in extra] == ["put"] * len(last)
        assert {(e[1], e[2][0], e[3][0]) for e in extra} == keyset(last)
        put = [(e[1], i, t) for e in journal if e[0] == "put" for i, t in zip(e[2], e[3])]
        assert sorted(put) == sorted(zip(s.test["USER_ID"], s.test["ITEM_ID"], s.test["TIMESTAMP"]))


# --------------------------------------------------------------------------- hand-computed

class TestHandComputed:
    def test_personalize(self):
        # One eligible user (20 events, so it is held out; its 2 newest events are the truth),
        # 30 single-event users making a catalogue of i0..i29.
        rows = [("a", f"i{x}", t) for t, x in enumerate([7] * 18 + [1, 4])]
        rows += [(f"c{x}", f"i{x}", 100 + x) for x in range(30)]
        df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
        out = evaluate(Fixed(items=tuple(f"i{x}" for x in range(25))), df)
        # hits at ranks 2 (i1) and 5 (i4)
        ndcg = (1 / math.log2(3) + 1 / math.log2(6)) / (1 + 1 / math.log2(3))
        expected = {"precision@5": 2 / 5, "precision@10": 2 / 10, "precision@25": 2 / 25,
                    "ndcg@5": ndcg, "ndcg@10": ndcg, "ndcg@25": ndcg, "mrr@25": 0.5,
                    "coverage": 25 / 30, "n_users": 1}
        assert set(out) == PERSONALIZE_KEYS
        for key, value in expected.items():
            assert out[key] == pytest.approx(value), key

    def test_next_item(self):
        rows = [("A", 1, 0), ("A", 2, 10), ("A", 3, 20), ("A", 5, 10_000), ("A", 7, 10_010),
                ("A", 30, 10_020), ("B", 1, 0), ("B", 2, 5000), ("B", 40, 5010),
                ("C", 1, 0), ("C", 2, 10)]
        df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
        out, details = evaluate(Fixed(items=tuple(range(1, 21))), df, protocol="next-item",
                                return_details=True)
        # A: 7 at rank 7, 30 missed; B: 40 missed. First events: A's 5 and B's 2 are both hits.
        assert set(out) == NEXT_ITEM_KEYS
        assert out["recall@20"] == pytest.approx(1 / 3)
        assert out["mrr@20"] == pytest.approx(1 / 7 / 3)
        assert out["first_recall@20"] == 1.0
        assert (out["n_events"], out["n_users"]) == (3, 2)
        got = sorted(zip(details["USER_ID"], details["position"], details["ITEM_ID"],
                         details["rank"]))
        assert got == [("A", 0, 5, 5), ("A", 1, 7, 7), ("A", 2, 30, 0), ("B", 0, 2, 2),
                       ("B", 1, 40, 0)]


# ---------------------------------------------------------------------------- the function

class TestCoverage:
    def test_coverage_counts_catalogue_items_only(self):
        """Items outside the training catalogue, padding and repeats do not add to coverage."""
        rows = [("a", f"i{x}", t) for t, x in enumerate([7] * 18 + [1, 4])]
        rows += [(f"c{x}", f"i{x}", 100 + x) for x in range(30)]
        df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
        items = ("i1", "i1", "elsewhere", "i4") + (None,) * 21
        out = evaluate(Fixed(items=items), df)
        assert out["coverage"] == pytest.approx(2 / 30)
        assert out["precision@5"] == pytest.approx(2 / 5) and out["ndcg@25"] <= 1.0


class TestEvaluate:
    def test_a_fitted_estimator_is_cloned_with_a_warning(self):
        df = make_log(n_users=200)
        fitted = RepeatRule().fit(df)
        with pytest.warns(UserWarning, match="fitted parameters are not used"):
            out = evaluate(fitted, df, random_state=5)
        assert out == pytest.approx({**evaluate(RepeatRule(), df, random_state=5),
                                     "fit_seconds": out["fit_seconds"], "eval_seconds": out["eval_seconds"]})

    @pytest.mark.parametrize("protocol", ["personalize", "next-item"])
    @pytest.mark.parametrize("cls", [Popularity, Markov, RepeatRule, SessionKNN])
    def test_baselines_run(self, cls, protocol):
        df = make_log(n_users=200)
        est = cls()
        before = copy.deepcopy(vars(est))
        out = evaluate(est, df, protocol=protocol, random_state=5)
        assert vars(est).keys() == before.keys() and est.get_params() == cls().get_params()
        assert set(out) == (PERSONALIZE_KEYS if protocol == "personalize" else NEXT_ITEM_KEYS)
        for key, value in out.items():
            assert isinstance(value, (int, float)) and value >= 0, key
            if "@" in key or key == "coverage":
                assert value <= 1.0, key
        again = evaluate(est, df, protocol=protocol, random_state=5)
        strip = {"fit_seconds", "eval_seconds"}
        assert {k: v for k, v in out.items() if k not in strip} == \
            {k: v for k, v in again.items() if k not in strip}

    def test_details_personalize(self):
        out, details = evaluate(Markov(), make_log(), return_details=True)
        assert len(details) == out["n_users"]
        assert details["precision@10"].mean() == pytest.approx(out["precision@10"])
        assert (details["n_input"] >= 1).all() and (details["n_truth"] >= 1).all()

    def test_unknown_test_items_are_misses(self):
        # Give every test event an item that the training part never saw.
        canon = read_interactions(make_log())
        s = split_next_item(canon)
        test_keys = keyset(s.test)
        mask = [k in test_keys for k in zip(canon["USER_ID"], canon["ITEM_ID"],
                                            canon["TIMESTAMP"])]
        canon.loc[mask, "ITEM_ID"] = [f"new{j}" for j in range(sum(mask))]
        out = evaluate(RepeatRule(), canon, protocol="next-item")
        assert out["recall@20"] == 0.0 and out["first_recall@20"] == 0.0
        assert out["n_events"] == len(s.test) - s.test["USER_ID"].nunique()

    def test_num_threads_reaches_the_clone(self, monkeypatch):
        seen = []
        monkeypatch.setattr(Fixed, "fit", lambda self, data, columns=None:
                            seen.append(self.num_threads) or self)
        est = Fixed(items=("i1",), num_threads=1)
        evaluate(est, make_log(), num_threads=3)
        evaluate(est, make_log(), num_threads=0)
        assert seen == [3, 1] and est.num_threads == 1

    def test_errors(self):
        with pytest.raises(ValueError, match="protocol"):
            evaluate(Markov(), make_log(), protocol="leave-one-out")
        with pytest.raises(TypeError, match="Recommender"):
            evaluate(object(), make_log())
        one_session = pd.DataFrame({"USER_ID": ["a", "a", "b"], "ITEM_ID": [1, 2, 3],
                                    "TIMESTAMP": [1, 2, 3]})
        with pytest.raises(ValueError, match="2 or more sessions"):
            evaluate(Markov(), one_session, protocol="next-item")

    def test_argument_errors_name_the_argument(self):
        log = make_log()
        with pytest.raises(TypeError, match="instance .* got the class Markov"):
            evaluate(Markov, log)
        for protocol in ("personalize", "next-item"):  # checked whichever protocol runs
            with pytest.raises(ValueError, match=r"holdout_fraction must be a number in \(0, 1\), got '0.1'"):
                evaluate(Markov(), log, protocol=protocol, holdout_fraction="0.1")
            with pytest.raises(ValueError, match="holdout_fraction .* got 5"):
                evaluate(Markov(), log, protocol=protocol, holdout_fraction=5)
            with pytest.raises(ValueError, match="session_gap must be a non-negative number of seconds or None, got 'x'"):
                evaluate(Markov(), log, protocol=protocol, session_gap="x")
        for protocol in ("personalize", "next-item"):
            with pytest.raises(TypeError, match="random_state must be an int"):
                evaluate(Markov(), log, protocol=protocol, random_state="a")
        # Both reach the split: half of the eligible users held out; one session per user.
        eligible = (log["user_id"].value_counts() >= 2).sum()
        assert evaluate(Markov(), log, holdout_fraction=0.5)["n_users"] == round(0.5 * eligible)
        with pytest.raises(ValueError, match="2 or more sessions"):
            evaluate(Markov(), log, protocol="next-item", session_gap=1e9)
        # None: sessions only where SESSION_ID changes (here: each user's two sessions)
        sessions = log.assign(session_id=log.groupby("user_id").cumcount() // 6)
        assert evaluate(Markov(), sessions, protocol="next-item", session_gap=None)["n_users"] > 0
        with pytest.raises(ValueError, match="truth_fraction"):
            split_personalize(log, truth_fraction=True)

    def test_no_second_event_is_undefined_not_zero(self):
        """Every test session has one event: there is nothing to rank after a first event, so
        recall@20 and mrr@20 are NaN (with a warning), not 0 ("found none")."""
        rows = [(f"u{u}", (u + k) % 20, 1_000 + 10 * k + (100_000 if k == 4 else 0))
                for u in range(40) for k in range(5)]
        log = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
        with pytest.warns(RuntimeWarning, match="no test session has a second event"):
            out = evaluate(Markov(), log, protocol="next-item")
        assert math.isnan(out["recall@20"]) and math.isnan(out["mrr@20"]) and out["n_events"] == 0
        assert 0.0 <= out["first_recall@20"] <= 1.0 and out["n_users"] == 40


# ------------------------------------------------------------------------- real data sets

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
REAL = {"movielens-100k": None, "taobao-userbehavior-prefix": None,
        "yoochoose-rsc15-100k-sample": {"USER_ID": "session_id"}}


@pytest.fixture(scope="module")
def frames():
    if not DATASETS.is_dir():
        pytest.skip("shared/datasets is not available")
    out = {}
    for name, columns in REAL.items():
        path = DATASETS / name / "interactions.csv.gz"
        if not path.exists():
            pytest.skip(f"{path} is missing")
        raw = pd.read_csv(path)
        if columns:  # yoochoose has exact duplicate clicks; drop them here, quietly
            raw = raw.drop_duplicates(["session_id", "item_id", "timestamp"])
        out[name] = read_interactions(raw, columns)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not DATASETS.is_dir(), reason="shared/datasets is not available")
class TestRealData:
    def test_repeat_rule_beats_popularity(self, frames):
        for name, df in frames.items():
            for protocol, key in (("next-item", "recall@20"), ("personalize", "ndcg@10")):
                rule = evaluate(RepeatRule(), df, protocol=protocol)
                pop = evaluate(Popularity(), df, protocol=protocol)
                assert rule[key] > pop[key], (name, protocol)
                assert rule["eval_seconds"] < 60, (name, protocol)

    def test_reference_figures(self, frames):
        # taobao next-item: about 0.36 of the predictable (known) targets, about 0.12 overall.
        assert evaluate(RepeatRule(), frames["taobao-userbehavior-prefix"],
                        protocol="next-item")["recall@20"] > 0.11
        assert evaluate(SessionKNN(), frames["yoochoose-rsc15-100k-sample"],
                        protocol="next-item")["recall@20"] > 0.6
        assert evaluate(Markov(), frames["movielens-100k"])["precision@10"] > 0.03


def test_a_repeated_target_with_a_negative_boost_is_not_ranked_below_itself():
    """The target's own unboosted score must not count against its boosted one."""
    H, n_items = 8, 50
    eng = hrnn._core.Engine(n_items, H, True, 5)
    eng.set_param("rc", np.full(8, -1e4, np.float32))  # every recent item is pushed far down
    prefix_items = np.array([3, 7, 11, 19, 23], np.int32)
    ts = np.arange(5, dtype=np.float64) * 60.0
    new = np.array([1, 0, 0, 0, 0], np.uint8)
    y = 11  # seen once in the prefix, like every other recent item
    ranks = eng.next_item_ranks(np.array([0, 5], np.int64), prefix_items, ts, new,
                                np.array([0, 1], np.int64), np.array([y], np.int32),
                                np.array([300.0]), np.array([0], np.uint8), num_threads=1)
    u, h = eng.advance(eng.get_param("u0"), np.zeros(H, np.float32), True, prefix_items,
                       np.diff(ts, prepend=ts[0]).astype(np.float32), new)
    base = eng.get_param("E") @ h + eng.get_param("bo")
    others = [i for i in prefix_items if i != y]
    want = 1 + (n_items - len(prefix_items)) + int((base[others] > base[y]).sum())
    assert ranks[0] == want
