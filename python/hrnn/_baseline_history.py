"""Plumbing behind ``hrnn.baselines``: per-user histories that grow, CSR gathers, top-k.

Private; kept apart so that baselines.py holds only the models.
"""
from __future__ import annotations

import numpy as np

from ._ids import IdIndex, _as_list, _check_lookup, _lookup_all

MAX_RESULTS = 500
DENSE_BLOCK = 1 << 22  # entries of sparse_top_k's dense blocks: a bound on their memory


def check_num_results(num_results) -> int:
    """``num_results`` as an int, or ValueError unless it is an integer in [1, 500]."""
    if isinstance(num_results, bool) or not isinstance(num_results, (int, np.integer)) or \
            not 1 <= num_results <= MAX_RESULTS:
        raise ValueError(f"num_results must be an integer in [1, {MAX_RESULTS}], "
                         f"got {num_results!r}")
    return int(num_results)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """int64 [rows, k]: column indices of the k largest scores of each row, best first.

    Ties are broken by the lower column index, so results do not depend on the partition.
    """
    rows, n = scores.shape
    k = min(int(k), n)
    if k <= 0:
        return np.zeros((rows, 0), dtype=np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition picks any of the items tied with the k-th score; where such a tie
        # crosses the cut, take the lowest indices among the tied ones instead.
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
        tied = scores == kth[:, None]
        taken = (np.take_along_axis(scores, part, axis=1) == kth[:, None]).sum(axis=1)
        bad = tied.sum(axis=1) > taken
        if bad.any():
            above = scores[bad] > kth[bad, None]
            need = k - above.sum(axis=1)
            keep = above | (tied[bad] & (np.cumsum(tied[bad], axis=1) <= need[:, None]))
            part[bad] = np.nonzero(keep)[1].reshape(-1, k)
    else:
        part = np.broadcast_to(np.arange(n, dtype=np.int64), scores.shape)
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=-1)
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def coalesce(rows, items, values, n_items: int) -> tuple:
    """Sum duplicate (row, item) entries: (rows, items, values) sorted by row then item."""
    flat = np.asarray(rows, np.int64) * n_items + items
    span = int(flat.max()) + 1 if len(flat) else 0
    if span <= 4 * len(flat) + 65536:
        # Few possible keys: counting them is linear where np.unique sorts. The sums come out the
        # same, added in input order either way.
        present = np.bincount(flat, minlength=span) > 0
        keys = np.flatnonzero(present)
        sums = np.bincount(flat, weights=values, minlength=span)[keys]
        return keys // n_items, keys % n_items, sums
    keys, inv = np.unique(flat, return_inverse=True)
    return keys // n_items, keys % n_items, np.bincount(inv.ravel(), weights=values,
                                                         minlength=len(keys))


def sparse_top_k(rows, items, values, scale, backoff, pop_order, k: int, n_rows: int,
                 excluded=None, allowed=None) -> tuple:
    """Top k of ``values (sparse) + scale[row] * backoff[item]`` for each row, without ever
    building the dense [rows, items] matrix.

    Any item without sparse evidence is outranked by the popular items before it, so the top k
    lies within the evidence plus the first ``k + (evidence or excluded items of the row)``
    items of ``pop_order`` (items by decreasing ``backoff``); only those are scored. Equal
    scores are ordered as in ``pop_order``, on both the sparse and the dense path.

    Parameters
    ----------
    rows, items, values : ndarray [m]
        Sparse evidence (duplicates are summed).
    scale : float64 [n_rows]
    backoff : float64 [n_items]
    pop_order : int64 [n_items]
    k : int
        <= n_items; every row gets exactly k results.
    excluded : (rows, items), optional
        Pairs that must not be recommended; they are used, scored -inf, only to fill a row
        whose eligible items run out.
    allowed : bool [n_items], optional
        The only items any row may get; the others are scored -inf, as ``excluded``.

    Returns
    -------
    items : int64 [n_rows, k], scores : float64 [n_rows, k]
    """
    n_items = len(backoff)
    ex_rows, ex_items = excluded if excluded is not None else (np.zeros(0, np.int64),) * 2
    crowd = np.bincount(rows, minlength=n_rows) + np.bincount(ex_rows, minlength=n_rows)
    m = np.minimum(n_items, k + crowd)
    if allowed is not None or 32 * m.sum() > n_rows * n_items:
        # Small catalogue or long histories: dense blocks of rows cost less than sorting the
        # candidates (the lexsort below takes ~40x as long per entry as a dense entry). An item
        # filter goes this way too: its rows may run out of eligible items.
        block = max(1, DENSE_BLOCK // n_items)
        parts = [_dense_top_k(rows, items, values, scale, backoff, pop_order, k, ex_rows, ex_items,
                              allowed, r0, min(n_rows, r0 + block)) for r0 in range(0, n_rows, block)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    first = np.cumsum(m) - m
    r = np.concatenate([rows, np.repeat(np.arange(n_rows, dtype=np.int64), m)])
    i = np.concatenate([items, pop_order[np.arange(int(m.sum())) - np.repeat(first, m)]])
    v = np.concatenate([values, np.zeros(int(m.sum()))])
    r, i, v = coalesce(r, i, v, n_items)
    score = v + scale[r] * backoff[i]
    if len(ex_rows):
        score[np.isin(r * n_items + i, ex_rows * n_items + ex_items)] = -np.inf
    pop_rank = np.empty(n_items, dtype=np.int64)
    pop_rank[pop_order] = np.arange(n_items)
    order = np.lexsort((pop_rank[i], -score, r))  # ties go to the more popular item
    r, i, score = r[order], i[order], score[order]
    start = np.searchsorted(r, np.arange(n_rows))
    keep = np.arange(len(r)) - start[r] < k
    return i[keep].reshape(n_rows, k), score[keep].reshape(n_rows, k)


def _dense_top_k(rows, items, values, scale, backoff, pop_order, k, ex_rows, ex_items, allowed, r0, r1):
    """``sparse_top_k`` of rows [r0, r1) through a dense [r1 - r0, items] block."""
    n_items = len(backoff)
    sel = (rows >= r0) & (rows < r1)
    dense = scale[r0:r1, None] * backoff[None, :]
    dense += np.bincount((rows[sel] - r0) * n_items + items[sel], weights=values[sel],
                         minlength=(r1 - r0) * n_items).reshape(r1 - r0, n_items)
    ex = (ex_rows >= r0) & (ex_rows < r1)
    dense[ex_rows[ex] - r0, ex_items[ex]] = -np.inf
    if allowed is not None:
        dense[:, ~allowed] = -np.inf
    # Columns in popularity order, so that ties go to the more popular item.
    best = pop_order[top_k(dense[:, pop_order], k)]
    return best, np.take_along_axis(dense, best, axis=1)


def csr_gather(indptr: np.ndarray, rows: np.ndarray, cap=None) -> tuple:
    """Positions of the entries of CSR rows ``rows`` (at most ``cap`` of each, from its start;
    ``cap`` may be one number or one per row).

    Returns
    -------
    owner : int64 [m]
        Index into ``rows`` of each gathered entry.
    flat : int64 [m]
        Position of each gathered entry in the CSR data arrays.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts = indptr[rows]
    lens = indptr[rows + 1] - starts
    if cap is not None:
        lens = np.minimum(lens, cap)
    owner = np.repeat(np.arange(len(rows), dtype=np.int64), lens)
    first = np.cumsum(lens) - lens
    flat = np.arange(int(lens.sum()), dtype=np.int64) + np.repeat(starts - first, lens)
    return owner, flat


class Histories:
    """Every user's events in time order: dense item index (-1 = unknown), time, session start.

    One array per user and field; ``append`` concatenates, which costs O(history) per call and
    keeps reads (tails, current sessions) simple slices.
    """

    def __init__(self, user_ids, items, timestamps, new_session, last_sid):
        self.ids = list(user_ids)
        # numpy scalars hash and compare like Python ones, so lookups work with either.
        self.index = IdIndex(self.ids)
        self.items, self.ts, self.new, self.last_sid = items, timestamps, new_session, last_sid

    @classmethod
    def from_log(cls, log) -> "Histories":
        cuts = log.offsets[1:-1]
        n = log.n_users
        return cls(log.user_ids.tolist(), np.split(log.items.astype(np.int32), cuts),
                   np.split(log.timestamps, cuts), np.split(log.new_session.astype(bool), cuts),
                   [None] * n if log.last_sessions is None else log.last_sessions.tolist())

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, user_ids) -> np.ndarray:
        """int64 dense index of each id, -1 for unknown users."""
        ids = _as_list(user_ids, "user_ids")  # as HRNN's: one id is one user, not its characters
        for u in ids:
            _check_lookup(u, "user_id")
        return _lookup_all(ids, self.index, "user_id")

    def items_of(self, u: int) -> np.ndarray:
        return self.items[u]

    def rows_items(self, users: np.ndarray) -> tuple:
        """(row, item) pairs of every known item in the histories of ``users`` (-1 = none)."""
        parts = [self.items[u] if u >= 0 else np.zeros(0, np.int32) for u in users.tolist()]
        sizes = np.array([len(p) for p in parts], dtype=np.int64)
        items = np.concatenate(parts).astype(np.int64) if len(parts) else np.zeros(0, np.int64)
        rows = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
        ok = items >= 0
        return rows[ok], items[ok]

    def tails(self, users: np.ndarray, length: int) -> np.ndarray:
        """int64 [len(users), length]: the last ``length`` items, newest first, -1 padded."""
        out = np.full((len(users), length), -1, dtype=np.int64)
        for r, u in enumerate(users.tolist()):
            if u >= 0:
                h = self.items[u][-length:][::-1]
                out[r, :len(h)] = h
        return out

    def sessions(self, users: np.ndarray, max_len: int) -> tuple:
        """The current (last) session of each user: its last ``max_len`` events.

        Returns
        -------
        rows, items, position : int64 [m]
            Row in ``users``, dense item (may be -1) and 1-based position in the session.
        length : int64 [len(users)]
            Full length of each current session (0 for unknown users).
        """
        parts, pos, length = [], [], np.zeros(len(users), dtype=np.int64)
        for r, u in enumerate(users.tolist()):
            if u < 0 or len(self.items[u]) == 0:
                parts.append(np.zeros(0, np.int32))
                pos.append(np.zeros(0, np.int64))
                continue
            start = int(np.flatnonzero(self.new[u])[-1]) if self.new[u].any() else 0
            n = len(self.items[u]) - start
            length[r] = n
            keep = min(n, max_len)
            parts.append(self.items[u][-keep:])
            pos.append(np.arange(n - keep + 1, n + 1, dtype=np.int64))
        sizes = np.array([len(p) for p in parts], dtype=np.int64)
        rows = np.repeat(np.arange(len(users), dtype=np.int64), sizes)
        return rows, np.concatenate(parts).astype(np.int64), np.concatenate(pos), length

    def append(self, user_id, items: np.ndarray, ts: np.ndarray, sessions, gap) -> None:
        """Append checked events (``ts`` float64 in time order, ``sessions`` one session hash per
        event or None); ValueError leaves everything unchanged."""
        if len(ts) == 0:
            return
        u = self.index.get(user_id, -1)
        if u >= 0 and len(self.ts[u]) and ts[0] < self.ts[u][-1]:
            raise ValueError(f"timestamp {ts[0]:.0f} is older than user {user_id!r}'s last event "
                             f"({self.ts[u][-1]:.0f}); events must arrive in time order")
        gap = np.inf if gap is None else float(gap)
        new = np.zeros(len(ts), dtype=bool)
        new[1:] = np.diff(ts) > gap
        if sessions is not None:
            new[1:] |= sessions[1:] != sessions[:-1]
        if u < 0 or len(self.ts[u]) == 0:
            new[0] = True
        else:  # as HRNN: the gap, or a session id other than the one of the user's last event
            new[0] = ts[0] - self.ts[u][-1] > gap or (
                sessions is not None and self.last_sid[u] is not None
                and int(sessions[0]) != self.last_sid[u])
        if u < 0:
            u = len(self.ids)
            self.ids.append(user_id)
            self.index[user_id] = u
            self.items.append(np.zeros(0, np.int32))
            self.ts.append(np.zeros(0))
            self.new.append(np.zeros(0, bool))
            self.last_sid.append(None)
        self.items[u] = np.concatenate([self.items[u], items.astype(np.int32)])
        self.ts[u] = np.concatenate([self.ts[u], ts])
        self.new[u] = np.concatenate([self.new[u], new])
        # Events without a session id end what is known of the session ids, as in HRNN's store.
        self.last_sid[u] = None if sessions is None else int(sessions[-1])
