"""From an interactions table to the arrays the engine trains on.

A user's data flows one way: ``read_interactions`` (any table -> a validated DataFrame with
canonical columns) -> ``featurize`` (Personalize's event and history-length filters) ->
``build_event_log`` (dense ids, per-user time order, sessions) -> arrays. Everything here is
vectorised: no Python loop runs over events.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from . import _reading as _v
from ._ids import _as_text, _check_text_column, _stable_hash, event_type_mask, event_value_mask, warn_caller
from ._params import check_gap
from ._reading import (CANONICAL, EVENT_TYPE, EVENT_VALUE, ITEM_ID, OPTIONAL,  # noqa: F401
                        REQUIRED, SESSION_ID, TIMESTAMP, USER_ID)

MIN_INTERACTIONS = 1000
MIN_USERS_2PLUS = 25


# ---------------------------------------------------------------------------------------- reading

def read_interactions(source, columns: Optional[dict] = None) -> pd.DataFrame:
    """Read and validate an interactions table.

    Parameters
    ----------
    source : DataFrame, str or PathLike, dict, or tuple/list
        A DataFrame (never modified), a path to ``.csv``, ``.csv.gz`` or ``.parquet`` (Parquet
        needs pyarrow: ``pip install '.[parquet]'``), a dict of column name -> array, a
        tuple/list of three arrays ``(users, items, timestamps)``, or a list of records (dicts
        keyed by column name). Arrays pair up by position (Series too, whatever their index).
    columns : dict, optional
        Canonical name -> source column name, e.g. ``{"USER_ID": "session_id"}``; a value of None
        ignores an optional column. Other columns are matched case-insensitively.

    Returns
    -------
    DataFrame
        A new frame with ``USER_ID``, ``ITEM_ID``, ``TIMESTAMP`` (float64 unix seconds) and, when
        present, ``EVENT_TYPE``, ``EVENT_VALUE`` (float64), ``SESSION_ID``; a fresh RangeIndex.
        Ids keep their type (no int <-> str conversion). A CSV's id column is integers when the
        file writes every one of its ids as a plain integer (42, not 042 or +42), else its text.
        datetime64 timestamps are converted to unix seconds (naive ones are taken as UTC), and
        so is a column of ISO 8601 date-time text ("2014-04-07T10:51:09.277Z"; with a UserWarning).
        Exact duplicate rows (equal in every column above) are dropped with a UserWarning;
        rows that differ only in event value or session id are kept.

    Raises
    ------
    KeyError
        A required column is missing (the message lists the columns found).
    ValueError
        Empty table; missing ids/timestamps/event types/session ids; infinite, negative or
        millisecond-looking timestamps; an unreadable or unsupported file.
    TypeError
        Non-numeric timestamps or event values.
    FileNotFoundError, ImportError
        No such file; Parquet without pyarrow.
    """
    raw = _v.load(source)
    try:
        names = _v.resolve_columns(list(raw.columns), columns)
    except KeyError as e:  # set_index("USER_ID") moves a column out of reach
        index = [n for n in raw.index.names if n is not None
                 and f"required column {str(n).strip().upper()} not found" in str(e)]
        if index:
            raise KeyError(f"{e.args[0]}; {index[0]!r} is the DataFrame's index: reset_index() first") from None
        raise
    if len(raw) == 0:
        raise ValueError("the interactions table is empty")
    if isinstance(source, (str, os.PathLike)):
        raw = _v.keep_id_text(os.fspath(source), raw, [names[c] for c in (USER_ID, ITEM_ID, SESSION_ID)
                                                       if c in names])
    out = {}
    for canon, name in names.items():
        s, label = raw[name], _v.column_label(canon, name)
        if canon == TIMESTAMP:
            _v.check_no_missing(s, label)
            out[canon] = _v.timestamps(s, label)
        elif canon == EVENT_VALUE:
            out[canon] = _v.numeric(s, label, "event values")
        elif canon in (USER_ID, ITEM_ID, SESSION_ID):  # SESSION_ID: hashed as put_events' session ids
            _v.check_no_missing(s, label)
            out[canon] = _v.ids(s, label)  # keeps the dtype (e.g. pandas' string dtype) when it can
        else:
            _v.check_no_missing(s, label)
            out[canon] = s.array
    labels = {canon: _v.column_label(canon, name) for canon, name in names.items()}
    df = _v.frame({c: out[c] for c in CANONICAL if c in out}, labels=labels)
    # Id text a model file can hold (Arrow strings hold nothing else): the one check of new ids,
    # since fit reads every table through here.
    for canon in (USER_ID, ITEM_ID):
        if df[canon].dtype == object or getattr(df[canon].dtype, "storage", None) == "python":
            _check_text_column(df[canon].to_numpy(dtype=object), labels[canon])
    return _v.drop_duplicates(df)


def _as_interactions(df) -> pd.DataFrame:
    # A frame of the canonical columns only, with numeric timestamps, is taken to be
    # read_interactions output already: validating 10M rows again would cost seconds per call.
    if (isinstance(df, pd.DataFrame) and all(c in df.columns for c in REQUIRED)
            and set(df.columns) <= set(CANONICAL) and df[TIMESTAMP].dtype.kind in "iuf"):
        return df
    return read_interactions(df)


# ------------------------------------------------------------------------------------- event log

def _ids(uniques) -> np.ndarray:
    """An id map as an array (its text was checked by read_interactions: it fits a model file)."""
    return np.asarray(uniques.to_numpy() if hasattr(uniques, "to_numpy") else uniques)


@dataclass(frozen=True, eq=False)
class EventLog:
    """Events grouped by user in time order, with dense ids and session starts.

    Attributes
    ----------
    user_ids, item_ids : ndarray
        The original ids; position = dense index.
    offsets : int64 [n_users + 1]
        User u's events are ``offsets[u]:offsets[u+1]``.
    items : int32 [n_events]
        Dense item index, -1 for an item missing from a given item map.
    timestamps : float64 [n_events]
        Unix seconds.
    new_session : uint8 [n_events]
        1 at the first event of every session (so at every user's first event too).
    event_types : ndarray or None
        The EVENT_TYPE of each event, when the table had one.
    last_sessions : int64 [n_users] or None
        The session hash (as ``put_events`` computes it) of each user's last SESSION_ID, when the
        table had one: the next real-time event with another id starts a new session.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    offsets: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    new_session: np.ndarray
    event_types: Optional[np.ndarray] = None
    last_sessions: Optional[np.ndarray] = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_events(self) -> int:
        return len(self.items)

    def lengths(self) -> np.ndarray:
        """int64 [n_users]: number of events of each user."""
        return np.diff(self.offsets)

    def event_users(self) -> np.ndarray:
        """int64 [n_events]: the dense user index of each event."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.lengths())


def _user_time_order(users: np.ndarray, ts: np.ndarray, n_users: int) -> np.ndarray:
    """Stable order by (user, timestamp); ties keep input order."""
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    t0, span = ts.min(), ts.max() - ts.min()
    # Whole-second timestamps fold into one int64 key, and one stable argsort of it is about
    # twice as fast as lexsort on (user, time); fractional ones take the general path.
    if n_users * (span + 1.0) < 2.0**62 and np.array_equal(ts, np.floor(ts)):
        key = users.astype(np.int64) * np.int64(span + 1) + (ts - t0).astype(np.int64)
        return np.argsort(key, kind="stable")
    return np.lexsort((ts, users))


def build_event_log(df, session_gap: Optional[float] = 1800.0, item_ids=None) -> EventLog:
    """Group events by user in time order and mark session starts.

    Parameters
    ----------
    df : DataFrame
        Output of ``read_interactions`` or ``featurize`` (anything else is passed through
        ``read_interactions`` first).
    session_gap : float or None
        A new session starts when the gap to the user's previous event exceeds this many seconds,
        and, when the table has a SESSION_ID column, where the session id changes. None never
        splits a user's history by time.
    item_ids : array-like, optional
        An existing item map (position = dense index); items not in it get index -1. By default
        items are numbered in order of first appearance in ``df``.

    Returns
    -------
    EventLog
        Users are numbered in order of first appearance in ``df``; each user's events are sorted
        by timestamp with ties in input order.
    """
    df = _as_interactions(df)
    check_gap("session_gap", session_gap)
    gap = np.inf if session_gap is None else float(session_gap)
    ucodes, uniques = pd.factorize(df[USER_ID])
    ts = df[TIMESTAMP].to_numpy(dtype=np.float64)
    order = _user_time_order(ucodes, ts, len(uniques))
    if item_ids is None:
        icodes, iuniques = pd.factorize(df[ITEM_ID])
        item_map = _ids(iuniques)
    else:
        index = pd.Index(item_ids)
        if not index.is_unique:
            raise ValueError("item_ids must not contain duplicates")
        icodes, item_map = index.get_indexer(df[ITEM_ID]), _ids(index)
    if len(item_map) >= 2**31:
        raise ValueError(f"too many items for int32 indices: {len(item_map):,}")
    offsets = np.zeros(len(uniques) + 1, dtype=np.int64)
    np.cumsum(np.bincount(ucodes, minlength=len(uniques)), out=offsets[1:])
    t = ts[order]
    new = np.zeros(len(t), dtype=bool)
    new[offsets[:-1]] = True
    new[1:] |= np.diff(t) > gap
    last_sessions = None
    if SESSION_ID in df.columns:
        sid = pd.factorize(df[SESSION_ID])[0][order]
        new[1:] |= sid[1:] != sid[:-1]
        last = df[SESSION_ID].iloc[order[offsets[1:] - 1]].tolist()
        last_sessions = np.array([_stable_hash(v) for v in last], dtype=np.int64)
    etypes = None
    if EVENT_TYPE in df.columns:
        # Few distinct types: indexing their codes beats materialising 10M Python strings.
        ecodes, etype_values = pd.factorize(df[EVENT_TYPE])
        etypes = _ids(etype_values)[ecodes[order]]
    return EventLog(user_ids=_ids(uniques), item_ids=item_map, offsets=offsets,
                    items=icodes[order].astype(np.int32), timestamps=t,
                    new_session=new.view(np.uint8), event_types=etypes, last_sessions=last_sessions)


def last_session_starts(log: EventLog) -> np.ndarray:
    """int64 [n_users]: index of the first event of each user's last session."""
    return last_flags(log.new_session, log.offsets)


def last_flags(new_session: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """int64 [n_users]: index of the last flagged event before each user's end (``offsets[1:]``),
    0 where there is none: a user's last session start when its first event is flagged."""
    starts = np.flatnonzero(new_session)
    if not len(starts):
        return np.zeros(len(offsets) - 1, dtype=np.int64)
    return starts[np.maximum(np.searchsorted(starts, offsets[1:], side="left") - 1, 0)].astype(np.int64)


# ------------------------------------------------------------------------------- featurization

def check_percentiles(min_pct: float, max_pct: float,
                      names=("min_user_history_length_percentile",
                             "max_user_history_length_percentile")) -> tuple:
    """Validate a (min, max) pair of history-length percentiles; returns them as floats."""
    for name, value in zip(names, (min_pct, max_pct)):
        if isinstance(value, bool) or not (isinstance(value, (int, float, np.number))
                                           and 0.0 <= float(value) <= 1.0):
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if min_pct > max_pct:
        raise ValueError(f"{names[0]} ({min_pct}) must not exceed {names[1]} ({max_pct})")
    return float(min_pct), float(max_pct)


def length_cutoffs(lengths: np.ndarray, min_pct: float, max_pct: float) -> tuple:
    """(lo, hi) = np.quantile(lengths, [min_pct, max_pct]); users with lo <= length <= hi stay."""
    lo, hi = np.quantile(np.asarray(lengths, dtype=np.float64), [min_pct, max_pct])
    return float(lo), float(hi)


@dataclass(frozen=True, eq=False)
class UserFilter:
    """Outcome of the history-length percentile filter: which users train.

    Attributes
    ----------
    train_users : ndarray
        Ids of the users kept for training.
    min_length, max_length : float
        The cut-offs: users with ``min_length <= history length <= max_length`` are kept.
    min_pct, max_pct : float
        The percentiles that gave them.
    n_users, n_events : int
        Users and events after the event filters (all of them get states).
    n_train_users, n_train_events : int
        Users and events kept for training.
    """

    train_users: np.ndarray
    min_length: float
    max_length: float
    min_pct: float
    max_pct: float
    n_users: int
    n_events: int
    n_train_users: int
    n_train_events: int

    def user_mask(self, user_ids) -> np.ndarray:
        """bool [len(user_ids)]: True for the users kept for training (e.g. ``log.user_ids``)."""
        return pd.Index(user_ids).isin(self.train_users)


def _missing(column: str, needed_by: str, df) -> str:
    flag = "--" + column.lower().replace("_", "-") + "-col"
    return (f"{needed_by} needs an {column} column; the interactions read have "
            f"{', '.join(map(str, df.columns))} (a source column of another name: "
            f"columns={{{column!r}: NAME}}, command line {flag} NAME)")


def filter_events(df, event_type=None, event_value_threshold: Optional[float] = None) -> pd.DataFrame:
    """The rows of an interactions table that HRNN's event filters keep (``df`` itself when all
    do): ``event_type`` (a string or a list of them, matched against EVENT_TYPE as text) and
    ``EVENT_VALUE >= event_value_threshold``. KeyError without the column a filter needs,
    ValueError when nothing is left."""
    keep = np.ones(len(df), dtype=bool)
    if event_type is not None:
        if EVENT_TYPE not in df.columns:
            raise KeyError(_missing(EVENT_TYPE, f"event_type={event_type!r}", df))
        if not (isinstance(event_type, str) or (isinstance(event_type, (list, tuple, set)) and event_type
                                                and all(isinstance(e, str) for e in event_type))):
            raise TypeError(f"event_type must be a string or a list of strings, got {event_type!r}")
        keep &= event_type_mask(df[EVENT_TYPE], event_type)
        if not keep.any():
            present = ", ".join(repr(_as_text(k)) for k in pd.unique(df[EVENT_TYPE].dropna())[:20])
            raise ValueError(f"no events of type {event_type!r}; EVENT_TYPE values present: "
                             f"{present}")
    if event_value_threshold is not None:
        if EVENT_VALUE not in df.columns:
            raise KeyError(_missing(EVENT_VALUE, "event_value_threshold", df))
        keep &= event_value_mask(df[EVENT_VALUE].to_numpy(dtype=np.float64), event_value_threshold)
        if not keep.any():
            raise ValueError(f"no events left with EVENT_VALUE >= {event_value_threshold}")
    return df if keep.all() else df.loc[keep].reset_index(drop=True)


def featurize(df, min_user_history_length_percentile: float = 0.0,
              max_user_history_length_percentile: float = 0.99, event_type=None,
              event_value_threshold: Optional[float] = None):
    """Apply Personalize's solution-config filters.

    Parameters
    ----------
    df : DataFrame
        Output of ``read_interactions`` (anything else is read with it first).
    min_user_history_length_percentile, max_user_history_length_percentile : float
        In [0, 1]; users whose history length is below ``np.quantile(lengths, min)`` or above
        ``np.quantile(lengths, max)`` are left out of training. 0.0 / 1.0 keep everyone.
    event_type : str or list of str, optional
        Keep only events of this type (needs an EVENT_TYPE column).
    event_value_threshold : float, optional
        Keep only events with ``EVENT_VALUE >= threshold`` (needs an EVENT_VALUE column).

    Returns
    -------
    events : DataFrame
        The rows that pass the event filters, for every user (``df`` itself when all pass):
        build the event log from these so that every user gets a state.
    users : UserFilter
        Which of those users the percentile filter keeps for training
        (``users.user_mask(log.user_ids)``) and the cut-off figures.
    """
    df = _as_interactions(df)
    lo_pct, hi_pct = check_percentiles(min_user_history_length_percentile,
                                       max_user_history_length_percentile)
    events = filter_events(df, event_type, event_value_threshold)
    codes, uniques = pd.factorize(events[USER_ID])
    lengths = np.bincount(codes)
    lo, hi = length_cutoffs(lengths, lo_pct, hi_pct)
    kept = (lengths >= lo) & (lengths <= hi)
    info = UserFilter(train_users=_ids(uniques)[kept], min_length=lo, max_length=hi,
                      min_pct=lo_pct, max_pct=hi_pct, n_users=len(lengths), n_events=len(events),
                      n_train_users=int(kept.sum()), n_train_events=int(lengths[kept].sum()))
    return events, info


def check_trainable(lengths: np.ndarray, train_users: np.ndarray, minimums: bool) -> None:
    """Personalize's minimums (when ``minimums``) over the training users' history ``lengths``,
    and a UserWarning when none of them has two events (nothing to learn a next item from)."""
    n_2plus = int(((lengths >= 2) & train_users).sum())
    if minimums:
        check_minimums(int(lengths[train_users].sum()), n_2plus)
    if n_2plus == 0:
        warn_caller("no training user has 2 or more events: there is no next item to learn from, "
                    "and the model stays at its initialisation")


def check_minimums(n_interactions: int, n_users_with_2plus: int,
                   min_interactions: int = MIN_INTERACTIONS,
                   min_users: int = MIN_USERS_2PLUS) -> None:
    """Raise ValueError unless Personalize's minimums after filtering are met.

    Parameters
    ----------
    n_interactions : int
        Interactions left for training.
    n_users_with_2plus : int
        Users with 2 or more of those interactions.
    min_interactions, min_users : int
        The minimums (Personalize: 1,000 interactions and 25 users with 2+ interactions).
    """
    problems = []
    if n_interactions < min_interactions:
        problems.append(f"needs at least {min_interactions:,} interactions after filtering, got "
                        f"{n_interactions:,} ({min_interactions - n_interactions:,} short)")
    if n_users_with_2plus < min_users:
        problems.append(f"needs at least {min_users:,} users with 2 or more interactions after "
                        f"filtering, got {n_users_with_2plus:,} "
                        f"({min_users - n_users_with_2plus:,} short)")
    if problems:  # (Personalize's rule, not the model's: it can be switched off)
        raise ValueError("; ".join(problems) + " (check_minimums=False, or --no-minimums on the "
                         "command line, trains anyway)")


# ------------------------------------------------------------------------ weights, popularity

def training_half_life(timestamps: np.ndarray, recency_mask: bool,
                       recency_half_life: Optional[float]) -> Optional[float]:
    """The half-life of HRNN's recency weights: ``recency_half_life``, else a quarter of the log's
    span (at least 1 s); None without ``recency_mask``."""
    if not recency_mask or timestamps.size == 0:
        return None
    if recency_half_life is not None:
        return float(recency_half_life)
    return max(float(timestamps.max() - timestamps.min()) / 4.0, 1.0)


def loss_weights_and_popularity(arrays: tuple, n_items: int, train_users: np.ndarray, recency_mask: bool,
                                recency_half_life: Optional[float]) -> tuple:
    """(per-event loss weights or None without ``recency_mask``, float64 item popularity of the
    training users' events) for HRNN's event arrays (offsets, items, timestamps, ...)."""
    offsets, items, timestamps = arrays[:3]
    in_train = np.repeat(np.isin(np.arange(len(offsets) - 1), train_users), np.diff(offsets))
    if not recency_mask:  # (plain counts: no array of ones over every event)
        return None, popularity(items[in_train], n_items)
    weights = recency_weights(timestamps, training_half_life(timestamps, recency_mask, recency_half_life))
    return weights, popularity(items[in_train], n_items, weights[in_train])


def recency_weights(timestamps, half_life: Optional[float]) -> np.ndarray:
    """Per-event weights that halve every ``half_life`` seconds before the latest event.

    ``w = 2 ** (-(t_max - t) / half_life)``, floored at 1e-3 so that old events still count a
    little, then normalised to mean 1. ``half_life`` None or <= 0 gives all ones.

    Returns
    -------
    float32 ndarray, same shape as ``timestamps``
    """
    t = np.asarray(timestamps, dtype=np.float64)
    if half_life is not None and np.isnan(half_life):
        raise ValueError("half_life must be a number of seconds, got NaN")
    if half_life is None or half_life <= 0 or t.size == 0:
        return np.ones(t.shape, dtype=np.float32)
    w = np.exp2(-(t.max() - t) / float(half_life))
    np.maximum(w, 1e-3, out=w)
    return (w / w.mean()).astype(np.float32)


def popularity(items, n_items: int, weights=None) -> np.ndarray:
    """float64 [n_items]: (weighted) count of each item; items < 0 (unknown) are skipped."""
    items = np.asarray(items)
    valid = items >= 0
    if items.size and items.max() >= n_items:
        raise ValueError(f"item index {int(items.max())} out of range for n_items={n_items}")
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[valid]
    return np.bincount(items[valid], weights=w, minlength=n_items).astype(np.float64)
