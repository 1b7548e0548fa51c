"""The C++ engine (hrnn._core.window_loss_grad) against the float64 reference of docs/engine.md.

* TestReferenceSelfConsistency checks tests/reference.py on its own (no binding needed).
* The other tests compare the binding to the reference: forward values, analytic gradients vs
  float64 finite differences, truncated BPTT (u_init / h_init are constants), threading, the
  repeat score (rc / rd / rV with the window's rep_offsets / rep_pos / rep_age) and the extra
  candidate columns (ext_offsets / ext_items / ext_occ_offsets / ext_pos / ext_age).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

N_ITEMS = 15
S = 5


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def core():
    """The C++ binding. Fails (never skips) when it cannot be imported."""
    try:
        from hrnn import _core
    except ImportError as exc:  # pragma: no cover - only when the build is broken
        pytest.fail(f"cannot import hrnn._core: {exc}")
    return _core


def cpp_window(window):
    """The window with the exact dtypes the binding expects."""
    dtypes = {"items": np.int32, "targets": np.int32, "gaps": np.float64, "fresh": np.uint8,
              "new_session": np.uint8, "weights": np.float32, "negatives": np.int32,
              "u_init": np.float32, "h_init": np.float32, "logq": np.float32}
    repeat_dtypes = {"rep_offsets": np.int32, "rep_pos": np.uint8, "rep_age": np.uint8}
    if any(k in window for k in repeat_dtypes):
        dtypes.update(repeat_dtypes)
    extra_dtypes = {"ext_offsets": np.int32, "ext_items": np.int32, "ext_occ_offsets": np.int32,
                    "ext_pos": np.uint8, "ext_age": np.uint8}
    if any(k in window for k in extra_dtypes):
        dtypes.update(extra_dtypes)
    assert set(window) == set(dtypes)
    return {k: np.ascontiguousarray(window[k], dtype=dtypes[k]) for k in dtypes}


def without_repeat(window):
    """The window without its rep_* keys."""
    return {k: v for k, v in window.items() if k not in ref.REPEAT_KEYS}


def with_empty_repeat(window):
    """The window with every occurrence list empty."""
    T, B = window["targets"].shape
    return dict(without_repeat(window), rep_offsets=np.zeros(T * B + 1, dtype=np.int32),
                rep_pos=np.zeros(0, dtype=np.uint8), rep_age=np.zeros(0, dtype=np.uint8))


def without_extras(window):
    """The window without its ext_* keys."""
    return {k: v for k, v in window.items() if k not in ref.EXTRA_KEYS}


def with_empty_extras(window):
    """The window with every extra list empty."""
    T, B = window["targets"].shape
    return dict(without_extras(window), ext_offsets=np.zeros(T * B + 1, dtype=np.int32),
                ext_items=np.zeros(0, dtype=np.int32), ext_occ_offsets=np.zeros(1, dtype=np.int32),
                ext_pos=np.zeros(0, dtype=np.uint8), ext_age=np.zeros(0, dtype=np.uint8))


def extra_only_items(window):
    """Items that are extra columns of some (t, b) with a target but never an input, a target or
    a negative of the window."""
    mentioned = set(np.concatenate([window["items"].ravel(), window["targets"].ravel(),
                                    window["negatives"].ravel()]).tolist())
    tb, items, *_ = ref.extra_columns(window)
    has_target = (window["targets"] >= 0).reshape(-1)
    return sorted(set(items[has_target[tb]].tolist()) - mentioned)


def run_core(core, params, window, loss="softmax", logq=True, bpreg=1.0, dropout=0.0,
             num_threads=1):
    return core.window_loss_grad(params=ref.to_float32(params), window=cpp_window(window),
                                 loss=loss, logq=logq, bpreg=bpreg, dropout=dropout,
                                 num_threads=num_threads)


def norm_rel_err(actual, expected):
    return np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-8)


def gru_loops(Wx, Wh, b, x, h):
    """docs/engine.md's GRU written with explicit loops (independent of reference.gru)."""
    H = len(h)
    out = np.zeros(H)
    r = np.zeros(H)
    for k in range(H):
        r[k] = 1 / (1 + np.exp(-(Wx[k] @ x + b[k] + Wh[k] @ h)))
    for k in range(H):
        z = 1 / (1 + np.exp(-(Wx[H + k] @ x + b[H + k] + Wh[H + k] @ h)))
        n = np.tanh(Wx[2 * H + k] @ x + b[2 * H + k] + Wh[2 * H + k] @ (r * h))
        out[k] = (1 - z) * n + z * h[k]
    return out


def event_ce_loop(params, window, h, t, b, loss, logq, bpreg):
    """The loss of one (t, b), written literally from docs/engine.md."""
    B = window["targets"].shape[1]
    O = ref.output_matrix(params)
    y = window["targets"][t, b]
    cols = list(window["targets"][t]) + list(window["negatives"][t])
    included = []
    for c, item in enumerate(cols):
        if c == b or (c < B and item >= 0 and item != y) or (c >= B and item != y):
            included.append(c)
    r = {c: O[cols[c]] @ h + params["bo"][cols[c]] for c in included}
    def occurrence(pos, age):
        pos, age = int(pos), int(age)
        return (params["rc"][pos] + params["rd"][age]
                + h @ params["rV"][:, pos] + h @ params["rV"][:, 8 + age])

    if "rep_offsets" in window:   # the target's occurrences add to the own column only
        for m in range(window["rep_offsets"][t * B + b], window["rep_offsets"][t * B + b + 1]):
            r[b] += occurrence(window["rep_pos"][m], window["rep_age"][m])
    l = {}
    if "ext_offsets" in window:   # the lane's extra columns: always included, never a logq term
        for e in range(window["ext_offsets"][t * B + b], window["ext_offsets"][t * B + b + 1]):
            i = window["ext_items"][e]
            c = ("extra", e)
            r[c] = O[i] @ h + params["bo"][i]
            for q in range(window["ext_occ_offsets"][e], window["ext_occ_offsets"][e + 1]):
                r[c] += occurrence(window["ext_pos"][q], window["ext_age"][q])
            included.append(c)
            l[c] = r[c]
    if loss == "softmax":
        for c in included:
            if c not in l:
                l[c] = r[c] - (window["logq"][cols[c]] if logq else 0.0)
        m = max(l.values())
        return -(l[b] - m - np.log(sum(np.exp(v - m) for v in l.values())))
    others = [c for c in included if c != b]
    if not others:
        return -np.log(1e-24)
    m = max(r[c] for c in others)
    e = {c: np.exp(r[c] - m) for c in others}
    s = {c: e[c] / sum(e.values()) for c in others}
    p = sum(s[c] / (1 + np.exp(-(r[b] - r[c]))) for c in others)
    return -np.log(p + 1e-24) + bpreg * sum(s[c] * r[c] ** 2 for c in others)


LOSS_CASES = [  # (loss, logq, bpreg)
    ("softmax", True, 1.0),
    ("softmax", False, 1.0),
    ("bpr-max", False, 1.0),
    ("bpr-max", True, 0.5),   # bpr-max ignores logQ
]
LOSS_IDS = ["softmax-logq", "softmax", "bprmax", "bprmax-logq-bpreg0.5"]


# ----------------------------------------------------------------------------------------------
# the reference on its own
# ----------------------------------------------------------------------------------------------

class TestReferenceSelfConsistency:

    @pytest.mark.parametrize("seed", range(4))
    def test_make_window_looks_like_the_planner(self, seed):
        T, B, H = 12, 4, 6
        w = ref.make_window(N_ITEMS, H, T, B, S, seed)
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
            w = ref.make_window(N_ITEMS, 6, 12, 4, S, seed)
            _, included, has_target = ref.candidate_columns(w)
            excluded += int((~included[has_target]).sum())
        assert excluded > 20

    def test_candidate_columns_literal(self):
        w = ref.make_window(N_ITEMS, 6, 1, 3, 3, seed=0)
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
        w = ref.make_window(N_ITEMS, 6, 8, 4, S, seed=5, repeat=repeat, extras=extras)
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
        w = ref.make_window(N_ITEMS, 5, 10, 4, S, seed=2)
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
        w = ref.make_window(N_ITEMS, 6, 6, 4, S, seed=1)
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
        w = ref.make_window(N_ITEMS, 6, 6, 4, S, seed=1, resets=False)
        a = ref.window_forward(p, w)["loss"]
        b = ref.window_forward(p, dict(w, u_init=w["u_init"] + 0.3))["loss"]
        c = ref.window_forward(p, dict(w, h_init=-w["h_init"]))["loss"]
        assert a != b and a != c

    def test_inactive_lane_copies_state(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=0)
        w = ref.make_window(N_ITEMS, 6, 8, 4, S, seed=4)
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
        w = ref.make_window(N_ITEMS, 6, 8, 3, S, seed=3, resets=False, inactive_tail=False)
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
        fd = ref.numeric_grads(p, w, blocks=["W0", "Wux", "Wg", "Vg"], max_entries=6)
        assert all(np.all(fd[n][1] == 0) for n in ("W0", "Wux", "Wg", "Vg"))

    def test_gate_closed_limit_starts_from_the_user_state(self):
        """bg -> -inf: g = 0, h~ = s(u); without new sessions or resets u stays u_init."""
        p = ref.init_params(N_ITEMS, 6, False, seed=2)
        p["bg"][:] = -80.0
        w = ref.make_window(N_ITEMS, 6, 8, 3, S, seed=3, resets=False, inactive_tail=False,
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
        w = ref.make_window(N_ITEMS, 6, 16, 4, S, seed=8)
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
        w = ref.make_window(N_ITEMS, 6, 6, 4, S, seed=2)
        assert "O" not in p
        untied = dict(p, O=p["E"].copy())
        a = ref.window_forward(p, w, loss=loss)["loss"]
        b = ref.window_forward(untied, w, loss=loss)["loss"]
        assert a == b
        # tied dE = untied dE + dO
        ft = ref.numeric_grads(p, w, blocks=["E"], loss=loss)["E"][1]
        fu = ref.numeric_grads(untied, w, blocks=["E", "O"], loss=loss)
        np.testing.assert_allclose(ft, fu["E"][1] + fu["O"][1], rtol=1e-6, atol=1e-9)

    def test_logq_constant_shift_is_invisible_to_softmax(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = ref.make_window(N_ITEMS, 6, 6, 4, S, seed=2)
        flat = dict(w, logq=np.full(N_ITEMS, -2.7, dtype=np.float32))
        a = ref.window_forward(p, flat, logq=True)["loss"]
        b = ref.window_forward(p, w, logq=False)["loss"]
        c = ref.window_forward(p, w, logq=True)["loss"]
        np.testing.assert_allclose(a, b, rtol=1e-13)
        assert abs(c - b) > 1e-3

    def test_bpr_max_ignores_logq_and_uses_bpreg(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = ref.make_window(N_ITEMS, 6, 6, 4, S, seed=2)
        a = ref.window_forward(p, w, loss="bpr-max", logq=True)["loss"]
        b = ref.window_forward(p, w, loss="bpr-max", logq=False)["loss"]
        c = ref.window_forward(p, w, loss="bpr-max", bpreg=0.1)["loss"]
        assert a == b and c < b

    def test_loss_is_weighted_mean_over_targets(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = ref.make_window(N_ITEMS, 6, 6, 4, S, seed=2, recency=False)
        out = ref.window_forward(p, w)
        has_target = w["targets"] >= 0
        np.testing.assert_allclose(out["loss"], out["ce"][has_target].mean(), rtol=1e-13)
        # weights at steps without a target are never read
        w2 = dict(w, weights=np.where(has_target, 2 * w["weights"], 99).astype(np.float32))
        np.testing.assert_allclose(ref.window_forward(p, w2)["loss"], 2 * out["loss"], rtol=1e-13)

    def test_softmax_bo_gradient_in_closed_form(self):
        """d loss / d bo[j] = sum_{(t,b)} w/n * sum_{included c with item j} (p_c - [c == b])."""
        p = ref.init_params(N_ITEMS, 6, False, seed=4)
        w = ref.make_window(N_ITEMS, 6, 5, 4, S, seed=6)
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
        idx, fd = ref.numeric_grads(p, w, blocks=["bo"], logq=True)["bo"]
        np.testing.assert_allclose(fd, grad[idx], rtol=1e-6, atol=1e-9)

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_finite_differences_are_stable_in_eps(self, loss):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = ref.make_window(N_ITEMS, 6, 4, 4, S, seed=2)
        a = ref.numeric_grads(p, w, eps=1e-6, max_entries=12, seed=3, loss=loss)
        b = ref.numeric_grads(p, w, eps=1e-4, max_entries=12, seed=3, loss=loss)
        for name in a:
            np.testing.assert_array_equal(a[name][0], b[name][0])
            assert norm_rel_err(a[name][1], b[name][1]) < 1e-6, name

    @pytest.mark.parametrize("T", [1, 3])
    @pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
    def test_every_block_has_a_gradient(self, T, tied):
        p = ref.init_params(N_ITEMS, 6, tied, seed=T)
        w = ref.make_window(N_ITEMS, 6, T, 4, S, seed=10 + T)
        fd = ref.numeric_grads(p, w, max_entries=30)
        assert set(fd) == set(p)
        assert {"rc", "rd", "rV"} <= set(fd)
        for name, (idx, values) in fd.items():
            assert np.linalg.norm(values) > 1e-5, name

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_repeat_blocks_have_a_gradient_at_zero(self, loss):
        """rc / rd / rV start at zero: the gradient there must not vanish (training starts)."""
        p = ref.init_params(N_ITEMS, 6, False, seed=2, repeat=False)
        w = ref.make_window(N_ITEMS, 6, 3, 4, S, seed=12)
        fd = ref.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS, loss=loss)
        for name in ref.REPEAT_PARAMS:
            assert np.linalg.norm(fd[name][1]) > 1e-4, name

    def test_sampled_rows_are_used_items(self):
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = ref.make_window(N_ITEMS, 6, 3, 4, S, seed=2)
        fd = ref.numeric_grads(p, w, max_entries=5)
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

    # ---- repeat score ----

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
            w = ref.make_window(N_ITEMS, 6, T, B, S, seed)
            plain = ref.make_window(N_ITEMS, 6, T, B, S, seed, repeat=False)
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
        w = ref.make_window(N_ITEMS, 6, 8, 4, S, seed=5)
        a = ref.window_forward(ref.zero_repeat(p), w, loss=loss)
        b = ref.window_forward(p, without_repeat(w), loss=loss)
        c = ref.window_forward(p, w, loss=loss)
        assert a["loss"] == b["loss"]
        np.testing.assert_array_equal(a["ce"], b["ce"])
        assert abs(c["loss"] - a["loss"]) > 1e-3

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_absent_rep_keys_equal_empty_lists(self, loss):
        p = ref.init_params(N_ITEMS, 6, True, seed=3)
        w = ref.make_window(N_ITEMS, 6, 8, 4, S, seed=5)
        a = ref.window_forward(p, without_repeat(w), loss=loss)
        b = ref.window_forward(p, with_empty_repeat(w), loss=loss)
        assert a["loss"] == b["loss"]
        np.testing.assert_array_equal(a["ce"], b["ce"])
        fd = ref.numeric_grads(p, with_empty_repeat(w), blocks=ref.REPEAT_PARAMS, loss=loss)
        assert all(np.all(fd[n][1] == 0) for n in ref.REPEAT_PARAMS)

    def test_repeat_term_only_moves_the_own_column(self):
        """Occurrences of (t, b) shift r_b of that (t, b) only: the same item as another lane's
        target or as a negative gets nothing, and other (t, b) are unchanged."""
        T, B = 1, 3
        p = ref.init_params(N_ITEMS, 6, False, seed=1)
        w = ref.make_window(N_ITEMS, 6, T, B, 4, seed=2, inactive_tail=False)
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
        w = ref.make_window(N_ITEMS, 6, 6, 4, S, seed=6)
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
        fd = ref.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS, logq=True)
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
            w = ref.make_window(N_ITEMS, 6, T, B, S, seed, extras=True)
            plain = ref.make_window(N_ITEMS, 6, T, B, S, seed)
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
            w = ref.make_window(N_ITEMS, 6, 1, 3, S, seed, extras=True)
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
        w = ref.make_window(N_ITEMS, 6, T, B, 4, seed=2, inactive_tail=False, repeat=False)
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
        w = ref.make_window(N_ITEMS, 6, 2, 3, 2, seed=4, extras=True)
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
        w = ref.make_window(N_ITEMS, 6, 8, 4, S, seed=5, extras=True)
        a = ref.window_forward(p, without_extras(w), loss=loss)
        b = ref.window_forward(p, with_empty_extras(w), loss=loss)
        c = ref.window_forward(p, w, loss=loss)
        assert a["loss"] == b["loss"]
        np.testing.assert_array_equal(a["ce"], b["ce"])
        assert abs(c["loss"] - a["loss"]) > 1e-3
        fd = ref.numeric_grads(p, without_repeat(with_empty_extras(w)), blocks=ref.REPEAT_PARAMS,
                               loss=loss)
        assert all(np.all(fd[n][1] == 0) for n in ref.REPEAT_PARAMS)

    @pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
    def test_extras_alone_give_repeat_gradients(self, loss):
        """Without rep_* keys, the extras' occurrences alone give rc / rd / rV a gradient, also
        at zero (how training starts), exactly on the buckets they use."""
        p = ref.init_params(N_ITEMS, 6, False, seed=2, repeat=False)
        w = ref.make_window(N_ITEMS, 6, 3, 4, S, seed=12, repeat=False, extras=True)
        fd = ref.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS, loss=loss)
        for name in ref.REPEAT_PARAMS:
            idx, values = fd[name]
            assert np.linalg.norm(values) > 1e-4, name
        _, _, _, _, pos, age, _ = ref.extra_columns(w)
        for name, used in (("rc", np.unique(pos)), ("rd", np.unique(age))):
            idx, values = fd[name]
            np.testing.assert_array_equal(idx, np.arange(8))
            np.testing.assert_array_equal(ref.relevant_repeat_entries(w, name, 6), used)
            assert np.all(values[used] != 0) and np.all(values[np.setdiff1d(idx, used)] == 0)

    def test_sampled_rows_include_extra_items(self):
        """Rows of O / bo (and E when tied) of extra-only items are checked and get a gradient."""
        for tied in (False, True):
            p = ref.init_params(N_ITEMS, 6, tied, seed=3)
            w = ref.make_window(N_ITEMS, 6, 2, 3, 2, seed=4, extras=True)
            only = extra_only_items(w)
            assert only
            for name in ("O", "bo") if not tied else ("E", "bo"):
                rows = ref.relevant_rows(w, name, tied)
                assert set(only) <= set(rows.tolist()), name
            fd = ref.numeric_grads(p, w, blocks=["E", "bo"] if tied else ["O", "bo", "E"])
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
        w = ref.make_window(N_ITEMS, 6, 5, 4, S, seed=6, extras=True)
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
        fd = ref.numeric_grads(p, w, blocks=["bo", "rc"], logq=True)
        for name, g in (("bo", g_bo), ("rc", g_rc)):
            idx, values = fd[name]
            np.testing.assert_allclose(values, g[idx], rtol=1e-6, atol=1e-9)
            assert np.linalg.norm(values) > 1e-4

    def test_reference_rejects_malformed_extras(self):
        w = ref.make_window(N_ITEMS, 6, 4, 3, S, seed=2, extras=True)
        ref.extra_columns(w, N_ITEMS)
        accepted = []
        for what, bad in _bad_extra_windows(w, N_ITEMS):
            try:
                ref.extra_columns(bad, N_ITEMS)
            except ValueError:
                continue
            accepted.append(what)
        assert not accepted, f"malformed extra columns accepted: {accepted}"


# ----------------------------------------------------------------------------------------------
# C++ against the reference
# ----------------------------------------------------------------------------------------------

WINDOW_VARIANTS = {
    "default": {},
    "no-resets": {"resets": False},
    "all-new-sessions": {"p_new_session": 1.0},
    "no-new-sessions": {"p_new_session": 0.0},
    "full-lanes": {"inactive_tail": False},
}


REPEAT_IDS = ["repeat", "no-repeat"]
EXTRAS_IDS = ["no-extras", "extras"]


@pytest.mark.parametrize("extras", [False, True], ids=EXTRAS_IDS)
@pytest.mark.parametrize("repeat", [True, False], ids=REPEAT_IDS)
@pytest.mark.parametrize("variant", list(WINDOW_VARIANTS))
@pytest.mark.parametrize("loss,logq,bpreg", LOSS_CASES, ids=LOSS_IDS)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_matches_reference(core, seed, tied, loss, logq, bpreg, variant, repeat, extras):
    """With repeat: occurrences and non-zero rc / rd / rV; without: no rep_* keys (rc / rd / rV
    still non-zero, and irrelevant unless extras). With extras: ext_* keys (extra columns with
    their own occurrences)."""
    T, B, H = 20, 4, 8
    p = ref.init_params(N_ITEMS, H, tied, seed=seed)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=100 + seed, repeat=repeat, extras=extras,
                        **WINDOW_VARIANTS[variant])
    expected = ref.window_forward(p, w, loss=loss, logq=logq, bpreg=bpreg)
    got = run_core(core, p, w, loss=loss, logq=logq, bpreg=bpreg)
    assert np.asarray(got["h"]).shape == (T, B, H)
    assert np.asarray(got["u"]).shape == (T, B, H)
    np.testing.assert_allclose(got["h"], expected["h"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["u"], expected["u"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)


@pytest.mark.parametrize("extras", [False, True], ids=EXTRAS_IDS)
def test_dropout_touches_the_output_only(core, extras):
    """Dropout applies to h_out, never to the recurrent state returned as h / u."""
    T, B, H = 10, 4, 8
    p = ref.init_params(N_ITEMS, H, False, seed=3)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=4, extras=extras)
    expected = ref.window_forward(p, w)
    got = run_core(core, p, w, dropout=0.5)
    np.testing.assert_allclose(got["h"], expected["h"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["u"], expected["u"], rtol=1e-5, atol=1e-6)
    assert np.isfinite(got["loss"])


@pytest.mark.parametrize("dropout", [0.25, 0.5])
@pytest.mark.parametrize("extras", [False, True], ids=EXTRAS_IDS)
def test_dropout_scales_the_kept_units(core, dropout, extras):
    """Inverted dropout: a kept unit of h_out is divided by keep = 1 - dropout (so the expected
    output is h_out), for the output columns, the repeat and the extra scores alike. One event
    (T = B = 1), so the target's output-row gradient, dl_y * dropped h_out, shows which units
    were kept."""
    H = 8
    p = ref.init_params(N_ITEMS, H, False, seed=5)
    keep = 1 - dropout
    n_kept = []
    for seed in range(6):
        w = ref.make_window(N_ITEMS, H, 1, 1, S, seed=40 + seed, repeat=True, extras=extras)
        h = ref.window_forward(p, w)["h"]
        got = run_core(core, p, w, dropout=dropout)
        kept = got["grads"]["O"][w["targets"][0, 0]] != 0
        n_kept.append(int(kept.sum()))

        def loss(h_out):
            return float(w["weights"][0, 0] * ref.event_losses(h_out, w, p)[0, 0])

        np.testing.assert_allclose(got["loss"], loss(h * kept / keep), rtol=1e-5)
        if kept.any():
            assert abs(got["loss"] - loss(h * kept)) > 1e-3  # (what the test tells apart)
    assert any(0 < k < H for k in n_kept)  # units were dropped and kept


# max_entries per block for the finite differences (None = every entry)
GRAD_CASES = [  # (T, B, H, max_entries)
    (1, 3, 8, None),
    (3, 4, 8, 40),
    (32, 4, 6, 10),
]


GRAD_LOSSES = [("softmax", True), ("softmax", False), ("bpr-max", False)]   # (loss, logq)
GRAD_LOSS_IDS = ["softmax-logq", "softmax", "bprmax"]


@pytest.mark.parametrize("extras", [False, True], ids=EXTRAS_IDS)
@pytest.mark.parametrize("repeat", [True, False], ids=REPEAT_IDS)
@pytest.mark.parametrize("loss,logq", GRAD_LOSSES, ids=GRAD_LOSS_IDS)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("T,B,H,max_entries", GRAD_CASES, ids=[f"T{c[0]}" for c in GRAD_CASES])
def test_gradients_match_finite_differences(core, T, B, H, max_entries, tied, loss, logq,
                                            repeat, extras):
    """Every block, rc / rd / rV included (non-zero, with occurrences). Without rep_* keys and
    without extras rc / rd / rV get an exactly-zero gradient. Recency weights alternate with the
    cases (both are covered for every T, tied / untied and loss)."""
    seed = 1000 * T + 10 * tied + 3 * logq + (loss == "bpr-max") + 20 * repeat + 100 * extras
    recency = bool((tied + repeat + extras + (loss == "bpr-max")) % 2)
    p = ref.init_params(N_ITEMS, H, tied, seed=seed)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=seed + 1, recency=recency, repeat=repeat,
                        extras=extras)
    got = run_core(core, p, w, loss=loss, logq=logq, bpreg=1.0)
    grads = got["grads"]
    assert set(grads) == set(p)
    blocks = [n for n in ref.PARAM_ORDER
              if n in p and (repeat or extras or n not in ref.REPEAT_PARAMS)]
    fd = ref.numeric_grads(p, w, blocks=blocks, max_entries=max_entries, seed=seed, loss=loss,
                           logq=logq)
    errors = {}
    for name, (idx, expected) in fd.items():
        g = np.asarray(grads[name])
        assert g.shape == p[name].shape, name
        assert g.dtype == np.float32, name
        assert np.linalg.norm(expected) > 1e-6, f"{name}: reference gradient is zero"
        actual = g.reshape(-1)[idx].astype(np.float64)
        errors[name] = norm_rel_err(actual, expected)
    bad = {k: v for k, v in errors.items() if not v < 2e-3}
    assert not bad, f"norm-relative gradient errors > 2e-3: {bad}"

    # rows of E / O / bo that the window never mentions get an exactly-zero gradient
    mentioned = set(np.concatenate([w["items"].ravel(), w["targets"].ravel(),
                                    w["negatives"].ravel(),
                                    w.get("ext_items", np.zeros(0, np.int32))]).tolist())
    unused = np.array(sorted(set(range(N_ITEMS)) - mentioned), dtype=np.int64)
    if len(unused):
        for name in ("E", "O", "bo"):
            if name in grads:
                np.testing.assert_allclose(np.asarray(grads[name])[unused], 0, atol=1e-10)

    # entries of rc / rd / rV for buckets that no occurrence uses get an exactly-zero gradient
    for name in ref.REPEAT_PARAMS:
        g = np.asarray(grads[name])
        assert g.shape == p[name].shape and g.dtype == np.float32, name
        unused = np.setdiff1d(np.arange(g.size), ref.relevant_repeat_entries(w, name, H))
        np.testing.assert_allclose(g.reshape(-1)[unused], 0, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_initial_states_are_constants(core, tied):
    """Truncated BPTT: u_init / h_init change the loss but get no gradient."""
    T, B, H = 6, 4, 8
    p = ref.init_params(N_ITEMS, H, tied, seed=5)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=6, resets=False)
    w2 = dict(w, u_init=(w["u_init"] + 0.25).astype(np.float32),
              h_init=(-w["h_init"]).astype(np.float32))
    a, b = run_core(core, p, w), run_core(core, p, w2)
    assert abs(a["loss"] - b["loss"]) > 1e-4
    np.testing.assert_allclose(b["loss"], ref.window_forward(p, w2)["loss"], rtol=1e-5)
    for out in (a, b):
        assert set(out["grads"]) == set(p)
        assert "u_init" not in out["grads"] and "h_init" not in out["grads"]


@pytest.mark.parametrize("extras", [False, True], ids=EXTRAS_IDS)
@pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
def test_thread_count_does_not_change_the_result(core, loss, extras):
    T, B, H = 16, 8, 8
    p = ref.init_params(N_ITEMS, H, False, seed=8)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=9, extras=extras)
    one = run_core(core, p, w, loss=loss, num_threads=1)
    two = run_core(core, p, w, loss=loss, num_threads=2)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-6)
    for name in p:
        assert norm_rel_err(np.asarray(two["grads"][name], np.float64),
                            np.asarray(one["grads"][name], np.float64)) < 1e-5, name


@pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
def test_threads_split_the_columns_of_repeated_items(core, loss):
    # 60 candidate columns (4 panels of 16) over 15 items: every item fills columns of several
    # threads' ranges, and its row must still get each column's gradient exactly once.
    T, B, H, many = 8, 12, 8, 48
    p = ref.init_params(N_ITEMS, H, False, seed=10)
    w = ref.make_window(N_ITEMS, H, T, B, many, seed=11, extras=True)
    one = run_core(core, p, w, loss=loss, num_threads=1)
    np.testing.assert_allclose(one["loss"], ref.window_forward(p, w, loss=loss)["loss"], rtol=1e-5)
    for threads in (2, 3, 4):
        got = run_core(core, p, w, loss=loss, num_threads=threads)
        again = run_core(core, p, w, loss=loss, num_threads=threads)
        np.testing.assert_allclose(got["loss"], one["loss"], rtol=1e-6)
        for name in p:
            g = np.asarray(got["grads"][name], np.float64)
            assert norm_rel_err(g, np.asarray(one["grads"][name], np.float64)) < 1e-5, (threads, name)
            np.testing.assert_array_equal(g, np.asarray(again["grads"][name], np.float64))


@pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
def test_row_with_every_other_column_excluded(core, loss):
    """Lane 0's target equals every negative and lane 1's target, lane 2 is empty: softmax has only
    its own column (ce = 0), bpr-max has no column j != b (ce = -log(1e-24), no gradient)."""
    T, B, H = 2, 3, 6
    p = ref.init_params(N_ITEMS, H, False, seed=11)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=12, inactive_tail=False)
    w["targets"][1] = [4, 4, -1]
    w["items"][1, 2] = -1
    w["negatives"][1] = 4
    expected = ref.window_forward(p, w, loss=loss)
    np.testing.assert_allclose(expected["ce"][1, :2],
                               0.0 if loss == "softmax" else -np.log(1e-24), atol=1e-12)
    got = run_core(core, p, w, loss=loss)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    fd = ref.numeric_grads(p, w, loss=loss, max_entries=20)
    for name, (idx, values) in fd.items():
        actual = np.asarray(got["grads"][name]).reshape(-1)[idx]
        assert norm_rel_err(actual, values) < 2e-3, name


# ----------------------------------------------------------------------------------------------
# C++ repeat score
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss,logq,bpreg", LOSS_CASES, ids=LOSS_IDS)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_zero_repeat_params_equal_no_repeat(core, tied, loss, logq, bpreg):
    """rc = rd = rV = 0 (how the model starts): occurrences change nothing, but rc / rd / rV get
    their (non-zero) gradient."""
    T, B, H = 8, 4, 8
    p = ref.init_params(N_ITEMS, H, tied, seed=21, repeat=False)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=22)
    with_occ = run_core(core, p, w, loss=loss, logq=logq, bpreg=bpreg)
    plain = run_core(core, p, without_repeat(w), loss=loss, logq=logq, bpreg=bpreg)
    expected = ref.window_forward(p, without_repeat(w), loss=loss, logq=logq, bpreg=bpreg)
    np.testing.assert_allclose(with_occ["loss"], plain["loss"], rtol=1e-6)
    np.testing.assert_allclose(with_occ["loss"], expected["loss"], rtol=1e-5)
    for name in p:
        if name not in ref.REPEAT_PARAMS:
            assert norm_rel_err(np.asarray(with_occ["grads"][name], np.float64),
                                np.asarray(plain["grads"][name], np.float64)) < 1e-5, name
    fd = ref.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS, loss=loss, logq=logq, bpreg=bpreg)
    for name, (idx, values) in fd.items():
        assert np.linalg.norm(values) > 1e-4, name
        actual = np.asarray(with_occ["grads"][name], np.float64).reshape(-1)[idx]
        assert norm_rel_err(actual, values) < 2e-3, name
        np.testing.assert_array_equal(np.asarray(plain["grads"][name]), 0, err_msg=name)


@pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_absent_rep_keys_equal_empty_lists(core, tied, loss):
    T, B, H = 8, 4, 8
    p = ref.init_params(N_ITEMS, H, tied, seed=23)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=24)
    absent = run_core(core, p, without_repeat(w), loss=loss)
    empty = run_core(core, p, with_empty_repeat(w), loss=loss)
    np.testing.assert_allclose(empty["loss"], absent["loss"], rtol=1e-6)
    np.testing.assert_allclose(empty["loss"], ref.window_forward(p, without_repeat(w),
                                                                 loss=loss)["loss"], rtol=1e-5)
    np.testing.assert_allclose(empty["h"], absent["h"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(empty["u"], absent["u"], rtol=1e-6, atol=1e-7)
    for name in p:
        a = np.asarray(absent["grads"][name], np.float64)
        e = np.asarray(empty["grads"][name], np.float64)
        if name in ref.REPEAT_PARAMS:
            np.testing.assert_array_equal(a, 0, err_msg=name)
            np.testing.assert_array_equal(e, 0, err_msg=name)
        else:
            assert norm_rel_err(e, a) < 1e-6, name


@pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
def test_repeat_occurrences_at_every_bucket(core, loss):
    """One window whose occurrence lists use every pos and every age bucket, up to 3 a list,
    including the same bucket twice in a list."""
    T, B, H = 4, 4, 6
    p = ref.init_params(N_ITEMS, H, False, seed=25)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=26, inactive_tail=False)
    rng = np.random.default_rng(27)
    counts = np.tile([3, 2, 1, 0], T)[: T * B]
    R = int(counts.sum())
    assert R == 24                     # lists 0-2, 3-4, 5, 6-8, ..., 18-20 (pos 5, 0, 0), 21-22, 23
    pos = np.concatenate([np.arange(8), np.arange(8), [5, 5, 5, 0, 0, 7, 7, 3]])
    age = np.concatenate([np.arange(8)[::-1], rng.integers(0, 8, 8), np.full(8, 7)])
    w.update(rep_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int32),
             rep_pos=pos.astype(np.uint8), rep_age=age.astype(np.uint8))
    got = run_core(core, p, w, loss=loss)
    expected = ref.window_forward(p, w, loss=loss)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    fd = ref.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS + ("O", "bo", "Wsx"), max_entries=40,
                           loss=loss)
    for name, (idx, values) in fd.items():
        actual = np.asarray(got["grads"][name], np.float64).reshape(-1)[idx]
        assert norm_rel_err(actual, values) < 2e-3, name
    assert len(fd["rc"][0]) == 8 and len(fd["rd"][0]) == 8


def _bad_repeat_windows(w):
    off, pos, age = w["rep_offsets"], w["rep_pos"], w["rep_age"]
    first = int(np.flatnonzero(np.diff(off))[0])
    bad_pos = pos.copy()
    bad_pos[0] = 8
    bad_age = age.copy()
    bad_age[-1] = 255
    past_end = off.copy()
    past_end[-1] += 1
    decreasing = off.copy()
    decreasing[first + 1] = off[-1] + 1
    yield "pos out of range", dict(w, rep_pos=bad_pos)
    yield "age out of range", dict(w, rep_age=bad_age)
    yield "offsets too short", dict(w, rep_offsets=off[:-1])
    yield "offsets past the entries", dict(w, rep_offsets=past_end)
    yield "offsets decreasing", dict(w, rep_offsets=decreasing)
    yield "pos / age lengths differ", dict(w, rep_age=age[:-1])


def test_malformed_repeat_occurrences_are_rejected(core):
    """Indices into rc / rd / rV and into the occurrence arrays are checked (no UB)."""
    p = ref.init_params(N_ITEMS, 6, False, seed=1)
    w = ref.make_window(N_ITEMS, 6, 4, 3, S, seed=2)
    assert len(w["rep_pos"]) > 0
    accepted = []
    for what, bad in _bad_repeat_windows(w):
        try:
            run_core(core, p, bad)
        except ValueError:
            continue
        accepted.append(what)
    assert not accepted, f"malformed repeat occurrences accepted: {accepted}"


# ----------------------------------------------------------------------------------------------
# C++ extra candidate columns
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss,logq,bpreg", LOSS_CASES, ids=LOSS_IDS)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_extras_get_no_logq(core, tied, loss, logq, bpreg):
    """Changing logq of items that are only extra columns changes neither the loss nor any
    gradient; with softmax and logq on, the extras enter with their raw score (matches the
    reference), and changing logq of a shared column does change the loss."""
    T, B, H = 3, 3, 6
    p = ref.init_params(N_ITEMS, H, tied, seed=31)
    w = ref.make_window(N_ITEMS, H, T, B, 2, seed=4, extras=True)
    only = extra_only_items(w)
    assert only
    lq = w["logq"].copy()
    lq[only] -= 3.0
    a = run_core(core, p, w, loss=loss, logq=logq, bpreg=bpreg)
    b = run_core(core, p, dict(w, logq=lq), loss=loss, logq=logq, bpreg=bpreg)
    np.testing.assert_allclose(a["loss"], ref.window_forward(p, w, loss=loss, logq=logq,
                                                             bpreg=bpreg)["loss"], rtol=1e-5)
    assert a["loss"] == b["loss"]
    for name in p:
        np.testing.assert_array_equal(np.asarray(a["grads"][name]), np.asarray(b["grads"][name]),
                                      err_msg=name)
    lq2 = w["logq"].copy()
    lq2[w["negatives"][0, 0]] -= 3.0
    c = run_core(core, p, dict(w, logq=lq2), loss=loss, logq=logq, bpreg=bpreg)
    if loss == "softmax" and logq:
        assert abs(c["loss"] - a["loss"]) > 1e-4
        # a constant logq is no longer invisible: it moves the shared columns against the extras
        flat = dict(w, logq=np.full(N_ITEMS, -2.7, dtype=np.float32))
        got = run_core(core, p, flat, loss=loss, logq=True)["loss"]
        np.testing.assert_allclose(got, ref.window_forward(p, flat, logq=True)["loss"], rtol=1e-5)
        assert abs(got - run_core(core, p, flat, loss=loss, logq=False)["loss"]) > 1e-3
    else:
        assert c["loss"] == a["loss"]


@pytest.mark.parametrize("repeat", [True, False], ids=REPEAT_IDS)
@pytest.mark.parametrize("loss", ["softmax", "bpr-max"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_absent_ext_keys_equal_empty_lists(core, tied, loss, repeat):
    T, B, H = 8, 4, 8
    p = ref.init_params(N_ITEMS, H, tied, seed=33)
    w = ref.make_window(N_ITEMS, H, T, B, S, seed=34, repeat=repeat, extras=True)
    absent = run_core(core, p, without_extras(w), loss=loss)
    empty = run_core(core, p, with_empty_extras(w), loss=loss)
    full = run_core(core, p, w, loss=loss)
    np.testing.assert_allclose(empty["loss"], absent["loss"], rtol=1e-6)
    np.testing.assert_allclose(empty["loss"], ref.window_forward(p, without_extras(w),
                                                                 loss=loss)["loss"], rtol=1e-5)
    np.testing.assert_allclose(full["loss"], ref.window_forward(p, w, loss=loss)["loss"],
                               rtol=1e-5)
    assert abs(full["loss"] - absent["loss"]) > 1e-3
    np.testing.assert_allclose(empty["h"], absent["h"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(empty["u"], absent["u"], rtol=1e-6, atol=1e-7)
    for name in p:
        a = np.asarray(absent["grads"][name], np.float64)
        e = np.asarray(empty["grads"][name], np.float64)
        if name in ref.REPEAT_PARAMS and not repeat:
            np.testing.assert_array_equal(a, 0, err_msg=name)
            np.testing.assert_array_equal(e, 0, err_msg=name)
        else:
            assert norm_rel_err(e, a) < 1e-6, name


@pytest.mark.parametrize("loss,logq,bpreg", LOSS_CASES[:3], ids=LOSS_IDS[:3])
def test_extra_columns_edge_cases(core, loss, logq, bpreg):
    """A handcrafted window: a lane with 40 extras (a training step has at most L - 1 = 49), an
    extra without occurrences, occurrences at every pos / age bucket and the same bucket twice in
    a list, extras that duplicate another lane's target / a negative / the lane's own input item,
    empty lanes, and lanes whose shared columns are all excluded (their only competitors, or with
    bpr-max their only negatives, are their extras: two, or one)."""
    n_items, T, B, H, S_ = 64, 2, 4, 6, 3
    p = ref.init_params(n_items, H, False, seed=35)
    w = ref.make_window(n_items, H, T, B, S_, seed=36, inactive_tail=False, repeat=False)
    w["items"][:] = [[10, 33, 20, 21], [11, 12, -1, -1]]
    w["targets"][:] = [[11, 12, 40, 22], [4, 4, -1, -1]]
    w["negatives"][:] = [[50, 51, 52], [4, 4, 4]]
    rng = np.random.default_rng(37)
    ext = {}                                        # (t, b) -> list of (item, [(pos, age), ...])
    many = rng.choice([i for i in range(n_items) if i != 11], 40, replace=False)
    ext[(0, 0)] = [(int(i), [(int(rng.integers(8)), int(rng.integers(8)))
                             for _ in range(int(rng.integers(1, 4)))]) for i in many]
    ext[(0, 1)] = [(40, [(k, 7 - k) for k in range(8)]),       # lane 2's target
                   (50, []),                                   # a negative; no occurrence
                   (33, [(0, 0), (5, 3), (5, 3)])]             # its own input item
    ext[(0, 3)] = [(11, [(1, 1)]), (51, [(4, 6)])]
    ext[(1, 0)] = [(9, [(2, 2)]), (13, [(7, 7), (7, 7)])]       # shared columns all excluded
    ext[(1, 1)] = [(9, [(3, 3)])]                               # idem, a single extra
    T_B = T * B
    for (t, b), lst in ext.items():
        assert w["targets"][t, b] >= 0 and all(i != w["targets"][t, b] for i, _ in lst)
        assert len({i for i, _ in lst}) == len(lst)
    offsets, items, occ_offsets, pos, age = [0], [], [0], [], []
    for tb in range(T_B):
        for item, occ in ext.get(divmod(tb, B), []):
            items.append(item)
            pos += [o[0] for o in occ]
            age += [o[1] for o in occ]
            occ_offsets.append(len(pos))
        offsets.append(len(items))
    w.update(ext_offsets=np.array(offsets, np.int32), ext_items=np.array(items, np.int32),
             ext_occ_offsets=np.array(occ_offsets, np.int32),
             ext_pos=np.array(pos, np.uint8), ext_age=np.array(age, np.uint8))
    included = ref.candidate_columns(w)[1]
    assert included[1, 0].sum() == 1 and included[1, 1].sum() == 1    # own column only
    expected = ref.window_forward(p, w, loss=loss, logq=logq, bpreg=bpreg)
    assert np.all(np.isfinite(expected["ce"])) and np.all(expected["ce"][1, :2] > 0)
    assert np.all(expected["ce"][1, :2] < 10)
    got = run_core(core, p, w, loss=loss, logq=logq, bpreg=bpreg)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    fd = ref.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS + ("O", "bo", "E", "Wsx"),
                           max_entries=40, seed=1, loss=loss, logq=logq, bpreg=bpreg)
    for name, (idx, values) in fd.items():
        actual = np.asarray(got["grads"][name], np.float64).reshape(-1)[idx]
        assert norm_rel_err(actual, values) < 2e-3, name
    assert len(fd["rc"][0]) == 8 and len(fd["rd"][0]) == 8
    # every extra item's O / bo row has a gradient
    g_bo = np.asarray(got["grads"]["bo"], np.float64)
    assert np.all(np.abs(g_bo[np.unique(items)]) > 0)


def _bad_extra_windows(w, n_items):
    """Malformed ext_* layouts (w: a window with extras, some (t, b) with several)."""
    off, items, occ_off = w["ext_offsets"], w["ext_items"], w["ext_occ_offsets"]
    pos, age = w["ext_pos"], w["ext_age"]
    tb = np.repeat(np.arange(len(off) - 1), np.diff(off))
    first = int(np.flatnonzero(np.diff(off))[0])
    decreasing = off.copy()
    decreasing[first + 1] = off[-1] + 1
    dip = off.copy()
    dip[first + 1] = -1
    past_end = off.copy()
    past_end[-1] += 1
    nonzero_start = off.copy()
    nonzero_start[0] = 1
    occ_decreasing = occ_off.copy()
    occ_decreasing[1] = occ_off[-1] + 1
    occ_past_end = occ_off.copy()
    occ_past_end[-1] += 1

    def with_item(value, e=0):
        bad = items.copy()
        bad[e] = value
        return dict(w, ext_items=bad)

    bad_pos = pos.copy()
    bad_pos[0] = 8
    bad_age = age.copy()
    bad_age[-1] = 255
    yield "ext_offsets decreasing", dict(w, ext_offsets=decreasing)
    yield "ext_offsets negative", dict(w, ext_offsets=dip)
    yield "ext_offsets past the items", dict(w, ext_offsets=past_end)
    yield "ext_offsets not starting at 0", dict(w, ext_offsets=nonzero_start)
    yield "ext_offsets too short", dict(w, ext_offsets=off[:-1])
    yield "ext_occ_offsets decreasing", dict(w, ext_occ_offsets=occ_decreasing)
    yield "ext_occ_offsets past the occurrences", dict(w, ext_occ_offsets=occ_past_end)
    yield "ext_occ_offsets too short", dict(w, ext_occ_offsets=occ_off[:-1])
    yield "item = n_items", with_item(n_items)
    yield "item = -1", with_item(-1)
    yield "item = the target", with_item(int(w["targets"].reshape(-1)[tb[0]]))
    last = len(items) - 1
    yield "last item = its target", with_item(int(w["targets"].reshape(-1)[tb[last]]), last)
    yield "pos bucket 8", dict(w, ext_pos=bad_pos)
    yield "age bucket 255", dict(w, ext_age=bad_age)
    yield "pos / age lengths differ", dict(w, ext_age=age[:-1])


def test_malformed_extra_columns_are_rejected(core):
    """Offsets, items and buckets of the extra columns are checked (no UB): ValueError."""
    p = ref.init_params(N_ITEMS, 6, False, seed=1)
    w = ref.make_window(N_ITEMS, 6, 4, 3, S, seed=2, extras=True)
    run_core(core, p, w)
    accepted, other = [], []
    for what, bad in _bad_extra_windows(w, N_ITEMS):
        try:
            run_core(core, p, bad)
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001 - reported below
            other.append(f"{what}: {type(exc).__name__}: {exc}")
            continue
        accepted.append(what)
    assert not accepted and not other, f"accepted: {accepted}; wrong exception: {other}"
