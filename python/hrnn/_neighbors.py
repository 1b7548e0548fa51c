"""The session-kNN index: what ``baselines.SessionKNN`` and HRNN's session-start neighbours
(``session_start_neighbors``) find the sessions like a user's last one in.

Private.
"""
from __future__ import annotations

import numpy as np

from ._baseline_history import coalesce

# Neighbours and candidate sessions of HRNN's votes: SessionKNN's defaults, with which its votes
# were measured as the second expert (README, "Where hrnn loses").
NEIGHBORS_K, NEIGHBORS_SAMPLE = 100, 500


def neighbor_index(arrays: tuple, n_items: int) -> dict:
    """The index of the sessions of ``arrays`` (offsets, items, timestamps, new_session; every
    user's first event starts a session): ``session_offsets`` / ``session_items`` (int32), each
    session's distinct items; ``item_offsets`` / ``item_sessions``, each item's sessions, the one
    that ended last first; ``recency``, each session's rank by its end time; per user
    ``own_session`` (its last session, -1 without events) and ``fit_events`` (its event count)."""
    offsets, items, timestamps, new_session = arrays
    n_events = len(items)
    starts = np.append(np.flatnonzero(new_session), n_events).astype(np.int64)
    n_sess = len(starts) - 1
    sess_of_event = np.repeat(np.arange(n_sess, dtype=np.int64), np.diff(starts))
    known = np.asarray(items) >= 0
    ps, pi, _ = coalesce(sess_of_event[known], np.asarray(items, np.int64)[known], np.zeros(int(known.sum())),
                         n_items)
    recency = np.empty(n_sess, dtype=np.int64)
    recency[np.argsort(timestamps[starts[1:] - 1], kind="stable")] = np.arange(n_sess)
    order = np.lexsort((-recency[ps], pi))
    lengths = np.diff(offsets).astype(np.int64)
    own = np.full(len(lengths), -1, dtype=np.int64)
    has = lengths > 0
    own[has] = sess_of_event[offsets[1:][has] - 1]
    return {"session_offsets": np.concatenate([[0], np.cumsum(np.bincount(ps, minlength=n_sess))]).astype(np.int64),
            "session_items": pi.astype(np.int32),
            "item_offsets": np.concatenate([[0], np.cumsum(np.bincount(pi, minlength=n_items))]).astype(np.int64),
            "item_sessions": ps[order].astype(np.int64),
            "recency": recency, "own_session": own, "fit_events": lengths}
