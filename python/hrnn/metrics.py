"""Ranking metrics on recommended lists: pure functions, no model involved.

Two forms of each metric:

- one list at a time: ``precision_at_k(recommended, truth, k)`` and friends take a 1-D sequence of
  recommended ids (best first) and the relevant ids (a collection, or one id for next-item);
- vectorised: ``hit_matrix(recommended_2d, truths)`` marks, row by row, which of the top-k are
  relevant, and ``*_from_hits`` turn that boolean matrix into one value per row.

Conventions (those of Amazon Personalize's offline metrics): precision@k = hits in the top k / k;
NDCG@k uses gain 1 / log2(1 + rank) and the ideal DCG of min(k, |truth|) relevant items; MRR@k is
the reciprocal rank of the first hit within k, 0 without one; recall@k = hits in the top k / |truth|
(for a single target: hit or not). Truth sets are sets: duplicates in them count once.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

__all__ = ["precision_at_k", "recall_at_k", "ndcg_at_k", "mrr_at_k", "coverage", "hit_matrix",
           "target_hits", "first_hit_rank", "precision_from_hits", "recall_from_hits",
           "ndcg_from_hits", "mrr_from_hits"]


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _as_set(truth) -> set:
    """The relevant ids; None and NaN are no ids (they match nothing and do not count)."""
    # A string is iterable but is one id, not a set of characters.
    if isinstance(truth, np.ndarray) and truth.ndim == 0:
        truth = [truth.item()]
    elif isinstance(truth, (str, bytes)) or not isinstance(truth, Iterable):
        truth = [truth]
    # numpy scalars hash and compare like the Python ones, so a plain set suffices.
    ids = set(truth.tolist()) if isinstance(truth, np.ndarray) else set(truth)
    return {i for i in ids if not (i is None or i is pd.NA or (isinstance(i, (float, np.floating)) and i != i))}


def _id_array(values) -> np.ndarray:
    """A 1-D array of ids (one id for a scalar or a string); a list is kept as objects
    (np.asarray would turn [1, "a"] into ["1", "a"])."""
    if isinstance(values, np.ndarray):
        return values.ravel()
    values = [values] if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) else list(values)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _hits_1d(recommended, truth, k: int) -> tuple:
    rec = _id_array(recommended)[:_check_k(k)]
    relevant = _as_set(truth)
    hits, seen = [], set()  # an id listed twice counts at its first place only, as in hit_matrix
    for r in rec.tolist():
        hits.append(r in relevant and r not in seen)
        seen.add(r)
    return np.array(hits, dtype=bool), len(relevant)


# ------------------------------------------------------------------------------ one list at a time

def precision_at_k(recommended, truth, k: int) -> float:
    """Relevant items among the top ``k`` recommended, divided by ``k``.

    Parameters
    ----------
    recommended : array-like
        Recommended item ids, best first (a list shorter than ``k`` still divides by ``k``).
    truth : collection or scalar
        The relevant item ids (one id for a single target).
    k : int
        Cut-off, >= 1.

    Returns
    -------
    float
    """
    hits, _ = _hits_1d(recommended, truth, k)
    return float(hits.sum()) / k


def recall_at_k(recommended, truth, k: int) -> float:
    """Relevant items in the top ``k`` divided by the number of relevant items.

    For a single target (next-item evaluation) this is 1.0 for a hit within ``k`` and 0.0 otherwise.
    An empty truth gives 0.0.
    """
    hits, n_truth = _hits_1d(recommended, truth, k)
    return float(hits.sum()) / n_truth if n_truth else 0.0


def ndcg_at_k(recommended, truth, k: int) -> float:
    """Normalised discounted cumulative gain at ``k`` with binary relevance.

    DCG = sum over hits at 1-based rank r <= k of 1 / log2(1 + r); it is divided by the DCG of
    an ideal list that puts min(k, |truth|) relevant items first. An empty truth gives 0.0.
    """
    hits, n_truth = _hits_1d(recommended, truth, k)
    return float(ndcg_from_hits(hits[None, :], np.array([n_truth]), k)[0])


def mrr_at_k(recommended, truth, k: int) -> float:
    """Reciprocal of the 1-based rank of the first relevant item within ``k``; 0.0 without one."""
    hits, _ = _hits_1d(recommended, truth, k)
    first = np.flatnonzero(hits)
    return 1.0 / (first[0] + 1) if len(first) else 0.0


def coverage(recommended, n_catalogue: int) -> float:
    """Share of the catalogue that appears anywhere in the recommendations.

    Parameters
    ----------
    recommended : array-like
        Recommended ids, any shape (typically [n_users, k]).
    n_catalogue : int
        Number of items that could have been recommended (the training catalogue).

    Returns
    -------
    float
        ``unique ids in recommended / n_catalogue``.
    """
    if n_catalogue <= 0:
        raise ValueError(f"n_catalogue must be positive, got {n_catalogue!r}")
    rec = np.asarray(recommended).ravel()
    rec = rec[pd.notna(rec)]  # None: the padding of a short list, not an item
    return len(pd.unique(rec)) / float(n_catalogue) if rec.size else 0.0


# ------------------------------------------------------------------------------------- vectorised

def hit_matrix(recommended, truths) -> tuple:
    """Which recommended ids are relevant, for many lists at once.

    Parameters
    ----------
    recommended : array-like [n, k]
        Row r holds the ids recommended for query r, best first (None pads a short row; an id
        repeated in a row counts at its first place only).
    truths : sequence of n collections
        The relevant ids of each row (ragged). Duplicates count once; None and NaN match nothing.

    Returns
    -------
    hits : bool ndarray [n, k]
    n_truth : int64 ndarray [n]
        Number of distinct relevant ids of each row.
    """
    rec = recommended if isinstance(recommended, np.ndarray) else np.array(recommended, dtype=object)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-D [n, k], got shape {rec.shape}")
    n, k = rec.shape
    if len(truths) != n:
        raise ValueError(f"{len(truths)} truth sets for {n} recommendation lists")
    parts = [_id_array(list(_as_set(t))) if not isinstance(t, np.ndarray) else t.ravel() for t in truths]
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    flat = np.concatenate(parts) if n and sizes.sum() else np.zeros(0, dtype=rec.dtype)
    # One shared code space for both sides turns "id in row r's truth" into an integer
    # membership test on row * n_codes + code, with no Python loop over ids.
    codes, uniques = pd.factorize(np.concatenate([flat.astype(object), rec.ravel().astype(object)]))
    n_codes = max(len(uniques), 1)
    truth_rows = np.repeat(np.arange(n, dtype=np.int64), sizes)
    known = codes[:len(flat)] >= 0  # None / NaN in a truth set is no id: it can match nothing
    truth_keys = np.unique(truth_rows[known] * n_codes + codes[:len(flat)][known])
    rec_codes = codes[len(flat):]
    rec_keys = np.repeat(np.arange(n, dtype=np.int64), k) * n_codes + rec_codes
    # Padding (None, code -1) is never a hit, and an id listed twice counts at its first place only.
    first = np.zeros(n * k, dtype=bool)
    first[np.unique(rec_keys, return_index=True)[1]] = True
    hits = (np.isin(rec_keys, truth_keys) & (rec_codes >= 0) & first).reshape(n, k)
    n_truth = np.bincount(truth_keys // n_codes, minlength=n).astype(np.int64)
    return hits, n_truth


def target_hits(recommended, targets) -> np.ndarray:
    """bool [n, k]: ``recommended[r, j] == targets[r]`` (one target per row, next-item)."""
    rec = np.asarray(recommended)
    tgt = np.asarray(targets)
    if rec.ndim != 2 or tgt.shape != (rec.shape[0],):
        raise ValueError(f"expected recommended [n, k] and targets [n], got {rec.shape} and "
                         f"{tgt.shape}")
    return rec == tgt[:, None]


def first_hit_rank(hits) -> np.ndarray:
    """int64 [n]: the 1-based rank of the first hit in each row, 0 for a row without one."""
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-D [n, k], got shape {hits.shape}")
    if hits.shape[1] == 0:  # (no column: no hit, and nothing for argmax)
        return np.zeros(len(hits), dtype=np.int64)
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0).astype(np.int64)


def _top(hits, k) -> np.ndarray:
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-D [n, k], got shape {hits.shape}")
    return hits[:, :_check_k(k)]


def precision_from_hits(hits, k: int) -> np.ndarray:
    """float64 [n]: precision@k of each row of a hit matrix (hits in the first k columns / k)."""
    return _top(hits, k).sum(axis=1) / float(k)


def recall_from_hits(hits, n_truth, k: int) -> np.ndarray:
    """float64 [n]: recall@k of each row (0 where the truth is empty)."""
    found = _top(hits, k).sum(axis=1).astype(np.float64)
    n_truth = np.asarray(n_truth, dtype=np.float64)
    return np.divide(found, n_truth, out=np.zeros_like(found), where=n_truth > 0)


def ndcg_from_hits(hits, n_truth, k: int) -> np.ndarray:
    """float64 [n]: NDCG@k of each row (ideal DCG over min(k, n_truth) relevant items)."""
    top = _top(hits, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = top @ discount[:top.shape[1]]
    ideal_cum = np.concatenate([[0.0], np.cumsum(discount)])
    ideal = ideal_cum[np.minimum(np.asarray(n_truth, dtype=np.int64), k)]
    return np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal > 0)


def mrr_from_hits(hits, k: int) -> np.ndarray:
    """float64 [n]: reciprocal rank of the first hit within k of each row, 0 without one."""
    rank = first_hit_rank(_top(hits, k))
    return np.divide(1.0, rank, out=np.zeros(len(rank)), where=rank > 0)
