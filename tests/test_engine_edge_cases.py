"""Edge cases of the C++ engine that the rest of the suite leaves open (found by mutation testing of
cpp/src): each test pins one behaviour a user's results depend on."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hrnn
from hrnn.synthetic import make_log

TINY = dict(hidden_dimension=32, n_sample=16, batch_size=8, bptt=4, epochs=1, random_state=0, num_threads=1,
            show_progress=False)


def fit(df, **kw):
    return hrnn.HRNN(**{**TINY, **kw}).fit(df)


@pytest.fixture(scope="module")
def small_log():
    return make_log(n_events=1500, n_users=30, n_items=60, repeat=0.3, cover_items=True, seed=5).drop_duplicates()


def tie_every_score(engine):
    """Zero the output rows, biases and repeat score: every item scores exactly 0."""
    for name in engine.param_names():
        if name in ("O", "bo", "rc", "rd", "rV") or (name == "E" and engine.tied):
            engine.set_param(name, np.zeros(engine.get_param(name).shape, np.float32))


def set_prior(m, repeat_curve, weight=1.0):
    """A hand-made prior: no item has a successor, every item the same popularity."""
    n = len(m.item_ids_)
    m._engine.set_transitions(weight=weight, offsets=np.zeros(n + 1, np.int64), successors=np.zeros(0, np.int32),
                              counts=np.zeros(0, np.float32), out=np.zeros(n, np.float32), popularity=np.ones(n),
                              repeat_curve=np.asarray(repeat_curve, np.float32))


def test_prior_without_a_known_source_event_is_popularity_alone(small_log):
    # The last 10 events (the transition sources) are all unknown items, an older one is known: its
    # repeat part divides by the popularity alone (G = 1), and every score stays finite.
    m = fit(small_log, transition_weight=1.0)
    set_prior(m, np.full(200, 0.004))
    known = m.item_ids_[3]
    ids = [known] + [f"never-seen-{k}" for k in range(12)]
    m.put_events("fresh user", ids, 1.7e9 + 60.0 * np.arange(len(ids)))
    items, scores = m.recommend("fresh user", len(m.item_ids_))
    assert np.isfinite(scores).all()
    # weight * (log pop + log1p(R / (1 - r) / (G pop))): R = q[12] = 0.004, r = 0.004 (the one known
    # recent event), pop = 1 / n, G = 1
    n = len(m.item_ids_)
    _, plain = m.recommend("fresh user", n, include_items=[known])
    set_prior(m, np.full(200, 0.004), weight=0.0)
    _, off = m.recommend("fresh user", n, include_items=[known])
    assert plain[0] - off[0] == pytest.approx(np.log(1 / n) + np.log1p(0.004 / 0.996 * n), rel=1e-4)


def test_exact_scan_keeps_tied_items_when_it_prunes():
    # Every item scores exactly 0 (zero output rows and biases, no prior, no repeat score): an exact
    # scan over more than 4096 + 4k items prunes its candidates on the way, and the ties must still
    # go to the lowest item indices.
    df = make_log(n_events=5000, n_users=50, n_items=4300, zipf=0.3, cover_items=True, seed=6)
    m = fit(df, transition_weight=0.0)
    e = m._engine
    n = e.n_items
    assert n > 4096 + 4 * 3
    tie_every_score(e)
    user = m._user_index[df["USER_ID"].iloc[0]]
    items, scores = e.recommend_batch(np.array([user]), 3, kernels="exact")
    np.testing.assert_array_equal(items[0], [0, 1, 2])
    np.testing.assert_array_equal(scores[0], [0.0, 0.0, 0.0])


def test_a_gap_of_exactly_session_gap_continues_the_session(small_log):
    # A new session starts when the gap *exceeds* session_gap, as in fit.
    m = fit(small_log)
    t = 1.7e9
    a, b = m.item_ids_[[4, 9]]
    m.put_events("exact gap", [a, b], [t, t + m.session_gap])
    m.put_events("one session", [a, b], [t, t + m.session_gap], session_id="s")
    m.put_events("two sessions", [a, b], [t, t + m.session_gap], session_id=["s", "t"])
    m.put_events("longer gap", [a, b], [t, t + m.session_gap + 0.5])
    m.put_events("one id, longer gap", [a, b], [t, t + m.session_gap + 0.5], session_id="s")
    for x, y in zip(m.user_state("exact gap"), m.user_state("one session")):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(m.user_state("exact gap")[0], m.user_state("two sessions")[0])
    # just above the gap: a new session, the user GRU has moved u (under one session id too)
    assert not np.array_equal(m.user_state("longer gap")[0], m.user_state("exact gap")[0])
    for x, y in zip(m.user_state("longer gap"), m.user_state("one id, longer gap")):
        np.testing.assert_array_equal(x, y)
    # ... and across two calls with the same id, against the user's last event
    m.put_events("two calls", a, t, session_id="s")
    m.put_events("two calls", b, t + m.session_gap + 0.5, session_id="s")
    for x, y in zip(m.user_state("longer gap"), m.user_state("two calls")):
        np.testing.assert_array_equal(x, y)


def test_first_session_id_after_a_log_without_sessions_follows_the_gap_rule(small_log):
    # Trained without SESSION_ID, a user's first real-time event with a session id continues the
    # last training session when the gap rule says so (there is no id to compare with).
    with_id, without = fit(small_log), fit(small_log)
    user = small_log["USER_ID"].iloc[0]
    t = small_log.loc[small_log.USER_ID == user, "TIMESTAMP"].max() + 10
    item = with_id.item_ids_[7]
    with_id.put_events(user, [item], [t], session_id="web-1")
    without.put_events(user, [item], [t])
    for x, y in zip(with_id.user_state(user), without.user_state(user)):
        np.testing.assert_array_equal(x, y)


def test_a_new_users_events_give_the_state_training_gives(small_log):
    # put_events on a user without events starts from the learned initial state (a fresh step), as
    # the state computation after training does for a user with the same history.
    items = [3, 8, 8, 15, 4]
    ts = 1.6e9 + np.array([0.0, 50.0, 4000.0, 4100.0, 4160.0])
    m0 = fit(small_log)
    twin = pd.DataFrame({"USER_ID": 10_000, "ITEM_ID": m0.item_ids_[items], "TIMESTAMP": ts})
    m = fit(pd.concat([small_log, twin], ignore_index=True))
    m.put_events(20_000, m0.item_ids_[items], ts)
    for x, y in zip(m.user_state(10_000), m.user_state(20_000)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_events_older_than_the_last_training_event_are_refused(small_log):
    m = fit(small_log)
    user = small_log["USER_ID"].iloc[0]
    ts = np.sort(small_log.loc[small_log.USER_ID == user, "TIMESTAMP"].to_numpy())
    assert ts[0] < ts[-1]
    before = m.user_state(user)
    with pytest.raises(ValueError, match="older than this user's last event"):
        m.put_events(user, [m.item_ids_[0]], [(ts[0] + ts[-1]) / 2])
    np.testing.assert_array_equal(m.user_state(user)[1], before[1])


def test_users_with_two_events_are_trained_on():
    # Every user has exactly two events, i -> i + 1: the one prediction each has is what is learned.
    n_items, n_users = 20, 800
    rng = np.random.default_rng(0)
    first = rng.integers(0, n_items, n_users)
    df = pd.DataFrame({"USER_ID": np.repeat(np.arange(n_users), 2),
                       "ITEM_ID": np.c_[first, (first + 1) % n_items].ravel(),
                       "TIMESTAMP": 1.6e9 + np.repeat(np.arange(n_users) * 1e4, 2) + np.tile([0.0, 60.0], n_users)})
    m = fit(df, epochs=2, transition_weight=0.0)
    hits = 0
    for i in range(n_items):
        m.put_events(f"new-{i}", [i], [1.7e9])
        hits += (i + 1) % n_items in m.recommend(f"new-{i}", 3)[0]
    assert hits >= 0.8 * n_items


def test_recency_weights_weigh_each_prediction_by_its_target_event():
    # recency_mask: a training event's loss weight is the weight of the event predicted, not of the
    # input event. After item 0, 300 users went on to item 1 at the end of the log (their item 0 long
    # before), 100 users to item 2 (both events at the end): weighed by the targets, item 1 is the
    # more frequent successor; weighed by the inputs, item 2 would be.
    rows, t_end, old = [], 1.6e9, 1.6e9 - 1e6
    for u in range(300):
        rows += [(u, 0, old + u), (u, 1, t_end - u)]
    for u in range(300, 400):
        rows += [(u, 0, t_end - 700 - u), (u, 2, t_end - 640 - u)]
    for u in range(400, 800):  # other pairs, to fill the catalogue
        a = 3 + u % 17
        rows += [(u, a, old + u), (u, 3 + (a - 2) % 17, t_end - u)]
    df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
    m = fit(df, epochs=3, transition_weight=0.0, recency_mask=True, recency_half_life=1e4)
    m.put_events("new", [0], [t_end + 10])
    assert m.recommend("new", 1)[0].tolist() == [1]


def test_adam_first_step_is_bias_corrected():
    # One training window, so one optimizer step: Adam's bias-corrected first step moves every
    # parameter with a gradient by learning_rate (|g| >> eps), and the biases start at 0.
    rng = np.random.default_rng(1)
    n_users, length = 40, 26  # every user in a lane of its own, all 25 steps in one window of 32
    df = pd.DataFrame({"USER_ID": np.repeat(np.arange(n_users), length),
                       "ITEM_ID": rng.integers(0, 30, n_users * length),
                       "TIMESTAMP": 1.6e9 + np.arange(n_users * length) * 60.0})
    lr = 0.01
    m = fit(df, optimizer="adam", learning_rate=lr, batch_size=64, bptt=32, epochs=1, transition_weight=0.0)
    bo = np.abs(m.get_weights()["bo"])
    assert bo.max() == pytest.approx(lr, rel=1e-3)
    assert (bo <= lr * (1 + 1e-5)).all()


def test_sample_alpha_changes_the_negatives():
    # Negatives are drawn by popularity ** sample_alpha: on a skewed log, 0 (uniform) and 1 train
    # differently.
    df = make_log(n_events=1500, n_users=30, n_items=60, zipf=1.5, cover_items=True, seed=8).drop_duplicates()
    a = fit(df, sample_alpha=0.0, transition_weight=0.0).get_weights()
    b = fit(df, sample_alpha=1.0, transition_weight=0.0).get_weights()
    assert not np.allclose(a["E"], b["E"])


def test_repeat_score_with_only_rV_nonzero_still_boosts_recent_items(small_log):
    # The repeat score is on when any of rc, rd, rV is non-zero: rV alone moves the recent items.
    m = fit(small_log, transition_weight=0.0)
    e = m._engine
    user = small_log["USER_ID"].iloc[0]
    n = len(m.item_ids_)
    for name in ("rc", "rd", "rV"):
        e.set_param(name, np.zeros(e.get_param(name).shape, np.float32))
    items0, scores0 = m.recommend(user, n)
    rV = np.random.default_rng(2).normal(0, 1.0, e.get_param("rV").shape).astype(np.float32)
    e.set_param("rV", rV)
    items1, scores1 = m.recommend(user, n)
    before = dict(zip(items0.tolist(), scores0.tolist()))
    after = dict(zip(items1.tolist(), scores1.tolist()))
    recent = set(small_log.loc[small_log.USER_ID == user, "ITEM_ID"].tolist())
    moved = {i for i in before if abs(after[i] - before[i]) > 1e-4}
    assert moved and moved <= recent


def test_exclude_interacted_leaves_out_a_real_time_item_below_the_users_last_index(small_log):
    # The user's seen set stays sorted when put_events adds an item whose index falls between the
    # items already seen (not only past the largest one).
    m = fit(small_log)
    index = {item: k for k, item in enumerate(m.item_ids_.tolist())}
    user = small_log["USER_ID"].iloc[-1]  # a late user: its items' indices have gaps
    seen = {index[i] for i in small_log.loc[small_log.USER_ID == user, "ITEM_ID"]}
    new = min(set(range(len(m.item_ids_))) - seen)
    assert new < max(seen)
    t = small_log.loc[small_log.USER_ID == user, "TIMESTAMP"].max() + 10
    m.put_events(user, [m.item_ids_[new]], [t])
    got, _ = m.recommend(user, len(m.item_ids_), exclude_interacted=True)
    assert m.item_ids_[new] not in set(got.tolist())
    assert len(got) == len(m.item_ids_) - len(seen) - 1
    # Many events in one call are merged into the set at once: the same set as one by one.
    rng = np.random.default_rng(0)
    batch = [m.item_ids_[k] for k in rng.integers(0, len(m.item_ids_) - 5, 100)] + ["unknown"]
    m.put_events(user, batch, t + 1 + np.arange(len(batch)))
    other = fit(small_log)
    other.put_events(user, [m.item_ids_[new]], [t])
    for j, one in enumerate(batch):
        other.put_events(user, one, t + 1 + j)
    expected = set(m.item_ids_.tolist()) - {m.item_ids_[i] for i in seen} - {m.item_ids_[new]} - set(batch)
    assert set(m.recommend(user, len(m.item_ids_), exclude_interacted=True)[0].tolist()) == expected
    assert other.recommend(user, len(m.item_ids_), exclude_interacted=True)[0].tolist() == \
        m.recommend(user, len(m.item_ids_), exclude_interacted=True)[0].tolist()


def test_validation_rank_counts_only_strictly_higher_items(small_log):
    # next_item_ranks (validation, transition_weight="auto") ranks an event 1 + the number of items
    # scoring strictly higher: with every score tied, each event ranks first.
    m = fit(small_log, transition_weight=0.0)
    e = m._engine
    tie_every_score(e)
    items = np.array([1, 5, 9, 5, 2, 7], np.int32)
    ts = 1.6e9 + 60.0 * np.arange(6)
    new = np.array([1, 0, 0, 0, 0, 0], np.uint8)
    prefix = (np.array([0, 3], np.int64), items[:3], ts[:3], new[:3])
    test = (np.array([0, 3], np.int64), items[3:], ts[3:], new[3:])
    ranks = e.next_item_ranks(*prefix, *test, num_threads=1)
    np.testing.assert_array_equal(ranks, [1, 1, 1])


def test_cold_users_popular_items_honour_the_filters(small_log):
    # A user the model does not know gets the popular items, less exclude_items / within
    # include_items, one at a time and in a batch.
    m = fit(small_log)
    order = m.item_ids_[np.argsort(-m.popularity_, kind="stable")]
    ids, _ = m.recommend("nobody", num_results=5, exclude_items=order[:2])
    assert ids.tolist() == order[2:7].tolist()
    ids, _ = m.recommend("nobody", num_results=5, include_items=order[[9, 3]])
    assert ids.tolist() == order[[3, 9]].tolist()
    batch, _ = m.recommend_batch(["nobody", "nobody else"], num_results=5, exclude_items=order[:2])
    assert batch.tolist() == [order[2:7].tolist()] * 2


def test_training_moves_the_user_level_gru_at_session_boundaries(small_log):
    # The user GRU only steps when a session ends: trained without sessions (a session_gap longer than the log) its
    # weights keep their initial values, trained with them they learn.
    with_sessions = fit(small_log, transition_weight=0.0).get_weights()
    without = fit(small_log, transition_weight=0.0, session_gap=1e9).get_weights()
    longer = fit(small_log, transition_weight=0.0, session_gap=1e9, epochs=2).get_weights()
    for name in ("Wux", "Wuh", "bu"):
        np.testing.assert_array_equal(without[name], longer[name])
        assert not np.allclose(with_sessions[name], without[name]), name


def test_put_events_applies_the_event_filters_of_fit(small_log):
    """Trained on purchases with value >= 3, a model records only such real-time events: the
    others change nothing, as they would have been left out of fit."""
    log = small_log.assign(EVENT_TYPE=np.where(np.arange(len(small_log)) % 10, "purchase", "view"),
                           EVENT_VALUE=5.0)
    m = fit(log, event_type=["purchase"], event_value_threshold=3.0)
    t, (a, b, c) = 2e9, m.item_ids_[[4, 9, 11]]
    m.put_events("filtered", [a, b, c, "new item"], [t, t + 1, t + 2, t + 3],
                 event_type=["purchase", "view", "purchase", "view"], event_value=[5, 5, 1, float("nan")])
    m.put_events("only kept", [a], [t])
    for x, y in zip(m.user_state("filtered"), m.user_state("only kept")):
        np.testing.assert_array_equal(x, y)
    assert "new item" not in m.unknown_item_events_  # a filtered event is not counted either
    m.put_events("nothing kept", a, t, event_type="view")
    m.put_events("nothing kept", [a, b], [t, t + 1], event_type=[None, np.nan])  # no types at all
    m.put_events("nothing kept", a, t, event_value=[None])
    assert "nothing kept" not in set(m.known_user_ids)  # no user created for it
    m.put_events("one type for all", [a, b], [t, t + 1], event_type="purchase", event_value=3)
    m.put_events("both", [a, b], [t, t + 1])
    for x, y in zip(m.user_state("one type for all"), m.user_state("both")):
        np.testing.assert_array_equal(x, y)
    for bad, error in (({"event_type": {"view", "purchase"}}, TypeError),
                       ({"event_type": ["view"] * 3}, ValueError),
                       ({"event_value": "5"}, TypeError), ({"event_value": [None, "5"]}, TypeError),
                       ({"event_value": [True, 5]}, TypeError), ({"event_value": [1, 2, 3]}, ValueError)):
        with pytest.raises(error, match=next(iter(bad))):
            m.put_events("bad", [a, b], [t, t + 1], **bad)
    assert "bad" not in set(m.known_user_ids)
    # Without event filters every event is recorded, whatever its type.
    plain = fit(log)
    plain.put_events("typed", [a, b], [t, t + 1], event_type=["view", "x"], event_value=[0, -1])
    plain.put_events("untyped", [a, b], [t, t + 1])
    for x, y in zip(plain.user_state("typed"), plain.user_state("untyped")):
        np.testing.assert_array_equal(x, y)


def test_session_ids_beyond_int64_continue_a_training_session(small_log):
    """fit takes uint64 SESSION_IDs of 2**63 and more; put_events takes them too (only their
    hashes are kept) and continues the user's last training session with the same id."""
    big = np.uint64(2**63 + 5)
    log = small_log.assign(SESSION_ID=np.full(len(small_log), big, dtype=np.uint64))
    m = fit(log)
    user = log["USER_ID"].iloc[0]
    t = log.loc[log.USER_ID == user, "TIMESTAMP"].max() + 10
    item = m.item_ids_[3]
    same, other, plain, text = fit(log), fit(log), fit(log), fit(log)
    same.put_events(user, [item], [t], session_id=2**63 + 5)
    other.put_events(user, [item], [t], session_id=np.uint64(2**63 + 6))
    plain.put_events(user, [item], [t])  # within the gap: the same session
    text.put_events(user, [item], [t], session_id=str(2**63 + 5))  # Personalize's sessionId is text
    for model in (same, text):
        for x, y in zip(model.user_state(user), plain.user_state(user)):
            np.testing.assert_array_equal(x, y)
    assert not np.array_equal(same.user_state(user)[0], other.user_state(user)[0])
    with pytest.raises(TypeError, match="session_id"):
        m.put_events(user, [item, item], [t, t + 1], session_id={"a", "b"})  # (no order)


def test_a_user_count_whose_state_size_would_wrap_is_refused():
    engine = hrnn._core.Engine(10, 64, True, 0)
    with pytest.raises(ValueError, match="too many users"):
        engine.ensure_users(2**58 + 1)  # 2**58 * 64 floats wraps to 64 in size_t
    engine.ensure_users(3)
    assert engine.n_users() == 3


def test_a_users_unflagged_first_event_still_starts_its_last_session():
    """compute_states starts every user's history with a session, flagged or not: the store's
    session start (what the votes cut the last session at) says so too, not -1."""
    e = hrnn._core.Engine(5, 8, True, 0)
    offsets = np.array([0, 3, 5], np.int64)
    items = np.array([1, 2, 3, 0, 4], np.int32)
    ts = np.array([0.0, 10.0, 20.0, 0.0, 5000.0])
    for flags in ([1, 0, 0, 1, 1], [0, 0, 0, 0, 1]):
        e.compute_states(offsets, items, ts, np.array(flags, np.uint8), num_threads=1)
        np.testing.assert_array_equal(e.dump_users()["session_start"], [0, 1])
