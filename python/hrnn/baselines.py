"""Baselines with the same interface as HRNN, for honest comparison.

``Popularity``, ``Markov``, ``RepeatRule`` and ``SessionKNN`` learn from an interactions table with
``fit``, keep every user's history (dense item indices) and extend it with ``put_events``, and answer
``recommend`` / ``recommend_batch`` with the user's own item ids, best first. Scoring is vectorised
over a chunk of users at a time: a dense [users, items] score matrix built with bincount/gather, then
a partial sort. No Python loop runs over events; a few run over the users of a batch.

Scores: a model's own evidence maps to (1, 2], popularity fills the remaining slots below 1, so
``score > 1`` tells which items came from the model and which from the popularity back-off.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._baseline_history import Histories, check_num_results, csr_gather, top_k
from .base import Recommender
from .data import (SESSION_ID, USER_ID, build_event_log, popularity, read_interactions,
                   recency_weights, session_offsets)

__all__ = ["Popularity", "Markov", "RepeatRule", "SessionKNN"]

_CHUNK_CELLS = 1 << 22  # users per scoring chunk = this / n_items: ~32 MB of float64 scores


def _check_gap(name, value, allow_none=True):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
            not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds"
                         f"{' or None' if allow_none else ''}, got {value!r}")


def _check_range(name, value, lo, hi, integer=False):
    ok = not isinstance(value, bool) and isinstance(value, (int, np.integer) if integer else
                                                    (int, float, np.number))
    if not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} in [{lo}, {hi}], got {value!r}")


def _with_backoff(model: np.ndarray, backoff: np.ndarray) -> np.ndarray:
    """Items with model evidence score 1 + model/row max (+ a popularity tie-break), others the
    popularity back-off in [0, 1): the model ranks first, popularity fills the remaining slots."""
    top = model.max(axis=1, keepdims=True)
    norm = np.divide(model, top, out=np.zeros_like(model), where=top > 0)
    return np.where(model > 0, 1.0 + norm + 1e-6 * backoff, backoff)


class _Baseline(Recommender):
    """Shared fit / recommend / put_events; subclasses add ``_fit_model`` and ``_model_scores``."""

    def __init__(self):
        self._validate_params()

    # -- subclass hooks ------------------------------------------------------------------------
    def _fit_model(self, log, df) -> None:
        """Learn from the training event log (histories and popularity are already set)."""

    def _model_scores(self, users: np.ndarray) -> np.ndarray:
        """float64 [len(users), n_items] final scores; users are dense indices (-1 = unknown)."""
        return np.broadcast_to(self._backoff, (len(users), len(self._backoff))).copy()

    def _session_gap(self):
        return getattr(self, "session_gap", 1800.0)

    # -- fit -------------------------------------------------------------------------------------
    def fit(self, data, columns=None) -> "_Baseline":
        """Learn from an interactions table (anything ``hrnn.data.read_interactions`` accepts).

        Parameters
        ----------
        data : DataFrame, path, dict or (users, items, timestamps)
        columns : dict, optional
            Canonical name -> column name, e.g. ``{"USER_ID": "session_id"}``.

        Returns
        -------
        self
        """
        self._validate_params()
        df = read_interactions(data, columns)
        log = build_event_log(df, session_gap=self._session_gap())
        self._item_ids = log.item_ids
        self._item_index = pd.Index(log.item_ids)
        self._hist = Histories.from_log(log, _last_session_ids(df, log))
        self._pop = popularity(log.items, log.n_items)
        self._backoff = self._pop / (self._pop.max() + 1.0)
        self._fit_model(log, df)
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
    def recommend(self, user_id, num_results: int = 25, exclude_interacted: bool = False,
                  exclude_items=None, include_items=None) -> tuple:
        """Top items for one user, best first.

        Parameters
        ----------
        user_id
            Any id; an unknown user gets the popular items.
        num_results : int
            1..500.
        exclude_interacted : bool
            Leave out every item in the user's history.
        exclude_items, include_items : iterable of item ids, optional
            Leave out these items / recommend only among these (unknown ids are ignored).

        Returns
        -------
        item_ids : ndarray
            At most ``num_results`` of the fitted item ids (fewer when the candidates run out).
        scores : float32 ndarray
        """
        self._check_fitted()
        k = check_num_results(num_results)
        users = self._hist.lookup([user_id])
        scores = self._model_scores(users)[0]
        allowed = np.ones(len(scores), dtype=bool)
        if include_items is not None:
            allowed[:] = False
            allowed[self._known(include_items)] = True
        if exclude_items is not None:
            allowed[self._known(exclude_items)] = False
        if exclude_interacted and users[0] >= 0:
            seen = self._hist.items_of(users[0])
            allowed[seen[seen >= 0]] = False
        candidates = np.flatnonzero(allowed)
        order = top_k(scores[candidates][None, :], min(k, len(candidates)))[0]
        best = candidates[order]
        return self._item_ids[best], scores[best].astype(np.float32)

    def _known(self, ids) -> np.ndarray:
        ids = list(ids) if not isinstance(ids, np.ndarray) else ids
        idx = self._item_index.get_indexer(pd.Index(ids, dtype=object)) if len(ids) else \
            np.zeros(0, dtype=np.int64)
        return idx[idx >= 0]

    def recommend_batch(self, user_ids, num_results: int = 25,
                        exclude_interacted: bool = False) -> tuple:
        """Top items for many users.

        Returns
        -------
        item_ids : ndarray [n_users, k]
            ``k = min(num_results, n_items)``. A row whose eligible items run out (only with
            ``exclude_interacted``) is padded with excluded items scored -inf.
        scores : float32 ndarray [n_users, k]
        """
        self._check_fitted()
        k = min(check_num_results(num_results), self.n_items)
        users = self._hist.lookup(user_ids)
        out_idx = np.zeros((len(users), k), dtype=np.int64)
        out_sc = np.zeros((len(users), k), dtype=np.float32)
        step = max(1, _CHUNK_CELLS // max(self.n_items, 1))
        for lo in range(0, len(users), step):
            chunk = users[lo:lo + step]
            scores = self._model_scores(chunk)
            if exclude_interacted:
                rows, items = self._hist.rows_items(chunk)
                scores[rows, items] = -np.inf
            best = top_k(scores, k)
            out_idx[lo:lo + step] = best
            out_sc[lo:lo + step] = np.take_along_axis(scores, best, axis=1)
        return self._item_ids[out_idx], out_sc

    # -- real-time events -----------------------------------------------------------------------
    def put_events(self, user_id, item_ids, timestamps, session_id=None) -> None:
        """Append events to a user's history (a new user id is created).

        Parameters
        ----------
        user_id
            Any id.
        item_ids : iterable
            Item ids; ones the model does not know are recorded (they take a position in the
            history) but can never be recommended.
        timestamps : iterable of float
            Unix seconds, non-decreasing and not older than the user's last event.
        session_id : optional
            Events get this session id; a change of it starts a new session. Without one, the
            model's session gap decides.

        Raises
        ------
        ValueError
            Lengths differ, or a timestamp is not finite or goes back in time; nothing changes.
        """
        self._check_fitted()
        items = np.atleast_1d(np.asarray(
            [item_ids] if isinstance(item_ids, (str, bytes)) else list(item_ids), dtype=object))
        idx = self._item_index.get_indexer(pd.Index(items, dtype=object)) if len(items) else \
            np.zeros(0, dtype=np.int64)
        self._hist.append(user_id, idx, timestamps, session_id, self._session_gap())


def _last_session_ids(df, log):
    """The SESSION_ID of each user's last event (None without the column), in log user order."""
    if SESSION_ID not in df.columns:
        return None
    ucodes = pd.Index(log.user_ids).get_indexer(df[USER_ID])
    # Same order as build_event_log: by user, then time, ties in input order (stable sorts).
    order = np.lexsort((df["TIMESTAMP"].to_numpy(), ucodes))
    return df[SESSION_ID].to_numpy()[order[log.offsets[1:] - 1]]


def _transitions(log):
    """CSR (indptr, successors, counts) of i -> j between consecutive events of a session."""
    # new_session is set at every user's first event, so no pair spans two users.
    same = log.new_session[1:] == 0
    src, dst = log.items[:-1][same].astype(np.int64), log.items[1:][same].astype(np.int64)
    ok = (src >= 0) & (dst >= 0)
    keys, counts = np.unique(src[ok] * log.n_items + dst[ok], return_counts=True)
    indptr = np.zeros(log.n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys // log.n_items, minlength=log.n_items), out=indptr[1:])
    return indptr, keys % log.n_items, counts.astype(np.float64)


class Popularity(_Baseline):
    """The most popular items, the same list for everyone (minus exclusions).

    Parameters
    ----------
    recency_half_life : float, optional
        In seconds; each event counts ``2 ** -(age / half_life)`` with age measured from the
        newest event (``hrnn.data.recency_weights``). None counts every event once.
    """

    def __init__(self, recency_half_life=None):
        self.recency_half_life = recency_half_life
        super().__init__()

    def _validate_params(self):
        if self.recency_half_life is not None:
            _check_gap("recency_half_life", self.recency_half_life, allow_none=False)

    def _fit_model(self, log, df):
        w = recency_weights(log.timestamps, self.recency_half_life)
        self._pop = popularity(log.items, log.n_items, w)
        self._backoff = self._pop / (self._pop.max() + 1.0)

    def _model_scores(self, users):
        return np.broadcast_to(self._pop, (len(users), len(self._pop))).copy()


class Markov(_Baseline):
    """First-order transitions: items that followed the user's last item, by count.

    Parameters
    ----------
    session_gap : float or None
        Seconds; consecutive events further apart than this (or with different SESSION_IDs) are in
        different sessions and their transition is not counted. None counts every consecutive pair
        of a user's events.

    Popularity fills the slots that the transitions leave, and the whole list of a user whose last
    item is unknown or without successors.
    """

    def __init__(self, session_gap=1800.0):
        self.session_gap = session_gap
        super().__init__()

    def _validate_params(self):
        _check_gap("session_gap", self.session_gap)

    def _fit_model(self, log, df):
        self._indptr, self._succ, self._count = _transitions(log)

    def _model_scores(self, users):
        last = self._hist.tails(users, 1)[:, 0]
        model = np.zeros((len(users), self.n_items))
        rows = np.flatnonzero(last >= 0)
        owner, flat = csr_gather(self._indptr, last[rows])
        model[rows[owner], self._succ[flat]] = self._count[flat]
        return _with_backoff(model, self._backoff)
