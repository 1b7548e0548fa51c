"""Inputs that used to be taken and then gave a wrong answer or a stuck user: each is now either
refused with an exception naming it, or taken as the same value a user would expect."""
from __future__ import annotations

import pickle
import re

import numpy as np
import pandas as pd
import pytest
from conftest import planted_log

import hrnn

FAST = dict(hidden_dimension=32, n_sample=8, batch_size=4, bptt=4, epochs=1, num_threads=1,
            random_state=0, show_progress=False)


@pytest.fixture(scope="module")
def fitted():
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    return hrnn.HRNN(**FAST).fit((users, items, ts)), float(ts.max())


def snapshot(m, user):
    u, h = m.user_state(user)
    return u.copy(), h.copy(), m.recommend(user, 10)[0].tolist()


def test_millisecond_timestamps_are_refused_everywhere(fitted):
    """One event in milliseconds would set a user's clock past every later genuine event."""
    m, t = fitted
    before = snapshot(m, 3)
    for call in (lambda: m.put_events(3, 5, t * 1000),          # the one-event fast path
                 lambda: m.put_events(3, [5, 6], [t + 1, t * 1000])):
        with pytest.raises(ValueError, match="year 5000"):
            call()
    after = snapshot(m, 3)
    np.testing.assert_array_equal(before[0], after[0])
    assert before[2] == after[2]
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    ts[17] = 1e12  # one bad row among genuine ones: the median looks fine
    with pytest.raises(ValueError, match=r"TIMESTAMP has 1 values beyond the year 5000.*row 17"):
        hrnn.HRNN(**FAST).fit((users, items, ts))


def test_user_ids_that_would_alias_other_users_are_refused(fitted):
    m, t = fitted
    for bad, error in ((True, TypeError), (np.bool_(False), TypeError), (2.0, TypeError),
                       (None, ValueError), (float("nan"), ValueError)):
        for call in (lambda: m.recommend(bad), lambda: m.recommend_batch([1, bad]),
                     lambda: m.put_events(bad, 5, t + 10), lambda: m.user_state(bad)):
            with pytest.raises(error, match="user_id"):
                call()
    assert m.recommend(np.int64(2))[0].tolist() == m.recommend(2)[0].tolist()


def test_unknown_items_are_counted_by_value_and_saved(tmp_path):
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    m = hrnn.HRNN(**FAST).fit((users, items, ts))
    t = float(ts.max())
    m.put_events(1, [np.int64(1000), 1000, np.int64(1001)], [t + 1, t + 2, t + 3])
    m.put_events(1, np.int64(1001), t + 4)
    assert dict(m.unknown_item_events_) == {1000: 2, 1001: 2}
    assert all(type(k) is int for k in m.unknown_item_events_)
    m.save(tmp_path / "m.hrnn")
    assert dict(hrnn.load(tmp_path / "m.hrnn").unknown_item_events_) == {1000: 2, 1001: 2}
    before = snapshot(m, 1)
    for bad in (None, float("nan"), 1.5, (1, 2)):  # not an id a model could ever hold
        with pytest.raises((TypeError, ValueError), match="item_ids"):
            m.put_events(1, [bad], [t + 5])
        if not isinstance(bad, tuple):  # a tuple is a sequence of item ids
            with pytest.raises((TypeError, ValueError), match="item_ids"):
                m.put_events(1, bad, t + 5)
    assert snapshot(m, 1)[2] == before[2] and dict(m.unknown_item_events_) == {1000: 2, 1001: 2}


def test_numpy_session_ids_are_the_python_ones(tmp_path, fitted):
    """np.str_("s1") in a list is the session "s1": no spurious new session."""
    m, t = fitted
    m.save(tmp_path / "m.hrnn")
    states = {}
    for second in ("s1", np.str_("s1"), "s2"):
        copy = hrnn.load(tmp_path / "m.hrnn")
        copy.put_events(7, [1, 2], [t + 1, t + 2], session_id="s1")
        copy.put_events(7, [3], [t + 3], session_id=[second])
        states[repr(second)] = copy.user_state(7)[0]
    np.testing.assert_array_equal(states["'s1'"], states[repr(np.str_("s1"))])
    assert not np.array_equal(states["'s1'"], states["'s2'"])  # a new session moves the user state


def test_set_params_reaches_a_fitted_model(tmp_path):
    """session_gap set on a fitted model applies to its next events, as in a reloaded copy."""
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    m = hrnn.HRNN(**FAST).fit((users, items, ts))
    m.set_params(session_gap=60.0)
    m.save(tmp_path / "m.hrnn")
    loaded = hrnn.load(tmp_path / "m.hrnn")
    t = float(ts[users == 4].max())
    for model in (m, loaded):
        model.put_events(4, [1, 2], [t + 600, t + 1200])  # each gap beyond 60 s: new sessions
    np.testing.assert_array_equal(m.user_state(4)[0], loaded.user_state(4)[0])
    np.testing.assert_array_equal(m.user_state(4)[1], loaded.user_state(4)[1])
    with pytest.raises(ValueError, match="session_gap"):
        m.set_params(session_gap=-1.0)
    assert m.session_gap == 60.0


def test_a_failed_refit_keeps_the_previous_records(monkeypatch):
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    m = hrnn.HRNN(**{**FAST, "epochs": 2}).fit((users, items, ts))
    history, scores, recs = list(m.history_), dict(m.transition_weight_scores_), m.recommend(3)[0].tolist()
    weight = m.transition_weight_

    def fail(model, epoch, stats):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):  # during the epochs
        m.fit((users, items, ts), callbacks=[fail])
    assert m.history_ == history and m.transition_weight_scores_ == scores
    assert m.recommend(3)[0].tolist() == recs

    def out_of_memory(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(hrnn.HRNN, "_set_catalogue", out_of_memory)  # after training, before use
    with pytest.raises(MemoryError):
        m.fit((users[users < 20], items[users < 20], ts[users < 20]), check_minimums=False)
    assert m.history_ == history and m.transition_weight_ == weight
    assert m.recommend(3)[0].tolist() == recs and len(m.user_ids_) == 40


def test_pyarrow_timestamp_columns():
    pa = pytest.importorskip("pyarrow")
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    plain = hrnn.read_interactions((users, items, ts))
    for unit, tz in (("s", None), ("ms", "UTC"), ("us", "Europe/Paris")):
        stamps = pd.Series((ts * {"s": 1, "ms": 1e3, "us": 1e6}[unit]).astype(np.int64))
        table = pd.DataFrame({"USER_ID": users, "ITEM_ID": items,
                              "TIMESTAMP": stamps.astype(pd.ArrowDtype(pa.timestamp(unit, tz=tz)))})
        np.testing.assert_array_equal(hrnn.read_interactions(table)["TIMESTAMP"], plain["TIMESTAMP"])


def test_clear_errors_for_malformed_query_and_table_arguments(fitted):
    m, _ = fitted
    for model in (m, hrnn.baselines.Markov().fit(hrnn.read_interactions(planted_log(40, 30, 30)))):
        with pytest.raises(TypeError, match=r"each of include_items must be a string or an integer, got list \[1, 2\]"):
            model.recommend(1, include_items=[[1, 2], [3]])
        with pytest.raises(TypeError, match="each of exclude_items must be a string or an integer, got bool"):
            model.recommend(1, exclude_items=[3, True])
    with pytest.raises(TypeError, match="exclude_items must be one id or a 1-D sequence"):
        m.recommend(1, exclude_items=np.array([[1, 2], [3, 4]]))
    with pytest.raises(TypeError, match="exclude_interacted must be True or False"):
        m.recommend_batch([1], exclude_interacted="yes")
    users, items, ts = planted_log(n_users=5, n_items=30, length=3)
    table = pd.DataFrame({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": ts})
    with pytest.raises(TypeError, match="columns must be a dict"):
        hrnn.read_interactions(table, columns="USER_ID")
    with pytest.raises(KeyError, match="column 'ITEM_ID' is mapped to USER_ID in columns="):
        hrnn.read_interactions(table, columns={"USER_ID": "ITEM_ID"})


def test_session_ids_continue_from_the_training_table(tmp_path):
    """A training user's next event with the session id of its last training session continues
    that session; another id starts a new one (the user state absorbs the session)."""
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    sessions = [f"{u}-{k // 10}" for u, k in zip(users, np.tile(np.arange(30), 40))]
    table = pd.DataFrame({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": ts, "SESSION_ID": sessions})
    m = hrnn.HRNN(**{**FAST, "session_gap": 1e9}).fit(table)
    m.save(tmp_path / "m.hrnn")
    t = float(ts[users == 5].max())
    u_before = m.user_state(5)[0]
    same, other = hrnn.load(tmp_path / "m.hrnn"), hrnn.load(tmp_path / "m.hrnn")
    same.put_events(5, [1], [t + 5], session_id="5-2")
    other.put_events(5, [1], [t + 5], session_id="5-3")
    np.testing.assert_array_equal(same.user_state(5)[0], u_before)
    assert not np.array_equal(other.user_state(5)[0], u_before)


def test_put_events_without_events_creates_no_user(fitted):
    m, t = fitted
    n = len(m.known_user_ids)
    for model in (m, hrnn.baselines.RepeatRule().fit(hrnn.read_interactions(planted_log(40, 30, 30)))):
        model.put_events("nobody", [], [])
        assert model.recommend("nobody")[0].tolist() == model.recommend("another-nobody")[0].tolist()
    assert len(m.known_user_ids) == n


@pytest.mark.parametrize("ids, shown", [
    (pd.Categorical([0.5, 1.5] * 600), "0.5 (float)"),
    (pd.Series(pd.to_datetime(np.arange(1200), unit="s")), "Timestamp"),
])
def test_id_columns_of_other_dtypes(ids, shown):
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    with pytest.raises(TypeError, match="ITEM_ID must hold strings or integers.*" + re.escape(shown)):
        hrnn.read_interactions(pd.DataFrame({"USER_ID": users, "ITEM_ID": ids, "TIMESTAMP": ts}))
    with pytest.warns(UserWarning, match="ITEM_ID holds floats"):  # whole-number categories
        table = hrnn.read_interactions(pd.DataFrame({"USER_ID": users, "ITEM_ID": pd.Categorical(items * 1.0),
                                                     "TIMESTAMP": ts}))
    assert table["ITEM_ID"].tolist() == items.tolist()


def test_float_session_ids_are_the_integer_sessions(tmp_path):
    """A SESSION_ID column read as floats (8.0) holds the sessions put_events calls 8."""
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    sessions = (users * 10 + np.tile(np.arange(30), 40) // 10).astype(float)
    table = pd.DataFrame({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": ts, "SESSION_ID": sessions})
    with pytest.warns(UserWarning, match="SESSION_ID holds floats"):
        m = hrnn.HRNN(**{**FAST, "session_gap": 1e9}).fit(table)
    u_before = m.user_state(5)[0]
    m.put_events(5, [1], [float(ts[users == 5].max()) + 5], session_id=52)  # user 5's last session
    np.testing.assert_array_equal(m.user_state(5)[0], u_before)


def test_tune_takes_numpy_numbers_and_checks_its_space(tmp_path):
    pytest.importorskip("optuna")
    users, items, ts = planted_log(n_users=80, n_items=30, length=30)
    ts = ts + np.tile(np.arange(30) // 10, 80) * 1e4  # three sessions per user
    table = pd.DataFrame({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": ts})
    r = hrnn.tune(table, n_trials=1, metric="recall@20", timeout=np.int64(600), refit=False,
                  space={"hidden_dimension": ("int", (32, 64))},
                  base_params={**FAST, "hidden_dimension": np.int64(48)})
    assert r.best_params == {"hidden_dimension": 48}
    for space, error in (({"bptt": ("int", (8,))}, ValueError), ({"bptt": "int"}, ValueError),
                         ({"bptt": ("normal", (1, 2))}, ValueError), (["bptt"], TypeError)):
        with pytest.raises(error, match="space"):
            hrnn.tune(table, n_trials=1, space=space)
    with pytest.raises(TypeError, match="base_params must be a dict"):
        hrnn.tune(table, n_trials=1, base_params=["epochs"])


def test_event_filters_apply_to_evaluation_and_numeric_event_types():
    """evaluate scores only the kinds of events the estimator learns from; an EVENT_TYPE column of
    numbers (as a CSV reads 1 / 2) is filtered by the text the command line passes."""
    users, items, ts = planted_log(n_users=150, n_items=30, length=30)
    ts = ts + np.tile(np.arange(30) // 10, 150) * 1e4  # three sessions per user
    kind = np.random.default_rng(0).choice([1, 2], len(users), p=[0.4, 0.6])  # 2: a purchase
    item_ids = np.where(kind == 2, [f"b{i}" for i in items], [f"c{i}" for i in items])
    table = pd.DataFrame({"USER_ID": users, "ITEM_ID": item_ids, "TIMESTAMP": ts, "EVENT_TYPE": kind})
    model = hrnn.HRNN(**FAST, event_type="2")
    _, details = hrnn.evaluate(model, table, protocol="next-item", return_details=True)
    assert len(details) and details["ITEM_ID"].str.startswith("b").all()
    out = hrnn.evaluate(model, table, protocol="personalize")
    assert out["n_users"] > 0
    # put_events compares its event types as fit does, as text: 2 is "2", a missing type is none.
    fitted = model.clone().fit(table)
    t = ts.max() + 1
    fitted.put_events("typed", ["b1", "b2", "b3", "b4"], [t, t + 1, t + 2, t + 3],
                      event_type=[2, 1, None, np.int64(2)])
    fitted.put_events("kept", ["b1", "b4"], [t, t + 3])
    for a, b in zip(fitted.user_state("typed"), fitted.user_state("kept")):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="no events of type '3'; EVENT_TYPE values present: '2', '1'"):
        hrnn.HRNN(**FAST, event_type="3").fit(table)
    with pytest.raises(ValueError, match=r"percentiles 0.5..0.5 keep no user"):
        hrnn.HRNN(**FAST, min_user_history_length_percentile=0.5, max_user_history_length_percentile=0.5).fit(
            (np.r_[0, 1, 1], np.r_[0, 1, 2], np.r_[1.0, 2.0, 3.0]), check_minimums=False)


def test_callback_answers_and_paired_difference_inputs():
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    m = hrnn.HRNN(**{**FAST, "epochs": 3})
    m.fit((users, items, ts), callbacks=[lambda model, epoch, stats: None])
    assert len(m.history_) == 3
    m.fit((users, items, ts), callbacks=[lambda model, epoch, stats: np.True_])
    assert len(m.history_) == 1
    with pytest.raises(TypeError, match="returned dict: return True to stop"):
        m.fit((users, items, ts), callbacks=[lambda model, epoch, stats: stats])
    assert len(m.history_) == 1  # the failed refit left the model as it was
    details = pd.DataFrame({"USER_ID": [1, 2], "precision@5": [0.2, np.nan]})
    with pytest.raises(ValueError, match="missing or infinite"):
        hrnn.paired_difference(details, details, "precision@5")
    for bad in (None, {"a": details}):
        with pytest.raises(TypeError, match="details must be a DataFrame"):
            hrnn.paired_difference(bad, details, "precision@5")


def test_ids_a_model_file_cannot_hold_are_refused(fitted, tmp_path):
    """A string with a lone surrogate (JSON's "\\ud800", bytes decoded with surrogateescape) is
    no UTF-8 text: accepted, it would make every later save fail. put_events refuses it with the
    user left as it was, and so do fit and read_interactions (naming the column)."""
    m, t = fitted
    before = snapshot(m, 3)
    for call in (lambda: m.put_events("u\ud800", 5, t + 10), lambda: m.put_events(3, "i\udc80", t + 10),
                 lambda: m.put_events(3, [5, "i\udc80"], [t + 10, t + 11])):
        with pytest.raises(ValueError, match="valid Unicode text"):
            call()
    after = snapshot(m, 3)
    np.testing.assert_array_equal(before[0], after[0])
    assert before[2] == after[2]
    m.save(tmp_path / "m.hrnn")
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    for column in ("USER_ID", "ITEM_ID"):
        table = pd.DataFrame({"USER_ID": users.astype(str), "ITEM_ID": items.astype(str), "TIMESTAMP": ts})
        table[column] = table[column].astype(object)
        table.loc[7, column] = "x\udc80"
        with pytest.raises(ValueError, match=f"{column}.* valid Unicode text"):
            hrnn.HRNN(**FAST).fit(table)


def test_column_mappings_that_cannot_work(fitted):
    df = pd.DataFrame([["a", "x", 1.7e9, "e", "e"]],
                      columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_TYPE"])
    for columns in (None, {"EVENT_TYPE": "EVENT_TYPE"}):
        with pytest.raises(ValueError, match="several columns are named 'EVENT_TYPE'"):
            hrnn.read_interactions(df, columns=columns)
    with pytest.raises(ValueError, match="USER_ID is required"):
        hrnn.read_interactions(df.iloc[:, :3], columns={"USER_ID": None})


def test_dict_views_are_sequences_of_ids(fitted):
    m, _ = fitted
    ids = {2: "a", 3: "b"}
    expected = m.recommend_batch([2, 3], 5)[0].tolist()
    assert m.recommend_batch(ids.keys(), 5)[0].tolist() == expected
    assert m.recommend(2, 5, exclude_items=ids.keys())[0].tolist() == \
        m.recommend(2, 5, exclude_items=[2, 3])[0].tolist()


def test_put_events_splits_sessions_as_fit_does(fitted):
    """A gap a hair above session_gap starts a session in fit (float64); put_events must agree,
    not round the gap to float32 first (1800.00001 rounds to 1800.0)."""
    m, t = fitted
    gap = m.session_gap + 1e-5
    m.put_events("by time", [1, 2], [t + 10, t + 10 + gap])
    m.put_events("by session", 1, t + 10, session_id="s1")
    m.put_events("by session", 2, t + 10 + gap, session_id="s2")
    for a, b in zip(m.user_state("by time"), m.user_state("by session")):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("params, error, message", [
    ({"learning_rate": float("nan")}, ValueError, "learning_rate must be a number, got NaN"),
    ({"dropout": float("nan")}, ValueError, "dropout must be a number, got NaN"),
    ({"tie_embeddings": 1}, TypeError, "tie_embeddings must be True or False, got 1"),
    ({"recency_mask": 0}, TypeError, "recency_mask must be True or False"),
    ({"epochs": 2.5}, TypeError, "epochs must be an integer, got 2.5"),
    ({"hidden_dimension": 64.0}, TypeError, "hidden_dimension must be an integer"),
    ({"session_gap": 0.5}, ValueError, r"session_gap must be in \[1.0, "),
    ({"recency_half_life": 0.0}, ValueError, r"recency_half_life must be in \[1.0, "),
    ({"recency_half_life": -5.0}, ValueError, "recency_half_life must be in"),
    ({"min_user_history_length_percentile": True}, TypeError, "min_user_history_length_percentile must be a number"),
    ({"max_user_history_length_percentile": False}, TypeError, "max_user_history_length_percentile must be a number"),
    ({"min_user_history_length_percentile": 0.6, "max_user_history_length_percentile": 0.5}, ValueError,
     r"min_user_history_length_percentile \(0.6\) must not exceed"),
])
def test_out_of_spec_hyperparameters_are_refused(params, error, message):
    """Each refused at construction and by set_params, naming it (the fuzz test only checks that
    whatever is refused is refused cleanly; these are the values that must be)."""
    with pytest.raises(error, match=message):
        hrnn.HRNN(**params)
    model = hrnn.HRNN()
    with pytest.raises(error, match=message):
        model.set_params(**params)
    assert model.get_params() == hrnn.HRNN().get_params()


def test_boundary_hyperparameters_are_taken():
    model = hrnn.HRNN(session_gap=1.0, recency_half_life=1.0, min_user_history_length_percentile=0.5,
                      max_user_history_length_percentile=0.5, epochs=1, dropout=0.0)
    assert (model.session_gap, model.recency_half_life, model.epochs) == (1.0, 1.0, 1)


def test_early_stopping_rounds_must_be_positive():
    log = planted_log(n_users=40, n_items=30, length=30)
    for bad, error in ((0, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="early_stopping_rounds"):
            hrnn.HRNN(**FAST).fit(log, validation=True, early_stopping_rounds=bad)


# --- from a second user audit ----------------------------------------------------------------

def test_float32_timestamps_that_lost_seconds_are_refused(fitted):
    m, t = fitted
    before = snapshot(m, 3)
    for call in (lambda: m.put_events(3, 5, np.float32(1_700_000_070)),  # (it was 1_700_000_128)
                 lambda: m.put_events(3, [5, 6], np.array([t + 1, t + 2], np.float32))):
        with pytest.raises(TypeError, match="float32 rounds unix seconds"):
            call()
    assert snapshot(m, 3)[2] == before[2]
    m.put_events("small clock", [5, 6], np.array([10.0, 20.0], np.float32))  # exact below 2**24 s
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    with pytest.raises(TypeError, match="TIMESTAMP: float32 rounds"):
        hrnn.read_interactions((users, items, (ts + 1.7e9).astype(np.float32)))


def test_put_events_refuses_an_unordered_set_of_items(fitted):
    m, t = fitted
    for items in ({5, 6}, frozenset({5, 6}), {5: 0, 6: 1}.keys()):
        with pytest.raises(TypeError, match="item_ids must be in time order"):
            m.put_events(3, items, [t + 1, t + 2])


def test_timestamps_beyond_int64_and_just_beyond_the_limit_are_named(fitted):
    m, t = fitted
    with pytest.raises(ValueError, match="year 5000"):
        m.put_events(3, 5, 2**70)
    with pytest.raises(ValueError, match="timestamp 100000000001 is beyond the year 5000"):
        m.put_events(3, [5], [1e11 + 1])


def test_fit_flags_and_callbacks_are_checked():
    log = planted_log(n_users=40, n_items=30, length=30)
    for kwargs, message in ((dict(check_minimums="no"), "check_minimums must be True or False"),
                            (dict(validation="yes"), "validation must be True or False"),
                            (dict(callbacks=print), "callbacks must be a list of callables"),
                            (dict(callbacks=[print, 1]), "each of callbacks must be callable, got 1")):
        with pytest.raises(TypeError, match=message):
            hrnn.HRNN(**FAST).fit(log, **kwargs)


def test_a_log_with_nothing_to_learn_warns():
    single = (np.arange(50), np.arange(50) % 7, 1.6e9 + np.arange(50.0))  # every user: one event
    with pytest.warns(UserWarning, match="no training user has 2 or more events"):
        hrnn.HRNN(**FAST).fit(single, check_minimums=False)


def test_hyperparameters_are_stored_as_a_model_file_holds_them(tmp_path):
    from fractions import Fraction
    kinds = ["click", "buy"]
    m = hrnn.HRNN(**{**FAST, "learning_rate": Fraction(1, 10)}, event_type=tuple(kinds))
    assert type(m.learning_rate) is float and m.learning_rate == 0.1
    assert m.event_type == kinds and m.clone().get_params() == m.get_params()
    copy = m.clone()
    copy.event_type.append("view")
    assert m.event_type == kinds  # not shared with the clone
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    table = pd.DataFrame({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": ts,
                          "EVENT_TYPE": np.where(items % 2, "click", "buy")})
    m.fit(table).save(tmp_path / "m.hrnn")
    assert hrnn.load(tmp_path / "m.hrnn").get_params() == m.get_params()


def test_tune_without_a_seed_scores_every_trial_on_one_split(monkeypatch):
    pytest.importorskip("optuna")
    import importlib
    module = importlib.import_module("hrnn.tune")
    seeds = []

    def spy(estimator, table, protocol, random_state, return_details, fit_params):
        seeds.append(random_state)
        return {"recall@20": 0.5 + 0.01 * len(seeds)}, None

    monkeypatch.setattr(module, "evaluate", spy)
    monkeypatch.setattr(module, "per_unit_scores", lambda details, metric: np.zeros(3))
    monkeypatch.setattr(module, "unit_users", lambda details, metric: np.arange(3))
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    hrnn.tune((users, items, ts), n_trials=3, metric="recall@20", random_state=None, refit=False,
              space={"dropout": ("float", (0.0, 0.5))}, base_params=FAST)
    assert len(seeds) == 3 and len(set(seeds)) == 1 and isinstance(seeds[0], int)


def test_evaluate_passes_fit_params_and_names_the_split_when_fit_refuses():
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)  # 3 sessions of 10 events each
    log = (users, items, ts + np.tile(np.arange(30) // 10, 40) * 1e4)
    with pytest.raises(ValueError, match=r"training part of the split \(800 of 1,200 events\): needs at least"):
        hrnn.evaluate(hrnn.HRNN(**FAST), log, protocol="next-item")
    scores = hrnn.evaluate(hrnn.HRNN(**FAST), log, protocol="next-item", fit_params={"check_minimums": False})
    assert 0 <= scores["recall@20"] <= 1
    with pytest.raises(TypeError, match="random_state must be an int"):
        hrnn.evaluate(hrnn.HRNN(**FAST), log, random_state=True)
    with pytest.raises(TypeError, match="fit_params must be a dict"):
        hrnn.evaluate(hrnn.HRNN(**FAST), log, fit_params=["check_minimums"])


# ------------------------------------------------------------- from a notebook user's audit

def test_a_dataframe_is_not_a_list_of_ids(fitted):
    m, _ = fitted
    frame = pd.DataFrame({"USER_ID": [1, 2]})
    with pytest.raises(TypeError, match=r"user_ids must be one id or a 1-D sequence of ids, got a DataFrame; "
                                        r"pass one of its columns"):
        m.recommend_batch(frame)  # (list() of a frame is its column names: one user "USER_ID")
    with pytest.raises(TypeError, match="exclude_items .*got a DataFrame"):
        m.recommend(1, 5, exclude_items=pd.DataFrame({"ITEM_ID": [1]}))
    assert m.recommend_batch(frame["USER_ID"], 5)[0].shape == (2, 5)


def test_arrow_columns_from_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    df = pd.DataFrame({"USER_ID": pd.Categorical([f"u{u}" for u in users]), "ITEM_ID": items, "TIMESTAMP": ts})
    df.to_parquet(tmp_path / "log.parquet")
    arrow = pd.read_parquet(tmp_path / "log.parquet", dtype_backend="pyarrow")
    assert pa.types.is_dictionary(arrow["USER_ID"].dtype.pyarrow_dtype)
    assert hrnn.read_interactions(arrow)["USER_ID"].tolist() == [f"u{u}" for u in users]
    dates = pd.to_datetime(arrow["TIMESTAMP"], unit="s").dt.date.astype(pd.ArrowDtype(pa.date32()))
    with pytest.raises(TypeError, match=r"TIMESTAMP holds dates \(date32.*\) without a time of day"):
        hrnn.read_interactions(arrow.assign(TIMESTAMP=dates))


def test_columns_in_two_roles_and_ids_in_the_index():
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    df = pd.DataFrame({"user": users, "ITEM_ID": items, "TIMESTAMP": ts})
    with pytest.raises(ValueError, match="column 'user' is given for USER_ID and ITEM_ID in columns="):
        hrnn.read_interactions(df.drop(columns="ITEM_ID"), columns={"USER_ID": "user", "ITEM_ID": "user"})
    both = hrnn.read_interactions(df, columns={"USER_ID": "user", "SESSION_ID": "user"})  # sessions as users
    assert both["SESSION_ID"].tolist() == users.tolist()
    with pytest.raises(KeyError, match="required column USER_ID not found.*'USER_ID' is the DataFrame's "
                                       "index: reset_index"):
        hrnn.read_interactions(df.rename(columns={"user": "USER_ID"}).set_index("USER_ID"))
    with pytest.raises(KeyError) as missing:  # an index that is not the missing column: no hint
        hrnn.read_interactions(df.drop(columns="ITEM_ID").set_index(pd.Index(items, name="EVENT_TYPE")),
                               columns={"USER_ID": "user"})
    assert "index" not in str(missing.value)


def test_new_uint64_ids_are_taken_as_fit_takes_them(tmp_path):
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    big = np.uint64(2**63) + users.astype(np.uint64)
    m = hrnn.HRNN(**FAST).fit((big, big[:1].repeat(len(items)) + items.astype(np.uint64), ts))
    new_user, new_item = 2**64 - 1, 2**63 + 10**6
    m.put_events(new_user, [int(m.item_ids_[0]), new_item], [ts.max() + 1, ts.max() + 2])
    assert m.known_user_ids[-1] == new_user and m.unknown_item_events_ == {new_item: 1}
    m.save(tmp_path / "m.hrnn")
    back = hrnn.load(tmp_path / "m.hrnn")
    assert back.recommend(new_user, 5)[0].tolist() == m.recommend(new_user, 5)[0].tolist()
    with pytest.raises(ValueError, match=r"user_id must fit in 64 bits \(int64 or uint64\), got 18446744073709551616"):
        m.put_events(2**64, 1, ts.max() + 3)


def test_baselines_take_the_fit_params_hrnn_takes():
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    scores = hrnn.evaluate(hrnn.baselines.RepeatRule(), (users[:300], items[:300], ts[:300]),
                           protocol="personalize", fit_params={"check_minimums": False})
    assert 0 <= scores["precision@5"] <= 1
    with pytest.raises(TypeError, match="check_minimums must be True or False"):
        hrnn.baselines.Markov().fit((users, items, ts), check_minimums="no")


def test_a_callback_asking_the_model_under_training_is_told_so():
    users, items, ts = planted_log(n_users=40, n_items=30, length=30)
    seen = []

    def ask(model, epoch, stats):
        with pytest.raises(RuntimeError, match="being fitted: it answers once fit\\(\\) returns"):
            model.recommend(1, 3)
        copy = pickle.loads(pickle.dumps(model))  # unfitted yet: its hyperparameters, not "being fitted"
        with pytest.raises(RuntimeError, match="not fitted yet"):
            copy.recommend(1, 3)
        seen.append(epoch)

    m = hrnn.HRNN(**{**FAST, "epochs": 2}).fit((users, items, ts), callbacks=[ask])
    assert seen == [0, 1] and len(m.recommend(1, 3)[0]) == 3
