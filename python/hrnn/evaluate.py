"""The two offline evaluation protocols: Amazon Personalize's and next-item (GRU4Rec / HRNN papers).

``evaluate`` clones the estimator it is given, splits the data, fits the clone on the training part
only and scores the held-out part through the public API (``put_events`` then ``recommend_batch``),
so any recommender with the hrnn interface can be compared on equal terms. The splits are exposed
(``split_personalize``, ``split_next_item``) so that hyperparameter search can reuse them.
"""
from __future__ import annotations

import inspect
import numbers
import time
import warnings
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd

from . import metrics as M
from ._ids import warn_caller
from ._params import check_gap
from ._training import raise_if_interrupted
from .data import (ITEM_ID, SESSION_ID, TIMESTAMP, USER_ID, build_event_log, filter_events,
                   last_session_starts, read_interactions)

__all__ = ["evaluate", "split_personalize", "split_next_item", "PersonalizeSplit",
           "NextItemSplit", "PERSONALIZE_KS", "NEXT_ITEM_K", "NEXT_ITEM_METRICS", "PERSONALIZE_METRICS"]

PERSONALIZE_KS = (5, 10, 25)
NEXT_ITEM_K = 20
NEXT_ITEM_METRICS = (f"recall@{NEXT_ITEM_K}", f"mrr@{NEXT_ITEM_K}", f"first_recall@{NEXT_ITEM_K}")
PERSONALIZE_METRICS = (*(f"precision@{k}" for k in PERSONALIZE_KS), *(f"ndcg@{k}" for k in PERSONALIZE_KS),
                       f"mrr@{max(PERSONALIZE_KS)}", "coverage")


class PersonalizeSplit(NamedTuple):
    """Output of ``split_personalize``; every frame is in canonical columns."""

    train: pd.DataFrame   #: all events of the users not held out (input row order)
    inputs: pd.DataFrame  #: held-out users' oldest events, by user then time
    truth: pd.DataFrame   #: held-out users' newest events, by user then time


class NextItemSplit(NamedTuple):
    """Output of ``split_next_item``; every frame is in canonical columns."""

    train: pd.DataFrame  #: everything before each test user's last session (input row order)
    test: pd.DataFrame   #: each test user's last session, by user then time


def _time_order(df: pd.DataFrame) -> tuple:
    """(user codes, order): events by user (first appearance) then time, ties in input order,
    which is exactly the order of ``build_event_log``."""
    ucodes = pd.factorize(df[USER_ID])[0]
    return ucodes, np.lexsort((df[TIMESTAMP].to_numpy(), ucodes))


def _take(df: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    return df.iloc[rows].reset_index(drop=True)


def _rng(random_state) -> np.random.Generator:
    if isinstance(random_state, (bool, np.bool_)):  # (numpy would take True as the seed 1)
        raise TypeError(f"random_state must be an int, a numpy Generator or None, got {random_state!r}")
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError):
        raise TypeError(f"random_state must be an int, a numpy Generator or None, got {random_state!r}") from None


def _check_fraction(name: str, value) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")


def split_personalize(data, holdout_fraction: float = 0.1, truth_fraction: float = 0.1,
                      random_state=0, columns=None) -> PersonalizeSplit:
    """Hold out a random share of users; split each one's history into input and truth by time.

    Parameters
    ----------
    data : DataFrame, path, dict or (users, items, timestamps)
        Anything ``hrnn.data.read_interactions`` accepts.
    holdout_fraction : float
        Share of the users with at least 2 events that is held out (at least one user, and at
        least one user is left for training).
    truth_fraction : float
        Newest share of each held-out user's events that is the truth: ``max(1, floor(f * n))``
        events; the older ones (at least one) are the input.
    random_state : int, Generator or None
        Seeds the choice of users.
    columns : dict, optional
        As for ``read_interactions``.

    Returns
    -------
    PersonalizeSplit
        ``(train, inputs, truth)``.
    """
    _check_fraction("holdout_fraction", holdout_fraction)
    _check_fraction("truth_fraction", truth_fraction)
    rng = _rng(random_state)
    df = read_interactions(data, columns)
    ucodes, order = _time_order(df)
    counts = np.bincount(ucodes)
    eligible = np.flatnonzero(counts >= 2)
    if len(eligible) == 0 or len(counts) < 2:
        raise ValueError("the personalize protocol needs at least 2 users, one of them with "
                         "2 or more events")
    n_hold = min(max(1, int(round(holdout_fraction * len(eligible)))), len(counts) - 1)
    held = np.zeros(len(counts), dtype=bool)
    held[rng.choice(eligible, size=n_hold, replace=False)] = True
    # Position of each (time-ordered) event inside its user's history decides input vs truth.
    offsets = np.concatenate([[0], np.cumsum(counts)])
    users_sorted = ucodes[order]
    position = np.arange(len(order)) - offsets[users_sorted]
    n = counts[users_sorted]
    n_truth = np.maximum(1, np.floor(truth_fraction * n + 1e-9).astype(np.int64))
    in_test = held[users_sorted]
    is_truth = in_test & (position >= n - n_truth)
    train_rows = np.flatnonzero(~held[ucodes])
    return PersonalizeSplit(_take(df, train_rows), _take(df, order[in_test & ~is_truth]),
                            _take(df, order[is_truth]))


def split_next_item(data, session_gap: float = 1800.0, columns=None) -> NextItemSplit:
    """Each user's last session is the test, for users with 2 or more sessions.

    Parameters
    ----------
    data : DataFrame, path, dict or (users, items, timestamps)
    session_gap : float or None
        Seconds of inactivity that start a new session (a change of SESSION_ID starts one too;
        None: never by time).
    columns : dict, optional

    Returns
    -------
    NextItemSplit
        ``(train, test)``: train holds every event before each test user's last session and all
        events of single-session users.
    """
    df = read_interactions(data, columns)
    log = build_event_log(df, session_gap=session_gap)
    _, order = _time_order(df)
    starts = last_session_starts(log)
    multi = starts > log.offsets[:-1]
    cut = np.where(multi, starts, log.offsets[1:])  # single-session users: nothing in the test
    index = np.arange(log.n_events)
    is_test = index >= np.repeat(cut, log.lengths())
    return NextItemSplit(_take(df, np.sort(order[~is_test])), _take(df, order[is_test]))


def _groups(df: pd.DataFrame) -> tuple:
    """(user ids, offsets) of a frame whose rows are grouped by user."""
    codes, uniques = pd.factorize(df[USER_ID])
    offsets = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(uniques)))])
    return np.asarray(uniques), offsets


class _Feeder:
    """Feeds rows of a frame grouped by user to ``put_events``: one call per user and range, or
    one per session run when the table has SESSION_ID (the interface takes one session id per
    call). The columns are taken out of the frame once: per-call column access would dominate."""

    def __init__(self, df: pd.DataFrame):
        self.users = df[USER_ID].to_numpy()
        self.items = df[ITEM_ID].to_numpy()
        self.ts = df[TIMESTAMP].to_numpy()
        self.sid = df[SESSION_ID].to_numpy() if SESSION_ID in df.columns else None

    def put(self, model, lo: int, hi: int) -> None:
        user, items, ts = self.users[lo], self.items[lo:hi], self.ts[lo:hi]
        if self.sid is None:
            model.put_events(user, items, ts)
            return
        sid = self.sid[lo:hi]
        cuts = np.flatnonzero(sid[1:] != sid[:-1]) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(sid)]):
            model.put_events(user, items[a:b], ts[a:b], session_id=sid[a])


def _personalize(model, split: PersonalizeSplit, return_details: bool) -> tuple:
    users, in_off = _groups(split.inputs)
    t_users, t_off = _groups(split.truth)
    if not np.array_equal(pd.Index(users), pd.Index(t_users)):
        raise RuntimeError("inputs and truth hold different users")  # split invariant
    feeder = _Feeder(split.inputs)
    for u in range(len(users)):
        feeder.put(model, in_off[u], in_off[u + 1])
    kmax = max(PERSONALIZE_KS)
    rec, _ = model.recommend_batch(users, num_results=kmax)
    truth_items = split.truth[ITEM_ID].to_numpy()
    truths = [truth_items[t_off[u]:t_off[u + 1]] for u in range(len(users))]
    hits, n_truth = M.hit_matrix(np.asarray(rec), truths)
    per_user = {}
    for k in PERSONALIZE_KS:
        per_user[f"precision@{k}"] = M.precision_from_hits(hits, k)
    for k in PERSONALIZE_KS:
        per_user[f"ndcg@{k}"] = M.ndcg_from_hits(hits, n_truth, k)
    per_user[f"mrr@{kmax}"] = M.mrr_from_hits(hits, kmax)
    out = {name: float(v.mean()) for name, v in per_user.items()}
    catalogue = split.train[ITEM_ID].unique()
    listed = np.asarray(rec).ravel()
    out["coverage"] = M.coverage(listed[np.isin(listed, catalogue)], len(catalogue))
    out["n_users"] = len(users)
    details = None
    if return_details:
        details = pd.DataFrame({USER_ID: users, "n_input": np.diff(in_off),
                                "n_truth": n_truth, **per_user})
    return out, details


def _next_item(model, split: NextItemSplit, return_details: bool, put_last: bool = False) -> tuple:
    """``put_last``: afterwards also put the last event of each test session (never put while
    scoring: it is only a target), so that the model has seen every event."""
    test = split.test
    users, off = _groups(test)
    lengths = np.diff(off)
    items = test[ITEM_ID].to_numpy()
    k = NEXT_ITEM_K
    feeder = _Feeder(test)
    # The first event of each test session, from the user id alone, asked for as a session's first
    # (of a recommender that knows what that is).
    start = {"new_session": True} if _takes_keyword(model.recommend_batch, "new_session") else {}
    rec, _ = model.recommend_batch(users, num_results=k, **start)
    first_rank = M.first_hit_rank(M.target_hits(np.asarray(rec), items[off[:-1]]))
    ranks, det_users, det_pos = [], [], []
    for j in range(1, int(lengths.max(initial=0))):
        active = np.flatnonzero(lengths > j)
        for u in active.tolist():
            feeder.put(model, off[u] + j - 1, off[u] + j)
        rec, _ = model.recommend_batch(users[active], num_results=k)
        ranks.append(M.first_hit_rank(M.target_hits(np.asarray(rec), items[off[active] + j])))
        det_users.append(active)
        det_pos.append(np.full(len(active), j))
    if put_last:
        for u in range(len(users)):
            feeder.put(model, off[u + 1] - 1, off[u + 1])
    rank = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    rr = np.divide(1.0, rank, out=np.zeros(len(rank)), where=rank > 0)
    if not len(rank):  # 0 would read as "found none of them"
        warn_caller(f"no test session has a second event: recall@{k} and mrr@{k} are undefined (NaN); "
                    f"only first_recall@{k} measures something here", RuntimeWarning)
    out = {f"recall@{k}": float(np.mean(rank > 0)) if len(rank) else float("nan"),
           f"mrr@{k}": float(rr.mean()) if len(rank) else float("nan"),
           f"first_recall@{k}": float(np.mean(first_rank > 0)) if len(users) else 0.0,
           "n_events": int(len(rank)), "n_users": int(len(users))}
    details = None
    if return_details:
        u_all = np.concatenate([np.arange(len(users))] + det_users)
        pos = np.concatenate([np.zeros(len(users), dtype=np.int64)] + det_pos)
        details = pd.DataFrame({USER_ID: users[u_all], "position": pos,
                                ITEM_ID: items[off[u_all] + pos],
                                "rank": np.concatenate([first_rank, rank])})
    return out, details


def _takes_keyword(method, name: str) -> bool:
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):  # (a builtin without a signature: call it plainly)
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _is_fitted(estimator) -> bool:
    check = getattr(estimator, "_check_fitted", None)  # HRNN's and the baselines'
    if check is None:
        return False
    try:
        check()
    except Exception:  # (ours raise RuntimeError; another library's may raise what it likes)
        return False
    return True


def evaluate(estimator, data, protocol: str = "personalize", num_threads: int = 0,
             random_state=0, columns=None, holdout_fraction: float = 0.1,
             return_details: bool = False, session_gap: float = 1800.0,
             return_estimator: bool = False, fit_params: Optional[dict] = None):
    """Fit a clone of ``estimator`` on a training split of ``data`` and score the held-out part.

    Parameters
    ----------
    estimator : Recommender
        Unfitted (its hyperparameters are what count); it is cloned and never modified. A
        fitted one is cloned too, with a UserWarning: its fitted parameters are not scored.
    data : DataFrame, path, dict or (users, items, timestamps)
        Anything ``hrnn.data.read_interactions`` accepts.
    protocol : {"personalize", "next-item"}
        ``"personalize"``: ``holdout_fraction`` of the users (those with >= 2 events) are held
        out (10% rounded half to even, at least one); for each, the oldest 90% of its events go
        through ``put_events`` in one call (one per session with a SESSION_ID column) and the
        newest 10% (unique items) are the truth for its top 25 from ``recommend_batch``.
        ``"next-item"``: each user's last session (users with >= 2 sessions) is the test; every
        event after the first is predicted from the history plus the session so far (top 20,
        ranked against all items), the first one from the user id alone (``first_recall@20``; asked
        for with ``recommend_batch(..., new_session=True)``, or without the flag from a
        recommender whose ``recommend_batch`` takes no ``new_session``).
        Test items the model does not know count as misses. Events with equal timestamps keep
        the order of ``data`` (which of them is input and which truth). The estimator's
        ``event_type`` and ``event_value_threshold`` filter the whole log before it is split.
    num_threads : int
        Passed to the clone's ``num_threads`` hyperparameter when it has one; 0 leaves it as is.
    random_state : int, Generator or None
        Seeds the choice of held-out users (personalize).
    columns : dict, optional
        As for ``read_interactions``, e.g. ``{"USER_ID": "session_id"}``.
    holdout_fraction : float
        Share of users held out (personalize).
    return_details : bool
        Also return a DataFrame with one row per held-out user (personalize) or per prediction
        (next-item: USER_ID, position in the session, target ITEM_ID, 1-based rank, 0 = miss).
    session_gap : float or None
        Seconds that separate sessions (next-item; a change of SESSION_ID separates them too;
        None: never by time). The protocol's own, not the estimator's ``session_gap``: every
        model is scored on the same test sessions.
    return_estimator : bool
        Also return the fitted clone, under the result's key ``"estimator"`` (as scikit-learn's
        ``cross_validate``), as the protocol left it: the held-out inputs have gone through
        ``put_events``. After ``"next-item"`` it has then seen every event of ``data``: the last
        event of each test session, which is only ever a target, is put last (within
        ``eval_seconds``).
    fit_params : dict, optional
        Keyword arguments for the clone's ``fit``, e.g. ``{"check_minimums": False}`` for a log
        whose training part falls short of Personalize's minimums.

    Returns
    -------
    dict
        personalize: ``precision@5/10/25``, ``ndcg@5/10/25``, ``mrr@25``, ``coverage``;
        next-item: ``recall@20``, ``mrr@20``, ``first_recall@20``, ``n_events``; both:
        ``n_users``, ``fit_seconds``, ``eval_seconds`` (and ``estimator``). With
        ``return_details``, a ``(dict, DataFrame)`` pair.
    """
    if protocol not in ("personalize", "next-item"):
        raise ValueError(f"protocol must be 'personalize' or 'next-item', got {protocol!r}")
    if isinstance(estimator, type) or not hasattr(estimator, "clone"):
        what = f"the class {estimator.__name__}" if isinstance(estimator, type) else type(estimator).__name__
        raise TypeError(f"estimator must be an hrnn Recommender instance (e.g. HRNN()), got {what}")
    # Both protocols' settings are checked whichever runs: a wrong one is never silently ignored.
    _check_fraction("holdout_fraction", holdout_fraction)
    check_gap("session_gap", session_gap)
    _rng(random_state)
    if fit_params is not None and not isinstance(fit_params, dict):
        raise TypeError(f"fit_params must be a dict of fit's keyword arguments, got {fit_params!r}")
    if _is_fitted(estimator):
        warnings.warn(f"evaluate fits a fresh clone of this {type(estimator).__name__} on the split's "
                      "training part: its hyperparameters count, its fitted parameters are not used",
                      UserWarning, stacklevel=2)
    df = read_interactions(data, columns)
    model = estimator.clone()
    params = model.get_params()
    if num_threads and "num_threads" in params:
        model.set_params(num_threads=num_threads)
    # The estimator's event filters apply to the whole log: the held-out events (inputs and
    # truth) are of the kinds it learns from, as in Personalize's solution metrics.
    df = filter_events(df, params.get("event_type"), params.get("event_value_threshold"))
    if protocol == "personalize":
        split = split_personalize(df, holdout_fraction=holdout_fraction,
                                  random_state=random_state)
    else:
        split = split_next_item(df, session_gap=session_gap)
        if len(split.test) == 0:
            raise ValueError("no user has 2 or more sessions: nothing to evaluate next-item on")
    t0 = time.perf_counter()
    try:
        model.fit(split.train, **(fit_params or {}))
    except ValueError as e:  # (what fit refused is the split's training part, not all of data)
        raise ValueError(f"fitting on the training part of the split ({len(split.train):,} of "
                         f"{len(df):,} events): {e}") from e
    raise_if_interrupted(model)  # (HRNN's fit stops cleanly on Ctrl-C)
    t1 = time.perf_counter()
    if protocol == "personalize":
        result, details = _personalize(model, split, return_details)
    else:
        result, details = _next_item(model, split, return_details, put_last=return_estimator)
    result["fit_seconds"] = t1 - t0
    result["eval_seconds"] = time.perf_counter() - t1
    if return_estimator:
        result["estimator"] = model
    return (result, details) if return_details else result
