"""Query scores (docs/engine.md, "Repeat score" and "Transition prior"): what recommend_batch and the
validation ranks score equals the float64 reference, O h + bo + the repeat boosts + the transition
prior counted on the training sessions."""
from __future__ import annotations

import numpy as np
import pytest

import hrnn
import reference_query as ref
from hrnn._transitions import top_successors, transition_counts
from hrnn.synthetic import make_log
from query_cases import WEIGHT, all_scores, fitted, histories, make_query_log, params64, prior_of, sessions_of


@pytest.fixture(scope="module")
def log():
    return make_query_log()


@pytest.fixture(scope="module")
def model(log):
    return fitted(log)


def test_transition_table_is_counted_on_the_training_sessions(model, log):
    hist = histories(model, log)
    kept, out = ref.transition_table(sessions_of(hist), len(model.item_ids_))
    t = model._engine.get_transitions()
    assert t["weight"] == pytest.approx(WEIGHT)
    np.testing.assert_allclose(t["out"], out)
    curve = ref.repeat_curve([items for items, _ in hist.values()], 200)
    assert curve[:5].min() > 0  # the log repeats items
    np.testing.assert_allclose(t["repeat_curve"], curve, rtol=1e-6, atol=1e-7)
    for i in range(len(model.item_ids_)):
        a, b = t["offsets"][i], t["offsets"][i + 1]
        # the kept ones, in item order (a query merges them)
        assert list(zip(t["successors"][a:b].tolist(), t["counts"][a:b].tolist())) == sorted(kept[i])


def test_table_keeps_the_most_frequent_successors():
    # 0 -> 152 five times, 0 -> 1 three times, 0 -> 2 twice, 0 -> j once for 149 others: 100 are
    # kept, ties to the lower index.
    sessions = [[0, 152]] * 4 + [[0, 1]] * 3 + [[0, 2]] * 2 + [[0, j] for j in range(3, 153)]
    kept, out = ref.transition_table(sessions, 160)
    assert out[0] == 159 and len(kept[0]) == 100
    assert kept[0][:4] == [(152, 5), (1, 3), (2, 2), (3, 1)] and kept[0][-1] == (99, 1)
    items = np.concatenate([np.asarray(s) for s in sessions])
    new_session = np.tile([1, 0], len(sessions)).astype(np.uint8)
    counted = transition_counts(items, new_session, 160)
    offsets, succ, counts, total = top_successors(*counted)
    assert total[0] == 159
    assert list(zip(succ[offsets[0]:offsets[1]].tolist(), counts[offsets[0]:offsets[1]].tolist())) == kept[0]
    # The same successors in item order, the order the engine keeps them in.
    offsets, succ, counts, total = top_successors(*counted, by_count=False)
    assert total[0] == 159
    assert list(zip(succ[offsets[0]:offsets[1]].tolist(), counts[offsets[0]:offsets[1]].tolist())) == sorted(kept[0])


@pytest.mark.parametrize("scale", [1.0, 2.0**60], ids=["small-counts", "counts-past-one-key"])
def test_top_successors_order(scale):
    # Random rows in transition_counts' layout; counts so large that rows x counts would overflow
    # one int64 sort key take the other sort, with the same result.
    rng = np.random.default_rng(3)
    n = 40
    keys = np.unique(rng.integers(0, n * n, 600))
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n, minlength=n), out=indptr[1:])
    succ, count = keys % n, rng.integers(1, 5, len(keys)) * scale
    for by_count in (True, False):
        offsets, s, c, total = top_successors(indptr, succ, count, cap=7, by_count=by_count)
        for i in range(n):
            row = list(zip(succ[indptr[i]:indptr[i + 1]].tolist(), count[indptr[i]:indptr[i + 1]].tolist()))
            want = sorted(row, key=lambda e: (-e[1], e[0]))[:7]
            got = list(zip(s[offsets[i]:offsets[i + 1]].tolist(), c[offsets[i]:offsets[i + 1]].tolist()))
            assert got == (want if by_count else sorted(want))
            assert total[i] == sum(e[1] for e in row)


def test_recommend_scores_equal_the_reference(model, log):
    hist = histories(model, log)
    users = sorted(hist)[:12]
    got = all_scores(model, users)
    p, prior = params64(model), prior_of(model, hist)
    for r, uid in enumerate(users):
        items, ts = hist[uid]
        h = model.user_state(uid)[1]
        want = ref.query_scores(p, h, items, ts, prior)
        np.testing.assert_allclose(got[r], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernels", ["auto", "exact"])
def test_top_k_is_the_reference_top_k(model, log, kernels):
    # A short list: the int8 pass prunes by bounds that must include the prior's per-item part.
    hist = histories(model, log)
    users = sorted(hist)[:12]
    idx, sc = model._engine.recommend_batch(np.array([model._user_index[u] for u in users]), 5,
                                            kernels=kernels)
    p, prior = params64(model), prior_of(model, hist)
    for r, uid in enumerate(users):
        want = ref.query_scores(p, model.user_state(uid)[1], *hist[uid], prior)
        top = np.argsort(-want, kind="stable")[:5]
        np.testing.assert_array_equal(idx[r], top)
        np.testing.assert_allclose(sc[r], want[top], rtol=1e-4, atol=1e-4)


def test_prior_without_repeat_score(log):
    # All repeat parameters zero: the query reads only the last events the prior needs.
    m = fitted(log)
    for name in ("rc", "rd", "rV"):
        m._engine.set_param(name, np.zeros(m.get_weights()[name].shape, np.float32))
    hist = histories(m, log)
    users = sorted(hist)[:5]
    got = all_scores(m, users)
    p, prior = params64(m), prior_of(m, hist)
    for r, uid in enumerate(users):
        want = ref.query_scores(p, m.user_state(uid)[1], *hist[uid], prior)
        np.testing.assert_allclose(got[r], want, rtol=1e-4, atol=1e-4)


def test_put_events_move_the_prior(log):
    m = fitted(log)
    hist = histories(m, log)
    uid = sorted(hist)[0]
    new_items = m.item_ids_[[5, 7, 9]]
    t0 = hist[uid][1][-1]
    m.put_events(uid, new_items, [t0 + 10, t0 + 20, t0 + 30])
    items = hist[uid][0] + [5, 7, 9]
    ts = np.concatenate([hist[uid][1], [t0 + 10, t0 + 20, t0 + 30]])
    want = ref.query_scores(params64(m), m.user_state(uid)[1], items, ts, prior_of(m, hist))
    np.testing.assert_allclose(all_scores(m, [uid])[0], want, rtol=1e-4, atol=1e-4)


def test_weight_zero_means_no_prior(log, tmp_path):
    m = fitted(log, weight=0.0)
    assert len(m._engine.get_transitions()["out"]) == 0
    hist = histories(m, log)
    uid = sorted(hist)[3]
    want = ref.query_scores(params64(m), m.user_state(uid)[1], *hist[uid])
    np.testing.assert_allclose(all_scores(m, [uid])[0], want, rtol=1e-4, atol=1e-4)
    m.save(tmp_path / "m.hrnn")
    back = hrnn.load(tmp_path / "m.hrnn")
    assert len(back._engine.get_transitions()["out"]) == 0
    np.testing.assert_array_equal(all_scores(back, [uid]), all_scores(m, [uid]))


def test_validation_ranks_use_the_query_scores(model, log):
    """next_item_ranks (validation, early stopping) ranks by the same scores as the queries."""
    hist = histories(model, log)
    users = sorted(hist)[:10]
    p, prior = params64(model), prior_of(model, hist)
    e = model._engine
    parts = []  # (items, timestamps, session starts) of each user, split into prefix and the last 4
    for uid in users:
        items, ts = hist[uid]
        new = np.r_[1, np.diff(ts) > 1800].astype(np.uint8)  # the gap rule; each user's first event new
        parts.append((np.asarray(items, np.int32), ts, new))

    def arrays(take):
        chosen = [(i[take(len(i))], t[take(len(i))], n[take(len(i))]) for i, t, n in parts]
        offsets = np.concatenate([[0], np.cumsum([len(c[0]) for c in chosen])]).astype(np.int64)
        return (offsets, *(np.concatenate([c[k] for c in chosen]) for k in range(3)))

    prefix, test = arrays(lambda n: slice(0, n - 4)), arrays(lambda n: slice(n - 4, n))
    ranks = e.next_item_ranks(*prefix, *test, num_threads=1)
    # One pass ranks under several prior weights (transition_weight="auto"), the model's own among them.
    weights = [0.0, WEIGHT, 3.0]
    by_weight = e.next_item_ranks(*prefix, *test, num_threads=2, weights=weights)
    assert by_weight.shape == (3, len(ranks))
    np.testing.assert_array_equal(by_weight[1], ranks)
    checked = 0
    for k, (items, ts, new) in enumerate(parts):
        cut = len(items) - 4
        gaps = np.r_[0.0, np.diff(ts)].astype(np.float32)
        u, h = e.advance(p["u0"].astype(np.float32), np.zeros(len(p["u0"]), np.float32), True, items[:cut],
                         gaps[:cut], new[:cut])
        for j in range(cut, len(items)):
            y = items[j]
            for row, w in zip(by_weight, weights):
                scores = ref.query_scores(p, h, items[:j].tolist(), ts[:j], prior[:3] + (w, prior[4]))
                if np.min(np.abs(np.delete(scores, y) - scores[y])) > 1e-3:  # no near-tie to round either way
                    assert row[k * 4 + j - cut] == 1 + np.sum(scores > scores[y])
                    checked += 1
            u, h = e.advance(u, h, False, items[j:j + 1], gaps[j:j + 1], new[j:j + 1])
    assert checked >= 90
    for bad in ([], [-1.0], [float("nan")]):
        with pytest.raises(ValueError, match="weight"):
            e.next_item_ranks(*prefix, *test, weights=bad)


def test_a_log_without_repeats_rules_out_recent_items():
    # Nobody consumes an item twice (MovieLens): the repeat curve is 0 and an item of the user's
    # history is not new either, so the prior gives it the floor instead of its transition evidence.
    # Users of 330-400 events: the rule reaches past the repeat score's 200.
    df = make_log(n_events=16000, n_users=40, n_items=4000, zipf=0.6, repeat=0.0, cover_items=True, seed=2)
    df = df.drop_duplicates(["USER_ID", "ITEM_ID"])
    m = fitted(df, weight=4.0)
    hist = histories(m, df)
    assert not np.any(m._engine.get_transitions()["repeat_curve"])
    users = sorted(hist)[:8]
    got = all_scores(m, users)
    p, prior = params64(m), prior_of(m, hist, weight=4.0)
    for r, uid in enumerate(users):
        items, ts = hist[uid]
        want = ref.query_scores(p, m.user_state(uid)[1], items, ts, prior)
        np.testing.assert_allclose(got[r], want, rtol=1e-4, atol=1e-4)
        off = ref.query_scores(p, m.user_state(uid)[1], items, ts, prior[:3] + (0.0, prior[4]))
        for old in (items[-1], items[0]):  # the latest event and one beyond the last 200
            assert want[old] - off[old] == pytest.approx(
                4.0 * (np.log(prior[2][old] / prior[2].sum()) + np.log(ref.SEEN_FLOOR)), rel=1e-6)
        # The floored items are scanned with their boost, not scored one by one: the top k is still
        # the reference's.
        for kernels in ("auto", "exact"):
            top, sc = m._engine.recommend_batch(np.array([m._user_index[uid]]), 10, kernels=kernels)
            best = np.argsort(-want, kind="stable")[:10]
            np.testing.assert_array_equal(top[0], best)
            np.testing.assert_allclose(sc[0], want[best], rtol=1e-4, atol=1e-4)
        assert not set(items) & set(top[0].tolist())
        # Excluding what the user had: the whole history, beyond the last 200 events too.
        n_items = len(m.item_ids_)
        ex, _ = m._engine.recommend_batch(np.array([m._user_index[uid]]), n_items, exclude_interacted=True)
        n_unseen = n_items - len(set(items))  # the float64 reference orders near-ties differently
        assert set(ex[0][:n_unseen].tolist()) == set(range(n_items)) - set(items)
        assert (ex[0][n_unseen:] == -1).all()
    assert min(len(hist[u][0]) for u in users) > 200
    # The validation ranks read the same scores; the test events join the items ruled out as they come
    # (the last three events: a test item seen earlier in the test part is floored too).
    uid = users[0]
    items, ts = hist[uid]
    items = items[:-3] + [items[-3], items[-2], items[-3]]  # the third test event repeats the first
    new = np.r_[1, np.diff(ts) > 1800].astype(np.uint8)
    cut = len(items) - 3
    arrays = [(np.array([0, n], np.int64), np.asarray(items[a:b], np.int32), ts[a:b], new[a:b])
              for a, b, n in ((0, cut, cut), (cut, len(items), 3))]
    ranks = m._engine.next_item_ranks(*arrays[0], *arrays[1], num_threads=1)
    gaps = np.r_[0.0, np.diff(ts)].astype(np.float32)
    u, h = m._engine.advance(p["u0"].astype(np.float32), np.zeros(len(p["u0"]), np.float32), True,
                             np.asarray(items[:cut], np.int32), gaps[:cut], new[:cut])
    for j in range(cut, len(items)):
        scores = ref.query_scores(p, h, items[:j], ts[:j], prior)
        y = scores[items[j]]  # float32 against float64: the items within 1e-3 may fall either way
        assert 1 + np.sum(scores > y + 1e-3) <= ranks[j - cut] <= 1 + np.sum(scores > y - 1e-3), j
        u, h = m._engine.advance(u, h, False, np.asarray(items[j:j + 1], np.int32), gaps[j:j + 1], new[j:j + 1])
    assert ranks[2] > ranks[0]  # floored the second time


def test_real_time_events_join_the_items_ruled_out(tmp_path):
    # The items of a user's history that the prior floors and exclude_interacted leaves out are kept
    # up to date by put_events (a new item, one seen before, an unknown id) and survive a model file.
    df = make_log(n_events=4000, n_users=30, n_items=600, zipf=0.6, repeat=0.0, cover_items=True, seed=4)
    df = df.drop_duplicates(["USER_ID", "ITEM_ID"])
    m = fitted(df, weight=2.0)
    hist = histories(m, df)
    p, prior = params64(m), prior_of(m, hist, weight=2.0)
    uid = sorted(hist)[0]
    items, ts = hist[uid]
    fresh = next(i for i in range(len(m.item_ids_)) if i not in set(items))
    ids = m.item_ids_[[fresh, items[0]]].tolist() + ["never-seen"]
    new_ts = ts[-1] + np.array([60.0, 120.0, 180.0])
    m.put_events(uid, ids, new_ts)
    items, ts = items + [fresh, items[0], -1], np.r_[ts, new_ts]
    want = ref.query_scores(p, m.user_state(uid)[1], items, ts, prior)
    np.testing.assert_allclose(all_scores(m, [uid])[0], want, rtol=1e-4, atol=1e-4)
    m.save(tmp_path / "m.hrnn")
    loaded = hrnn.load(tmp_path / "m.hrnn")
    np.testing.assert_allclose(all_scores(loaded, [uid])[0], want, rtol=1e-4, atol=1e-4)
    # exclude_interacted, alone and with an exclude list: the history (its new items too) and the list.
    other = next(i for i in range(len(m.item_ids_)) if i not in set(items))
    for model in (m, loaded):
        for extra in (None, [m.item_ids_[other], m.item_ids_[fresh]]):
            got, _ = model.recommend(uid, 500, exclude_interacted=True, exclude_items=extra)
            left_out = {m.item_ids_[i] for i in items if i >= 0} | set(extra or [])
            assert not left_out & set(got.tolist())
            assert len(got) == min(500, len(m.item_ids_) - len(left_out))


def test_bad_tables_raise_and_change_nothing(log):
    m = fitted(log)
    e = m._engine
    t = e.get_transitions()
    before = all_scores(m, [sorted(histories(m, log))[0]])
    n = len(m.item_ids_)
    pop = m.popularity_
    good = dict(weight=0.5, offsets=t["offsets"], successors=t["successors"], counts=t["counts"],
                out=t["out"], popularity=pop, repeat_curve=t["repeat_curve"])
    bad_succ = t["successors"].copy()
    bad_succ[0] = n
    bad_counts = t["counts"].copy()
    bad_counts[0] = -1
    bad_out = t["out"].copy()
    bad_out[int(np.argmax(np.diff(t["offsets"])))] = 0
    cases = {"out of range": dict(successors=bad_succ), "counts": dict(counts=bad_counts),
             "kept counts": dict(out=bad_out), "shape": dict(offsets=t["offsets"][:-1]),
             "popularity": dict(popularity=np.full(n, np.nan)), "weight": dict(weight=-1.0),
             "repeat curve entries": dict(repeat_curve=np.full(3, 1.5, np.float32)),
             "at most 200": dict(repeat_curve=np.zeros(201, np.float32))}
    for what, change in cases.items():
        with pytest.raises(ValueError, match=what if what != "counts" else "counts must be"):
            e.set_transitions(**{**good, **change})
    np.testing.assert_array_equal(all_scores(m, [sorted(histories(m, log))[0]]), before)


def test_model_file_keeps_the_prior(model, log, tmp_path):
    path = tmp_path / "m.hrnn"
    model.save(path)
    back = hrnn.load(path)
    a, b = model._engine.get_transitions(), back._engine.get_transitions()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    users = sorted(histories(model, log))[:5]
    np.testing.assert_array_equal(all_scores(back, users), all_scores(model, users))
