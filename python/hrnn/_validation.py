"""Held-out sessions of a training log: the validation of ``fit(validation=True)`` and the choice of
``transition_weight="auto"`` (docs/engine.md, "Choosing the weight").

Private; what HRNN.fit uses between its epochs.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from . import data as _data

# "auto" picks the weight with the best validation score among these (training does not depend on
# it, so all of them cost one ranking pass, not a fit), or the fallback without held-out sessions.
AUTO_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# The weight kept without clear evidence for another: 0.5 where items recur (yoochoose), 1 where
# nobody consumed an item twice, the prior then all but ruling out a user's own items (MovieLens).
AUTO_FALLBACK, AUTO_FALLBACK_NO_REPEATS = 0.5, 1.0
# Without fit(validation=True), "auto" holds out the last sessions of random users, up to this share
# of the events (at least AUTO_HOLDOUT_MIN events): the fewer held out, the less training changes.
# At most AUTO_HOLDOUT_MAX: each held-out event is ranked against the whole catalogue (26 ms at 1M
# items), so 2% of 100M events would take the ranking pass 15 hours on 2 cores.
AUTO_HOLDOUT_SHARE, AUTO_HOLDOUT_MIN, AUTO_HOLDOUT_MAX = 0.02, 2000, 20_000
# "auto"'s session-start mixes and prior sources (docs/engine.md, "Session-start queries"), chosen
# on the held-out sessions' first events. Without clear evidence there, the (mix, sources) kept
# depends on the median gap between a user's sessions in the training log: under RESUMED_GAP, a
# new session mostly resumes the same visit (yoochoose 0.7 hours, taobao 5.8) and its last items
# still lead the way; above it (MovieLens: 85-96 hours) it is a new visit, which the previous one's
# transitions mislead. The held-out first events are often too few to tell (yoochoose: 25 session
# starts in the whole training log).
START_MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)
START_FALLBACK_RESUMED, START_FALLBACK_NEW_VISIT = (0.25, True), (0.5, False)
RESUMED_GAP = 86_400.0
# "auto"'s shares of the neighbours' votes in session-start answers (docs/engine.md, "Session-start
# neighbours"), chosen on the first events of every multi-session user's last session; without
# clear evidence none (on taobao any share loses: the network's answers are sharper than the votes).
NEIGHBOR_BETAS = (0.0, 0.25, 0.5, 0.75, 0.9)
# At most this many first events choose it (random users beyond): each is ranked against the
# whole catalogue under every share (about 30 ms at a million items).
FIRST_EVENTS_MAX = 10_000


def n_targets(arrays: tuple, train_users: np.ndarray) -> int:
    """The training targets of one epoch over ``arrays`` (offsets first)."""
    return int(np.maximum(np.diff(arrays[0])[train_users] - 1, 0).sum())


def _multi_session(log: "_data.EventLog", users: np.ndarray) -> tuple:
    """(each user's last-session start, boolean [n_users]: ``users`` with 2+ sessions)."""
    starts = _data.last_session_starts(log)
    return starts, users & (starts > log.offsets[:-1])


def auto_holdout_users(log: "_data.EventLog", train_users: np.ndarray, rng) -> np.ndarray:
    """Boolean [n_users]: random training users with 2+ sessions whose last sessions hold about
    AUTO_HOLDOUT_SHARE of the events, clipped to [AUTO_HOLDOUT_MIN, AUTO_HOLDOUT_MAX] (all of them
    if fewer)."""
    starts, eligible = _multi_session(log, train_users)
    order = rng.permutation(np.flatnonzero(eligible))
    held_events = np.cumsum(log.offsets[1:][order] - starts[order])
    budget = min(max(AUTO_HOLDOUT_SHARE * log.n_events, AUTO_HOLDOUT_MIN), AUTO_HOLDOUT_MAX)
    mask = np.zeros(log.n_users, dtype=bool)
    mask[order[:int(np.searchsorted(held_events, budget)) + 1]] = True
    return mask


def validation_split(log: "_data.EventLog", train_users: np.ndarray) -> tuple:
    """(prefix arrays, test arrays): each training user's last session is the test, for users
    with 2+ sessions; everyone else keeps all events in the prefix."""
    starts, held = _multi_session(log, train_users)
    if not held.any():
        raise ValueError("validation needs training users with at least 2 sessions; none found")
    cut = np.where(held, starts, log.offsets[1:])
    user = log.event_users()
    in_prefix = np.arange(log.n_events) < cut[user]

    def part(mask, counts):
        offsets = np.zeros(log.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return (offsets, log.items[mask], log.timestamps[mask], log.new_session[mask])

    return (part(in_prefix, cut - log.offsets[:-1]),
            part(~in_prefix, log.offsets[1:] - cut))


def validation_scores(engine, split: tuple, num_threads: int) -> dict:
    """``val_recall@20`` and ``val_mrr@20`` of the split's test events, at the engine's weight."""
    ranks = engine.next_item_ranks(*split[0], *split[1], num_threads=num_threads)
    return {f"val_{m}": float(_per_event(ranks, m).mean()) for m in ("recall@20", "mrr@20")}


def auto_fallback(table) -> float:
    """The fallback weight for a prior ``table`` (``transition_table``'s, the repeat curve last; or
    None): AUTO_FALLBACK_NO_REPEATS when its repeat curve is all zero."""
    no_repeats = table is not None and len(table[-1]) > 0 and not np.any(table[-1] > 0)
    return AUTO_FALLBACK_NO_REPEATS if no_repeats else AUTO_FALLBACK


def choose_transition_weight(engine, split: tuple, metric: str, num_threads: int,
                             fallback: float) -> tuple:
    """(weight, {weight: score}): a weight of AUTO_WEIGHTS chosen on the split's test events (all
    ranked in one pass with the engine's table), by ``_choose`` on ``metric`` and then the other
    next-item metric (MRR@20 for recall@20 and back), which sees differences in rank that a hit
    count misses: clear evidence on either replaces the fallback (``either``). A weight reorders
    the items near the top; on taobao 8 beats the fallback 0.5 by 4-6 standard errors of MRR@20
    but by 2.2-3.4 of Recall@20, so that the hit count alone kept 0.5 after a small change in
    training (README, "Where hrnn loses")."""
    ranks = engine.next_item_ranks(*split[0], *split[1], num_threads=num_threads,
                                   weights=list(AUTO_WEIGHTS))
    other = "mrr@20" if metric == "recall@20" else "recall@20"
    offsets = split[1][0]
    users = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))  # each test event's
    return _choose(AUTO_WEIGHTS, [_per_event(r, metric) for r in ranks],
                   [_per_event(r, other) for r in ranks], fallback, users, either=True)


def resumes_visits(arrays: tuple) -> bool:
    """Whether the median gap before the session starts of ``arrays`` (offsets, items, timestamps,
    new_session; a user's first event is not one) is under RESUMED_GAP; True without any."""
    offsets, _, ts, new_session = arrays
    starts = np.flatnonzero(new_session)
    starts = starts[~np.isin(starts, offsets[:-1])]
    return len(starts) == 0 or bool(np.median(ts[starts] - ts[starts - 1]) < RESUMED_GAP)


def start_fallback(mix="auto", sources="auto", resumed: bool = True) -> tuple:
    """The (mix, sources) a model with these settings answers session starts with when nothing is
    chosen: for the "auto" ones, START_FALLBACK_RESUMED's or START_FALLBACK_NEW_VISIT's."""
    fallback = START_FALLBACK_RESUMED if resumed else START_FALLBACK_NEW_VISIT
    return (fallback[0] if mix == "auto" else float(mix), fallback[1] if sources == "auto" else bool(sources))


def choose_session_start(engine, split: tuple, num_threads: int, mix="auto", sources="auto",
                         resumed: bool = True) -> tuple:
    """((mix, sources), {(mix, sources): first-event Recall@20}): for the settings that are "auto",
    a mix of START_MIXES and whether the prior keeps its sources, chosen on the first events of the
    split's test sessions, asked for as queries that start a session (at the engine's transition
    weight), by ``_choose`` on their Recall@20 and then their MRR@20; ``resumed`` chooses the
    fallback (``start_fallback``)."""
    options = [(m, s) for s in ((False, True) if sources == "auto" else (bool(sources),))
               for m in (START_MIXES if mix == "auto" else (float(mix),))]
    ranks = engine.session_start_ranks(*split[0], *split[1], options=options, num_threads=num_threads)
    ranks = ranks[:, np.diff(split[1][0]) > 0]  # the users with a test session
    return _choose(options, [_per_event(r, "recall@20") for r in ranks],
                   [_per_event(r, "mrr@20") for r in ranks], start_fallback(mix, sources, resumed))


def first_event_users(log: "_data.EventLog", train_users: np.ndarray, rng) -> Optional[np.ndarray]:
    """Boolean [n_users]: the training users with 2+ sessions (whose last sessions' first events
    choose ``session_start_neighbors="auto"``; FIRST_EVENTS_MAX of them at random when there are
    more), or None without such users."""
    held = _multi_session(log, train_users)[1]
    if held.sum() > FIRST_EVENTS_MAX:
        keep = rng.choice(np.flatnonzero(held), FIRST_EVENTS_MAX, replace=False)
        held = np.zeros_like(held)
        held[keep] = True
    return held if held.any() else None


def without_first_events(arrays: tuple, w: Optional[np.ndarray], users: np.ndarray,
                         full_offsets: np.ndarray) -> np.ndarray:
    """Loss weights for ``arrays`` (w, or ones) with 0 at the first event of the last session of
    each of ``users`` (boolean [n_users]) whose last session is there (its events in ``arrays``
    are all of them, ``full_offsets``', and it has 2+ sessions): the first events the share is
    chosen on, kept from being training targets until it is chosen."""
    offsets, items, _, new_session = arrays
    last = _data.last_flags(new_session, offsets)  # > the user's first event: 2+ sessions there
    held = users & (np.diff(offsets) == np.diff(full_offsets)) & (last > offsets[:-1])
    out = np.ones(len(items), dtype=np.float32) if w is None else np.array(w, dtype=np.float32)
    out[last[held]] = 0.0
    return out


def choose_neighbors(engine, split: tuple, start: tuple, num_threads: int) -> tuple:
    """(beta, {beta: first-event Recall@20}): the neighbours' share of NEIGHBOR_BETAS in the
    session-start answers (the engine's neighbour index built from ``split``'s prefix), chosen on
    the first events of ``split``'s test sessions as ``choose_session_start`` chooses, at the
    session-start setting ``start`` (mix, sources); 0 without clear evidence."""
    ranks = engine.session_start_ranks(*split[0], *split[1], options=[start], num_threads=num_threads,
                                       betas=list(NEIGHBOR_BETAS))[0]
    ranks = ranks[:, np.diff(split[1][0]) > 0]
    return _choose(NEIGHBOR_BETAS, [_per_event(r, "recall@20") for r in ranks],
                   [_per_event(r, "mrr@20") for r in ranks], 0.0)


def _choose(options: tuple, first: list, second: list, fallback, users=None, either: bool = False) -> tuple:
    """(the chosen option, {option: mean of its ``first`` scores}). ``first`` and ``second``: per
    option, the paired per-event scores of two metrics; ``users``: each event's user (None: one
    event per user). The fallback stays unless some option beats it on the first metric by two
    standard errors of the paired difference, clustered by user (a choice among near-equal options
    would only follow the noise of the held-out events), or, with ``either``, on the second without
    being clearly worse on the first; among the options that do, those within two standard errors
    of the best on the first are told apart by the second."""
    first, second = dict(zip(options, first)), dict(zip(options, second))
    scores = {o: float(v.mean()) for o, v in first.items()}

    def better(a, b, per_event) -> bool:
        return clearly_better(per_event[a] - per_event[b], groups=users)

    beat = [o for o in options if better(o, fallback, first)
            or (either and better(o, fallback, second) and not better(fallback, o, first))]
    if not beat:
        return fallback, scores
    best = max(beat, key=lambda x: scores[x])
    near = [o for o in beat if not better(best, o, first)]
    return max(near, key=lambda x: (second[x].mean(), scores[x])), scores


def standard_error(diff: np.ndarray, groups=None) -> float:
    """The standard error of the mean of paired per-event (or per-user) differences: the sample
    standard deviation (ddof 1) over sqrt(n), or, given each unit's group (its user), the
    cluster-robust one, sqrt(G / (G - 1) * sum over groups of (their sum of diff - mean)^2) / n,
    which is the same with one unit per group; NaN for fewer than two units or groups, which
    cannot tell noise."""
    if groups is None:
        return float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    codes, uniques = pd.factorize(np.asarray(groups, dtype=object))
    if len(uniques) < 2:
        return float("nan")
    sums = np.bincount(codes, weights=diff - diff.mean(), minlength=len(uniques))
    return float(np.sqrt(len(uniques) / (len(uniques) - 1) * (sums ** 2).sum()) / len(diff))


def clearly_better(diff: np.ndarray, n_se: float = 2.0, groups=None) -> bool:
    """Whether the paired per-event (or per-user) differences ``diff`` have a mean above ``n_se``
    standard errors (clustered by ``groups``, each event's user, as in ``standard_error``: the
    events of one session are not independent draws): a choice of ``auto`` or ``hrnn.tune`` that
    must not follow the noise of a small validation split."""
    return bool(diff.mean() > n_se * standard_error(diff, groups)) if len(diff) > 1 else False


def _per_event(ranks: np.ndarray, metric: str, k: int = 20) -> np.ndarray:
    """Each ranked event's share of ``metric`` ("recall@20": hit or not; "mrr@20": 1 / rank)."""
    hit = (ranks >= 1) & (ranks <= k)
    if metric == "recall@20":
        return hit.astype(np.float64)
    return np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0)
