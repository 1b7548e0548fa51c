"""The machinery shared by ``hrnn.baselines``: the ``_Baseline`` base class (fit, recommend,
recommend_batch, put_events) and hyperparameter checks.

Private; kept apart so that baselines.py holds only the models.
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from ._baseline_history import Histories, check_num_results, sparse_top_k, top_k
from ._ids import IdIndex, _check_flag, _check_id, _check_lookup, _events, _known_items, _lookup, _session_flags
from ._params import check_fit_flags
from ._transitions import repeat_share
from .base import Recommender
from .data import build_event_log, popularity, read_interactions


def check_range(name, value, lo, hi, integer=False):
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer) if integer else
                                                    (int, float, np.number))
    if not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} in [{lo}, {hi}], got {value!r}")


AUTO_EXCLUDE_BELOW = 0.01  # exclude_seen="auto": below this share of re-consumed training events


def check_exclude_seen(value):
    if not (isinstance(value, (bool, np.bool_)) or (isinstance(value, str) and value == "auto")):
        raise ValueError(f"exclude_seen must be True, False or 'auto', got {value!r}")


def lift(rows, items, values, backoff, n_rows):
    """Evidence that must rank above every popularity-only item: values become
    ``1 + value / row max + 1e-6 * backoff - backoff`` so that, with the back-off added on top,
    evidence scores lie in (1, 2 + 1e-6] (popularity breaking ties) and the rest keep back-off < 1."""
    top = np.zeros(n_rows)
    np.maximum.at(top, rows, values)
    keep = values > 0
    rows, items, values = rows[keep], items[keep], values[keep]
    return rows, items, 1.0 + values / top[rows] - (1.0 - 1e-6) * backoff[items]


def _serialised(method):
    """One call at a time per model: put_events grows the histories that queries read."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        self._check_fitted()
        with self._lock:
            return method(self, *args, **kwargs)
    return call


class Baseline(Recommender):
    """Shared fit / recommend / put_events; subclasses add ``_fit_model`` and ``_evidence``.

    A subclass scores user rows as ``sparse evidence + scale[row] * backoff[item]``, which the
    base turns into top-k lists without a dense [users, items] matrix. Safe to call from many
    threads: the calls of one model take turns.
    """

    def __init__(self):
        self._validate_params()

    # -- subclass hooks ------------------------------------------------------------------------
    def _fit_model(self, log, df) -> None:
        """Learn from the training event log (histories and popularity are already set)."""

    def _evidence(self, users: np.ndarray) -> tuple:
        """(rows, items, values, scale) for dense user indices ``users`` (-1 = unknown):
        sparse scores (duplicates summed) and the per-row weight of the back-off."""
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), np.ones(len(users))

    def _session_gap(self):
        return getattr(self, "session_gap", 1800.0)

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, data, columns=None, check_minimums: bool = True) -> "Baseline":
        """Learn from an interactions table (anything ``hrnn.data.read_interactions`` accepts).

        Parameters
        ----------
        data : DataFrame, path, dict or (users, items, timestamps)
        columns : dict, optional
            Canonical name -> column name, e.g. ``{"USER_ID": "session_id"}``.
        check_minimums : bool
            Taken as HRNN's ``fit`` takes it (the same ``fit_params`` serve both in
            ``hrnn.evaluate``); the baselines check no minimums.

        Returns
        -------
        self
        """
        self._validate_params()
        check_fit_flags(False, check_minimums, ())
        df = read_interactions(data, columns)
        log = build_event_log(df, session_gap=self._session_gap())
        self._item_ids = log.item_ids
        # A dict answers the few ids of a put_events call in O(1); pd.Index.get_indexer would
        # rebuild its hash table when the dtypes differ, O(n_items) per call.
        self._item_pos = IdIndex(log.item_ids)
        self._hist = Histories.from_log(log)
        self._pop = popularity(log.items, log.n_items)
        self._backoff = self._pop / (self._pop.max() + 1.0)
        setting = getattr(self, "exclude_seen", False)
        self.exclude_seen_ = bool(repeat_share(log.offsets, log.items, log.n_items) < AUTO_EXCLUDE_BELOW
                                  if isinstance(setting, str) else setting)
        self._fit_model(log, df)
        # Stable on -backoff: equally popular items keep index order, as everywhere else.
        self._pop_order = np.argsort(-self._backoff, kind="stable")
        self._lock = threading.Lock()
        return self

    def _check_fitted(self):
        if not hasattr(self, "_hist"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    @property
    def n_items(self) -> int:
        """Number of items the model can recommend."""
        self._check_fitted()
        return len(self._item_ids)

    # -- recommend -------------------------------------------------------------------------------
    @_serialised
    def recommend(self, user_id, num_results: int = 25, exclude_interacted: bool = False,
                  exclude_items=None, include_items=None, new_session: bool = False) -> tuple:
        """Top items for one user, best first.

        Parameters
        ----------
        user_id
            Any id; an unknown user gets the popular items.
        num_results : int
            1..500.
        exclude_interacted : bool
            Leave out every item in the user's history (always so where the fitted
            ``exclude_seen_`` is True).
        exclude_items, include_items : iterable of item ids, optional
            Leave out these items / recommend only among these (unknown ids are ignored).
        new_session : bool
            Checked, and otherwise ignored: the baselines answer a session's first event as its
            next one, from the user's history (as the rules they implement do).

        Returns
        -------
        item_ids : ndarray
            At most ``num_results`` of the fitted item ids (fewer when the candidates run out).
        scores : float32 ndarray
        """
        k = check_num_results(num_results)
        _check_flag(new_session)
        users = self._hist.lookup([user_id])
        rows, items, values, scale = self._evidence(users)
        scores = scale[0] * self._backoff + np.bincount(items, weights=values,
                                                        minlength=self.n_items)
        allowed = self._allowed(exclude_items, include_items)
        if allowed is None:
            allowed = np.ones(len(scores), dtype=bool)
        if (exclude_interacted or self.exclude_seen_) and users[0] >= 0:
            seen = self._hist.items_of(users[0])
            allowed[seen[seen >= 0]] = False
        candidates = self._pop_order[allowed[self._pop_order]]  # ties: the more popular
        order = top_k(scores[candidates][None, :], min(k, len(candidates)))[0]
        best = candidates[order]
        return self._item_ids[best], scores[best].astype(np.float32)

    def _allowed(self, exclude_items, include_items):
        """bool [n_items] of the items a query may return, None when it names none."""
        if include_items is None and exclude_items is None:
            return None
        allowed = np.full(self.n_items, include_items is None)
        if include_items is not None:
            allowed[_known_items(include_items, self._item_pos, "include_items")] = True
        if exclude_items is not None:
            allowed[_known_items(exclude_items, self._item_pos, "exclude_items")] = False
        return allowed

    @_serialised
    def recommend_batch(self, user_ids, num_results: int = 25, exclude_interacted: bool = False,
                        exclude_items=None, include_items=None, new_session=False) -> tuple:
        """``recommend`` for many users (the same arguments, the same answers; ``new_session``
        one flag or one per user).

        Returns
        -------
        item_ids : ndarray [n_users, k]
            ``k = min(num_results, n_items)``. A row whose eligible items run out is padded with
            None, scored -inf (as ``HRNN.recommend_batch``).
        scores : float32 ndarray [n_users, k]
        """
        k = min(check_num_results(num_results), self.n_items)
        allowed = self._allowed(exclude_items, include_items)
        users = self._hist.lookup(user_ids)
        _session_flags(new_session, len(users))
        out_idx = np.zeros((len(users), k), dtype=np.int64)
        out_sc = np.zeros((len(users), k), dtype=np.float32)
        step = 2048  # users per chunk: bounds the memory of the sparse candidate lists
        for lo in range(0, len(users), step):
            chunk = users[lo:lo + step]
            rows, items, values, scale = self._evidence(chunk)
            excluded = self._hist.rows_items(chunk) if exclude_interacted or self.exclude_seen_ else None
            best, sc = sparse_top_k(rows, items, values, scale, self._backoff, self._pop_order,
                                    k, len(chunk), excluded, allowed)
            out_idx[lo:lo + step] = best
            out_sc[lo:lo + step] = sc
        ids = self._item_ids[out_idx]
        padding = np.isneginf(out_sc)
        if padding.any():
            ids = ids.astype(object)
            ids[padding] = None
        return ids, out_sc

    # -- real-time events -----------------------------------------------------------------------
    @_serialised
    def put_events(self, user_id, item_ids, timestamps, session_id=None, event_type=None,
                   event_value=None) -> None:
        """Append events to a user's history (a new user id is created).

        Parameters
        ----------
        user_id
            A string or an integer (as ``HRNN.put_events``).
        item_ids : item id or iterable of them
            Item ids; ones the model does not know are recorded (they take a position in the
            history) but can never be recommended.
        timestamps : number or iterable of numbers
            Unix seconds, non-decreasing and not older than the user's last event.
        session_id : optional
            One session id for all these events, or one per event; a change of it starts a new
            session, as does a gap beyond the model's session gap (with or without ids).
        event_type, event_value : optional
            As in ``HRNN.put_events`` (one per event or one for all); checked, and every event
            is recorded: the baselines have no event filters.

        Raises
        ------
        ValueError, TypeError
            Lengths differ, a timestamp is not a finite number >= 0 or goes back in time, an id
            is not a string or an integer; nothing changes.
        """
        items, idx, _, ts, sessions = _events(item_ids, timestamps, session_id, self._item_pos,
                                              event_type, event_value)
        _check_lookup(user_id, "user_id")
        u = _lookup(user_id, self._hist.index, "user_id")
        if u >= 0:  # (the id as the model holds it, "7" for 7 included)
            user_id = self._hist.ids[u]
        elif len(items):
            _check_id(user_id, "user_id")
        self._hist.append(user_id, idx, ts, sessions, self._session_gap())
