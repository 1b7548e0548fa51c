"""transition_weight="auto": the prior's weight is chosen on users' last sessions before the model has
trained on them, in one ranking pass over AUTO_WEIGHTS (docs/engine.md, "Choosing the weight")."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hrnn
from hrnn import _validation as hv
from hrnn.synthetic import make_log

FAST = dict(hidden_dimension=32, n_sample=32, batch_size=8, bptt=8, random_state=0, num_threads=1,
            show_progress=False, max_user_history_length_percentile=1.0)


@pytest.fixture(scope="module")
def log():
    # ~12 sessions per user and many repeats: the prior matters and every user can be validated on
    return make_log(n_events=4000, n_users=40, n_items=150, repeat=0.4, cover_items=True, seed=2).drop_duplicates()


def held_out_split(model):
    log = model._log
    return hv.validation_split(log, np.ones(log.n_users, dtype=bool))


def manual_scores(model, split, metric):
    """Each weight's validation score, one fixed weight at a time on the fitted engine."""
    e, t = model._engine, model._engine.get_transitions()
    out = {}
    for w in hv.AUTO_WEIGHTS:
        e.set_transitions(w, t["offsets"], t["successors"], t["counts"], t["out"], model.popularity_,
                          t["repeat_curve"])
        out[w] = hv.validation_scores(e, split, 1)["val_" + metric]
    return out


@pytest.mark.parametrize("metric", ["recall@20", "mrr@20"])
def test_auto_with_validation_chooses_the_best_weight_on_the_held_out_sessions(log, metric):
    m = hrnn.HRNN(epochs=2, **FAST).fit(log, validation=True, metric=metric)
    scores = m.transition_weight_scores_
    assert list(scores) == list(hv.AUTO_WEIGHTS)
    # The fallback, or a weight that beat it clearly (the best, or one within the noise of the best).
    assert m.transition_weight_ == hv.AUTO_FALLBACK or scores[m.transition_weight_] > scores[hv.AUTO_FALLBACK]
    assert len(set(scores.values())) > 1  # the weight matters on this log
    assert m._engine.get_transitions()["weight"] == pytest.approx(m.transition_weight_)
    assert scores == pytest.approx(manual_scores(m, held_out_split(m), metric), abs=1e-12)


def test_the_weight_is_chosen_with_the_events_clustered_by_user(log, monkeypatch):
    m = hrnn.HRNN(epochs=2, **FAST).fit(log, validation=True)
    split = held_out_split(m)
    seen = {}
    real = hv._choose
    monkeypatch.setattr(hv, "_choose", lambda *a, **kw: seen.setdefault("args", a) and real(*a, **kw))
    chosen, scores = hv.choose_transition_weight(m._engine, split, "recall@20", 1, hv.AUTO_FALLBACK)
    users = seen["args"][4]
    lengths = np.diff(split[1][0])
    assert len(users) == len(seen["args"][1][0]) == lengths.sum()
    np.testing.assert_array_equal(users, np.repeat(np.arange(len(lengths)), lengths))
    assert scores == pytest.approx(manual_scores(m, split, "recall@20"), abs=1e-12)


@pytest.mark.parametrize("epochs", [2, 5])
def test_auto_holds_the_last_sessions_out_of_the_first_half_of_the_epochs(log, epochs):
    auto = hrnn.HRNN(epochs=epochs, **FAST).fit(log)
    fixed = hrnn.HRNN(epochs=epochs, transition_weight=0.5, session_start_mix=0.25, session_start_sources=False, **FAST).fit(log)
    e_auto = [h["events"] for h in auto.history_]
    e_fixed = [h["events"] for h in fixed.history_]
    assert e_fixed == [e_fixed[0]] * epochs
    half = epochs // 2
    assert e_auto == [e_auto[0]] * half + [e_fixed[0]] * (epochs - half) and e_auto[0] < e_fixed[0]
    split = held_out_split(auto)
    n_held = int(np.diff(split[1][0]).sum())
    assert e_fixed[0] - e_auto[0] == n_held  # every held-out event is a target of the last epoch only
    assert auto.transition_weight_ in hv.AUTO_WEIGHTS
    assert list(auto.transition_weight_scores_) == list(hv.AUTO_WEIGHTS)
    assert fixed.transition_weight_ == 0.5 and fixed.transition_weight_scores_ == {}
    # the final prior counts every event, like a fixed weight's
    t_auto, t_fixed = auto._engine.get_transitions(), fixed._engine.get_transitions()
    for key in ("offsets", "successors", "counts", "out", "repeat_curve"):
        np.testing.assert_array_equal(t_auto[key], t_fixed[key])
    assert t_auto["weight"] == pytest.approx(auto.transition_weight_)


def test_auto_falls_back_without_sessions_to_choose_on(log):
    one_epoch = hrnn.HRNN(epochs=1, **FAST).fit(log)
    assert one_epoch.transition_weight_ == hv.AUTO_FALLBACK and one_epoch.transition_weight_scores_ == {}
    single = log.assign(TIMESTAMP=log.groupby("USER_ID").cumcount() + 1_600_000_000)  # one session each
    m = hrnn.HRNN(epochs=2, **FAST).fit(single)
    assert m.transition_weight_ == hv.AUTO_FALLBACK and m.transition_weight_scores_ == {}
    assert len({h["events"] for h in m.history_}) == 1  # nothing held out


def test_a_log_without_repeats_falls_back_to_its_own_weight(log):
    once = log.drop_duplicates(["USER_ID", "ITEM_ID"])  # nobody consumes an item twice
    single = once.assign(TIMESTAMP=once.groupby("USER_ID").cumcount() + 1_600_000_000)
    m = hrnn.HRNN(epochs=2, **FAST).fit(single)
    assert not np.any(m._engine.get_transitions()["repeat_curve"])
    assert m.transition_weight_ == hv.AUTO_FALLBACK_NO_REPEATS != hv.AUTO_FALLBACK
    curve = np.zeros(200, np.float32)
    assert hv.auto_fallback((None,) * 5 + (curve,)) == hv.AUTO_FALLBACK_NO_REPEATS
    curve[7] = 0.01
    assert hv.auto_fallback((None,) * 5 + (curve,)) == hv.AUTO_FALLBACK
    assert hv.auto_fallback(None) == hv.auto_fallback((None,) * 5 + (curve[:0],)) == hv.AUTO_FALLBACK


def test_zero_weight_and_the_model_file_keep_the_choice(log, tmp_path):
    m = hrnn.HRNN(epochs=2, **FAST).fit(log)
    m.save(tmp_path / "m.hrnn")
    back = hrnn.load(tmp_path / "m.hrnn")
    assert back.transition_weight == "auto" and back.transition_weight_ == m.transition_weight_
    users = m.user_ids_[:5]
    np.testing.assert_array_equal(back.recommend_batch(users, 10)[0], m.recommend_batch(users, 10)[0])
    off = hrnn.HRNN(epochs=1, transition_weight=0.0, **FAST).fit(log)
    assert off.transition_weight_ == 0.0
    off.save(tmp_path / "off.hrnn")
    assert hrnn.load(tmp_path / "off.hrnn").transition_weight_ == 0.0


@pytest.mark.parametrize("bad, error", [("Auto", ValueError), ("", ValueError), (-0.5, ValueError),
                                        (11.0, ValueError), (None, TypeError), (True, TypeError)])
def test_bad_weights_are_named(bad, error):
    with pytest.raises(error, match="transition_weight"):
        hrnn.HRNN(transition_weight=bad)
    assert hrnn.HRNN().get_params()["transition_weight"] == "auto"
    assert hrnn.HRNN(transition_weight="auto").clone().transition_weight == "auto"


def test_auto_holds_out_random_users_up_to_the_budget(log, monkeypatch):
    everyone = hrnn.HRNN(epochs=2, **FAST).fit(log)
    all_held = everyone.history_[1]["events"] - everyone.history_[0]["events"]
    monkeypatch.setattr(hv, "AUTO_HOLDOUT_MIN", 150)
    monkeypatch.setattr(hv, "AUTO_HOLDOUT_SHARE", 0.0)
    runs = [hrnn.HRNN(epochs=2, **FAST).fit(log) for _ in range(2)]
    held = [m.history_[1]["events"] - m.history_[0]["events"] for m in runs]
    assert held[0] == held[1]  # the same users for the same random_state
    assert 150 <= held[0] < all_held
    other = hrnn.HRNN(epochs=2, **{**FAST, "random_state": 1}).fit(log)
    assert other.history_[1]["events"] - other.history_[0]["events"] >= 150
    # The share's budget is capped (on large logs every held-out event costs a catalogue scan).
    monkeypatch.setattr(hv, "AUTO_HOLDOUT_SHARE", 1.0)
    monkeypatch.setattr(hv, "AUTO_HOLDOUT_MAX", 150)
    capped = hrnn.HRNN(epochs=2, **FAST).fit(log)
    assert capped.history_[1]["events"] - capped.history_[0]["events"] == held[0]


def test_items_seen_only_in_held_out_sessions_train_like_the_others(log):
    """They join training in the second half of the epochs: their sampling probability (the logQ
    correction of their logits) must already be counted, or their loss explodes."""
    last = log.groupby("USER_ID").tail(1)
    own = last.assign(ITEM_ID=10_000 + last["USER_ID"], TIMESTAMP=last["TIMESTAMP"] + 30)
    data = pd.concat([log, own]).sort_values(["USER_ID", "TIMESTAMP"], kind="stable")
    for epochs in (2, 4):
        m = hrnn.HRNN(epochs=epochs, **FAST).fit(data)
        losses = [h["loss"] for h in m.history_]
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def choose_weight(model, engine, split, metric, fallback):
    """``split=None``: every ranked event is its own user's (independent units)."""
    if split is None:
        split = ((), (np.arange(engine.rows.shape[1] + 1),))
    weight, model.transition_weight_scores_ = hv.choose_transition_weight(engine, split, metric, 1, fallback)
    return weight


class _Ranks:
    """An engine stand-in whose next_item_ranks returns fixed ranks, one row per weight."""

    def __init__(self, rows):
        self.rows = np.asarray(rows)

    def next_item_ranks(self, *arrays, num_threads, weights):
        assert list(weights) == list(hv.AUTO_WEIGHTS)
        return self.rows


@pytest.mark.parametrize("metric", ["recall@20", "mrr@20"])
def test_a_weight_other_than_the_fallback_must_win_clearly(metric):
    m, n = hrnn.HRNN(), 1000
    fallback = hv.AUTO_WEIGHTS.index(hv.AUTO_FALLBACK)
    base = np.where(np.arange(n) < 100, 1, 50)  # the fallback finds 10% of the events first
    clear = [base] * len(hv.AUTO_WEIGHTS)
    clear[5] = np.where(np.arange(n) < 300, 1, 50)  # weight 4 finds 30%
    assert choose_weight(m, _Ranks(clear), None, metric, hv.AUTO_FALLBACK) == 4.0
    assert m.transition_weight_scores_[4.0] == pytest.approx(0.3)
    # The same 200 events more, all in two users' sessions (events 100-199 and 200-299): two users
    # are too few to tell from noise.
    lumped = ((), (np.r_[np.arange(101), 200, np.arange(300, n + 1)],))
    assert choose_weight(m, _Ranks(clear), lumped, metric, hv.AUTO_FALLBACK) == hv.AUTO_FALLBACK
    noise = [base] * len(hv.AUTO_WEIGHTS)
    noise[3] = np.where(np.arange(n) < 101, 1, 50)  # weight 1 finds one event more
    assert choose_weight(m, _Ranks(noise), None, metric, hv.AUTO_FALLBACK) == hv.AUTO_FALLBACK
    assert max(m.transition_weight_scores_, key=m.transition_weight_scores_.get) == 1.0
    worse = [base] * len(hv.AUTO_WEIGHTS)
    worse[fallback] = np.where(np.arange(n) < 50, 1, 50)  # every other weight is clearly better
    assert choose_weight(m, _Ranks(worse), None, metric, hv.AUTO_FALLBACK) != hv.AUTO_FALLBACK
    # The same noise around the other fallback: weight 1 is kept, not 0.5.
    assert choose_weight(m, _Ranks(noise), None, metric, 1.0) == 1.0
    noise[2] = np.where(np.arange(n) < 101, 1, 50)
    noise[3] = base
    assert choose_weight(m, _Ranks(noise), None, metric, 1.0) == 1.0


def test_weights_within_the_noise_of_the_best_are_told_apart_by_the_other_metric():
    m, n = hrnn.HRNN(), 1000
    i4, i8 = hv.AUTO_WEIGHTS.index(4.0), hv.AUTO_WEIGHTS.index(8.0)
    base = np.where(np.arange(n) < 100, 10, 50)  # the fallback finds 10% of the events, at rank 10
    ranks = [base] * len(hv.AUTO_WEIGHTS)
    ranks[i4] = np.where(np.arange(n) < 301, 10, 50)  # weight 4: one hit more than 8 ...
    ranks[i8] = np.where(np.arange(n) < 300, 2, 50)   # ... but weight 8 ranks its hits higher
    assert choose_weight(m, _Ranks(ranks), None, "recall@20", hv.AUTO_FALLBACK) == 8.0
    assert max(m.transition_weight_scores_, key=m.transition_weight_scores_.get) == 4.0
    # Chosen by MRR@20, recall breaks the tie the other way round.
    ranks[i4] = np.where(np.arange(n) < 400, 3, 50)  # MRR 0.133, Recall 0.4
    ranks[i8] = np.where(np.arange(n) < 280, 2, 50)  # MRR 0.140 (within the noise), Recall 0.28
    assert choose_weight(m, _Ranks(ranks), None, "mrr@20", hv.AUTO_FALLBACK) == 4.0
    # A weight clearly behind the best on the metric is not a candidate, whatever its MRR.
    ranks[i4] = np.where(np.arange(n) < 400, 10, 50)
    ranks[i8] = np.where(np.arange(n) < 200, 1, 50)
    assert choose_weight(m, _Ranks(ranks), None, "recall@20", hv.AUTO_FALLBACK) == 4.0


def test_clear_evidence_on_the_other_metric_alone_replaces_the_fallback():
    """A weight that only ranks the same hits higher (taobao's 8 against 0.5) wins by MRR@20 alone,
    unless it is clearly worse on the fit's metric; the mix and the share do not take that path."""
    m, n = hrnn.HRNN(), 1000
    i8 = hv.AUTO_WEIGHTS.index(8.0)
    base = np.where(np.arange(n) < 100, 10, 50)  # the fallback finds 10% of the events, at rank 10
    ranks = [base] * len(hv.AUTO_WEIGHTS)
    ranks[i8] = np.where(np.arange(n) < 100, 1, 50)  # the same hits, first
    assert choose_weight(m, _Ranks(ranks), None, "recall@20", hv.AUTO_FALLBACK) == 8.0
    assert m.transition_weight_scores_[8.0] == m.transition_weight_scores_[hv.AUTO_FALLBACK] == 0.1
    ranks[i8] = np.where(np.arange(n) < 60, 1, 50)  # higher, but 40 hits fewer: clearly worse on recall
    assert choose_weight(m, _Ranks(ranks), None, "recall@20", hv.AUTO_FALLBACK) == hv.AUTO_FALLBACK
    hits = [(base <= 20).astype(float), (np.where(np.arange(n) < 100, 1, 50) <= 20).astype(float)]
    mrr = [np.where(base <= 20, 1 / base, 0.0), np.where(np.arange(n) < 100, 1.0, 0.0)]
    assert hv._choose(("fallback", "higher"), hits, mrr, "fallback")[0] == "fallback"
    assert hv._choose(("fallback", "higher"), hits, mrr, "fallback", either=True)[0] == "higher"
