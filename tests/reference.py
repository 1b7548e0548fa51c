"""Float64 numpy reference implementation of docs/engine.md.

This module re-implements the engine contract independently of cpp/ so the tests can compare the
two. Readability and faithfulness to docs/engine.md come first; the recurrence is vectorized over
lanes (one numpy call per step and operation) only so that finite differences stay cheap.

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
# query scores: the repeat boosts and the transition prior (docs/engine.md)
# ----------------------------------------------------------------------------------------------

REPEAT_WINDOW = 200                                          # L of "Repeat score"
TRANSITION_SOURCES = 10
TRANSITION_DECAY = 0.8
TRANSITION_SMOOTHING = 30.0
SEEN_FLOOR = 1e-4  # kSeenFloor
TRANSITION_SUCCESSORS = 100


def transition_table(sessions, n_items, cap=TRANSITION_SUCCESSORS):
    """docs/engine.md, "Transition prior": from lists of item indices (each one session, -1 =
    unknown), (kept, out): kept[i] = [(j, count)] the cap most frequent successors of i (ties: the
    lower index first), out[i] = every transition out of i."""
    counts = {}
    for items in sessions:
        for a, b in zip(items[:-1], items[1:]):
            if a >= 0 and b >= 0:
                counts[(a, b)] = counts.get((a, b), 0) + 1
    out = np.zeros(n_items)
    rows = {i: [] for i in range(n_items)}
    for (a, b), c in counts.items():
        out[a] += c
        rows[a].append((b, c))
    kept = {i: sorted(r, key=lambda bc: (-bc[1], bc[0]))[:cap] for i, r in rows.items()}
    return kept, out


def repeat_curve(histories, length):
    """q[p] = P(next item == the item p + 1 events back | that event is the latest occurrence of
    its item), counted over the histories (lists of item indices, -1 = unknown, never repeated)."""
    num, den = np.zeros(length), np.zeros(length)
    for items in histories:
        for t in range(1, len(items)):
            seen = set()
            for p in range(min(length, t)):  # the event p + 1 back from event t
                j = items[t - 1 - p]
                if j < 0 or j in seen:
                    continue
                seen.add(j)
                den[p] += 1
                num[p] += items[t] == j
    return np.divide(num, den, out=np.zeros(length), where=den > 0)


def transition_prior(kept, out, popularity, weight, recent_items, curve=()):
    """[N]: log of weight * P_j up to a constant of the row, for the recent items (oldest first):
    P_j = R_j + (1 - r) (G pop_j + S_j), R_j = the sum of curve[p] over j's positions p (0 = the
    latest), r = min(sum R, 0.95), as weight * (log pop_j + log(1 + (S_j + R_j / (1 - r)) / (G pop_j))).
    With a curve of zeros (a log without repeats) every item of recent_items (the whole history)
    gets weight * (log pop_j + log SEEN_FLOOR) instead."""
    pop = np.maximum(np.asarray(popularity, np.float64) / np.sum(popularity), 1e-12)
    term = weight * np.log(pop)
    n = len(recent_items)
    sources = [(k, recent_items[n - 1 - k]) for k in range(min(TRANSITION_SOURCES, n))
               if recent_items[n - 1 - k] >= 0]
    a = np.array([TRANSITION_DECAY ** k for k, _ in sources])
    a /= max(a.sum(), 1e-300)
    g = sum(ak * TRANSITION_SMOOTHING / (out[i] + TRANSITION_SMOOTHING) for ak, (_, i) in zip(a, sources))
    s = np.zeros(len(pop))
    for ak, (_, i) in zip(a, sources):
        for j, c in kept[i]:
            s[j] += ak * c / (out[i] + TRANSITION_SMOOTHING)
    rep = np.zeros(len(pop))
    for p in range(min(len(curve), n)):
        if recent_items[n - 1 - p] >= 0:
            rep[recent_items[n - 1 - p]] += curve[p]
    s += rep / (1.0 - min(rep.sum(), 0.95))
    rel = np.log1p(s / ((g if sources else 1.0) * pop))
    if len(curve) and not np.any(np.asarray(curve) > 0):
        rel[[i for i in recent_items if i >= 0]] = np.log(SEEN_FLOOR)
    return term + weight * rel


def repeat_boosts(params, h, recent_items, recent_ts):
    """[N]: each item's sum over its occurrences among the last L events of
    rc[pos] + rd[age] + h . (rV[:, pos] + rV[:, 8 + age]), ages from the last event."""
    n = len(recent_items)
    boost = np.zeros(params["bo"].shape[0])
    for j in range(max(0, n - REPEAT_WINDOW), n):
        item = recent_items[j]
        if item < 0:
            continue
        pos = pos_bucket(n - 1 - j)
        age = age_bucket((recent_ts[n - 1] - recent_ts[j]) / 60.0)
        boost[item] += (params["rc"][pos] + params["rd"][age]
                        + h @ (params["rV"][:, pos] + params["rV"][:, N_POS_BUCKETS + age]))
    return boost


def query_scores(params, h, recent_items, recent_ts, prior=None):
    """[N] float64: every item's score for a user with session state h and the given history
    (items oldest first, -1 = unknown; timestamps): O h + bo + repeat boosts (+ the transition
    prior, given as (kept, out, popularity, weight, repeat curve))."""
    h = np.asarray(h, np.float64)
    scores = output_matrix(params) @ h + params["bo"] + repeat_boosts(params, h, recent_items, recent_ts)
    if prior is not None:
        kept, out, popularity, weight, curve = prior
        scores = scores + transition_prior(kept, out, popularity, weight, recent_items, curve)
    return scores


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


# ----------------------------------------------------------------------------------------------
# finite differences
# ----------------------------------------------------------------------------------------------

def relevant_rows(window, name, tied):
    """Rows of E / O / bo that can have a non-zero gradient in this window."""
    items = np.asarray(window["items"])
    targets = np.asarray(window["targets"])
    negatives = np.asarray(window["negatives"])
    has_target = (targets >= 0) & (items >= 0)
    inputs = set(items[items >= 0].tolist())
    outputs = set(targets[has_target].tolist())
    for t in range(targets.shape[0]):
        if has_target[t].any():
            outputs |= set(negatives[t].tolist())
    tb, ext_items, *_ = extra_columns(window)
    outputs |= set(ext_items[has_target.reshape(-1)[tb]].tolist())
    if name == "E":
        rows = inputs | outputs if tied else inputs
    else:  # "O", "bo"
        rows = outputs
    return np.array(sorted(rows), dtype=np.int64)


def relevant_repeat_entries(window, name, hidden):
    """Flat indices of rc / rd / rV that can have a non-zero gradient: the buckets that occur at
    (t, b) with a target, the target's occurrences and the extra items' occurrences alike
    (rV: every row of the columns pos and 8 + age)."""
    tb, pos, age = repeat_occurrences(window)
    ext_tb, _, _, ext_occ, ext_pos, ext_age, _ = extra_columns(window)
    tb = np.concatenate([tb, ext_tb[ext_occ]])
    pos = np.concatenate([pos, ext_pos])
    age = np.concatenate([age, ext_age])
    targets = np.asarray(window["targets"])
    items = np.asarray(window["items"])
    has_target = ((targets >= 0) & (items >= 0)).reshape(-1)
    keep = has_target[tb]
    pos, age = pos[keep], age[keep]
    if name == "rc":
        return np.unique(pos)
    if name == "rd":
        return np.unique(age)
    columns = np.unique(np.concatenate([pos, N_POS_BUCKETS + age]))
    n_cols = N_POS_BUCKETS + N_AGE_BUCKETS
    return np.sort((np.arange(hidden)[:, None] * n_cols + columns[None, :]).ravel())


def sample_entries(params, window, name, max_entries, rng):
    """Flat indices of the entries of block `name` whose gradient is checked."""
    value = params[name]
    size = value.size
    if max_entries is None or max_entries >= size:
        return np.arange(size)
    tied = "O" not in params
    if name in REPEAT_PARAMS:
        candidates = relevant_repeat_entries(window, name, params["E"].shape[1])
        if len(candidates) <= max_entries:
            return candidates
        return np.sort(rng.choice(candidates, size=max_entries, replace=False))
    if name in ("E", "O", "bo"):
        rows = relevant_rows(window, name, tied)
        if name == "bo":
            if len(rows) <= max_entries:
                return rows
            return np.sort(rng.choice(rows, size=max_entries, replace=False))
        H = value.shape[1]
        candidates = (rows[:, None] * H + np.arange(H)[None, :]).ravel()
        if len(candidates) <= max_entries:
            return candidates
        return np.sort(rng.choice(candidates, size=max_entries, replace=False))
    return np.sort(rng.choice(size, size=max_entries, replace=False))


def numeric_grads(params, window, eps=1e-6, blocks=None, max_entries=None, seed=0, **loss_kw):
    """Central finite differences of the window loss in float64.

    Returns dict name -> (flat_indices, values). With max_entries, that many entries per block
    are sampled (rows of E / O / bo among the items the window uses, extra items included;
    entries of rc / rd / rV among the buckets its repeat occurrences, the target's and the extra
    items', use).
    """
    rng = np.random.default_rng(seed)
    params = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    columns = candidate_columns(window)
    occurrences = repeat_occurrences(window)
    extras = extra_columns(window)
    names = [n for n in PARAM_ORDER if n in params] if blocks is None else list(blocks)
    out = {}
    for name in names:
        idx = sample_entries(params, window, name, max_entries, rng)
        flat = params[name].reshape(-1)  # view
        values = np.zeros(len(idx))
        for k, i in enumerate(idx):
            orig = flat[i]
            flat[i] = orig + eps
            plus = window_forward(params, window, _columns=columns, _occurrences=occurrences,
                                  _extras=extras, **loss_kw)["loss"]
            flat[i] = orig - eps
            minus = window_forward(params, window, _columns=columns, _occurrences=occurrences,
                                   _extras=extras, **loss_kw)["loss"]
            flat[i] = orig
            values[k] = (plus - minus) / (2.0 * eps)
        out[name] = (idx, values)
    return out


# ----------------------------------------------------------------------------------------------
# random windows
# ----------------------------------------------------------------------------------------------

def make_window(n_items, hidden, T, B, S, seed, recency=True, p_new_session=0.3, resets=True,
                inactive_tail=True, repeat=True, repeat_rate=0.4, extras=False):
    """A random window shaped like the epoch planner's output.

    Each lane walks users: the target of step t is the input of step t+1 unless the lane takes a
    new user (fresh) at t+1 or stops. Some lanes reset to a new user at step 0 or mid-window,
    sessions change mid-window (new_session with gaps > 1800 s, otherwise 5..1500 s), and with
    inactive_tail some lanes stop early (item = target = -1 afterwards). An active input always
    has a target. To make every parameter block matter even with T = 1, step 0 has (when B allows)
    lane 0 fresh (if resets), lane 1 continuing into a new session, lane 2 continuing its session.
    Lane 0 is active for the whole window.

    With repeat, the window has rep_offsets / rep_pos / rep_age (see make_repeat_occurrences); they
    come from a separate random stream, so the rest of the window does not depend on `repeat`.
    With extras, it has ext_offsets / ext_items / ext_occ_offsets / ext_pos / ext_age (see
    make_extra_columns), from another separate stream: the rest does not depend on `extras`.
    """
    rng = np.random.default_rng(seed)
    items = np.full((T, B), -1, dtype=np.int32)
    targets = np.full((T, B), -1, dtype=np.int32)
    gaps = np.zeros((T, B), dtype=np.float64)
    fresh = np.zeros((T, B), dtype=np.uint8)
    new_session = np.zeros((T, B), dtype=np.uint8)

    for b in range(B):
        end = T
        if inactive_tail and b > 0 and T > 1:
            if b == B - 1:
                end = int(rng.integers(1, T))          # the last lane always stops early
            elif rng.random() < 0.3:
                end = int(rng.integers(0, T))          # may be inactive for the whole window
        for t in range(end):
            if t == 0 and b == 0:
                is_fresh = resets
            elif t == 0 and b in (1, 2):
                is_fresh = False
            elif t == 0:
                is_fresh = resets and rng.random() < 0.3
            else:
                is_fresh = resets and rng.random() < 0.12
            if is_fresh:
                fresh[t, b] = 1
                new_session[t, b] = 1
                gaps[t, b] = 0.0
            else:
                if t == 0 and b in (1, 2):
                    is_new = (b == 1)
                else:
                    is_new = rng.random() < p_new_session
                new_session[t, b] = 1 if is_new else 0
                if is_new:
                    gaps[t, b] = rng.uniform(1801.0, 3 * 86400.0)
                elif rng.random() < 0.05:
                    gaps[t, b] = -rng.uniform(0.0, 30.0)   # clock skew: max(gap, 0) applies
                else:
                    gaps[t, b] = rng.uniform(5.0, 1500.0)
            items[t, b] = rng.integers(n_items)
        for t in range(end):
            if t + 1 < end and not fresh[t + 1, b]:
                targets[t, b] = items[t + 1, b]
            else:
                targets[t, b] = rng.integers(n_items)   # the user's last event / beyond the window

    if recency:
        weights = rng.uniform(0.2, 2.0, size=(T, B)).astype(np.float32)
    else:
        weights = np.ones((T, B), dtype=np.float32)
    negatives = rng.integers(0, n_items, size=(T, S)).astype(np.int32)
    u_init = rng.uniform(-0.5, 0.5, size=(B, hidden)).astype(np.float32)
    h_init = rng.uniform(-0.5, 0.5, size=(B, hidden)).astype(np.float32)
    popularity = rng.random(n_items) + 0.05
    logq = np.log(popularity / popularity.sum()).astype(np.float32)
    window = {"items": items, "targets": targets, "gaps": gaps, "fresh": fresh,
              "new_session": new_session, "weights": weights, "negatives": negatives,
              "u_init": u_init, "h_init": h_init, "logq": logq}
    if repeat:
        has_target = (targets >= 0) & (items >= 0)
        window.update(make_repeat_occurrences(has_target, np.random.default_rng([seed, 7]),
                                              rate=repeat_rate))
    if extras:
        window.update(make_extra_columns(items, targets, negatives, n_items,
                                         np.random.default_rng([seed, 11])))
    return window


def make_repeat_occurrences(has_target, rng, rate=0.4, max_count=3):
    """rep_offsets / rep_pos / rep_age for a window whose (t, b) with a target are has_target.

    A fraction `rate` of the targets occurs among the lane's last L = 50 events, 1..max_count
    times (mostly once); the others have an empty list. The occurrences are distinct past events,
    listed from the most recent: distance d (events before t, recent ones more likely) gives
    pos_bucket(d), and the age is the sum of d inter-event gaps of a per-list pace (0.1 minute to
    1.5 days per event), bucketed with age_bucket; so pos and age are nondecreasing within a list.
    The first (t, b) with a target always has 2 occurrences so that even a T = 1 window uses the
    repeat parameters.
    """
    T, B = has_target.shape
    d_weights = 1.0 / (1.0 + np.arange(REPEAT_HISTORY)) ** 0.8
    d_weights /= d_weights.sum()
    count_p = 0.5 ** np.arange(max_count)                    # 1 occurrence most often
    count_p /= count_p.sum()
    counts = np.zeros(T * B, dtype=np.int64)
    pos, age = [], []
    first = True
    for t in range(T):
        for b in range(B):
            if not has_target[t, b]:
                continue
            if first:
                k, first = 2, False
            elif rng.random() < rate:
                k = 1 + int(rng.choice(max_count, p=count_p))
            else:
                k = 0
            if k == 0:
                continue
            distances = np.sort(rng.choice(REPEAT_HISTORY, size=k, replace=False, p=d_weights))
            pace = float(np.exp(rng.uniform(np.log(0.1), np.log(2160.0))))   # minutes per event
            elapsed = np.concatenate([[0.0], np.cumsum(rng.exponential(pace, REPEAT_HISTORY))])
            for d in distances:
                pos.append(pos_bucket(d))
                age.append(age_bucket(elapsed[d]))
            counts[t * B + b] = k
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return {"rep_offsets": offsets, "rep_pos": np.array(pos, dtype=np.uint8),
            "rep_age": np.array(age, dtype=np.uint8)}


def make_extra_columns(items, targets, negatives, n_items, rng, max_extras=4, max_count=3):
    """ext_offsets / ext_items / ext_occ_offsets / ext_pos / ext_age for a window.

    Each (t, b) with a target gets 0..max_extras extra items: distinct, never the target, drawn
    from [0, n_items). Half of the time the first one is the (t, b)'s input item (event t itself,
    among the lane's recent events) when it is not the target, with an occurrence at pos 0 / age 0.
    Items may also be one of the step's shared columns (another lane's target or a negative): those
    simply count twice; the first (t, b) with a target that can have one always gets one, and has at
    least 2 extras so that even a T = 1 window uses them. Each extra has 1..max_count occurrences
    (mostly one), at distinct distances among the last L = 50 events that the (t, b)'s extras do not
    share, bucketed like make_repeat_occurrences (pos / age nondecreasing within an extra).
    """
    T, B = targets.shape
    has_target = (targets >= 0) & (items >= 0)
    d_weights = 1.0 / (1.0 + np.arange(REPEAT_HISTORY)) ** 0.8
    count_p = 0.5 ** np.arange(max_count)
    count_p /= count_p.sum()
    counts = np.zeros(T * B, dtype=np.int64)
    ext_items, occ_counts, pos, age = [], [], [], []
    first = True
    for t in range(T):
        shared = set(targets[t][targets[t] >= 0].tolist()) | set(negatives[t].tolist())
        for b in range(B):
            if not has_target[t, b]:
                continue
            y = int(targets[t, b])
            others = [i for i in range(n_items) if i != y]
            k = min(int(rng.integers(0, max_extras + 1)), len(others))
            chosen = []
            if rng.random() < 0.5 and int(items[t, b]) != y:
                chosen.append(int(items[t, b]))                # event t itself: pos 0, age 0
            shared_here = sorted(shared - {y} - set(chosen))
            if first:
                k = max(k, 2)
                if shared_here:
                    chosen.append(int(rng.choice(shared_here)))
                first = False
            rest = [i for i in others if i not in chosen]
            n_more = max(0, min(k - len(chosen), len(rest)))
            chosen += [int(i) for i in rng.choice(rest, size=n_more, replace=False)]
            if not chosen:
                continue
            # distinct distances for all the occurrences of this (t, b)'s extras
            n_occ = [1 + int(rng.choice(max_count, p=count_p)) for _ in chosen]
            free = np.ones(REPEAT_HISTORY, dtype=bool)
            free[0] = False                                    # distance 0 is the input item
            pace = float(np.exp(rng.uniform(np.log(0.1), np.log(2160.0))))   # minutes per event
            elapsed = np.concatenate([[0.0], np.cumsum(rng.exponential(pace, REPEAT_HISTORY))])
            for j, item in enumerate(chosen):
                dists = [0] if j == 0 and item == int(items[t, b]) else []
                n_more = n_occ[j] - len(dists)
                if n_more > 0:
                    p = np.where(free, d_weights, 0.0)
                    new = rng.choice(REPEAT_HISTORY, size=n_more, replace=False, p=p / p.sum())
                    free[new] = False
                    dists += new.tolist()
                for d in sorted(dists):
                    pos.append(pos_bucket(d))
                    age.append(age_bucket(elapsed[d]))
                ext_items.append(item)
                occ_counts.append(len(dists))
            counts[t * B + b] = len(chosen)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    occ_offsets = np.concatenate([[0], np.cumsum(occ_counts, dtype=np.int64)]).astype(np.int32)
    return {"ext_offsets": offsets, "ext_items": np.array(ext_items, dtype=np.int32),
            "ext_occ_offsets": occ_offsets, "ext_pos": np.array(pos, dtype=np.uint8),
            "ext_age": np.array(age, dtype=np.uint8)}
