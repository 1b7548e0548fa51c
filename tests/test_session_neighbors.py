"""Session-start neighbours (docs/engine.md, "Session-start neighbours"): a query flagged
``new_session=True`` is answered from ``(1 - beta) softmax(scores) + beta v``, v the session-kNN
votes for the neighbours of the user's last session; ``session_start_neighbors="auto"`` chooses
beta on the first events of every multi-session user's last session."""
from __future__ import annotations

import json

import numpy as np
import pytest

import hrnn
from hrnn import _validation as hv, model_file
from hrnn._neighbors import NEIGHBORS_K, NEIGHBORS_SAMPLE, neighbor_index
import reference_query as ref
from hrnn.synthetic import make_log
from query_cases import FIT, all_scores, fitted, histories, make_query_log, params64, prior_of

BETA = 0.6


def split_sessions(items, ts, new=None, gap=1800.0):
    """A user's sessions as lists of items: cut where ``new`` flags (else where the gap exceeds ``gap``)."""
    new = np.r_[True, np.diff(ts) > gap] if new is None else np.asarray(new, bool)
    cuts = np.flatnonzero(new[1:]) + 1
    return [list(s) for s in np.split(np.asarray(items), cuts)], [t[-1] for t in np.split(np.asarray(ts), cuts)]


def reference_votes(sessions, ends, current, own=None, drop=(), k=NEIGHBORS_K, sample=NEIGHBORS_SAMPLE):
    """V-SKNN as its definition reads (baselines.SessionKNN's docstring), one session at a time:
    {item: vote}, normalised to sum 1. ``sessions`` in the index's order, ``ends`` their end times."""
    n = len(current)
    weight = {}
    for i, item in enumerate(current):
        if item >= 0:
            weight[item] = (i + 1) / n
    if not weight:
        return {}
    # Each session's recency: its rank by end time, ties by its place in the log.
    recency = {s: r for r, s in enumerate(sorted(range(len(sessions)), key=lambda s: (ends[s], s)))}
    cap = max(1, sample // len(weight))
    candidates = set()
    for item in weight:
        holding = sorted((s for s, items in enumerate(sessions) if item in items), key=lambda s: -recency[s])
        candidates |= {s for s in holding[:cap] if s != own}
    sims = []
    for s in candidates:
        distinct = set(sessions[s])
        sim = sum(weight.get(i, 0.0) for i in sorted(distinct)) / np.sqrt(len(weight) * len(distinct))
        sims.append((-sim, -recency[s], s))
    votes = {}
    for neg_sim, _, s in sorted(sims)[:k]:
        for item in set(sessions[s]) - set(drop):
            votes[item] = votes.get(item, 0.0) - neg_sim
    total = sum(votes.values())
    return {i: v / total for i, v in votes.items() if v > 0}


def mixture(net, votes, beta, n_norm=200):
    """log((1 - beta) p + beta v), p the softmax of the network's scores over its n_norm best."""
    top = np.sort(net)[::-1][:n_norm]
    log_norm = top[0] + np.log(np.exp(top - top[0]).sum())
    v = np.zeros_like(net)
    for i, x in votes.items():
        v[i] = x
    with np.errstate(divide="ignore"):  # an item that is no candidate: -inf
        return np.log((1 - beta) * np.exp(net - log_norm) + beta * v)


def log_arrays(model):
    log = model._log
    return (log.offsets, log.items, log.timestamps, log.new_session)


@pytest.fixture(scope="module")
def log():
    return make_query_log()


@pytest.fixture(scope="module")
def model(log):
    m = fitted(log)
    assert m.session_start_neighbors_ in hv.NEIGHBOR_BETAS
    m._engine.clear_neighbors()
    return m


def training_sessions(model, log):
    """Every user's sessions and their end times, in the log's order, and each user's last one."""
    sessions, ends, last = [], [], {}
    for uid, (items, ts) in histories(model, log).items():
        s, e = split_sessions(items, ts)
        sessions += s
        ends += e
        last[uid] = len(sessions) - 1
    return sessions, ends, last


def test_answers_mix_the_network_with_the_votes_of_the_last_sessions_neighbours(model, log, tmp_path):
    users = sorted(histories(model, log))[:12]
    net = all_scores(model, users, new_session=True)
    continuing = all_scores(model, users)
    model._engine.set_neighbors(neighbor_index(log_arrays(model), len(model.item_ids_)), NEIGHBORS_K,
                                NEIGHBORS_SAMPLE, BETA)
    try:
        got = all_scores(model, users, new_session=True)
        np.testing.assert_array_equal(all_scores(model, users), continuing)  # only session starts change
        model.save(tmp_path / "m.hrnn")
    finally:
        model._engine.clear_neighbors()
    sessions, ends, last = training_sessions(model, log)
    hist = histories(model, log)
    for r, uid in enumerate(users):
        items, ts = hist[uid]
        current = split_sessions(items, ts)[0][-1]
        # The user's current session is its last training session: never its own neighbour.
        votes = reference_votes(sessions, ends, current, own=last[uid])
        assert votes
        np.testing.assert_allclose(got[r], mixture(net[r], votes, BETA), rtol=1e-4, atol=1e-4)
    back = hrnn.load(tmp_path / "m.hrnn")
    assert back.session_start_neighbors_ == pytest.approx(BETA)
    np.testing.assert_allclose(all_scores(back, users, new_session=True), got, rtol=1e-6)

    # Excluded items are no candidates (nor normalised over, nor voted for); with include_items
    # only those are.
    uid, r = users[1], 1
    current = split_sessions(*hist[uid])[0][-1]
    votes = reference_votes(sessions, ends, current, own=last[uid])
    best = np.argsort(-got[r])[:4]
    for kind, chosen in (("exclude_items", best), ("include_items", np.r_[best, np.argsort(got[r])[:30]])):
        ids, scores = back.recommend(uid, 20, new_session=True, **{kind: back.item_ids_[chosen]})
        keep = np.zeros(len(net[r]), bool)
        keep[chosen] = True
        if kind == "exclude_items":
            keep = ~keep
        # Votes for excluded items are dropped before normalising; include_items only filters.
        shares = (reference_votes(sessions, ends, current, own=last[uid], drop=chosen) if kind == "exclude_items"
                  else {i: v for i, v in votes.items() if keep[i]})
        want = mixture(np.where(keep, net[r], -np.inf), shares, BETA)
        got_idx = [back._item_index()[i] for i in ids]
        assert keep[got_idx].all()
        np.testing.assert_allclose(scores, want[got_idx], rtol=1e-4, atol=1e-4)
        assert scores[-1] >= np.sort(want[keep])[::-1][len(ids) - 1] - 1e-4

    # A new session put in real time is no training session: every session may be its neighbour.
    uid = users[0]
    t0 = hist[uid][1][-1] + 7200.0
    new_items = [model.item_ids_[i] for i in (3, 5, 3)] + ["an unknown item", model.item_ids_[8]]
    back.put_events(uid, new_items, [t0, t0 + 60, t0 + 120, t0 + 150, t0 + 180])
    assert back.unknown_item_events_["an unknown item"] == 1
    back._engine.clear_neighbors()
    net = all_scores(back, [uid], new_session=True)[0]
    back._engine.set_neighbors(*back_index(model))
    votes = reference_votes(sessions, ends, [3, 5, 3, -1, 8])  # the unknown item keeps its place
    np.testing.assert_allclose(all_scores(back, [uid], new_session=True)[0], mixture(net, votes, BETA),
                               rtol=1e-4, atol=1e-4)


def test_the_network_is_normalised_over_its_best_200_items():
    df = make_log(n_events=8000, n_users=60, n_items=500, repeat=0.3, cover_items=True, seed=4).drop_duplicates()
    # Barely trained: a flat softmax, whose best 200 items hold far from all of its mass.
    m = hrnn.HRNN(session_start_neighbors=0.0, **{**FIT, "learning_rate": 1e-4}).fit(df)
    n = len(m.item_ids_)
    assert n > 400
    users = sorted(histories(m, df))[:10]
    net = all_scores(m, users, new_session=True)
    m._engine.set_neighbors(neighbor_index(log_arrays(m), n), NEIGHBORS_K, NEIGHBORS_SAMPLE, BETA)
    ids, scores = m.recommend_batch(users, 30, new_session=True)
    sessions, ends, last = training_sessions(m, df)
    hist = histories(m, df)
    index = m._item_index()
    for r, uid in enumerate(users):
        votes = reference_votes(sessions, ends, split_sessions(*hist[uid])[0][-1], own=last[uid])
        want = mixture(net[r], votes, BETA)
        got = [index[i] for i in ids[r]]
        np.testing.assert_allclose(scores[r], want[got], rtol=1e-4, atol=1e-4)
        assert want[got].min() >= np.sort(want)[::-1][29] - 1e-4  # the best 30 of every item's
        full = mixture(net[r], votes, BETA, n_norm=n)
        assert np.abs(full - want).max() > 0.05  # the whole catalogue's softmax would differ


def back_index(model):
    return neighbor_index(log_arrays(model), len(model.item_ids_)), NEIGHBORS_K, NEIGHBORS_SAMPLE, BETA


def test_a_log_without_repeats_gets_no_votes_for_the_users_own_items():
    df = make_query_log().drop_duplicates(["USER_ID", "ITEM_ID"])
    m = hrnn.HRNN(session_start_neighbors=0.99, **FIT).fit(df)
    t = m._engine.get_transitions()
    assert t["repeat_curve"].max() == 0  # the prior rules out seen items
    for uid, group in df.groupby("USER_ID"):
        ids, _ = m.recommend(uid, 20, new_session=True)
        assert not set(ids) & set(group["ITEM_ID"]), uid
    # At weight 0 (an "auto" choice) the network may rank them, but the votes still leave them
    # out, as in the ranks the share was chosen on.
    m._engine.set_transitions(0.0, t["offsets"], t["successors"], t["counts"], t["out"],
                              m.popularity_.astype(np.float64), t["repeat_curve"])
    index = m._engine.get_neighbors()
    m._engine.clear_neighbors()
    hist = histories(m, df)
    users = sorted(hist)[:10]
    net = all_scores(m, users, new_session=True)
    m._engine.set_neighbors(*index)
    ids, scores = m.recommend_batch(users, 30, new_session=True)
    sessions, ends, last = training_sessions(m, df)
    item_index = m._item_index()
    for r, uid in enumerate(users):
        votes = reference_votes(sessions, ends, split_sessions(*hist[uid])[0][-1], own=last[uid],
                                drop=hist[uid][0])
        want = mixture(net[r], votes, 0.99)
        np.testing.assert_allclose(scores[r], want[[item_index[i] for i in ids[r]]], rtol=1e-4, atol=1e-4)


def test_validation_ranks_use_the_mixture(model, log):
    """session_start_ranks under each beta: the rank of each user's first held-out event among the
    mixture's scores (the network's from the prefix, the votes from the prefix's sessions)."""
    hist = histories(model, log)
    users = sorted(hist)[:15]
    parts = []
    for uid in users:
        items, ts = hist[uid]
        new = np.r_[1, np.diff(ts) > 1800].astype(np.uint8)
        cut = len(items) - 3
        new[cut] = 1
        parts.append((np.asarray(items, np.int32), np.asarray(ts), new, cut))

    def arrays(take):
        chosen = [(i[take(c)], t[take(c)], n[take(c)]) for i, t, n, c in parts]
        offsets = np.r_[0, np.cumsum([len(c[0]) for c in chosen])].astype(np.int64)
        return (offsets, *(np.concatenate([c[k] for c in chosen]) for k in range(3)))

    prefix, test = arrays(lambda c: slice(0, c)), arrays(lambda c: slice(c, c + 3))
    e = model._engine
    option = (0.5, False)
    plain = e.session_start_ranks(*prefix, *test, options=[option])
    with pytest.raises(ValueError, match="neighbo"):  # no index to vote with
        e.session_start_ranks(*prefix, *test, options=[option], betas=[0.0, BETA])
    e.set_neighbors(neighbor_index(prefix, len(model.item_ids_)), NEIGHBORS_K, NEIGHBORS_SAMPLE, 0.0)
    try:
        ranks = e.session_start_ranks(*prefix, *test, options=[option], betas=[0.0, BETA])
        for bad in (-0.1, 1.0, float("nan")):
            with pytest.raises(ValueError, match="neighbour shares"):
                e.session_start_ranks(*prefix, *test, options=[option], betas=[bad])
    finally:
        e.clear_neighbors()
    assert ranks.shape == (1, 2, len(users))
    np.testing.assert_array_equal(ranks[0, 0], plain[0])
    sessions, ends, last = [], [], []
    for items, ts, new, cut in parts:
        s, t = split_sessions(items[:cut], ts[:cut], new[:cut])
        sessions += s
        ends += t
        last.append(len(sessions) - 1)
    p, prior = params64(model), prior_of(model, hist)
    checked = 0
    for k, (items, ts, new, cut) in enumerate(parts):
        gaps = np.r_[0.0, np.diff(ts)].astype(np.float32)
        u, h = e.advance(p["u0"].astype(np.float32), np.zeros(len(p["u0"]), np.float32), True, items[:cut],
                         gaps[:cut], new[:cut])
        net = ref.query_scores(p, ref.session_start_state(p, u, h, option[0]), items[:cut].tolist(), ts[:cut],
                               prior, sources=option[1])
        votes = reference_votes(sessions, ends, sessions[last[k]], own=last[k])
        mixed = mixture(net, votes, BETA)
        y = items[cut]
        if np.min(np.abs(np.delete(mixed, y) - mixed[y])) > 1e-4:  # no near-tie to round either way
            assert ranks[0, 1, k] == 1 + np.sum(mixed > mixed[y])
            checked += 1
    assert checked >= 10


def test_fit_builds_the_index_of_its_log_and_the_file_keeps_it(log, tmp_path):
    m = hrnn.HRNN(session_start_neighbors=0.5, transition_weight=0.7, **FIT).fit(log)
    assert m.session_start_neighbors_ == 0.5 and m.session_start_neighbors_scores_ == {}
    index, k, sample, beta = m._engine.get_neighbors()
    assert (k, sample, beta) == (NEIGHBORS_K, NEIGHBORS_SAMPLE, 0.5)
    for bad_k, bad_sample in ((0, 500), (100, -1)):
        with pytest.raises(ValueError, match="neighbour k and sample_size must be >= 1"):
            m._engine.set_neighbors(index, bad_k, bad_sample, 0.5)
    assert m._engine.get_neighbors()[1:] == (NEIGHBORS_K, NEIGHBORS_SAMPLE, 0.5)  # the index kept
    want = neighbor_index(log_arrays(m), len(m.item_ids_))
    assert set(index) == set(want)
    for key in want:
        np.testing.assert_array_equal(index[key], want[key])
    path = tmp_path / "m.hrnn"
    m.save(path)
    sections = {k: np.array(v) for k, v in model_file.read_sections(path).items()}
    users = list(m.user_ids_[:8])
    np.testing.assert_array_equal(hrnn.load(path).recommend_batch(users, 10, new_session=True)[0],
                                  m.recommend_batch(users, 10, new_session=True)[0])
    meta = json.loads(sections["meta"].tobytes().decode("utf-8"))
    assert meta["session_start_neighbors"] == [0.5, NEIGHBORS_K, NEIGHBORS_SAMPLE]

    def with_meta(**changes):
        return {**sections, "meta": np.frombuffer(json.dumps({**meta, **changes}).encode(), np.uint8)}

    out_of_range = dict(sections)
    out_of_range["neighbors.item_sessions"] = sections["neighbors.item_sessions"] + 10**6
    short = dict(sections)
    short["neighbors.recency"] = sections["neighbors.recency"][:-1]
    cases = {
        "missing section 'neighbors.own_session'": {k: v for k, v in sections.items() if k != "neighbors.own_session"},
        "corrupted: neighbors: item session out of range": out_of_range,
        "corrupted: neighbors: one recency per session": short,
        "bad session-start neighbours setting \\[1.0, 100, 500\\]": with_meta(session_start_neighbors=[1.0, 100, 500]),
        "bad session-start neighbours setting \\[0.5, 100\\]": with_meta(session_start_neighbors=[0.5, 100]),
        "bad session-start neighbours setting \\[0.5, 0, 500\\]": with_meta(session_start_neighbors=[0.5, 0, 500]),
        "bad session-start neighbours setting \\[0.5, 100, 1099511627776\\]": with_meta(
            session_start_neighbors=[0.5, 100, 2**40]),
    }
    for i, (message, content) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.hrnn"
        model_file._write_atomic(bad, content)
        with pytest.raises(ValueError, match=f"^{str(bad)}.*{message}"):
            hrnn.load(bad)
    # A file without the setting (or from before it) answers from the network alone.
    plain = tmp_path / "plain.hrnn"
    meta.pop("session_start_neighbors")
    model_file._write_atomic(plain, {**{k: v for k, v in sections.items() if not k.startswith("neighbors.")},
                                     "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)})
    old = hrnn.load(plain)
    assert old.session_start_neighbors_ == 0.0 and old._engine.get_neighbors()[3] == 0.0
    m._engine.clear_neighbors()
    np.testing.assert_array_equal(old.recommend_batch(users, 10, new_session=True)[0],
                                  m.recommend_batch(users, 10, new_session=True)[0])


def test_auto_chooses_the_share_on_the_first_events_of_last_sessions(log):
    """With every other setting given, nothing is held out of training (no epoch has fewer
    events) and the share is chosen after the last epoch, on the first events of the
    multi-session users' last sessions, as ``choose_neighbors`` ranks them."""
    settings = dict(transition_weight=0.7, session_start_mix=0.5, session_start_sources=False, **FIT)
    m = hrnn.HRNN(**settings).fit(log)
    fixed = hrnn.HRNN(session_start_neighbors=0.25, **settings).fit(log)
    assert [h["events"] for h in m.history_] == [h["events"] for h in fixed.history_]
    for name, value in m.get_weights().items():
        np.testing.assert_array_equal(value, fixed.get_weights()[name], err_msg=name)
    scores = m.session_start_neighbors_scores_
    assert list(scores) == list(hv.NEIGHBOR_BETAS) and all(0 <= s <= 1 for s in scores.values())
    assert m.session_start_neighbors_ in hv.NEIGHBOR_BETAS
    assert m._engine.get_neighbors()[3] == pytest.approx(m.session_start_neighbors_)
    if m.session_start_neighbors_ == 0.0:  # no index held for nothing
        assert len(m._engine.get_neighbors()[0]["session_items"]) == 0
    users = hv.first_event_users(m._log, np.ones(m._log.n_users, bool), np.random.default_rng(FIT["random_state"]))
    split = hv.validation_split(m._log, users)
    m._engine.set_neighbors(neighbor_index(split[0], len(m.item_ids_)), NEIGHBORS_K, NEIGHBORS_SAMPLE, 0.0)
    again = hv.choose_neighbors(m._engine, split, (0.5, False), 1)
    assert again == (m.session_start_neighbors_, pytest.approx(scores, abs=1e-12))
    # validation=True chooses on its held-out sessions after the last epoch.
    v = hrnn.HRNN(transition_weight=0.7, **FIT).fit(log, validation=True)
    assert list(v.session_start_neighbors_scores_) == list(hv.NEIGHBOR_BETAS)
    # One epoch: the weight and the mix have nothing held out to be chosen on; the share is chosen.
    one = hrnn.HRNN(**{**FIT, "epochs": 1}).fit(log)
    assert one.transition_weight_scores_ == {} and list(one.session_start_neighbors_scores_) == list(hv.NEIGHBOR_BETAS)


def test_choosing_the_share_changes_training_by_its_first_events_only(log, monkeypatch):
    """Apart from its first events, which are no training targets until it is chosen (the next
    test), "auto" trains the same model, to the bit, as a fixed share, and chooses the transition
    weight and the session-start mix the same."""
    monkeypatch.setattr("hrnn._training.without_first_events", lambda arrays, w, *rest: w)
    auto = hrnn.HRNN(**FIT).fit(log)
    fixed = hrnn.HRNN(session_start_neighbors=0.25, **FIT).fit(log)
    assert auto.session_start_neighbors_scores_ and not fixed.session_start_neighbors_scores_
    for name, value in auto.get_weights().items():
        np.testing.assert_array_equal(value, fixed.get_weights()[name], err_msg=name)
    assert auto.transition_weight_scores_ == fixed.transition_weight_scores_
    assert (auto.session_start_mix_, auto.session_start_sources_) == (fixed.session_start_mix_,
                                                                    fixed.session_start_sources_)


@pytest.mark.parametrize("bad, error", [(1.0, ValueError), (-0.1, ValueError), ("x", ValueError),
                                        (True, TypeError), (float("nan"), ValueError)])
def test_bad_shares_are_refused(bad, error):
    with pytest.raises(error, match="session_start_neighbors"):
        hrnn.HRNN(session_start_neighbors=bad)
    assert hrnn.HRNN().get_params()["session_start_neighbors"] == "auto"


def test_at_most_first_events_max_users_choose(model, monkeypatch):
    log = model._log
    everyone = np.ones(log.n_users, bool)
    rng = np.random.default_rng(0)
    full = hv.first_event_users(log, everyone, rng)
    n_sessions = np.add.reduceat(log.new_session.astype(np.int64), log.offsets[:-1])
    np.testing.assert_array_equal(full, n_sessions >= 2)
    assert full.sum() > 5
    monkeypatch.setattr(hv, "FIRST_EVENTS_MAX", 5)
    few = hv.first_event_users(log, everyone, rng)
    assert few.sum() == 5 and not np.any(few & ~full)
    assert hv.first_event_users(log, n_sessions < 2, rng) is None
    # With validation too: FIRST_EVENTS_MAX of its held-out sessions, whole, choose.
    v = hrnn.HRNN(transition_weight=0.7, **FIT)
    seen = []
    monkeypatch.setattr(hv, "choose_neighbors", lambda e, sp, *a: seen.append(sp) or (0.0, {}))
    monkeypatch.setattr("hrnn._training.choose_neighbors", hv.choose_neighbors)
    v.fit(make_query_log(), validation=True)
    held = hv.validation_split(v._log, np.ones(v._log.n_users, bool))[1]
    test = seen[0][1]
    lengths, full_lengths = np.diff(test[0]), np.diff(held[0])
    assert (lengths > 0).sum() == 5 and np.all((lengths == 0) | (lengths == full_lengths))
    starts = held[0][:-1][lengths > 0]
    np.testing.assert_array_equal(test[1][test[0][:-1][lengths > 0]], held[1][starts])
    assert len(test[1]) == lengths.sum() == len(test[2]) == len(test[3])


def test_the_last_session_follows_session_ids_in_fit_real_time_and_files(tmp_path):
    """Votes are for the user's last session as fit's sessions end, at a SESSION_ID change too:
    each gap-session of this log holds two ids, so the gaps alone would take both halves."""
    df = make_query_log().sort_values(["USER_ID", "TIMESTAMP"], kind="stable")
    gap_session = df.groupby("USER_ID")["TIMESTAMP"].transform(lambda t: (t.diff() > 1800).cumsum())
    half = df.groupby(["USER_ID", gap_session]).cumcount() >= 2
    df = df.assign(SESSION_ID=gap_session.astype(str) + "-" + half.astype(int).astype(str))
    m = hrnn.HRNN(session_start_neighbors=BETA, transition_weight=0.7, **FIT).fit(df)
    log = m._log
    assert log.new_session.sum() > np.r_[True, np.diff(log.timestamps) > 1800].sum()  # the ids cut more
    index, k, sample, beta = m._engine.get_neighbors()
    starts = np.flatnonzero(log.new_session)
    sessions = [list(log.items[a:b]) for a, b in zip(starts, np.r_[starts[1:], len(log.items)])]
    ends = [log.timestamps[b - 1] for b in np.r_[starts[1:], len(log.items)]]
    users = list(log.user_ids[:12])

    def check(model, current, own):
        model._engine.clear_neighbors()
        net = all_scores(model, users, new_session=True)
        model._engine.set_neighbors(index, k, sample, beta)
        _, scores = model.recommend_batch(users, len(model.item_ids_), new_session=True)
        for r, uid in enumerate(users):
            want = np.sort(mixture(net[r], reference_votes(sessions, ends, current[uid], own=own[uid]), BETA))[::-1]
            np.testing.assert_allclose(scores[r], want, rtol=1e-4, atol=1e-4, err_msg=str(uid))

    last = {uid: int(index["own_session"][u]) for u, uid in enumerate(log.user_ids)}
    check(m, {uid: sessions[last[uid]] for uid in users}, last)
    path = tmp_path / "m.hrnn"
    m.save(path)
    check(hrnn.load(path), {uid: sessions[last[uid]] for uid in users}, last)
    # A file from before the store kept session starts: the gaps alone cut the last session.
    sections = {key: np.array(v) for key, v in model_file.read_sections(path).items()}
    meta = json.loads(sections["meta"].tobytes().decode("utf-8"))
    old = tmp_path / "old.hrnn"
    model_file._write_atomic(old, {key: v for key, v in sections.items() if key != "users.session_start"})
    with pytest.raises(ValueError, match="missing section 'users.session_start'"):
        hrnn.load(old)
    meta.pop("user_session_starts")
    sections["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    model_file._write_atomic(old, {key: v for key, v in sections.items() if key != "users.session_start"})
    hist = histories(m, df)
    check(hrnn.load(old), {uid: split_sessions(*hist[uid])[0][-1] for uid in users}, last)
    lengths = np.diff(sections["users.history_offsets"])
    marked = np.frombuffer(json.dumps({**meta, "user_session_starts": True}).encode(), np.uint8)
    for bad in (lengths, np.full_like(lengths, -2), lengths[:-1] * 0):
        model_file._write_atomic(old, {**sections, "meta": marked, "users.session_start": bad.astype(np.int64)})
        with pytest.raises(ValueError, match="session.start"):
            hrnn.load(old)
    model_file._write_atomic(old, {**sections, "meta": np.frombuffer(
        json.dumps({**meta, "user_session_starts": 1}).encode(), np.uint8)})
    with pytest.raises(ValueError, match="corrupted: bad user_session_starts 1"):
        hrnn.load(old)
    # In real time: a new id within the gap starts a session of its own (the old one a neighbour now).
    item = m.item_ids_[0]
    for uid in users:
        t = float(hist[uid][1][-1]) + 10.0
        m.put_events(uid, [item, item], [t, t + 1], session_id=["new", "new"])
    check(m, {uid: [m._item_index()[item]] * 2 for uid in users}, {uid: None for uid in users})


def test_a_fitted_session_continued_past_the_vote_window_is_not_its_own_neighbour(model, log, tmp_path):
    """Votes match a session's last 1,000 events; a session that began in fit and went on in real
    time for more than that is still the user's last training session, never its own neighbour."""
    sessions, ends, last = training_sessions(model, log)
    uid = sorted(histories(model, log))[2]
    items, ts = histories(model, log)[uid]
    fitted_part = split_sessions(items, ts)[0][-1]
    more = [fitted_part[i % len(fitted_part)] for i in range(1005)]  # its items again, within the gap
    model.save(tmp_path / "m.hrnn")
    m = hrnn.load(tmp_path / "m.hrnn")  # (the module's model stays as it was)
    m.put_events(uid, [m.item_ids_[i] for i in more], ts[-1] + 1.0 + np.arange(len(more)))
    net = all_scores(m, [uid], new_session=True)[0]
    m._engine.set_neighbors(*back_index(model))
    votes = reference_votes(sessions, ends, more[-1000:], own=last[uid])
    assert votes != reference_votes(sessions, ends, more[-1000:])  # it would vote otherwise
    np.testing.assert_allclose(all_scores(m, [uid], new_session=True)[0], mixture(net, votes, BETA),
                               rtol=1e-4, atol=1e-4)


def test_an_old_files_session_starts_follow_the_gaps():
    offsets = np.array([0, 0, 3, 5])
    ts = np.array([0.0, 10.0, 5000.0, 6000.0, 6001.0])
    assert model_file._gap_session_starts(offsets, ts, 1800.0).tolist() == [-1, 2, 0]
    assert model_file._gap_session_starts(offsets, ts, 1e9).tolist() == [-1, 0, 0]
    # Offsets that are no CSR of the history: the user store reports them, not this.
    assert model_file._gap_session_starts(np.array([0, 4, 3]), ts, 1800.0).tolist() == [-1, -1]


def test_the_shares_first_events_are_no_targets_until_it_is_chosen():
    """Chosen with the weight after half the epochs, the share's first events (the first of each
    multi-session user's last session) weigh 0 until then; a user whose last session the weight
    holds out keeps its weights (that session is not in the first half's events)."""
    offsets = np.array([0, 5, 9, 12], np.int64)
    new = np.array([1, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0], np.uint8)  # last sessions at 2, 8 and 9
    arrays = (offsets, np.zeros(12, np.int32), np.arange(12.0), new)
    everyone = np.ones(3, bool)
    np.testing.assert_array_equal(hv.without_first_events(arrays, None, everyone, offsets),
                                  np.r_[1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1])  # user 2 has one session
    w = np.full(12, 0.5, np.float32)
    got = hv.without_first_events(arrays, w, np.array([False, True, True]), offsets)
    np.testing.assert_array_equal(got, np.r_[np.full(8, 0.5), 0.0, np.full(3, 0.5)])
    assert w.min() == 0.5  # the caller's weights stay as they were
    longer = offsets + np.r_[0, 2, 2, 2]  # user 0's last session is held out of these events
    np.testing.assert_array_equal(hv.without_first_events(arrays, None, everyone, longer), np.r_[np.ones(8), 0, 1, 1, 1])
    assert hrnn.data.last_flags(new, offsets).tolist() == [2, 8, 9]
    assert hrnn.data.last_flags(np.zeros(3, np.uint8), np.array([0, 3, 3])).tolist() == [0, 0]  # none flagged


def test_the_shares_first_events_are_held_until_the_rejoin(monkeypatch):
    """With the weight chosen at the rejoin, the first half trains on every event but the first
    events of the share's users' last sessions that the weight does not hold out; the second half
    trains on all of them. A fixed weight and mix (the share chosen after training) hold nothing."""
    from hrnn import _training

    monkeypatch.setattr(hv, "AUTO_HOLDOUT_MIN", 200)  # the weight holds out a few users, not all
    real, seen = _training._epochs, []

    def spy(model, engine, arrays, w, *rest):
        rejoin = rest[-1]
        halves = lambda: seen.append(rejoin()) or seen[-1]  # noqa: E731
        seen.append((arrays, w, rest[0]))
        return real(model, engine, arrays, w, *rest[:-1], halves if rejoin else None)

    monkeypatch.setattr(_training, "_epochs", spy)
    log = make_query_log()
    m = hrnn.HRNN(**FIT).fit(log)
    full = log_arrays(m)
    (first, w, train_users), (second, w2) = seen
    offsets, full_offsets = first[0], full[0]
    trained = np.isin(np.arange(m._log.n_users), train_users)
    users = hv.first_event_users(m._log, trained, np.random.default_rng(FIT["random_state"]))
    kept = np.diff(offsets) == np.diff(full_offsets)
    starts = hrnn.data.last_session_starts(m._log)
    expect = (starts - full_offsets[:-1] + offsets[:-1])[users & kept & (starts > full_offsets[:-1])]
    assert 0 < len(expect) < users.sum()  # some users held by the weight, others by the share
    np.testing.assert_array_equal(np.flatnonzero(w == 0), np.sort(expect))
    assert second[0] is full[0] and (w2 is None or w2.min() > 0)
    seen.clear()
    hrnn.HRNN(**{**FIT, "transition_weight": 0.5, "session_start_mix": 0.5, "session_start_sources": True}).fit(log)
    assert len(seen) == 1 and (seen[0][1] is None or seen[0][1].min() > 0)
