"""Synthetic interaction logs that look like real ones: Zipf items, users with many sessions,
repeats and sequential structure. For benchmarks and scale tests."""
from __future__ import annotations

import numbers

import numpy as np
import pandas as pd


def make_log(n_events: int = 1_000_000, n_users: int = None, n_items: int = 50_000,
             zipf: float = 1.1, session_length: float = 8.0, repeat: float = 0.2,
             cover_items: bool = False, seed: int = 0) -> pd.DataFrame:
    """A log with USER_ID, ITEM_ID, TIMESTAMP (int64 ids, unix seconds).

    Parameters
    ----------
    n_events, n_users, n_items : int
        Sizes (>= 1); n_users defaults to n_events // 50.
    zipf : float
        Item popularity exponent (rank r has weight r ** -zipf).
    session_length : float
        Mean events per session (>= 1, geometric); gaps are ~1 min inside a session, ~1 day
        between.
    repeat : float
        Probability (in [0, 1]) that an event repeats one of the user's last few items.
    cover_items : bool
        Make every item appear at least once (needs n_events >= n_items).
    seed : int
    """
    for name, value in (("n_events", n_events), ("n_users", n_users), ("n_items", n_items)):
        if (value is not None or name != "n_users") and (
                isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    n_users = max(n_events // 50, 1) if n_users is None else n_users
    for name, value, lo, hi in (("zipf", zipf, 0.0, np.inf), ("session_length", session_length, 1.0, np.inf),
                                ("repeat", repeat, 0.0, 1.0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not lo <= value <= hi:
            raise ValueError(f"{name} must be a number in [{lo}, {hi}], got {value!r}")
    rng = np.random.default_rng(seed)
    users = np.sort(rng.integers(0, n_users, n_events))
    weights = np.arange(1, n_items + 1, dtype=np.float64) ** -zipf
    items = rng.choice(n_items, size=n_events, p=weights / weights.sum())
    # sequential structure: often the next item is a neighbour of the previous one
    step = rng.random(n_events) < 0.3
    items[1:][step[1:]] = (items[:-1][step[1:]] + 1) % n_items
    rep = rng.random(n_events) < repeat
    back = rng.integers(1, 5, n_events)
    src = np.maximum(np.arange(n_events) - back, 0)
    same_user = users[src] == users
    items[rep & same_user] = items[src[rep & same_user]]
    if cover_items:
        if n_events < n_items:
            raise ValueError("cover_items needs n_events >= n_items")
        slots = rng.choice(n_events, n_items, replace=False)
        items[slots] = np.arange(n_items)
    new_session = rng.random(n_events) < 1.0 / session_length
    gaps = np.where(new_session, rng.exponential(86_400, n_events), rng.exponential(60, n_events))
    first = np.r_[True, users[1:] != users[:-1]]
    t = np.cumsum(gaps)
    start = t[first][np.cumsum(first) - 1]
    ts = (1.6e9 + rng.integers(0, 10**6, n_users)[users] + t - start).astype(np.int64)
    return pd.DataFrame({"USER_ID": users, "ITEM_ID": items.astype(np.int64), "TIMESTAMP": ts})
