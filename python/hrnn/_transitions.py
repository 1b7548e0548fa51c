"""Item-to-item transition counts between consecutive events of a session, and the repeat curve of
the users' histories: the evidence of the ``Markov`` and ``RepeatRule`` baselines and of HRNN's
transition prior.

Private; kept apart so that the baselines and the model share one definition.
"""
from __future__ import annotations

import numpy as np

MAX_SUCCESSORS = 100  # successors kept per item: a bound on the work per history position
REPEAT_HISTORY = 200  # the recent events the transition prior's repeat part reads (kRepeatWindow)
REPEAT_CHUNK = 2_000_000  # events repeat_curve takes at a time


def transition_counts(items: np.ndarray, new_session: np.ndarray, n_items: int) -> tuple:
    """CSR (indptr, successors, counts) of i -> j between consecutive events of a session.

    ``items`` and ``new_session`` are an event log's arrays (users one after another, time order);
    ``new_session`` is set at every user's first event, so no pair spans two users. Events of
    unknown items (-1) form no pair.
    """
    same = new_session[1:] == 0
    src, dst = items[:-1][same].astype(np.int64), items[1:][same].astype(np.int64)
    ok = (src >= 0) & (dst >= 0)
    keys, counts = np.unique(src[ok] * n_items + dst[ok], return_counts=True)
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // n_items, minlength=n_items), out=indptr[1:])
    return indptr, keys % n_items, counts.astype(np.float64)


def top_successors(indptr, succ, count, cap=MAX_SUCCESSORS, by_count=True):
    """Each row's ``cap`` most frequent successors (ties: the lower item index first), and each
    row's total count before the cut. They are sorted by decreasing count, or with ``by_count=False``
    left in item order (the order the engine keeps). The input is transition_counts' output: each
    row's successors in item order, whole counts."""
    n = len(indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    total = np.bincount(rows, weights=count, minlength=n)
    whole = count.astype(np.int64)
    top = int(whole.max(initial=0))
    # Stable sorts keep item order within a count; one integer key sorts several times faster.
    if n * (top + 1) < 2**62:
        order = np.argsort(rows * (top + 1) + (top - whole), kind="stable")
    else:
        order = np.lexsort((-count, rows))
    keep = (np.arange(len(rows)) - indptr[rows]) < cap
    new_ptr = np.zeros_like(indptr)
    np.cumsum(np.minimum(np.diff(indptr), cap), out=new_ptr[1:])
    if by_count:
        return new_ptr, succ[order][keep], count[order][keep], total
    kept = np.empty_like(keep)
    kept[order] = keep
    return new_ptr, succ[kept], count[kept], total


def repeat_curve(offsets: np.ndarray, items: np.ndarray, n_items: int, length: int,
                 chunk: int = REPEAT_CHUNK) -> np.ndarray:
    """float64 [length]: q[p] = P(next item == the item p + 1 events back | that event is the
    latest occurrence of its item), measured on the histories (``offsets`` [n_users + 1], users one
    after another, time order). Events of unknown items (-1) are never repeated. Whole users of
    about ``chunk`` events at a time, so the temporaries stay bounded on large logs."""
    num = np.zeros(length, dtype=np.int64)
    den = np.zeros(length, dtype=np.int64)
    cuts = np.unique(np.searchsorted(offsets, np.arange(0, offsets[-1], chunk), side="right") - 1)
    for a, b in zip(cuts.tolist(), cuts[1:].tolist() + [len(offsets) - 1]):
        part = offsets[a:b + 1] - offsets[a]
        n_part, d_part = _repeat_counts(part, items[offsets[a]:offsets[b]], n_items, length)
        num += n_part
        den += d_part
    return np.divide(num, den, out=np.zeros(length), where=den > 0)


def _repeat_counts(offsets, items, n_items, length):
    """repeat_curve's numerator and denominator on whole users (offsets start at 0)."""
    n = int(offsets[-1])
    idx = np.arange(n, dtype=np.int64)
    users = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    items = np.asarray(items, dtype=np.int64)
    key = np.where(items >= 0, users * n_items + items, -1 - idx)  # an unknown item matches nothing
    order = np.argsort(key, kind="stable")  # equal keys stay in time order
    same = key[order][1:] == key[order][:-1]
    prev = np.full(n, -1, dtype=np.int64)
    nxt = np.full(n, np.iinfo(np.int64).max // 2, dtype=np.int64)
    prev[order[1:][same]] = order[:-1][same]
    nxt[order[:-1][same]] = order[1:][same]
    dist = idx - prev
    num = np.bincount(dist[(prev >= 0) & (dist <= length)], minlength=length + 1)[1:]
    # Event j is the latest occurrence of its item for the next min(nxt - j, events left) events,
    # so it counts in the denominator of every distance up to that.
    reach = np.minimum(np.minimum(nxt - idx, offsets[users + 1] - 1 - idx), length)
    den = np.cumsum(np.bincount(reach, minlength=length + 1)[::-1])[::-1][1:]
    return num, den


def repeat_share(offsets: np.ndarray, items: np.ndarray, n_items: int) -> float:
    """The share of the events (unknown items' included) whose item their user had already
    consumed: 0 on ratings logs like MovieLens, a quarter or more on click logs."""
    n = int(offsets[-1])
    if n == 0:
        return 0.0
    users = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    items = np.asarray(items, dtype=np.int64)
    known = items >= 0
    return 1.0 - (len(np.unique(users[known] * n_items + items[known])) + int((~known).sum())) / n


def transition_table(arrays: tuple, train_users: np.ndarray, popularity: np.ndarray) -> tuple:
    """HRNN's transition prior (all but its weight), counted on the training users' events of an
    event log's arrays (offsets, items, timestamps, new_session): the arguments of
    ``Engine.set_transitions`` after the weight."""
    offsets, items, _, new_session = arrays
    lengths = np.diff(offsets)
    is_train = np.isin(np.arange(len(lengths)), train_users)
    in_train = np.repeat(is_train, lengths)
    n_items = len(popularity)
    curve = repeat_curve(np.concatenate([[0], np.cumsum(lengths[is_train])]), items[in_train],
                         n_items, REPEAT_HISTORY)
    offsets, successors, counts, out = top_successors(
        *transition_counts(items[in_train], new_session[in_train], n_items), by_count=False)
    return (offsets, successors.astype(np.int32), counts.astype(np.float32),
            out.astype(np.float32), popularity, curve.astype(np.float32))


def apply_table(engine, table, weight: float) -> None:
    """Give ``engine`` the prior ``table`` at ``weight`` (nothing when there is no table)."""
    if table is not None:
        engine.set_transitions(float(weight), *table)
