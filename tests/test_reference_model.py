"""tests/reference.py checked on its own (no binding needed): the windows, the recurrence, the
losses and their finite-difference gradients."""

from __future__ import annotations

import numpy as np
import pytest

import reference as ref
import reference_windows as refw
from engine_cases import LOSS_CASES, LOSS_IDS, N_ITEMS, S, event_ce_loop, gru_loops, norm_rel_err


class TestReferenceSelfConsistency:

    @pytest.mark.parametrize("seed", range(4))
    def test_make_window_looks_like_the_planner(self, seed):
        T, B, H = 12, 4, 6
        w = refw.make_window(N_ITEMS, H, T, B, S, seed)
        items, targets, fresh = w["items"], w["targets"], w["fresh"]
        active = items >= 0
        np.testing.assert_array_equal(active, targets >= 0)        # active input <=> target
        assert active[:, 0].all()
        for b in range(B):                                          # inactive only as a tail
            a = active[:, b]
            assert not np.any(~a[:-1] & a[1:])
        assert not active[:, B - 1].all()                           # some lane stops early
        for t in range(T - 1):
            for b in range(B):
                if active[t + 1, b] and not fresh[t + 1, b]:
                    assert targets[t, b] == items[t + 1, b]         # target = the next input
        new, fr = w["new_session"].astype(bool), fresh.astype(bool)
        assert np.all(w["gaps"][new & ~fr & active] > 1800)
        assert np.all(w["gaps"][~new & active] <= 1500)
        assert fresh[0, 0] == 1 and fresh[0, 1] == 0 and new[0, 1] and not new[0, 2]
        assert fr.sum() >= 2                                         # also mid-window resets
        np.testing.assert_allclose(np.exp(w["logq"].astype(np.float64)).sum(), 1.0, rtol=1e-5)

    def test_make_window_exercises_column_exclusion(self):
        excluded = 0
        for seed in range(4):
            w = refw.make_window(N_ITEMS, 6, 12, 4, S, seed)
            _, included, has_target = ref.candidate_columns(w)
            excluded += int((~included[has_target]).sum())
        assert excluded > 20

    def test_candidate_columns_literal(self):
        w = refw.make_window(N_ITEMS, 6, 1, 3, 3, seed=0)
        w["targets"][0] = [4, 4, -1]
        w["items"][0] = [1, 2, -1]
        w["negatives"][0] = [4, 7, 7]
        _, included, has_target = ref.candidate_columns(w)
        np.testing.assert_array_equal(has_target[0], [True, True, False])
        # columns: lane0 (4), lane1 (4), lane2 (empty), neg 4, neg 7, neg 7
        np.testing.assert_array_equal(included[0, 0], [1, 0, 0, 0, 1, 1])
        np.testing.assert_array_equal(included[0, 1], [0, 1, 0, 0, 1, 1])
        np.testing.assert_array_equal(included[0, 2], [0, 0, 0, 0, 0, 0])

    @pytest.mark.parametrize("extras", [False, True], ids=["no-extras", "extras"])
    @pytest.mark.parametrize("repeat", [True, False], ids=["repeat", "no-repeat"])
    @pytest.mark.parametrize("loss,logq,bpreg", LOSS_CASES, ids=LOSS_IDS)
    @pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
    def test_event_losses_match_literal_loop(self, loss, logq, bpreg, tied, repeat, extras):
        p = ref.init_params(N_ITEMS, 6, tied, seed=3)
        w = refw.make_window(N_ITEMS, 6, 8, 4, S, seed=5, repeat=repeat, extras=extras)
        assert ("rep_offsets" in w) == repeat
        assert ("ext_offsets" in w) == extras
        out = ref.window_forward(p, w, loss=loss, logq=logq, bpreg=bpreg)
        T, B = w["items"].shape
        n, total = 0, 0.0
        for t in range(T):
            for b in range(B):
                if w["targets"][t, b] < 0:
                    assert out["ce"][t, b] == 0.0
                    continue
                ce = event_ce_loop(p, w, out["h"][t, b], t, b, loss, logq, bpreg)
                np.testing.assert_allclose(out["ce"][t, b], ce, rtol=1e-12, atol=1e-12)
                n += 1
                total += w["weights"][t, b] * ce
        np.testing.assert_allclose(out["loss"], total / n, rtol=1e-12)

    def test_recurrence_matches_literal_loop(self):
        """h and u leaving each step, recomputed lane by lane with loop-written GRUs."""
        p = ref.init_params(N_ITEMS, 5, False, seed=1)
        w = refw.make_window(N_ITEMS, 5, 10, 4, S, seed=2)
        out = ref.window_forward(p, w)
        T, B = w["items"].shape
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        for b in range(B):
            u = w["u_init"][b].astype(np.float64)
            h = w["h_init"][b].astype(np.float64)
            for t in range(T):
                i = w["items"][t, b]
                if i >= 0:
                    x = p["E"][i]
                    if w["fresh"][t, b]:
                        u = p["u0"].copy()
                        h_tilde = np.tanh(p["W0"] @ u + p["b0"])
                    else:
                        if w["new_session"][t, b]:
                            u = gru_loops(p["Wux"], p["Wuh"], p["bu"], h, u)
                        s = np.tanh(p["W0"] @ u + p["b0"])
                        phi = np.array([np.log1p(max(w["gaps"][t, b], 0) / 60),
                                        float(w["new_session"][t, b])])
                        g = sig(p["Wg"] @ x + p["Vg"] @ phi + p["bg"])
                        h_tilde = g * h + (1 - g) * s
                    h = gru_loops(p["Wsx"], p["Wsh"], p["bs"], x, h_tilde)
                np.testing.assert_allclose(out["h"][t, b], h, rtol=1e-12, atol=1e-14)
                np.testing.assert_allclose(out["u"][t, b], u, rtol=1e-12, atol=1e-14)

    def test_fresh_lane_ignores_initial_state(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=0)
        w = refw.make_window(N_ITEMS, 6, 6, 4, S, seed=1)
        w["fresh"][0, :] = 1
        w["new_session"][0, :] = 1
        w["items"][0, :] = np.maximum(w["items"][0, :], 0)
        w["targets"][0, :] = np.maximum(w["targets"][0, :], 0)
        a = ref.window_forward(p, w)
        w2 = dict(w, u_init=w["u_init"] + 0.3, h_init=-w["h_init"])
        b = ref.window_forward(p, w2)
        np.testing.assert_array_equal(a["h"], b["h"])
        np.testing.assert_array_equal(a["u"], b["u"])
        assert a["loss"] == b["loss"]
        np.testing.assert_array_equal(a["u"][0], np.broadcast_to(p["u0"], a["u"][0].shape))

    def test_initial_state_matters_for_continuing_lanes(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=0)
        w = refw.make_window(N_ITEMS, 6, 6, 4, S, seed=1, resets=False)
        a = ref.window_forward(p, w)["loss"]
        b = ref.window_forward(p, dict(w, u_init=w["u_init"] + 0.3))["loss"]
        c = ref.window_forward(p, dict(w, h_init=-w["h_init"]))["loss"]
        assert a != b and a != c

    def test_inactive_lane_copies_state(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=0)
        w = refw.make_window(N_ITEMS, 6, 8, 4, S, seed=4)
        out = ref.window_forward(p, w)
        for b in range(4):
            for t in range(8):
                if w["items"][t, b] < 0:
                    prev_h = out["h"][t - 1, b] if t else w["h_init"][b]
                    prev_u = out["u"][t - 1, b] if t else w["u_init"][b]
                    np.testing.assert_array_equal(out["h"][t, b], prev_h)
                    np.testing.assert_array_equal(out["u"][t, b], prev_u)
                    assert out["ce"][t, b] == 0

    def test_gate_open_limit_is_a_plain_session_gru(self):
        """bg -> +inf: g = 1, h~ = h_prev, so without resets the user side is irrelevant."""
        p = ref.init_params(N_ITEMS, 6, False, seed=2)
        p["bg"][:] = 80.0
        w = refw.make_window(N_ITEMS, 6, 8, 3, S, seed=3, resets=False, inactive_tail=False)
        out = ref.window_forward(p, w)
        h = w["h_init"].astype(np.float64)
        for t in range(8):
            h = np.stack([gru_loops(p["Wsx"], p["Wsh"], p["bs"], p["E"][w["items"][t, b]], h[b])
                          for b in range(3)])
            np.testing.assert_allclose(out["h"][t], h, rtol=1e-12, atol=1e-14)
        p2 = {k: v.copy() for k, v in p.items()}
        for name in ("W0", "b0", "Wux", "Wuh", "bu", "u0"):
            p2[name] = p2[name] + 0.5
        assert ref.window_forward(p2, dict(w, u_init=w["u_init"] + 1))["loss"] == out["loss"]
        fd = refw.numeric_grads(p, w, blocks=["W0", "Wux", "Wg", "Vg"], max_entries=6)
        assert all(np.all(fd[n][1] == 0) for n in ("W0", "Wux", "Wg", "Vg"))

    def test_gate_closed_limit_starts_from_the_user_state(self):
        """bg -> -inf: g = 0, h~ = s(u); without new sessions or resets u stays u_init."""
        p = ref.init_params(N_ITEMS, 6, False, seed=2)
        p["bg"][:] = -80.0
        w = refw.make_window(N_ITEMS, 6, 8, 3, S, seed=3, resets=False, inactive_tail=False,
                            p_new_session=0.0)
        w["new_session"][:] = 0
        w["gaps"][:] = np.abs(w["gaps"]) % 1500
        out = ref.window_forward(p, w)
        np.testing.assert_array_equal(out["u"], np.broadcast_to(w["u_init"], out["u"].shape))
        for t in range(8):
            for b in range(3):
                s = np.tanh(p["W0"] @ w["u_init"][b].astype(np.float64) + p["b0"])
                h = gru_loops(p["Wsx"], p["Wsh"], p["bs"], p["E"][w["items"][t, b]], s)
                np.testing.assert_allclose(out["h"][t, b], h, rtol=1e-12, atol=1e-14)
        assert ref.window_forward(p, dict(w, h_init=-w["h_init"]))["loss"] == out["loss"]

    def test_advance_matches_window(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=7)
        w = refw.make_window(N_ITEMS, 6, 16, 4, S, seed=8)
        out = ref.window_forward(p, w)
        for b in range(4):
            active = np.flatnonzero(w["items"][:, b] >= 0)
            if len(active) == 0:
                continue
            last = active[-1]
            fresh_steps = np.flatnonzero(w["fresh"][: last + 1, b])
            start = fresh_steps[-1] if len(fresh_steps) else 0
            sl = slice(start, last + 1)
            u, h = ref.advance(p, w["u_init"][b], w["h_init"][b], w["items"][sl, b],
                               w["gaps"][sl, b], w["new_session"][sl, b],
                               fresh_first=bool(w["fresh"][start, b]))
            np.testing.assert_allclose(h, out["h"][last, b], rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(u, out["u"][last, b], rtol=1e-13, atol=1e-15)

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_tied_is_untied_with_O_equal_E(self, loss):
        p = ref.init_params(N_ITEMS, 6, True, seed=1)
        w = refw.make_window(N_ITEMS, 6, 6, 4, S, seed=2)
        assert "O" not in p
        untied = dict(p, O=p["E"].copy())
        a = ref.window_forward(p, w, loss=loss)["loss"]
        b = ref.window_forward(untied, w, loss=loss)["loss"]
        assert a == b
        # tied dE = untied dE + dO
        ft = refw.numeric_grads(p, w, blocks=["E"], loss=loss)["E"][1]
        fu = refw.numeric_grads(untied, w, blocks=["E", "O"], loss=loss)
        np.testing.assert_allclose(ft, fu["E"][1] + fu["O"][1], rtol=1e-6, atol=1e-9)

    def test_logq_constant_shift_is_invisible_to_softmax(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = refw.make_window(N_ITEMS, 6, 6, 4, S, seed=2)
        flat = dict(w, logq=np.full(N_ITEMS, -2.7, dtype=np.float32))
        a = ref.window_forward(p, flat, logq=True)["loss"]
        b = ref.window_forward(p, w, logq=False)["loss"]
        c = ref.window_forward(p, w, logq=True)["loss"]
        np.testing.assert_allclose(a, b, rtol=1e-13)
        assert abs(c - b) > 1e-3

    def test_bpr_max_ignores_logq_and_uses_bpreg(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = refw.make_window(N_ITEMS, 6, 6, 4, S, seed=2)
        a = ref.window_forward(p, w, loss="bpr-max", logq=True)["loss"]
        b = ref.window_forward(p, w, loss="bpr-max", logq=False)["loss"]
        c = ref.window_forward(p, w, loss="bpr-max", bpreg=0.1)["loss"]
        assert a == b and c < b

    def test_loss_is_weighted_mean_over_targets(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = refw.make_window(N_ITEMS, 6, 6, 4, S, seed=2, recency=False)
        out = ref.window_forward(p, w)
        has_target = w["targets"] >= 0
        np.testing.assert_allclose(out["loss"], out["ce"][has_target].mean(), rtol=1e-13)
        # weights at steps without a target are never read
        w2 = dict(w, weights=np.where(has_target, 2 * w["weights"], 99).astype(np.float32))
        np.testing.assert_allclose(ref.window_forward(p, w2)["loss"], 2 * out["loss"], rtol=1e-13)

    def test_softmax_bo_gradient_in_closed_form(self):
        """d loss / d bo[j] = sum_{(t,b)} w/n * sum_{included c with item j} (p_c - [c == b])."""
        p = ref.init_params(N_ITEMS, 6, False, seed=4)
        w = refw.make_window(N_ITEMS, 6, 5, 4, S, seed=6)
        out = ref.window_forward(p, w, logq=True)
        cols, included, has_target = ref.candidate_columns(w)
        n = has_target.sum()
        f = ref.repeat_scores(out["h"], w, p)               # the own column's repeat term
        grad = np.zeros(N_ITEMS)
        for t, b in zip(*np.nonzero(has_target)):
            inc = np.flatnonzero(included[t, b])
            items = cols[t, inc]
            l = p["O"][items] @ out["h"][t, b] + p["bo"][items] - w["logq"][items]
            l = l + (inc == b) * f[t, b]
            prob = np.exp(l - l.max())
            prob /= prob.sum()
            np.add.at(grad, items, w["weights"][t, b] / n * (prob - (inc == b)))
        idx, fd = refw.numeric_grads(p, w, blocks=["bo"], logq=True)["bo"]
        np.testing.assert_allclose(fd, grad[idx], rtol=1e-6, atol=1e-9)

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_finite_differences_are_stable_in_eps(self, loss):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = refw.make_window(N_ITEMS, 6, 4, 4, S, seed=2)
        a = refw.numeric_grads(p, w, eps=1e-6, max_entries=12, seed=3, loss=loss)
        b = refw.numeric_grads(p, w, eps=1e-4, max_entries=12, seed=3, loss=loss)
        for name in a:
            np.testing.assert_array_equal(a[name][0], b[name][0])
            assert norm_rel_err(a[name][1], b[name][1]) < 1e-6, name

    @pytest.mark.parametrize("T", [1, 3])
    @pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
    def test_every_block_has_a_gradient(self, T, tied):
        p = ref.init_params(N_ITEMS, 6, tied, seed=T)
        w = refw.make_window(N_ITEMS, 6, T, 4, S, seed=10 + T)
        fd = refw.numeric_grads(p, w, max_entries=30)
        assert set(fd) == set(p)
        assert {"rc", "rd", "rV"} <= set(fd)
        for name, (idx, values) in fd.items():
            assert np.linalg.norm(values) > 1e-5, name

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_repeat_blocks_have_a_gradient_at_zero(self, loss):
        """rc / rd / rV start at zero: the gradient there must not vanish (training starts)."""
        p = ref.init_params(N_ITEMS, 6, False, seed=2, repeat=False)
        w = refw.make_window(N_ITEMS, 6, 3, 4, S, seed=12)
        fd = refw.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS, loss=loss)
        for name in ref.REPEAT_PARAMS:
            assert np.linalg.norm(fd[name][1]) > 1e-4, name

    def test_sampled_rows_are_used_items(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = refw.make_window(N_ITEMS, 6, 3, 4, S, seed=2)
        fd = refw.numeric_grads(p, w, max_entries=5)
        inputs = set(w["items"][w["items"] >= 0].tolist())
        assert set((fd["E"][0] // 6).tolist()) <= inputs
        assert all(len(idx) == min(5, p[n].size) for n, (idx, _) in fd.items()
                   if n != "bo" and n not in ref.REPEAT_PARAMS)
        # rc / rd / rV: only the buckets the occurrences use
        _, pos, age = ref.repeat_occurrences(w)
        assert set(fd["rc"][0].tolist()) == set(pos.tolist())
        assert set(fd["rd"][0].tolist()) == set(age.tolist())
        assert set((fd["rV"][0] % 16).tolist()) <= set(pos.tolist()) | set((8 + age).tolist())
        assert len(fd["rV"][0]) == 5
