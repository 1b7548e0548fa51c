"""recommend, put_events and recommend_batch: answers in the user's own ids, exclusions, cold users."""
from __future__ import annotations

import datetime
import threading
import warnings

import numpy as np
import pandas as pd
import pytest

import hrnn
from conftest import planted_log

FAST = dict(hidden_dimension=32, n_sample=32, batch_size=16, bptt=8, show_progress=False, epochs=6)


@pytest.fixture(scope="module")
def model():
    users, items, ts = planted_log()
    df = pd.DataFrame({"USER_ID": [f"u{u}" for u in users], "ITEM_ID": [f"i{i}" for i in items],
                       "TIMESTAMP": ts})
    return hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit(df), df


def fresh(model):
    """A copy of the fitted model (queries that put events must not leak into other tests)."""
    m, df = model
    return hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit(df), df


def test_recommend_speaks_the_users_ids_and_ranks_the_planted_item_first(model):
    m, df = model
    last = df.groupby("USER_ID").tail(1).set_index("USER_ID")["ITEM_ID"]
    ids, scores = m.recommend("u5", num_results=10)
    assert ids.shape == (10,) and scores.dtype == np.float32
    assert all(isinstance(i, str) and i.startswith("i") for i in ids)
    assert np.all(np.diff(scores) <= 0)
    assert ids[0] == f"i{(int(last['u5'][1:]) + 1) % 60}"


def test_num_results_limits(model):
    m, _ = model
    assert len(m.recommend("u1", num_results=500)[0]) == 60  # the whole catalogue
    for bad in (0, 501, -3):
        with pytest.raises(ValueError, match="num_results"):
            m.recommend("u1", num_results=bad)
    with pytest.raises(TypeError, match="num_results"):
        m.recommend("u1", num_results=2.5)


def test_unknown_user_gets_popular_items(model):
    m, _ = model
    ids, scores = m.recommend("somebody new", num_results=5)
    order = np.argsort(-m.popularity_, kind="stable")[:5]
    assert list(ids) == list(m.item_ids_[order])
    # Scores are the items' shares of the training events, comparable across models and logs.
    np.testing.assert_allclose(scores, m.popularity_[order] / m.popularity_.sum(), rtol=1e-6)


def test_exclude_and_include(model):
    m, _ = model
    top = m.recommend("u7", num_results=5)[0]
    ids, _ = m.recommend("u7", num_results=5, exclude_items=[top[0], "not an item"])
    assert top[0] not in ids and list(ids[:4]) == list(top[1:])
    ids, _ = m.recommend("u7", num_results=25, include_items=["i3", "i4", "nope"])
    assert sorted(ids) == ["i3", "i4"]
    first = m.item_ids_[0]  # the item at index 0 of the catalogue is an item like any other
    assert first not in m.recommend("u7", num_results=60, exclude_items=[first])[0]
    assert m.recommend("u7", num_results=5, include_items=[first])[0].tolist() == [first]
    seen = set(m._log.item_ids[m._log.items[m._log.offsets[7]:m._log.offsets[8]]])
    ids, _ = m.recommend("u7", num_results=60, exclude_interacted=True)
    assert not seen & set(ids) and len(ids) == 60 - len(seen)


def test_put_events_moves_the_state_like_training(model):
    m, df = fresh(model)
    t = df.TIMESTAMP.max() + 100
    # u9 walked i48 .. i59, i0 .. i17: the cycle goes on among items it has not seen (on a log
    # without repeats the prior rules out the seen ones).
    m.put_events("u9", ["i20", "i21"], [t, t + 10])
    assert m.recommend("u9", 1)[0][0] == "i22"
    # the same events given at once or one by one give the same state
    m2, _ = fresh(model)
    m2.put_events("u9", "i20", t)
    m2.put_events("u9", ["i21"], [t + 10])
    np.testing.assert_array_equal(m.user_state("u9")[1], m2.user_state("u9")[1])


def test_one_scalar_event_equals_the_list_form(model):
    m, df = fresh(model)
    t = float(df.TIMESTAMP.max() + 100)
    scalar_forms = [("i10", t), (np.str_("i10"), np.float64(t)), ("i10", int(t)),
                    ("i10", np.int64(t))]  # (float32 rounds today's seconds: refused, test_input_guards)
    for j, (item, ts) in enumerate(scalar_forms):
        m.put_events(f"scalar{j}", item, ts)
        m.put_events(f"list{j}", [str(item)], [float(ts)])
        np.testing.assert_array_equal(m.user_state(f"scalar{j}")[1], m.user_state(f"list{j}")[1])
        m.put_events("u9", item, t + 10 * j)  # an existing user, inside its session
    m2, _ = fresh(model)
    for j in range(len(scalar_forms)):
        m2.put_events("u9", ["i10"], [t + 10 * j])
    np.testing.assert_array_equal(m.user_state("u9")[1], m2.user_state("u9")[1])
    m.put_events("u9", "not an item", t + 100)
    m.put_events("u9", np.str_("not an item"), t + 101)
    assert m.unknown_item_events_["not an item"] == 2
    assert all(type(k) is str for k in m.unknown_item_events_)


@pytest.mark.parametrize("item, ts, err, match", [
    ("i1", "yesterday", TypeError, "timestamps must be numbers"),
    ("i1", True, TypeError, "timestamps must be numbers"),
    ("i1", float("nan"), ValueError, "finite and >= 0"),
    ("i1", float("inf"), ValueError, "finite and >= 0"),
    ("i1", -5.0, ValueError, "finite and >= 0"),
    ("i1", -5, ValueError, "finite and >= 0"),
    ("i1", 1.0, ValueError, "older than this user's last event"),
    (None, 1.0, TypeError, "item_ids must not be None"),
])
def test_one_scalar_event_bad_arguments(model, item, ts, err, match):
    m, _ = fresh(model)
    before = m.user_state("u1")
    with pytest.raises(err, match=match):
        m.put_events("u1", item, ts)
    np.testing.assert_array_equal(before[1], m.user_state("u1")[1])
    with pytest.raises(ValueError, match="user_id must not be None"):
        m.put_events(None, "i1", 2e9)
    with pytest.raises(TypeError, match="user_id must be a string or an integer, got list"):
        m.put_events(["a list"], "i1", 2e9)


def test_put_events_new_user_and_unknown_items(model):
    m, _ = fresh(model)
    m.put_events("brand new", ["i20", "i21"], [1000.0, 1010.0])
    assert m.recommend("brand new", 1)[0][0] == "i22"
    before = m.user_state("brand new")
    m.put_events("brand new", ["never seen"], [1020.0])
    after = m.user_state("brand new")
    assert m.unknown_item_events_["never seen"] == 1
    assert not np.array_equal(before[1], after[1]) and np.isfinite(after[1]).all()
    assert "brand new" in set(m.known_user_ids)


def test_out_of_order_events_change_nothing(model):
    m, df = fresh(model)
    before = m.user_state("u3")
    with pytest.raises(ValueError, match="older than this user's last event"):
        m.put_events("u3", ["i1"], [1.0])
    with pytest.raises(ValueError, match="time order"):
        m.put_events("u3", ["i1", "i2"], [df.TIMESTAMP.max() + 20, df.TIMESTAMP.max() + 10])
    after = m.user_state("u3")
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


@pytest.mark.parametrize("args, err", [
    ((["i1", "i2"], [1.0]), ValueError),
    ((["i1"], ["yesterday"]), TypeError),
    ((["i1"], [float("nan")]), ValueError),
    ((["i1"], [-5.0]), ValueError),
    ((None, [1.0]), TypeError),
])
def test_put_events_bad_arguments(model, args, err):
    m, _ = fresh(model)
    with pytest.raises(err):
        m.put_events("u1", *args)
    with pytest.raises(ValueError):
        m.put_events(None, ["i1"], [1.0])


def test_sessions_by_id(model):
    m, df = fresh(model)
    t = df.TIMESTAMP.max() + 10
    m.put_events("s-user", ["i1", "i2"], [t, t + 1], session_id="a")
    m.put_events("s-user2", ["i1", "i2"], [t, t + 1], session_id=["a", "b"])
    assert not np.array_equal(m.user_state("s-user")[0], m.user_state("s-user2")[0])
    # Integer session ids are compared as values, negative ones too (-1 and -2: two sessions).
    for user, sessions in (("n-user", (-1, -1)), ("n-user2", (-1, -2))):
        for item, dt, sid in zip(["i1", "i2"], (0, 1), sessions):
            m.put_events(user, [item], [t + dt], session_id=sid)
    assert np.array_equal(m.user_state("n-user")[0], m.user_state("s-user")[0])
    assert np.array_equal(m.user_state("n-user2")[0], m.user_state("s-user2")[0])


def test_events_at_the_same_second(model):
    """Two events with one timestamp are in time order (a page and its click, a batch import)."""
    m, df = fresh(model)
    t = df.TIMESTAMP.max() + 10
    m.put_events("twice", ["i1", "i2"], [t, t])
    m.put_events("twice", ["i3"], [t])
    m.put_events("once", ["i1", "i2", "i3"], [t, t, t])
    for a, b in zip(m.user_state("twice"), m.user_state("once")):
        np.testing.assert_array_equal(a, b)
    assert m.recommend("twice", 5)[0].tolist() == m.recommend("once", 5)[0].tolist()


def test_recommend_batch_equals_recommend(model):
    m, _ = model
    users = ["u1", "u2", "nobody", "u40"]
    ids, scores = m.recommend_batch(users, num_results=7, exclude_interacted=True)
    assert ids.shape == (4, 7) and scores.shape == (4, 7)
    for r, u in enumerate(users):
        one_ids, one_scores = m.recommend(u, num_results=7, exclude_interacted=True)
        assert list(ids[r]) == list(one_ids)
        np.testing.assert_allclose(scores[r], one_scores, rtol=1e-6)


def test_recommend_batch_pads_when_candidates_run_out(model):
    m, _ = model
    ids, scores = m.recommend_batch(["u1"], num_results=5, include_items=["i1", "i2"])
    assert list(ids[0][2:]) == [None] * 3 and np.isneginf(scores[0][2:]).all()


def test_not_fitted():
    with pytest.raises(RuntimeError, match="not fitted"):
        hrnn.HRNN().recommend("u1")


def test_items_only_users_left_out_of_training_consumed_stay_recommendable():
    # 60 users alternate between two shared items (so the log repeats); one heavy user, above the
    # 0.99 percentile of history lengths and so left out of training, alternates between two
    # items nobody else has. They are in the catalogue, after the trained items, and the prior's
    # repeat part returns them to that user.
    rows, t = [], 0
    for u in range(60):
        for k in range(20):
            t += 60
            rows.append((f"u{u}", f"s{(u + k) % 2 + 2 * (u % 5)}", t))
    for k in range(500):
        t += 60
        rows.append(("heavy", f"p{k % 2}", t))
    df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
    m = hrnn.HRNN(random_state=0, num_threads=1, transition_weight=8.0, **FAST).fit(df)
    assert list(m.item_ids_[-2:]) == ["p0", "p1"]
    assert set(m.item_ids_[:-2]) == set(df.ITEM_ID[df.USER_ID != "heavy"])
    ids, _ = m.recommend("heavy", num_results=3)
    assert ids[0] == "p0"  # seen 2 events back: the repeat curve's peak here
    assert "p0" not in m.recommend("u1", num_results=3)[0]


def test_n_items_is_the_catalogue_size(model):
    m, df = model
    assert m.n_items == len(m.item_ids_) == df["ITEM_ID"].nunique()
    with pytest.raises(RuntimeError, match="not fitted"):
        hrnn.HRNN().n_items


def test_not_fitted_models_raise_runtime_error(tmp_path):
    m = hrnn.HRNN()
    for call in (lambda: m.recommend("u"), lambda: m.recommend_batch(["u"]),
                 lambda: m.put_events("u", [1], [1.0]), lambda: m.save(tmp_path / "x"),
                 lambda: m.user_state("u"), lambda: m.get_weights(), lambda: m.known_user_ids):
        with pytest.raises(RuntimeError, match="not fitted"):
            call()


def test_integer_arrays_of_item_ids_answer_as_lists_do():
    """exclude_items / include_items as integer arrays (one vectorised lookup where the catalogue's
    ids are integers of a type they cast to exactly) give what the same ids as a list give."""
    users, items, ts = planted_log(n_users=40)
    m = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    known = m.item_ids_
    ids = np.concatenate([known[::3], [10**6, -5], known[:2]])  # unknown ids and repeats too
    u = int(users[0])
    assert m._item_index().lookup_ints(ids.astype(np.int32)) is not None
    for arr in (ids, ids.astype(np.int32), ids[ids >= 0].astype(np.uint32), ids[ids >= 0].astype(np.uint64),
                ids[:0]):
        as_list = arr.tolist()
        for kw in ("exclude_items", "include_items"):
            got = m.recommend(u, 30, **{kw: arr})
            want = m.recommend(u, 30, **{kw: as_list})
            assert got[0].tolist() == want[0].tolist() and np.array_equal(got[1], want[1]), (arr.dtype, kw)
        assert m.recommend_batch([u, 7], 30, exclude_items=arr)[0].tolist() == \
            m.recommend_batch([u, 7], 30, exclude_items=as_list)[0].tolist()
    assert m._item_index().lookup_ints(ids.astype(np.uint64)) is None  # (uint64 does not cast to int64)
    assert m.recommend(u, 5, include_items=np.array([known[4]], dtype=np.int16))[0].tolist() == [known[4]]


def test_ids_sent_as_text_find_a_model_fitted_on_integers():
    """Personalize sends every id as text: "7" is user 7 when the model knows 7 and not "7" (its
    events went to a new user "7", its queries to the popular items), with a warning; and the other
    way round. An id known as given is never retyped."""
    users, items, ts = planted_log(n_users=40)
    m = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    t = float(ts.max()) + 10
    n_users, u, item = len(m.known_user_ids), int(users[0]), int(items[0])
    with pytest.warns(UserWarning, match="user_id: text that reads as an integer .* taken as the model's "
                                         "integer id") as caught:
        same = m.recommend("3", 5)
    assert caught[0].filename == __file__  # the caller's line, not hrnn's
    assert same[0].tolist() == m.recommend(3, 5)[0].tolist()
    with pytest.warns(UserWarning):
        assert m.recommend(np.str_("3"), 5)[0].tolist() == same[0].tolist()
    for unknown in ("9" * 5000, "03", "-0", "+3", " 3"):  # not the text of a known integer id
        assert m.recommend(unknown, 5)[0].tolist() == m.recommend("nobody", 5)[0].tolist()
    for args in [(str(item), t), ([str(item), item], [t + 1, t + 2])]:  # the one-event path, the other
        with pytest.warns(UserWarning) as caught:
            m.put_events(str(u), *args)
        assert {str(w.message).split(":")[0] for w in caught} == {"item_ids", "user_id"}
    assert len(m.known_user_ids) == n_users and not m.unknown_item_events_
    assert m._engine.user_state(m._user_index[u])[3] == len(items[users == u]) + 3  # every event counted
    with pytest.warns(UserWarning, match="each of include_items"):
        assert m.recommend(u, 5, include_items=[str(item)])[0].tolist() == [item]
    with pytest.warns(UserWarning) as caught:
        batch = m.recommend_batch([str(u), "nobody", u] + [str(v) for v in range(30)], 4)[0]
    assert len(caught) == 1  # one per call, not one per id
    assert batch[0].tolist() == batch[2].tolist() == m.recommend(u, 4)[0].tolist()
    with pytest.warns(UserWarning):
        assert np.array_equal(m.user_state(str(u))[1], m.user_state(u)[1])
    m.put_events("07", item, t + 3)  # not the text of an integer: a new user, as before
    assert m.known_user_ids[-1] == "07"
    for cls in (hrnn.baselines.RepeatRule, hrnn.baselines.Markov):  # the baselines look up alike
        b = cls().fit((users, items, ts))
        with pytest.warns(UserWarning, match="user_id"):
            b.put_events(str(u), [item], [t])
        assert len(b._hist) == len(set(users.tolist()))
        with pytest.warns(UserWarning, match="user_id"):
            assert b.recommend(str(u), 3)[0].tolist() == b.recommend(u, 3)[0].tolist()
    text = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit(([f"{x}" for x in users], items, ts))
    with pytest.warns(UserWarning, match="user_id: an integer .* taken as the model's text id"):
        assert text.recommend(np.int64(3), 5)[0].tolist() == text.recommend("3", 5)[0].tolist()
    assert text.recommend(10**5000, 5)[0].tolist() == text.recommend("nobody", 5)[0].tolist()


def test_text_and_integer_ids_of_a_new_user_at_once_make_one_user():
    users, items, ts = planted_log(n_users=40)
    m = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit(([f"{x}" for x in users], items, ts))
    barrier, t = threading.Barrier(8), float(ts.max()) + 10

    def put(user):
        barrier.wait()
        m.put_events(user, 1, t)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the retyped one warns)
        threads = [threading.Thread(target=put, args=(u,)) for u in ["777", 777] * 4]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert [u for u in m.known_user_ids.tolist() if u in ("777", 777)] in (["777"], [777])
    assert m._engine.user_state(m._user_index.get("777", m._user_index.get(777)))[3] == 8


def test_put_events_takes_datetimes_as_fit_does():
    users, items, ts = planted_log(n_users=40)
    when = pd.to_datetime(ts, unit="s")  # naive: UTC, as in fit
    a = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, ts))
    b = hrnn.HRNN(random_state=0, num_threads=1, **FAST).fit((users, items, when))
    t = float(ts.max()) + 60
    a.put_events("new", [1, 2], [t, t + 5])
    b.put_events("new", [1, 2], [pd.Timestamp(t, unit="s"), (pd.Timestamp(t + 5, unit="s", tz="UTC")
                                                            .tz_convert("Europe/Paris"))])
    a.put_events("new", 3, t + 9)
    b.put_events("new", 3, np.datetime64(int(t + 9), "s"))
    assert np.array_equal(a.user_state("new")[1], b.user_state("new")[1])
    assert a._engine.user_state(a._user_index["new"])[2] == b._engine.user_state(b._user_index["new"])[2] == t + 9
    late = datetime.datetime(2300, 1, 1)  # beyond pandas' nanosecond range, accepted by fit
    a.put_events("new", 4, (late - datetime.datetime(1970, 1, 1)).total_seconds())
    b.put_events("new", 4, late)
    b.put_events("new", 4, [np.datetime64("2300-01-01T00:00:01")])
    assert b._engine.user_state(b._user_index["new"])[2] == a._engine.user_state(a._user_index["new"])[2] + 1
