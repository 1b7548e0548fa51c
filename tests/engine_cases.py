"""Helpers shared by the reference tests: windows in the binding's dtypes, window variants,
literal loops of docs/engine.md's GRU and loss, and the loss cases."""

from __future__ import annotations

import numpy as np

import reference as ref

N_ITEMS = 15
S = 5


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


def bad_extra_windows(w, n_items):
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
