"""tests/reference.py checked on its own (no binding needed): the repeat score and the extra
candidate columns."""

from __future__ import annotations

import numpy as np
import pytest

import reference as ref
import reference_windows as refw
from engine_cases import (N_ITEMS, S, bad_extra_windows, extra_only_items, with_empty_extras,
                          with_empty_repeat, without_extras, without_repeat)


class TestReferenceRepeatAndExtras:

    def test_repeat_buckets_follow_the_doc(self):
        expected_pos = [0, 1, 2, 3] + [4] * 4 + [5] * 8 + [6] * 16 + [7] * 18
        assert [ref.pos_bucket(d) for d in range(50)] == expected_pos
        ages = {0: 0, 0.99: 0, 1: 1, 4.99: 1, 5: 2, 29.9: 2, 30: 3, 179: 3, 180: 4, 1439: 4,
                1440: 5, 4319: 5, 4320: 6, 10079: 6, 10080: 7, 1e7: 7}
        assert {a: ref.age_bucket(a) for a in ages} == ages

    def test_make_window_repeat_occurrences(self):
        fractions, pos_seen, age_seen = [], set(), set()
        for seed in range(6):
            T, B = 16, 4
            w = refw.make_window(N_ITEMS, 6, T, B, S, seed)
            plain = refw.make_window(N_ITEMS, 6, T, B, S, seed, repeat=False)
            assert set(w) - set(plain) == set(ref.REPEAT_KEYS)
            for k in plain:                                    # repeat draws are separate
                np.testing.assert_array_equal(w[k], plain[k])
            off, pos, age = w["rep_offsets"], w["rep_pos"], w["rep_age"]
            assert off.dtype == np.int32 and pos.dtype == np.uint8 and age.dtype == np.uint8
            assert off.shape == (T * B + 1,) and off[0] == 0 and off[-1] == len(pos) == len(age)
            counts = np.diff(off).reshape(T, B)
            has_target = w["targets"] >= 0
            assert np.all(counts[~has_target] == 0)
            assert counts.max() <= 3
            first = np.flatnonzero(has_target.ravel())[0]
            assert np.diff(off)[first] == 2
            for tb in range(T * B):
                sl = slice(off[tb], off[tb + 1])
                assert np.all(np.diff(pos[sl].astype(int)) >= 0)
                assert np.all(np.diff(age[sl].astype(int)) >= 0)
            fractions.append((counts[has_target] > 0).mean())
            pos_seen |= set(pos.tolist())
            age_seen |= set(age.tolist())
        assert 0.3 < np.mean(fractions) < 0.55
        assert pos_seen == set(range(8)) and age_seen == set(range(8))

    def test_repeat_params(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=3)
        z = ref.init_params(N_ITEMS, 6, False, seed=3, repeat=False)
        assert p["rc"].shape == (8,) and p["rd"].shape == (8,) and p["rV"].shape == (6, 16)
        assert list(p) == [n for n in ref.PARAM_ORDER if n in p]
        for name in p:
            if name in ref.REPEAT_PARAMS:
                assert np.all(p[name] != 0) and np.all(z[name] == 0)
            else:
                np.testing.assert_array_equal(p[name], z[name])
        zz = ref.zero_repeat(p)
        for name in p:
            np.testing.assert_array_equal(zz[name], z[name])
        assert np.all(p["rc"] != 0)                            # zero_repeat copies

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_zero_repeat_params_equal_no_repeat(self, loss):
        p = ref.init_params(N_ITEMS, 6, False, seed=3)
        w = refw.make_window(N_ITEMS, 6, 8, 4, S, seed=5)
        a = ref.window_forward(ref.zero_repeat(p), w, loss=loss)
        b = ref.window_forward(p, without_repeat(w), loss=loss)
        c = ref.window_forward(p, w, loss=loss)
        assert a["loss"] == b["loss"]
        np.testing.assert_array_equal(a["ce"], b["ce"])
        assert abs(c["loss"] - a["loss"]) > 1e-3

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_absent_rep_keys_equal_empty_lists(self, loss):
        p = ref.init_params(N_ITEMS, 6, True, seed=3)
        w = refw.make_window(N_ITEMS, 6, 8, 4, S, seed=5)
        a = ref.window_forward(p, without_repeat(w), loss=loss)
        b = ref.window_forward(p, with_empty_repeat(w), loss=loss)
        assert a["loss"] == b["loss"]
        np.testing.assert_array_equal(a["ce"], b["ce"])
        fd = refw.numeric_grads(p, with_empty_repeat(w), blocks=ref.REPEAT_PARAMS, loss=loss)
        assert all(np.all(fd[n][1] == 0) for n in ref.REPEAT_PARAMS)

    def test_repeat_term_only_moves_the_own_column(self):
        """Occurrences of (t, b) shift r_b of that (t, b) only: the same item as another lane's
        target or as a negative gets nothing, and other (t, b) are unchanged."""
        T, B = 1, 3
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = refw.make_window(N_ITEMS, 6, T, B, 4, seed=2, inactive_tail=False)
        w["targets"][0] = [4, 9, 9]
        w["negatives"][0] = [4, 9, 1, 2]
        w.update(rep_offsets=np.array([0, 0, 1, 1], np.int32),        # lane 1 only
                 rep_pos=np.array([2], np.uint8), rep_age=np.array([3], np.uint8))
        base = ref.window_forward(p, without_repeat(w), logq=False)
        out = ref.window_forward(p, w, logq=False)
        assert out["ce"][0, 0] == base["ce"][0, 0] and out["ce"][0, 2] == base["ce"][0, 2]
        h = out["h"][0, 1]
        f = p["rc"][2] + p["rd"][3] + h @ (p["rV"][:, 2] + p["rV"][:, 11])
        O = p["O"]
        # lane 1 (target 9): included columns = own, lane 0 (item 4), negatives 4, 1, 2
        r = np.array([O[9] @ h + p["bo"][9] + f] + [O[j] @ h + p["bo"][j] for j in (4, 4, 1, 2)])
        expected = -(r[0] - np.log(np.sum(np.exp(r))))
        np.testing.assert_allclose(out["ce"][0, 1], expected, rtol=1e-12)

    def test_softmax_repeat_gradient_in_closed_form(self):
        """d loss / d rc[k] = sum_{(t,b)} w/n (p_b - 1) n_k(t,b), rd alike with the age buckets,
        d loss / d rV[:, k] = sum_{(t,b)} w/n (p_b - 1) n_k(t,b) h[t,b] (k: pos, or 8 + age)."""
        p = ref.init_params(N_ITEMS, 6, False, seed=4)
        w = refw.make_window(N_ITEMS, 6, 6, 4, S, seed=6)
        out = ref.window_forward(p, w, logq=True)
        cols, included, has_target = ref.candidate_columns(w)
        n = has_target.sum()
        B = w["targets"].shape[1]
        tb, pos, age = ref.repeat_occurrences(w)
        f = ref.repeat_scores(out["h"], w, p)
        g_rc, g_rd, g_rV = np.zeros(8), np.zeros(8), np.zeros((6, 16))
        for t, b in zip(*np.nonzero(has_target)):
            inc = np.flatnonzero(included[t, b])
            items = cols[t, inc]
            h = out["h"][t, b]
            l = p["O"][items] @ h + p["bo"][items] - w["logq"][items] + (inc == b) * f[t, b]
            prob = np.exp(l - l.max())
            prob /= prob.sum()
            d = w["weights"][t, b] / n * (prob[inc == b][0] - 1.0)
            for m in np.flatnonzero(tb == t * B + b):
                g_rc[pos[m]] += d
                g_rd[age[m]] += d
                g_rV[:, pos[m]] += d * h
                g_rV[:, 8 + age[m]] += d * h
        fd = refw.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS, logq=True)
        for name, g in (("rc", g_rc), ("rd", g_rd), ("rV", g_rV)):
            idx, values = fd[name]
            np.testing.assert_allclose(values, g.reshape(-1)[idx], rtol=1e-6, atol=1e-9)
            assert np.linalg.norm(values) > 1e-4

    # ---- extra candidate columns ----

    def test_make_window_extra_columns(self):
        """Shape of make_window(extras=True): 0..4 distinct extras per (t, b) with a target, never
        the target, 1..3 occurrences each at valid buckets; some extras are also shared columns of
        the step, some are the input item at pos 0 / age 0; the other keys do not depend on it."""
        n_extras, n_occ, shared_dupes, input_item, pos_seen, age_seen = [], [], 0, 0, set(), set()
        for seed in range(6):
            T, B = 16, 4
            w = refw.make_window(N_ITEMS, 6, T, B, S, seed, extras=True)
            plain = refw.make_window(N_ITEMS, 6, T, B, S, seed)
            assert set(w) - set(plain) == set(ref.EXTRA_KEYS)
            for k in plain:                                    # extra draws are separate
                np.testing.assert_array_equal(w[k], plain[k])
            off, items, occ_off = w["ext_offsets"], w["ext_items"], w["ext_occ_offsets"]
            pos, age = w["ext_pos"], w["ext_age"]
            assert off.dtype == np.int32 and items.dtype == np.int32
            assert occ_off.dtype == np.int32 and pos.dtype == np.uint8 and age.dtype == np.uint8
            assert off.shape == (T * B + 1,) and off[0] == 0 and off[-1] == len(items)
            assert occ_off.shape == (len(items) + 1,) and occ_off[0] == 0
            assert occ_off[-1] == len(pos) == len(age)
            ref.extra_columns(w, N_ITEMS)                      # a valid layout
            counts = np.diff(off).reshape(T, B)
            has_target = w["targets"] >= 0
            assert np.all(counts[~has_target] == 0) and counts.max() <= 4
            assert counts.ravel()[np.flatnonzero(has_target.ravel())[0]] >= 2
            occ_counts = np.diff(occ_off)
            assert occ_counts.min() >= 1 and occ_counts.max() <= 3
            for tb in range(T * B):
                t, b = divmod(tb, B)
                lst = items[off[tb]:off[tb + 1]]
                assert len(set(lst.tolist())) == len(lst)
                assert np.all((lst >= 0) & (lst < N_ITEMS) & (lst != w["targets"][t, b]))
                shared = set(w["targets"][t].tolist()) | set(w["negatives"][t].tolist())
                shared_dupes += len(set(lst.tolist()) & shared)
                for e in range(off[tb], off[tb + 1]):
                    sl = slice(occ_off[e], occ_off[e + 1])
                    assert np.all(np.diff(pos[sl].astype(int)) >= 0)
                    assert np.all(np.diff(age[sl].astype(int)) >= 0)
                    if pos[occ_off[e]] == 0:
                        assert items[e] == w["items"][t, b] and age[occ_off[e]] == 0
                        input_item += 1
            n_extras.append(counts[has_target].mean())
            n_occ.append(occ_counts.mean())
            pos_seen |= set(pos.tolist())
            age_seen |= set(age.tolist())
        assert 1.5 < np.mean(n_extras) < 3.0 and 1.3 < np.mean(n_occ) < 2.0
        assert shared_dupes > 50 and input_item > 20
        assert pos_seen == set(range(8)) and age_seen == set(range(8))

    def test_first_target_has_a_shared_extra(self):
        """Even a T = 1 window has an extra that duplicates a shared column."""
        for seed in range(5):
            w = refw.make_window(N_ITEMS, 6, 1, 3, S, seed, extras=True)
            tb, items, *_ = ref.extra_columns(w)
            shared = set(w["targets"][0].tolist()) | set(w["negatives"][0].tolist())
            first = items[tb == np.flatnonzero(w["targets"][0] >= 0)[0]]
            assert len(first) >= 2 and set(first.tolist()) & shared

    def test_extra_columns_literal(self):
        """Lane 1 (target 9) with extras 4 (also lane 0's target and a negative; 2 occurrences)
        and 13 (no other column; 1 occurrence): two more softmax columns, scored without logq,
        each once more beside the shared ones; the other lanes are unchanged."""
        T, B = 1, 3
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = refw.make_window(N_ITEMS, 6, T, B, 4, seed=2, inactive_tail=False, repeat=False)
        w["targets"][0] = [4, 9, 9]
        w["negatives"][0] = [4, 9, 1, 2]
        w.update(ext_offsets=np.array([0, 0, 2, 2], np.int32),
                 ext_items=np.array([4, 13], np.int32),
                 ext_occ_offsets=np.array([0, 2, 3], np.int32),
                 ext_pos=np.array([1, 6, 0], np.uint8), ext_age=np.array([2, 5, 0], np.uint8))
        for loss in ("softmax", "bpr-max"):
            base = ref.window_forward(p, without_extras(w), loss=loss, logq=True)
            out = ref.window_forward(p, w, loss=loss, logq=True)
            np.testing.assert_allclose(out["ce"][0, [0, 2]], base["ce"][0, [0, 2]], rtol=1e-14)
            h = out["h"][0, 1]
            O, bo, lq = p["O"], p["bo"], w["logq"].astype(np.float64)

            def f(pos, age):
                return p["rc"][pos] + p["rd"][age] + h @ (p["rV"][:, pos] + p["rV"][:, 8 + age])

            shared = [9, 4, 4, 1, 2]                     # own, lane 0, negatives 4, 1, 2
            r = np.array([O[j] @ h + bo[j] for j in shared]
                         + [O[4] @ h + bo[4] + f(1, 2) + f(6, 5), O[13] @ h + bo[13] + f(0, 0)])
            if loss == "softmax":
                l = r - np.concatenate([lq[shared], [0.0, 0.0]])
                expected = -(l[0] - np.log(np.sum(np.exp(l))))
            else:
                sm = np.exp(r[1:] - r[1:].max())
                sm /= sm.sum()
                expected = (-np.log(np.sum(sm / (1 + np.exp(-(r[0] - r[1:])))) + 1e-24)
                            + np.sum(sm * r[1:] ** 2))
            np.testing.assert_allclose(out["ce"][0, 1], expected, rtol=1e-12)

    def test_extras_get_no_logq(self):
        """With logq on, changing logq of an item that is only an extra column changes nothing;
        changing it for a shared column does."""
        p = ref.init_params(N_ITEMS, 6, False, seed=3)
        w = refw.make_window(N_ITEMS, 6, 2, 3, 2, seed=4, extras=True)
        only = extra_only_items(w)
        assert only
        lq = w["logq"].copy()
        lq[only] -= 3.0
        a = ref.window_forward(p, w, logq=True)
        b = ref.window_forward(p, dict(w, logq=lq), logq=True)
        assert a["loss"] == b["loss"]
        lq2 = w["logq"].copy()
        lq2[w["negatives"][0, 0]] -= 3.0
        assert abs(ref.window_forward(p, dict(w, logq=lq2), logq=True)["loss"] - a["loss"]) > 1e-4
        # with logq on, extras enter with their raw score: a constant shift of logq is no longer
        # invisible (it moves the shared columns against the extras)
        flat = dict(w, logq=np.full(N_ITEMS, -2.7, dtype=np.float32))
        c = ref.window_forward(p, flat, logq=True)["loss"]
        d = ref.window_forward(p, flat, logq=False)["loss"]
        assert abs(c - d) > 1e-3

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_absent_ext_keys_equal_empty_lists(self, loss):
        p = ref.init_params(N_ITEMS, 6, True, seed=3)
        w = refw.make_window(N_ITEMS, 6, 8, 4, S, seed=5, extras=True)
        a = ref.window_forward(p, without_extras(w), loss=loss)
        b = ref.window_forward(p, with_empty_extras(w), loss=loss)
        c = ref.window_forward(p, w, loss=loss)
        assert a["loss"] == b["loss"]
        np.testing.assert_array_equal(a["ce"], b["ce"])
        assert abs(c["loss"] - a["loss"]) > 1e-3
        fd = refw.numeric_grads(p, without_repeat(with_empty_extras(w)), blocks=ref.REPEAT_PARAMS,
                               loss=loss)
        assert all(np.all(fd[n][1] == 0) for n in ref.REPEAT_PARAMS)

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_extras_alone_give_repeat_gradients(self, loss):
        """Without rep_* keys, the extras' occurrences alone give rc / rd / rV a gradient, also
        at zero (how training starts), exactly on the buckets they use."""
        p = ref.init_params(N_ITEMS, 6, False, seed=2, repeat=False)
        w = refw.make_window(N_ITEMS, 6, 3, 4, S, seed=12, repeat=False, extras=True)
        fd = refw.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS, loss=loss)
        for name in ref.REPEAT_PARAMS:
            idx, values = fd[name]
            assert np.linalg.norm(values) > 1e-4, name
        _, _, _, _, pos, age, _ = ref.extra_columns(w)
        for name, used in (("rc", np.unique(pos)), ("rd", np.unique(age))):
            idx, values = fd[name]
            np.testing.assert_array_equal(idx, np.arange(8))
            np.testing.assert_array_equal(refw.relevant_repeat_entries(w, name, 6), used)
            assert np.all(values[used] != 0) and np.all(values[np.setdiff1d(idx, used)] == 0)

    def test_sampled_rows_include_extra_items(self):
        """Rows of O / bo (and E when tied) of extra-only items are checked and get a gradient."""
        for tied in (False, True):
            p = ref.init_params(N_ITEMS, 6, tied, seed=3)
            w = refw.make_window(N_ITEMS, 6, 2, 3, 2, seed=4, extras=True)
            only = extra_only_items(w)
            assert only
            for name in ("O", "bo") if not tied else ("E", "bo"):
                rows = refw.relevant_rows(w, name, tied)
                assert set(only) <= set(rows.tolist()), name
            fd = refw.numeric_grads(p, w, blocks=["E", "bo"] if tied else ["O", "bo", "E"])
            g = {name: values.reshape(p[name].shape[0], -1) for name, (_, values) in fd.items()}
            for name in ("bo", "E" if tied else "O"):
                assert np.all(np.linalg.norm(g[name][only], axis=1) > 1e-6), name
            if not tied:   # an extra-only item is no input: its E row has no gradient
                assert np.all(g["E"][only] == 0)

    def test_softmax_extra_gradient_in_closed_form(self):
        """d loss / d bo[j] = sum_{(t,b)} w/n * sum_{included c with item j} (p_c - [c == b]) and
        d loss / d rc[k] = sum_{(t,b)} w/n (sum_c p_c n_k(c) - n_k(b)), over the shared columns
        (logq) and the extra columns (no logq) alike."""
        p = ref.init_params(N_ITEMS, 6, False, seed=4)
        w = refw.make_window(N_ITEMS, 6, 5, 4, S, seed=6, extras=True)
        out = ref.window_forward(p, w, logq=True)
        cols, included, has_target = ref.candidate_columns(w)
        n = has_target.sum()
        B = w["targets"].shape[1]
        tb, pos, age = ref.repeat_occurrences(w)
        e_tb, e_items, _, e_occ, e_pos, e_age, _ = ref.extra_columns(w)
        g_bo, g_rc = np.zeros(N_ITEMS), np.zeros(8)
        for t, b in zip(*np.nonzero(has_target)):
            h = out["h"][t, b]

            def f(pos, age):
                return p["rc"][pos] + p["rd"][age] + h @ (p["rV"][:, pos] + p["rV"][:, 8 + age])

            inc = np.flatnonzero(included[t, b])
            items = list(cols[t, inc])
            l = list(p["O"][cols[t, inc]] @ h + p["bo"][cols[t, inc]] - w["logq"][cols[t, inc]])
            own_occ = np.flatnonzero(tb == t * B + b)
            l[list(inc).index(b)] += sum(f(pos[m], age[m]) for m in own_occ)
            occ_lists = [pos[own_occ] if c == b else [] for c in inc]
            for e in np.flatnonzero(e_tb == t * B + b):
                qs = np.flatnonzero(e_occ == e)
                items.append(e_items[e])
                l.append(p["O"][e_items[e]] @ h + p["bo"][e_items[e]]
                         + sum(f(e_pos[q], e_age[q]) for q in qs))
                occ_lists.append(e_pos[qs])
            l = np.array(l)
            prob = np.exp(l - l.max())
            prob /= prob.sum()
            is_own = np.zeros(len(l))
            is_own[list(inc).index(b)] = 1.0
            d = w["weights"][t, b] / n * (prob - is_own)
            np.add.at(g_bo, items, d)
            for dc, occ in zip(d, occ_lists):
                np.add.at(g_rc, np.asarray(occ, dtype=np.int64), dc)
        fd = refw.numeric_grads(p, w, blocks=["bo", "rc"], logq=True)
        for name, g in (("bo", g_bo), ("rc", g_rc)):
            idx, values = fd[name]
            np.testing.assert_allclose(values, g[idx], rtol=1e-6, atol=1e-9)
            assert np.linalg.norm(values) > 1e-4

    def test_reference_rejects_malformed_extras(self):
        w = refw.make_window(N_ITEMS, 6, 4, 3, S, seed=2, extras=True)
        ref.extra_columns(w, N_ITEMS)
        accepted = []
        for what, bad in bad_extra_windows(w, N_ITEMS):
            try:
                ref.extra_columns(bad, N_ITEMS)
            except ValueError:
                continue
            accepted.append(what)
        assert not accepted, f"malformed extra columns accepted: {accepted}"
