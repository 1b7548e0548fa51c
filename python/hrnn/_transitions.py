"""Item-to-item transition counts between consecutive events of a session: the evidence of the
``Markov`` and ``RepeatRule`` baselines and of HRNN's transition prior.

Private; kept apart so that the baselines and the model share one definition.
"""
from __future__ import annotations

import numpy as np

MAX_SUCCESSORS = 100  # successors kept per item: a bound on the work per history position


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


def top_successors(indptr, succ, count, cap=MAX_SUCCESSORS):
    """Each row's ``cap`` most frequent successors, sorted by decreasing count (ties: the lower
    item index first), and each row's total count before the cut."""
    n = len(indptr) - 1
    rows = np.repeat(np.arange(n), np.diff(indptr))
    total = np.bincount(rows, weights=count, minlength=n)
    order = np.lexsort((succ, -count, rows))
    keep = (np.arange(len(rows)) - indptr[rows]) < cap
    new_ptr = np.zeros_like(indptr)
    np.cumsum(np.minimum(np.diff(indptr), cap), out=new_ptr[1:])
    return new_ptr, succ[order][keep], count[order][keep], total
