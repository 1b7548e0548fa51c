"""Random windows shaped like the epoch planner's output, and float64 finite differences of
tests/reference.py's loss over the parameter entries a window can move."""

from __future__ import annotations

import numpy as np

from reference import (N_AGE_BUCKETS, N_POS_BUCKETS, PARAM_ORDER, REPEAT_HISTORY, REPEAT_PARAMS,
                       age_bucket, candidate_columns, extra_columns, pos_bucket,
                       repeat_occurrences, window_forward)


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
