"""Float64 reference of the query-time scores of docs/engine.md: the repeat boosts and the
transition prior (tests/reference.py holds the network and the training loss)."""

from __future__ import annotations

import numpy as np

from reference import N_POS_BUCKETS, age_bucket, gru, output_matrix, pos_bucket


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


def transition_prior(kept, out, popularity, weight, recent_items, curve=(), sources=True):
    """[N]: log of weight * P_j up to a constant of the row, for the recent items (oldest first):
    P_j = R_j + (1 - r) (G pop_j + S_j), R_j = the sum of curve[p] over j's positions p (0 = the
    latest), r = min(sum R, 0.95), as weight * (log pop_j + log(1 + (S_j + R_j / (1 - r)) / (G pop_j))).
    With a curve of zeros (a log without repeats) every item of recent_items (the whole history)
    gets weight * (log pop_j + log SEEN_FLOOR) instead. sources=False (a session-start query): no
    recent item is a transition source, G = 1 and S = 0."""
    pop = np.maximum(np.asarray(popularity, np.float64) / np.sum(popularity), 1e-12)
    term = weight * np.log(pop)
    n = len(recent_items)
    sources = [(k, recent_items[n - 1 - k]) for k in range(min(TRANSITION_SOURCES, n) if sources else 0)
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


def session_start_state(params, u, h, mix):
    """docs/engine.md, "Session-start queries": (1 - mix) h + mix tanh(W0 GRU_u(h, u) + b0)."""
    u, h = np.asarray(u, np.float64), np.asarray(h, np.float64)
    proposed = np.tanh(params["W0"] @ gru(params["Wux"], params["Wuh"], params["bu"], h, u) + params["b0"])
    return (1.0 - mix) * h + mix * proposed


def query_scores(params, h, recent_items, recent_ts, prior=None, sources=True):
    """[N] float64: every item's score for a user with session state h and the given history
    (items oldest first, -1 = unknown; timestamps): O h + bo + repeat boosts (+ the transition
    prior, given as (kept, out, popularity, weight, repeat curve); ``sources`` as there)."""
    h = np.asarray(h, np.float64)
    scores = output_matrix(params) @ h + params["bo"] + repeat_boosts(params, h, recent_items, recent_ts)
    if prior is not None:
        kept, out, popularity, weight, curve = prior
        scores = scores + transition_prior(kept, out, popularity, weight, recent_items, curve, sources)
    return scores
