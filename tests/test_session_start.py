"""Queries that start a session (docs/engine.md, "Session-start queries"): ``new_session=True`` scores
from (1 - mix) h + mix tanh(W0 GRU_u(h, u) + b0), with a transition prior with or without source
items; ``session_start_mix`` / ``session_start_sources="auto"`` choose them on the held-out
sessions' first events."""
from __future__ import annotations

import json

import numpy as np
import pytest

import hrnn
import reference_query as ref
from hrnn import _validation as hv, model_file
from hrnn.baselines import Markov, SessionKNN
from query_cases import FIT, all_scores, fitted, histories, make_query_log, params64, prior_of


@pytest.fixture(scope="module")
def log():
    return make_query_log()


@pytest.fixture(scope="module")
def model(log):
    return fitted(log)


@pytest.mark.parametrize("mix, sources", [(0.0, False), (0.4, False), (1.0, False), (0.4, True)])
def test_session_start_scores_equal_the_reference(model, log, mix, sources):
    hist = histories(model, log)
    users = sorted(hist)[:10]
    p, prior = params64(model), prior_of(model, hist)
    e = model._engine
    e.session_start_mix, e.session_start_sources = mix, sources
    try:
        got = all_scores(model, users, new_session=True)
    finally:
        e.session_start_mix, e.session_start_sources = model.session_start_mix_, model.session_start_sources_
    for r, uid in enumerate(users):
        u, h = model.user_state(uid)
        v = ref.session_start_state(p, u, h, mix)
        want = ref.query_scores(p, v, *hist[uid], prior, sources=sources)
        np.testing.assert_allclose(got[r], want, rtol=1e-4, atol=1e-4)
        # The prior without sources differs from the one with them (the items' successors).
        assert np.abs(ref.query_scores(p, v, *hist[uid], prior, sources=not sources) - want).max() > 1e-2


def test_continuing_queries_are_unchanged(model, log):
    hist = histories(model, log)
    users = sorted(hist)[:5]
    p, prior = params64(model), prior_of(model, hist)
    got = all_scores(model, users)
    for r, uid in enumerate(users):
        np.testing.assert_allclose(got[r], ref.query_scores(p, model.user_state(uid)[1], *hist[uid], prior),
                                   rtol=1e-4, atol=1e-4)
    u = users[0]
    np.testing.assert_array_equal(model.recommend(u, 10)[0], model.recommend(u, 10, new_session=False)[0])


def test_batch_flags_per_user_equal_single_queries(model):
    users = list(model.user_ids_[:6])
    flags = [True, False, True, True, False, False]
    ids, scores = model.recommend_batch(users, 7, new_session=flags)
    for r, (uid, flag) in enumerate(zip(users, flags)):
        one_ids, one_scores = model.recommend(uid, 7, new_session=flag)
        np.testing.assert_array_equal(ids[r], one_ids)
        np.testing.assert_allclose(scores[r], one_scores, rtol=1e-6)
    all_new = model.recommend_batch(users, 7, new_session=True)[0]
    np.testing.assert_array_equal(all_new, model.recommend_batch(users, 7, new_session=np.ones(6, bool))[0])
    assert not np.array_equal(all_new, model.recommend_batch(users, 7)[0])
    # An unknown user gets the popular items either way.
    np.testing.assert_array_equal(model.recommend("nobody", 5, new_session=True)[0], model.recommend("nobody", 5)[0])


def split_arrays(model, log, n_users=12, n_test=3):
    """(prefix, test) engine arrays: each user's last n_test events held out, the first of them
    flagged as a session start (the gap rule elsewhere), and the users' histories."""
    hist = histories(model, log)
    users = sorted(hist)[:n_users]
    parts = []
    for uid in users:
        items, ts = hist[uid]
        new = np.r_[1, np.diff(ts) > 1800].astype(np.uint8)
        new[len(items) - n_test] = 1
        parts.append((np.asarray(items, np.int32), np.asarray(ts, np.float64), new))

    def arrays(take):
        chosen = [(i[take(len(i))], t[take(len(i))], n[take(len(i))]) for i, t, n in parts]
        offsets = np.concatenate([[0], np.cumsum([len(c[0]) for c in chosen])]).astype(np.int64)
        return (offsets, *(np.concatenate([c[k] for c in chosen]) for k in range(3)))

    return (arrays(lambda n: slice(0, n - n_test)), arrays(lambda n: slice(n - n_test, n))), parts


def test_validation_ranks_of_first_events_use_the_query_scores(model, log):
    (prefix, test), parts = split_arrays(model, log)
    options = [(0.0, False), (0.5, False), (1.0, False), (0.5, True)]
    ranks = model._engine.session_start_ranks(*prefix, *test, options=options, num_threads=2)
    assert ranks.shape == (4, len(parts))
    p, prior = params64(model), prior_of(model, histories(model, log))
    checked = 0
    for k, (items, ts, new) in enumerate(parts):
        cut = len(items) - 3
        gaps = np.r_[0.0, np.diff(ts)].astype(np.float32)
        u, h = model._engine.advance(p["u0"].astype(np.float32), np.zeros(len(p["u0"]), np.float32), True,
                                     items[:cut], gaps[:cut], new[:cut])
        y = items[cut]
        for row, (mix, sources) in zip(ranks, options):
            v = ref.session_start_state(p, u, h, mix)
            scores = ref.query_scores(p, v, items[:cut].tolist(), ts[:cut], prior, sources=sources)
            if np.min(np.abs(np.delete(scores, y) - scores[y])) > 1e-3:  # no near-tie to round either way
                assert row[k] == 1 + np.sum(scores > scores[y])
                checked += 1
    assert checked >= 40
    # A user whose first test item is unknown (1), or without test events (2), ranks 0.
    t_off, t_items, t_ts, t_new = test
    items = t_items.copy()
    items[t_off[1]] = -1
    keep = np.ones(len(items), bool)
    keep[t_off[2]:t_off[3]] = False
    off = np.r_[0, np.cumsum(np.diff(t_off) * (np.arange(len(parts)) != 2))].astype(np.int64)
    ranks = model._engine.session_start_ranks(*prefix, off, items[keep], t_ts[keep], t_new[keep], options=[(0.5, False)])
    assert ranks[0, 1] == 0 and ranks[0, 2] == 0 and ranks[0, 0] > 0 and ranks[0, 3] > 0
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="mix"):
            model._engine.session_start_ranks(*prefix, *test, options=[(bad, False)])


def test_auto_chooses_the_mix_on_the_held_out_first_events(log):
    m = hrnn.HRNN(transition_weight=0.7, **FIT).fit(log, validation=True)
    scores = m.session_start_scores_
    assert list(scores) == [(mix, s) for s in (False, True) for mix in hv.START_MIXES]
    chosen = (m.session_start_mix_, m.session_start_sources_)
    fallback = hv.start_fallback(resumed=hv.resumes_visits(hv.validation_split(m._log, np.ones(m._log.n_users, bool))[0]))
    assert chosen == fallback or scores[chosen] > scores[fallback]
    assert (m._engine.session_start_mix, m._engine.session_start_sources) == chosen
    # The held-out sessions were never trained on, and the model keeps the table they were ranked with.
    split = hv.validation_split(m._log, np.ones(m._log.n_users, dtype=bool))
    again = hv.choose_session_start(m._engine, split, 1)
    assert again == (chosen, pytest.approx(scores, abs=1e-12))
    # A setting given is kept, the other one chosen.
    fixed = hrnn.HRNN(transition_weight=0.7, session_start_sources=True, **FIT).fit(log, validation=True)
    assert list(fixed.session_start_scores_) == [(mix, True) for mix in hv.START_MIXES]
    assert fixed.session_start_sources_ is True


def test_auto_holds_out_sessions_even_with_a_fixed_weight(log):
    auto = hrnn.HRNN(transition_weight=0.5, **FIT).fit(log)
    fixed = hrnn.HRNN(transition_weight=0.5, session_start_mix=0.5, session_start_sources=True, **FIT).fit(log)
    assert auto.history_[0]["events"] < auto.history_[1]["events"] == fixed.history_[0]["events"]
    assert len(auto.session_start_scores_) == 2 * len(hv.START_MIXES) and auto.transition_weight_scores_ == {}
    assert (fixed.session_start_mix_, fixed.session_start_sources_) == (0.5, True)
    assert fixed.session_start_scores_ == {}
    one_epoch = hrnn.HRNN(**{**FIT, "epochs": 1}).fit(log)
    log_arrays = one_epoch._log.offsets, one_epoch._log.items, one_epoch._log.timestamps, one_epoch._log.new_session
    assert (one_epoch.session_start_mix_, one_epoch.session_start_sources_) == hv.start_fallback(
        resumed=hv.resumes_visits(log_arrays))
    assert one_epoch.session_start_scores_ == {}


def test_the_fallback_follows_the_gap_between_sessions(log):
    """Sessions that resume within a day keep the prior's sources; new visits days later drop them."""
    def arrays(gap):  # two users, three sessions each, `gap` seconds apart
        ts = np.concatenate([np.r_[0, 60, 120, 120 + gap, 180 + gap, 180 + 2 * gap]] * 2).astype(float)
        new = np.tile([1, 0, 0, 1, 0, 1], 2).astype(np.uint8)
        return np.array([0, 6, 12]), np.zeros(12, np.int32), ts, new

    assert hv.resumes_visits(arrays(3 * 3600)) and not hv.resumes_visits(arrays(3 * 86400))
    assert hv.start_fallback(resumed=True) == hv.START_FALLBACK_RESUMED == (0.25, True)
    assert hv.start_fallback(resumed=False) == hv.START_FALLBACK_NEW_VISIT == (0.5, False)
    assert hv.start_fallback(0.75, "auto", resumed=False) == (0.75, False)
    assert hv.start_fallback("auto", True, resumed=False) == (0.5, True)
    # A log without a second session: the fallback of resumed visits (a continuing query's prior).
    offsets, items, ts, new = arrays(3600)
    assert hv.resumes_visits((offsets, items, ts, np.isin(np.arange(12), offsets[:-1]).astype(np.uint8)))
    # The same log with three days between sessions: nothing held out (one epoch), the new-visit fallback.
    df = log.sort_values(["USER_ID", "TIMESTAMP"], kind="stable")
    session = (df.groupby("USER_ID")["TIMESTAMP"].diff() > 1800).groupby(df["USER_ID"]).cumsum()
    far = hrnn.HRNN(**{**FIT, "epochs": 1}).fit(df.assign(TIMESTAMP=df["TIMESTAMP"] + session * 3 * 86400))
    assert (far.session_start_mix_, far.session_start_sources_) == (0.5, False)
    near = hrnn.HRNN(**{**FIT, "epochs": 1}).fit(df)
    assert (near.session_start_mix_, near.session_start_sources_) == (0.25, True)


class _Ranks:
    """An engine stand-in whose session_start_ranks returns fixed ranks, one row per option."""

    def __init__(self, rows):
        self.rows = np.asarray(rows)

    def session_start_ranks(self, *arrays, options, num_threads):
        assert options == [(mix, s) for s in (False, True) for mix in hv.START_MIXES]
        return self.rows


def test_a_choice_other_than_the_fallback_must_win_clearly():
    n = 400
    split = ((), (np.arange(n + 1),))  # one test event per user
    base = np.where(np.arange(n) < 40, 1, 50)
    rows = [base] * 10
    rows[7] = np.where(np.arange(n) < 120, 1, 50)  # mix 0.5 with sources finds 30% of the first events
    assert hv.choose_session_start(_Ranks(rows), split, 1)[0] == (0.5, True)
    rows[7] = np.where(np.arange(n) < 42, 1, 50)  # two more: noise
    start, scores = hv.choose_session_start(_Ranks(rows), split, 1)
    assert start == hv.START_FALLBACK_RESUMED and scores[(0.5, True)] == pytest.approx(42 / n)
    assert hv.choose_session_start(_Ranks(rows), split, 1, resumed=False)[0] == hv.START_FALLBACK_NEW_VISIT
    # Users without a test session do not count.
    split = ((), (np.r_[np.arange(n + 1), n],))
    rows = [np.r_[r, 0] for r in rows]
    assert hv.choose_session_start(_Ranks(rows), split, 1)[1][(0.5, True)] == pytest.approx(42 / n)


def test_the_model_file_keeps_the_choice(log, tmp_path):
    m = hrnn.HRNN(transition_weight=0.7, session_start_mix=0.75, session_start_sources=True, **FIT).fit(log)
    m.save(tmp_path / "m.hrnn")
    back = hrnn.load(tmp_path / "m.hrnn")
    assert (back.session_start_mix, back.session_start_sources) == (0.75, True)
    assert (back.session_start_mix_, back.session_start_sources_) == (0.75, True)
    users = list(m.user_ids_[:5])
    np.testing.assert_array_equal(back.recommend_batch(users, 10, new_session=True)[0],
                                  m.recommend_batch(users, 10, new_session=True)[0])
    auto = hrnn.HRNN(**FIT).fit(log)
    auto.save(tmp_path / "a.hrnn")
    assert hrnn.load(tmp_path / "a.hrnn").session_start_scores_ == pytest.approx(auto.session_start_scores_)


@pytest.mark.parametrize("bad, error", [("Auto", ValueError), (-0.25, ValueError), (1.5, ValueError),
                                        (None, TypeError), (True, TypeError), (float("nan"), ValueError)])
def test_bad_mixes_are_named(bad, error):
    with pytest.raises(error, match="session_start_mix"):
        hrnn.HRNN(session_start_mix=bad)
    assert hrnn.HRNN().get_params()["session_start_mix"] == "auto"


@pytest.mark.parametrize("bad, error", [("yes", ValueError), (1, TypeError), (None, TypeError)])
def test_bad_source_settings_are_named(bad, error):
    with pytest.raises(error, match="session_start_sources"):
        hrnn.HRNN(session_start_sources=bad)
    assert hrnn.HRNN().get_params()["session_start_sources"] == "auto"


def test_bad_flags_are_named(model, log):
    users = list(model.user_ids_[:3])
    baselines = [Markov().fit(log), SessionKNN().fit(log)]
    for est in [model] + baselines:
        for bad in ("yes", 1, None):
            with pytest.raises(TypeError, match="new_session"):
                est.recommend(users[0], 5, new_session=bad)
        with pytest.raises(ValueError, match="one flag per user"):
            est.recommend_batch(users, 5, new_session=[True, False])
        with pytest.raises(TypeError, match="new_session"):
            est.recommend_batch(users, 5, new_session=[True, "no", False])
        with pytest.raises(TypeError, match="new_session"):
            est.recommend_batch(users, 5, new_session="yes")
    for est in baselines:  # checked, and otherwise the same answers
        np.testing.assert_array_equal(est.recommend_batch(users, 5, new_session=[True, False, True])[0],
                                      est.recommend_batch(users, 5)[0])
        np.testing.assert_array_equal(est.recommend(users[0], 5, new_session=True)[0], est.recommend(users[0], 5)[0])


def test_files_from_before_session_starts_answer_as_before(model, tmp_path):
    """A file without the setting (the previous version's) answers new_session=True as any query."""
    model.save(tmp_path / "m.hrnn")
    sections = {k: np.array(v) for k, v in model_file.read_sections(tmp_path / "m.hrnn").items()}
    meta = json.loads(sections["meta"].tobytes().decode("utf-8"))
    del meta["session_start"]
    sections["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    model_file._write_atomic(tmp_path / "old.hrnn", sections)
    old = hrnn.load(tmp_path / "old.hrnn")
    assert (old.session_start_mix_, old.session_start_sources_) == (0.0, True)
    users = list(model.user_ids_[:8])
    np.testing.assert_array_equal(all_scores(old, users, new_session=True), all_scores(model, users))
