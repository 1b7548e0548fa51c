"""Float64 numpy reference implementation of docs/engine.md.

This module re-implements the engine contract independently of cpp/ so the tests can compare the
two. Readability and faithfulness to docs/engine.md come first; the recurrence is vectorized over
lanes (one numpy call per step and operation) only so that finite differences stay cheap.
tests/reference_query.py holds the query-time scores and tests/reference_windows.py the random
windows and finite differences.

Conventions
-----------
* params: dict name -> float64 array with the names/shapes of docs/engine.md (no "O" when tied).
* window: dict with keys items, targets, gaps, fresh, new_session, weights, negatives, u_init,
  h_init, logq (shapes/dtypes as in docs/engine.md; u_init/h_init are float32 here), and optionally
  rep_offsets, rep_pos, rep_age (the target's repeat occurrences; absent = none) and
  ext_offsets, ext_items, ext_occ_offsets, ext_pos, ext_age (the extra candidate columns of each
  (t, b) and the repeat occurrences of each extra item; absent = no extras).
"""

from __future__ import annotations

import numpy as np

F = 2  # number of time features

PARAM_ORDER = ("E", "O", "bo", "Wg", "Vg", "bg", "W0", "b0",
               "Wsx", "Wsh", "bs", "Wux", "Wuh", "bu", "u0", "rc", "rd", "rV")

REPEAT_PARAMS = ("rc", "rd", "rV")

WINDOW_KEYS = ("items", "targets", "gaps", "fresh", "new_session", "weights", "negatives",
               "u_init", "h_init", "logq")

REPEAT_KEYS = ("rep_offsets", "rep_pos", "rep_age")  # optional window keys
EXTRA_KEYS = ("ext_offsets", "ext_items", "ext_occ_offsets", "ext_pos", "ext_age")  # optional

N_POS_BUCKETS = 8
N_AGE_BUCKETS = 8
REPEAT_HISTORY = 50                                          # L: events a user keeps
AGE_EDGES_MINUTES = (1, 5, 30, 180, 1440, 4320, 10080)

BPR_EPS = 1e-24


# ----------------------------------------------------------------------------------------------
# parameters
# ----------------------------------------------------------------------------------------------

def param_shapes(n_items: int, hidden: int, tied: bool) -> dict[str, tuple[int, ...]]:
    N, H = n_items, hidden
    shapes = {
        "E": (N, H), "O": (N, H), "bo": (N,),
        "Wg": (H, H), "Vg": (H, F), "bg": (H,),
        "W0": (H, H), "b0": (H,),
        "Wsx": (3 * H, H), "Wsh": (3 * H, H), "bs": (3 * H,),
        "Wux": (3 * H, H), "Wuh": (3 * H, H), "bu": (3 * H,),
        "u0": (H,),
        "rc": (N_POS_BUCKETS,), "rd": (N_AGE_BUCKETS,), "rV": (H, N_POS_BUCKETS + N_AGE_BUCKETS),
    }
    if tied:
        del shapes["O"]
    return shapes


def init_params(n_items: int, hidden: int, tied: bool, seed: int, scale: float = 0.3,
                repeat: bool = True) -> dict[str, np.ndarray]:
    """Random float64 parameters; every value is exactly representable in float32 so that the
    float32 C++ engine and this reference see identical parameters.

    rc / rd / rV are random (non-zero) too so that their gradients are exercised; with
    repeat=False they are zero, as the engine initializes them (the plain model). The other blocks
    do not depend on `repeat` (rc / rd / rV are drawn last)."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(n_items, hidden, tied).items():
        value = rng.normal(0.0, scale, size=shape)
        if name in REPEAT_PARAMS and not repeat:
            value = np.zeros(shape)
        params[name] = value.astype(np.float32).astype(np.float64)
    return params


def zero_repeat(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A copy of params with rc / rd / rV set to zero."""
    out = {k: np.array(v, copy=True) for k, v in params.items()}
    for name in REPEAT_PARAMS:
        out[name] = np.zeros_like(out[name])
    return out


def output_matrix(params: dict[str, np.ndarray]) -> np.ndarray:
    """O, or E when embeddings are tied (no "O" key)."""
    return params["O"] if "O" in params else params["E"]


def to_float32(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in params.items()}


# ----------------------------------------------------------------------------------------------
# one step
# ----------------------------------------------------------------------------------------------

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def gru(Wx, Wh, b, x, h):
    """Cho et al. 2014 GRU, gate order (r, z, n), reset applied before the recurrent product.
    x: [..., in], h: [..., H]."""
    H = h.shape[-1]
    a = x @ Wx.T + b
    r = sigmoid(a[..., 0:H] + h @ Wh[0:H].T)
    z = sigmoid(a[..., H:2 * H] + h @ Wh[H:2 * H].T)
    n = np.tanh(a[..., 2 * H:3 * H] + (r * h) @ Wh[2 * H:3 * H].T)
    return (1.0 - z) * n + z * h


def step(params, u_prev, h_prev, item, gap, fresh, new_session):
    """One step for a batch of *active* lanes.

    u_prev, h_prev: [L, H]; item: [L] int (>= 0); gap: [L] float; fresh, new_session: [L] bool.
    Returns (u, h), each [L, H].
    """
    p = params
    fresh = np.asarray(fresh, dtype=bool)[:, None]
    new_session = np.asarray(new_session, dtype=bool)
    x = p["E"][item]

    # fresh: the user's first event, state reset to the learned initial one
    u_fresh = np.broadcast_to(p["u0"], u_prev.shape)
    h_tilde_fresh = np.broadcast_to(np.tanh(p["W0"] @ p["u0"] + p["b0"]), h_prev.shape)

    # continuing user: lazily absorb the finished session into the user state
    u_absorbed = gru(p["Wux"], p["Wuh"], p["bu"], h_prev, u_prev)
    u_cont = np.where(new_session[:, None], u_absorbed, u_prev)
    s = np.tanh(u_cont @ p["W0"].T + p["b0"])
    phi = np.stack([np.log1p(np.maximum(gap, 0.0) / 60.0),
                    np.where(new_session, 1.0, 0.0)], axis=-1)
    g = sigmoid(x @ p["Wg"].T + phi @ p["Vg"].T + p["bg"])
    h_tilde_cont = g * h_prev + (1.0 - g) * s

    u = np.where(fresh, u_fresh, u_cont)
    h_tilde = np.where(fresh, h_tilde_fresh, h_tilde_cont)
    h = gru(p["Wsx"], p["Wsh"], p["bs"], x, h_tilde)
    return u, h


def advance(params, u, h, items, gaps, new_session, fresh_first):
    """Forward over one lane's event list (the real-time "advance state" computation).

    u, h: [H] state before the first event (ignored when fresh_first); items, gaps, new_session:
    per-event sequences; fresh_first: whether the first event is the user's first event.
    Returns the state (u, h) after the last event, each [H] float64.
    """
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    u = np.asarray(u, dtype=np.float64).reshape(1, -1)
    h = np.asarray(h, dtype=np.float64).reshape(1, -1)
    for k, item in enumerate(items):
        u, h = step(params, u, h,
                    item=np.array([int(item)]),
                    gap=np.array([float(gaps[k])]),
                    fresh=np.array([bool(fresh_first) and k == 0]),
                    new_session=np.array([bool(new_session[k])]))
    return u[0], h[0]


# ----------------------------------------------------------------------------------------------
# repeat score
# ----------------------------------------------------------------------------------------------

def pos_bucket(events_before: int) -> int:
    """docs/engine.md: how many events before t, bucketed {0, 1, 2, 3, 4-7, 8-15, 16-31, 32+}."""
    d = int(events_before)
    if d < 0:
        raise ValueError("events_before must be >= 0")
    if d <= 3:
        return d
    if d <= 7:
        return 4
    if d <= 15:
        return 5
    if d <= 31:
        return 6
    return 7


def age_bucket(minutes: float) -> int:
    """docs/engine.md: the number of edges (1, 5, 30, 180, 1440, 4320, 10080 minutes) <= the age."""
    return sum(1 for edge in AGE_EDGES_MINUTES if edge <= minutes)


def repeat_occurrences(window):
    """(tb, pos, age): for every listed occurrence m, the flat index t*B+b of its (t, b) and its
    buckets; empty arrays when the window has no rep_* keys. Validates the layout."""
    T, B = np.asarray(window["targets"]).shape
    if not any(k in window for k in REPEAT_KEYS):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    assert all(k in window for k in REPEAT_KEYS), "rep_offsets, rep_pos, rep_age go together"
    offsets = np.asarray(window["rep_offsets"]).astype(np.int64)
    pos = np.asarray(window["rep_pos"]).astype(np.int64)
    age = np.asarray(window["rep_age"]).astype(np.int64)
    assert offsets.shape == (T * B + 1,), offsets.shape
    assert offsets[0] == 0 and np.all(np.diff(offsets) >= 0)
    assert pos.shape == age.shape == (offsets[-1],)
    assert np.all((0 <= pos) & (pos < N_POS_BUCKETS)) and np.all((0 <= age) & (age < N_AGE_BUCKETS))
    tb = np.repeat(np.arange(T * B), np.diff(offsets))
    return tb, pos, age


def repeat_scores(h, window, params, occurrences=None):
    """f[t, b] = sum over the (t, b) occurrences m of
    rc[pos_m] + rd[age_m] + h[t, b] . (rV[:, pos_m] + rV[:, 8 + age_m]); [T, B] (0 where none)."""
    T, B, H = h.shape
    tb, pos, age = occurrences if occurrences is not None else repeat_occurrences(window)
    if len(tb) == 0:
        return np.zeros((T, B))
    rV = params["rV"]
    hm = h.reshape(T * B, H)[tb]                                   # [R, H]
    f = (params["rc"][pos] + params["rd"][age]
         + np.sum(hm * (rV[:, pos] + rV[:, N_POS_BUCKETS + age]).T, axis=1))
    return np.bincount(tb, weights=f, minlength=T * B).reshape(T, B)


def extra_columns(window, n_items=None):
    """The extra candidate columns of the window (docs/engine.md, "Repeat score").

    Returns (tb, item, slot, occ, pos, age, width): for every extra column e, the flat index
    t*B+b of its (t, b), its item and its slot (0.. within that (t, b)); for every listed
    occurrence q, the extra column it belongs to and its buckets; width = the most extras of one
    (t, b). Empty (width 0) when the window has no ext_* keys. Raises ValueError when the layout
    is malformed (offsets not nondecreasing from 0 to the array length, item out of [0, n_items)
    (when n_items is given), item equal to the (t, b)'s target or repeated within it, bucket >= 8).
    Extras of a (t, b) without a target are allowed and ignored.
    """
    targets = np.asarray(window["targets"])
    T, B = targets.shape
    present = [k for k in EXTRA_KEYS if k in window]
    if not present:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e, e, e, e, 0
    if len(present) != len(EXTRA_KEYS):
        raise ValueError(f"{EXTRA_KEYS} go together, got only {present}")
    offsets = np.asarray(window["ext_offsets"]).astype(np.int64)
    items = np.asarray(window["ext_items"]).astype(np.int64)
    occ_offsets = np.asarray(window["ext_occ_offsets"]).astype(np.int64)
    pos = np.asarray(window["ext_pos"]).astype(np.int64)
    age = np.asarray(window["ext_age"]).astype(np.int64)
    if offsets.shape != (T * B + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0) \
            or items.shape != (offsets[-1],):
        raise ValueError("ext_offsets must be [T*B+1], nondecreasing from 0 to len(ext_items)")
    E = len(items)
    if occ_offsets.shape != (E + 1,) or occ_offsets[0] != 0 or np.any(np.diff(occ_offsets) < 0) \
            or pos.shape != (occ_offsets[-1],) or age.shape != pos.shape:
        raise ValueError("ext_occ_offsets must be [E+1], nondecreasing from 0 to len(ext_pos) "
                         "== len(ext_age)")
    if np.any(items < 0) or (n_items is not None and np.any(items >= n_items)):
        raise ValueError("extra item out of range")
    if np.any((pos < 0) | (pos >= N_POS_BUCKETS) | (age < 0) | (age >= N_AGE_BUCKETS)):
        raise ValueError("extra occurrence bucket out of range")
    counts = np.diff(offsets)
    tb = np.repeat(np.arange(T * B), counts)
    if np.any(items == targets.reshape(-1)[tb]):
        raise ValueError("an extra item equals its (t, b)'s target")
    for i in range(T * B):
        lst = items[offsets[i]:offsets[i + 1]]
        if len(np.unique(lst)) != len(lst):
            raise ValueError("the extra items of a (t, b) must be distinct")
    slot = np.arange(E) - offsets[:-1][tb]
    occ = np.repeat(np.arange(E), np.diff(occ_offsets))
    width = int(counts.max()) if E else 0
    return tb, items, slot, occ, pos, age, width


def extra_scores(h, window, params, extras=None):
    """Scores of the extra columns, padded: (r [T, B, W], mask [T, B, W]) with
    r = O[i] . h[t, b] + bo[i] + sum over the extra's occurrences of
    rc[pos] + rd[age] + h[t, b] . (rV[:, pos] + rV[:, 8 + age]) (never a logq term)."""
    T, B, H = h.shape
    tb, item, slot, occ, pos, age, width = extras if extras is not None else extra_columns(window)
    r = np.zeros((T * B, width))
    mask = np.zeros((T * B, width), dtype=bool)
    if len(tb):
        hf = h.reshape(T * B, H)
        he = hf[tb]                                                   # [E, H]
        score = np.sum(output_matrix(params)[item] * he, axis=1) + params["bo"][item]
        if len(occ):
            rV = params["rV"]
            f = (params["rc"][pos] + params["rd"][age]
                 + np.sum(he[occ] * (rV[:, pos] + rV[:, N_POS_BUCKETS + age]).T, axis=1))
            score = score + np.bincount(occ, weights=f, minlength=len(tb))
        r[tb, slot] = score
        mask[tb, slot] = True
    return r.reshape(T, B, width), mask.reshape(T, B, width)


# ----------------------------------------------------------------------------------------------
# the window
# ----------------------------------------------------------------------------------------------

def candidate_columns(window):
    """Returns (cols [T, B+S] item of each column, included [T, B, B+S] bool, has_target [T, B]).

    included[t, b, c] follows docs/engine.md: c == b, or (c < B, targets[t,c] >= 0 and
    targets[t,c] != y), or (c >= B and negatives[t, c-B] != y); only for (t, b) with a target.
    """
    items = np.asarray(window["items"])
    targets = np.asarray(window["targets"])
    negatives = np.asarray(window["negatives"])
    T, B = targets.shape
    S = negatives.shape[1]
    cols = np.concatenate([targets, negatives], axis=1).astype(np.int64)
    has_target = (targets >= 0) & (items >= 0)
    included = np.zeros((T, B, B + S), dtype=bool)
    for t in range(T):
        for b in range(B):
            if not has_target[t, b]:
                continue
            y = targets[t, b]
            for c in range(B + S):
                if c == b:
                    included[t, b, c] = True
                elif c < B:
                    included[t, b, c] = targets[t, c] >= 0 and targets[t, c] != y
                else:
                    included[t, b, c] = negatives[t, c - B] != y
    return cols, included, has_target


def _masked_logsumexp(x, mask, axis=-1):
    xm = np.where(mask, x, -np.inf)
    mx = np.max(xm, axis=axis, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    total = np.sum(np.where(mask, np.exp(x - mx), 0.0), axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.squeeze(np.log(total) + mx, axis=axis)


def _masked_softmax(x, mask, axis=-1):
    """Softmax over the masked entries; all zeros where the mask is empty."""
    xm = np.where(mask, x, -np.inf)
    mx = np.max(xm, axis=axis, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    e = np.where(mask, np.exp(x - mx), 0.0)
    total = np.sum(e, axis=axis, keepdims=True)
    return e / np.where(total > 0, total, 1.0)


def event_losses(h, window, params, loss="softmax", logq=True, bpreg=1.0, columns=None,
                 occurrences=None, extras=None):
    """Per-(t, b) unweighted loss ce [T, B] (0 where no target) from the output states h [T,B,H].

    The columns of (t, b) are the B + S shared ones (those `included`) followed by the lane's
    extra columns (always included, no logq)."""
    cols, included, has_target = columns if columns is not None else candidate_columns(window)
    T, B = has_target.shape
    O = output_matrix(params)
    safe = np.where(cols >= 0, cols, 0)                        # [T, C]
    # r[t, b, c] = O[item_c] . h[t, b] + bo[item_c]
    r = np.einsum("tbh,tch->tbc", h, O[safe]) + params["bo"][safe][:, None, :]
    lane = np.arange(B)
    # the repeat term goes to the own column only (before logq; for bpr-max too)
    r[:, lane, lane] += repeat_scores(h, window, params, occurrences)
    # the lane's extra columns, after the shared ones
    r_ext, ext_mask = extra_scores(h, window, params, extras)
    n_ext = r_ext.shape[-1]
    r = np.concatenate([r, r_ext], axis=-1)
    included = np.concatenate([included, ext_mask & has_target[:, :, None]], axis=-1)
    own = np.eye(B, r.shape[-1], dtype=bool)[None]              # column c == b
    r_own = r[:, lane, lane]                                    # [T, B]

    if loss == "softmax":
        logq_vec = np.asarray(window["logq"], dtype=np.float64)
        shift = np.concatenate([logq_vec[safe], np.zeros((T, n_ext))], axis=1)  # none for extras
        l = r - shift[:, None, :] if logq else r
        ce = _masked_logsumexp(l, included) - l[:, lane, lane]
    elif loss == "bpr-max":
        others = included & ~own
        s = _masked_softmax(r, others)
        prob = np.sum(s * sigmoid(r_own[:, :, None] - r), axis=-1)
        ce = -np.log(prob + BPR_EPS) + bpreg * np.sum(s * r * r, axis=-1)
    else:
        raise ValueError(f"unknown loss {loss!r}")
    return np.where(has_target, ce, 0.0)


def window_forward(params, window, loss="softmax", logq=True, bpreg=1.0, _columns=None,
                   _occurrences=None, _extras=None):
    """Forward pass of one training window (dropout 0).

    Returns dict: loss (float), h [T,B,H] and u [T,B,H] (state leaving each step; inactive (t, b)
    copies the previous state), ce [T,B] (unweighted per-event loss, 0 where no target).
    """
    params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    items = np.asarray(window["items"])
    T, B = items.shape
    gaps = np.asarray(window["gaps"], dtype=np.float64)
    fresh = np.asarray(window["fresh"]).astype(bool)
    new_session = np.asarray(window["new_session"]).astype(bool)
    u = np.array(window["u_init"], dtype=np.float64)
    h = np.array(window["h_init"], dtype=np.float64)
    H = h.shape[1]

    hs = np.zeros((T, B, H))
    us = np.zeros((T, B, H))
    for t in range(T):
        active = items[t] >= 0
        if active.any():
            u_new, h_new = step(params, u[active], h[active], items[t, active], gaps[t, active],
                                fresh[t, active], new_session[t, active])
            u = u.copy()
            h = h.copy()
            u[active] = u_new
            h[active] = h_new
        hs[t] = h
        us[t] = u

    columns = _columns if _columns is not None else candidate_columns(window)
    ce = event_losses(hs, window, params, loss=loss, logq=logq, bpreg=bpreg, columns=columns,
                      occurrences=_occurrences, extras=_extras)
    has_target = columns[2]
    n_targets = int(has_target.sum())
    weights = np.asarray(window["weights"], dtype=np.float64)
    total = float(np.sum(np.where(has_target, weights * ce, 0.0)) / n_targets)
    return {"loss": total, "h": hs, "u": us, "ce": ce}
