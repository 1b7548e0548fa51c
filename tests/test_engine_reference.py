"""The C++ engine (hrnn._core.window_loss_grad) against the float64 reference of docs/engine.md.

It compares the binding to the reference: forward values, analytic gradients vs float64 finite
differences, truncated BPTT (u_init / h_init are constants), threading, the repeat score (rc / rd /
rV with the window's rep_offsets / rep_pos / rep_age) and the extra candidate columns (ext_offsets /
ext_items / ext_occ_offsets / ext_pos / ext_age); tests/test_reference_*.py check the reference
on its own.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference as ref
import reference_windows as refw
from engine_cases import (LOSS_CASES, LOSS_IDS, N_ITEMS, S, bad_extra_windows, extra_only_items,
                          norm_rel_err, run_core, with_empty_extras, with_empty_repeat,
                          without_extras, without_repeat)


@pytest.fixture(scope="module")
def core():
    """The C++ binding. Fails (never skips) when it cannot be imported."""
    try:
        from hrnn import _core
    except ImportError as exc:  # pragma: no cover - only when the build is broken
        pytest.fail(f"cannot import hrnn._core: {exc}")
    return _core


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
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=100 + seed, repeat=repeat, extras=extras,
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
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=4, extras=extras)
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
        w = refw.make_window(N_ITEMS, H, 1, 1, S, seed=40 + seed, repeat=True, extras=extras)
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
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=seed + 1, recency=recency, repeat=repeat,
                        extras=extras)
    got = run_core(core, p, w, loss=loss, logq=logq, bpreg=1.0)
    grads = got["grads"]
    assert set(grads) == set(p)
    blocks = [n for n in ref.PARAM_ORDER
              if n in p and (repeat or extras or n not in ref.REPEAT_PARAMS)]
    fd = refw.numeric_grads(p, w, blocks=blocks, max_entries=max_entries, seed=seed, loss=loss,
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
        unused = np.setdiff1d(np.arange(g.size), refw.relevant_repeat_entries(w, name, H))
        np.testing.assert_allclose(g.reshape(-1)[unused], 0, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_initial_states_are_constants(core, tied):
    """Truncated BPTT: u_init / h_init change the loss but get no gradient."""
    T, B, H = 6, 4, 8
    p = ref.init_params(N_ITEMS, H, tied, seed=5)
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=6, resets=False)
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
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=9, extras=extras)
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
    w = refw.make_window(N_ITEMS, H, T, B, many, seed=11, extras=True)
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
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=12, inactive_tail=False)
    w["targets"][1] = [4, 4, -1]
    w["items"][1, 2] = -1
    w["negatives"][1] = 4
    expected = ref.window_forward(p, w, loss=loss)
    np.testing.assert_allclose(expected["ce"][1, :2],
                               0.0 if loss == "softmax" else -np.log(1e-24), atol=1e-12)
    got = run_core(core, p, w, loss=loss)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    fd = refw.numeric_grads(p, w, loss=loss, max_entries=20)
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
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=22)
    with_occ = run_core(core, p, w, loss=loss, logq=logq, bpreg=bpreg)
    plain = run_core(core, p, without_repeat(w), loss=loss, logq=logq, bpreg=bpreg)
    expected = ref.window_forward(p, without_repeat(w), loss=loss, logq=logq, bpreg=bpreg)
    np.testing.assert_allclose(with_occ["loss"], plain["loss"], rtol=1e-6)
    np.testing.assert_allclose(with_occ["loss"], expected["loss"], rtol=1e-5)
    for name in p:
        if name not in ref.REPEAT_PARAMS:
            assert norm_rel_err(np.asarray(with_occ["grads"][name], np.float64),
                                np.asarray(plain["grads"][name], np.float64)) < 1e-5, name
    fd = refw.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS, loss=loss, logq=logq, bpreg=bpreg)
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
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=24)
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
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=26, inactive_tail=False)
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
    fd = refw.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS + ("O", "bo", "Wsx"), max_entries=40,
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
    w = refw.make_window(N_ITEMS, 6, 4, 3, S, seed=2)
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
    w = refw.make_window(N_ITEMS, H, T, B, 2, seed=4, extras=True)
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
    w = refw.make_window(N_ITEMS, H, T, B, S, seed=34, repeat=repeat, extras=True)
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
    w = refw.make_window(n_items, H, T, B, S_, seed=36, inactive_tail=False, repeat=False)
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
    fd = refw.numeric_grads(p, w, blocks=ref.REPEAT_PARAMS + ("O", "bo", "E", "Wsx"),
                           max_entries=40, seed=1, loss=loss, logq=logq, bpreg=bpreg)
    for name, (idx, values) in fd.items():
        actual = np.asarray(got["grads"][name], np.float64).reshape(-1)[idx]
        assert norm_rel_err(actual, values) < 2e-3, name
    assert len(fd["rc"][0]) == 8 and len(fd["rd"][0]) == 8
    # every extra item's O / bo row has a gradient
    g_bo = np.asarray(got["grads"]["bo"], np.float64)
    assert np.all(np.abs(g_bo[np.unique(items)]) > 0)


def test_malformed_extra_columns_are_rejected(core):
    """Offsets, items and buckets of the extra columns are checked (no UB): ValueError."""
    p = ref.init_params(N_ITEMS, 6, False, seed=1)
    w = refw.make_window(N_ITEMS, 6, 4, 3, S, seed=2, extras=True)
    run_core(core, p, w)
    accepted, other = [], []
    for what, bad in bad_extra_windows(w, N_ITEMS):
        try:
            run_core(core, p, bad)
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001 - reported below
            other.append(f"{what}: {type(exc).__name__}: {exc}")
            continue
        accepted.append(what)
    assert not accepted and not other, f"accepted: {accepted}; wrong exception: {other}"
