"""Argument checks shared by the query methods: ids, timestamps, sizes."""
from __future__ import annotations

import datetime
import hashlib
import numbers
import os
import re
import sys
import warnings
from collections.abc import Iterator, MappingView

import numpy as np
import pandas as pd

MAX_RESULTS = 500  # Personalize's limit for GetRecommendations
# Unix seconds beyond the year 5000: milliseconds (or a damaged value), refused by fit and put_events
# alike, since one such event would set a user's clock past every later genuine one.
MAX_TIMESTAMP = 1e11
# put_events takes a fast path for one event given as scalars of these types (bools go the general way)
_ONE_ID = (str, int, np.integer, np.str_)
_ONE_TIMESTAMP = (int, float, np.integer)  # (np.float64 is a float; float32 goes the general way)
# Beyond 2**24 a float32 no longer holds every whole second: 1_700_000_070 is 1_700_000_128 as a float32.
FLOAT32_EXACT_SECONDS = 2.0**24


def _as_list(values, what: str) -> list:
    """A scalar or a sequence of ids, as a list."""
    if values is None:
        raise TypeError(f"{what} must not be None")
    if isinstance(values, (list, tuple)):
        return list(values)
    if isinstance(values, pd.DataFrame):  # (list() of a frame is its column names)
        raise TypeError(f"{what} must be one id or a 1-D sequence of ids, got a DataFrame; pass one of "
                        f"its columns, e.g. df['USER_ID']")
    if isinstance(values, (set, frozenset, dict, MappingView)) or (isinstance(values, Iterator) and not isinstance(values, str)):
        return list(values)
    if isinstance(values, (str, bytes)) or np.ndim(values) == 0:
        return [values.item() if isinstance(values, np.generic) else values]
    if isinstance(values, np.ndarray):
        if values.ndim > 1:
            raise TypeError(f"{what} must be one id or a 1-D sequence of ids, got a {values.ndim}-D array")
        return values.tolist()
    return list(values)


def _check_lookup(value, what: str) -> None:
    """An id to look up (a user's or an item's) is a string or an integer: True, 2.0 or NA would
    silently stand for id 1, 2 or nobody."""
    if type(value) is str or type(value) is int:  # the usual ids, on the put_events fast path
        return
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and value != value):
        raise ValueError(f"{what} must not be None, NaN or NA, got {value!r}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, numbers.Integral)):
        raise TypeError(f"{what} must be a string or an integer, got {type(value).__name__} {value!r:.60}")


_DECIMAL = re.compile(r"0|-?[1-9][0-9]*")  # the text str() gives an int: "7", not "07" or "+7"


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_caller(message: str, category=UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside hrnn: the user's own call."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


_INDEX_CHUNK = 1 << 13


class IdIndex(dict):
    """id -> dense index, knowing whether it holds integer ids and text ids: a lookup tries the
    other type (``_lookup``) only where the model has ids of that type."""

    def __init__(self, ids):
        super().__init__()
        # In chunks: one dict() of a million ids is one call that holds the GIL for its whole
        # 200 ms, stalling every other thread (a service's queries while a new model loads);
        # between chunks they run.
        for a in range(0, len(ids), _INDEX_CHUNK):
            part = ids[a:a + _INDEX_CHUNK]
            values = part.tolist() if isinstance(part, np.ndarray) else list(part)
            self.update(zip(values, range(a, a + len(values))))
        # An array of integer ids (a catalogue's) also answers arrays of integers at once.
        self.int_ids = ids if isinstance(ids, np.ndarray) and ids.dtype.kind in "iu" else None
        self._vector = None
        if self.int_ids is not None:
            self.has_int, self.has_str = True, False
        else:
            self.has_int = any(isinstance(k, numbers.Integral) for k in self)
            self.has_str = any(isinstance(k, str) for k in self)

    def lookup_ints(self, values: np.ndarray):
        """The dense index of each of an integer array's values (-1: unknown), in one vectorised
        pass; None where the ids are not integers of a type the values cast to exactly."""
        ids = self.int_ids
        if ids is None or values.ndim != 1 or values.dtype.kind not in "iu" or \
                not np.can_cast(values.dtype, ids.dtype):
            return None
        if self._vector is None:  # (built once; two threads building it at once is harmless)
            self._vector = pd.Index(ids)
        return self._vector.get_indexer(values.astype(ids.dtype, copy=False))

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self.has_int = self.has_int or isinstance(key, numbers.Integral)
        self.has_str = self.has_str or isinstance(key, str)


def _other_type(value, index: IdIndex):
    """The id ``index`` knows that ``value`` stands for in the other type (7 for "7", "7" for 7),
    or None."""
    if isinstance(value, str):  # (np.str_ too); int() of 21+ digits would be beyond 64 bits anyway
        if index.has_int and len(value) <= 20 and _DECIMAL.fullmatch(value):
            other = int(value)
            return other if other in index else None
    elif (index.has_str and isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
          and -2**63 <= value < 2**64):
        other = str(int(value))
        return other if other in index else None
    return None


def _warn_retyped(what: str, value) -> None:
    # The same text whatever the id: one line per call site, not one per id (and no registry of ids).
    given = ("text that reads as an integer ('7') was taken as the model's integer id (7)"
             if isinstance(value, str) else "an integer (7) was taken as the model's text id ('7')")
    warn_caller(f"{what}: {given}; ids keep the type they were fitted with")


def _lookup(value, index: IdIndex, what: str) -> int:
    """``index[value]``; else the index of the id it stands for in the model's other id type,
    with a UserWarning (Personalize sends every id as text, and a model fitted on integer ids
    would otherwise take user "7" for a new user: its events lost to user 7, its queries
    answered with popular items); -1 for neither."""
    j = index.get(value, -1)
    if j < 0:
        other = _other_type(value, index)
        if other is not None:
            _warn_retyped(what, value)
            j = index[other]
    return j


def _lookup_all(ids: list, index: IdIndex, what: str) -> np.ndarray:
    """``_lookup`` of each id as int64, with one warning for all the retyped ones."""
    get = index.get
    out = np.fromiter((get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
    retyped = None
    for r in np.flatnonzero(out < 0):
        other = _other_type(ids[r], index)
        if other is not None:
            out[r], retyped = index[other], ids[r]
    if retyped is not None:
        _warn_retyped(what, retyped)
    return out


def _check_id(value, what: str) -> None:
    """New ids (created by put_events) are what fit takes: integers of int64 or uint64, text."""
    _check_lookup(value, what)
    if isinstance(value, numbers.Integral) and not -2**63 <= int(value) < 2**64:
        raise ValueError(f"{what} must fit in 64 bits (int64 or uint64), got {value}")
    if isinstance(value, str):
        _check_text(value, what)


def _check_text(value: str, what: str) -> None:
    """A string id must be Unicode text that UTF-8 can encode (a model file holds it so): a lone
    surrogate ("\\ud800" from JSON, or bytes decoded with surrogateescape) would make every later
    save fail."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text (it is saved as UTF-8), got {value!r}") from None


def _check_text_column(values: np.ndarray, what: str) -> None:
    """``_check_text_ids`` for a whole column, duplicates and all: one join when it is all text."""
    try:
        "".join(values).encode("utf-8")
        return
    except (TypeError, UnicodeEncodeError):  # integers among the text, or text UTF-8 cannot hold
        _check_text_ids(pd.unique(values), what)


def _check_text_ids(ids: np.ndarray, what: str) -> None:
    """``_check_text`` for every string in an array of distinct ids: one encode on the usual path."""
    if ids.dtype.kind != "O" and ids.dtype.kind != "U":
        return
    text = [v for v in ids.tolist() if isinstance(v, str)]
    try:
        "".join(text).encode("utf-8")
    except UnicodeEncodeError:
        for v in text:
            _check_text(v, what)


def _known_items(item_ids, index: dict, what: str) -> np.ndarray:
    """int32 dense indices (``index``: id -> index) of the known items among ``item_ids``."""
    if isinstance(item_ids, np.ndarray) and isinstance(index, IdIndex):
        idx = index.lookup_ints(item_ids)
        if idx is not None:
            return idx[idx >= 0].astype(np.int32)
    ids = _as_list(item_ids, what)
    for i in ids:
        _check_lookup(i, f"each of {what}")
    idx = _lookup_all(ids, index, f"each of {what}")
    return idx[idx >= 0].astype(np.int32)


def _query(num_results, exclude_interacted, exclude_items, include_items, index: dict) -> dict:
    """A query's checked arguments for the engine: k (at most the catalogue), the exclusion and
    inclusion lists as dense indices (``index``: item id -> index)."""
    _check_num_results(num_results)
    if not isinstance(exclude_interacted, (bool, np.bool_)):
        raise TypeError(f"exclude_interacted must be True or False, got {exclude_interacted!r}")
    q = {"k": int(min(num_results, len(index)))}
    if exclude_items is not None:
        q["exclude"] = _known_items(exclude_items, index, "exclude_items")
    if include_items is not None:
        q["include"] = _known_items(include_items, index, "include_items")
    return q


def _check_flag(value, name: str = "new_session") -> bool:
    """``value`` as a bool; TypeError naming ``name`` unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _session_flags(new_session, n: int) -> np.ndarray:
    """recommend_batch's ``new_session`` (one bool, or one per user) as n uint8 flags."""
    if isinstance(new_session, (bool, np.bool_)):
        return np.full(n, new_session, dtype=np.uint8)
    if isinstance(new_session, (str, bytes)) or not hasattr(new_session, "__len__"):
        raise TypeError(f"new_session must be True, False or a sequence of them, got {new_session!r}")
    flags = np.asarray(new_session)
    if flags.ndim != 1 or len(flags) != n:
        raise ValueError(f"new_session must hold one flag per user ({n}), got shape {flags.shape}")
    if flags.dtype != np.bool_:
        bad = [v for v in flags.tolist() if not isinstance(v, bool)]
        if bad:
            raise TypeError(f"new_session must hold True or False, got {bad[0]!r}")
    return flags.astype(np.uint8)


def _ids_of(item_ids: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The item ids of dense indices; -1 (fewer candidates than asked for) becomes None."""
    ids = item_ids[np.maximum(idx, 0)]
    if (idx < 0).any():
        ids = ids.astype(object)
        ids[idx < 0] = None
    return ids


def _events(item_ids, timestamps, session_id, index: dict, event_type=None, event_value=None,
            filters=(None, None), digits_as_int: bool = True) -> tuple:
    """A put_events call's checked arguments: (item ids as a list, int32 dense indices with -1
    for unknown items, the unknown ids as plain Python values, float64 timestamps in time order,
    int64 session hashes or None), of the events that pass the model's ``filters`` (its
    event_type and event_value_threshold, as in fit). Every item id is checked, the unknown ones
    that are kept as new ids."""
    items = _as_list(_ordered(item_ids, "item_ids"), "item_ids")
    for i in items:
        _check_lookup(i, "item_ids")
    ts = _timestamps(timestamps, len(items))
    if (np.diff(ts) < 0).any():
        raise ValueError("timestamps must be in time order within one put_events call")
    sessions = None if session_id is None else _session_hashes(session_id, len(items), digits_as_int)
    if event_type is not None or event_value is not None:
        keep = _kept(len(items), event_type, event_value, *filters)
        items, ts = [i for i, k in zip(items, keep) if k], ts[keep]
        sessions = None if sessions is None else sessions[keep]
    idx = _lookup_all(items, index, "item_ids").astype(np.int32)
    unknown = [i.item() if isinstance(i, np.generic) else i for i, j in zip(items, idx) if j < 0]
    for i in unknown:
        _check_id(i, "item_ids")
    return items, idx, unknown, ts, sessions


def _ordered(values, what: str):
    """``values``, refused when unordered: each one pairs with an event by position."""
    if isinstance(values, (set, frozenset, dict, MappingView)):
        raise TypeError(f"{what} must be in time order (a list, tuple or array), got an unordered "
                        f"{type(values).__name__}")
    return values


def _per_event(values, n: int, what: str) -> list:
    values = _as_list(_ordered(values, what), what)
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        raise ValueError(f"{what} must be one value or one per event ({n}), got {len(values)}")
    return values


def event_type_mask(types, wanted) -> np.ndarray:
    """Boolean mask of the events whose type is one of ``wanted`` (a string or a list of them),
    compared as text (a CSV column of 1 / 2 is read as integers, the filter is "1" / "2"); a
    missing type is none of them."""
    wanted = {wanted} if isinstance(wanted, str) else set(wanted)
    codes, kinds = pd.factorize(np.asarray(types, dtype=object) if isinstance(types, list) else types)
    return np.append(np.array([_as_text(k) in wanted for k in kinds], dtype=bool), False)[codes]


def _as_text(kind) -> str:
    """An event type as the text a filter names: a whole number read as a float (a Parquet
    column of 1.0 / 2.0) is the integer's text, as for ids."""
    if isinstance(kind, (float, np.floating)) and float(kind).is_integer():
        return str(int(kind))
    return str(kind)


def event_value_mask(values, threshold: float) -> np.ndarray:
    """Boolean mask of the events whose value is >= ``threshold``; a missing one (NaN) is not."""
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf) >= float(threshold)


def _kept(n: int, event_type, event_value, wanted_types, threshold) -> np.ndarray:
    """Boolean [n]: the events that ``fit``'s filters (``wanted_types``: the model's event_type,
    ``threshold``: its event_value_threshold) would keep, with their types and values as in an
    EVENT_TYPE / EVENT_VALUE column; without types (values), the filter that needs them passes
    every event."""
    keep = np.ones(n, dtype=bool)
    if event_type is not None:
        types = _per_event(event_type, n, "event_type")
        if wanted_types is not None:
            keep &= event_type_mask(types, wanted_types)
    if event_value is not None:
        values = _per_event(event_value, n, "event_value")
        bad = [v for v in values if v is not None and v is not pd.NA
               and (isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real))]
        if bad:
            raise TypeError(f"event_value must be a number or one number per event, got {bad[0]!r}")
        if threshold is not None:  # a missing value fails the threshold, as in fit
            keep &= event_value_mask([np.nan if v is None or v is pd.NA else v for v in values], threshold)
    return keep


def _check_num_results(num_results) -> None:
    if isinstance(num_results, bool) or not isinstance(num_results, numbers.Integral):
        raise TypeError(f"num_results must be an integer, got {num_results!r}")
    if not 1 <= num_results <= MAX_RESULTS:
        raise ValueError(f"num_results must be in [1, {MAX_RESULTS}], got {num_results}")


def check_float_width(values: np.ndarray, what: str) -> None:
    """TypeError for unix seconds in a float narrower than float64 that has already rounded them."""
    if values.dtype.kind == "f" and values.dtype.itemsize < 8 and \
            (np.abs(values[np.isfinite(values)]) > FLOAT32_EXACT_SECONDS).any():
        raise TypeError(f"{what}: {values.dtype} rounds unix seconds of today by up to a minute "
                        f"(1700000070 becomes 1700000128); pass float64 or integers")


def unix_seconds(values):
    """float64 unix seconds of naive datetime64 values (taken as UTC; NaT gives NaN)."""
    return (values - np.datetime64(0, "s")) / np.timedelta64(1, "s")


def _timestamps(values, n: int) -> np.ndarray:
    """float64 unix seconds, one per event, finite and >= 0; datetimes as fit takes them (naive
    ones are UTC)."""
    ts = np.atleast_1d(np.asarray(list(values) if isinstance(values, Iterator) else values))
    if ts.dtype.kind == "M":
        ts = unix_seconds(ts)  # (NaT: NaN, refused below)
    elif ts.dtype == object and ts.size and all(isinstance(v, (datetime.datetime, np.datetime64))
                                                for v in ts.ravel()):
        ts = np.array([_seconds(v) for v in ts.ravel()], dtype=np.float64)
    if ts.dtype == object and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in ts.ravel()):
        ts = ts.astype(np.float64)  # integers too large for int64: refused below as beyond the year 5000
    if ts.dtype.kind not in "iuf" or ts.dtype == np.bool_:
        raise TypeError(f"timestamps must be numbers (unix seconds), got dtype {ts.dtype}")
    check_float_width(ts, "timestamps")
    ts = ts.astype(np.float64).ravel()
    if len(ts) != n:
        raise ValueError(f"got {n} item ids but {len(ts)} timestamps")
    bad = ~np.isfinite(ts) | (ts < 0)
    if bad.any():
        raise ValueError(f"timestamps must be finite and >= 0, got {ts[bad][0]!r}")
    late = ts > MAX_TIMESTAMP
    if late.any():
        raise ValueError(f"timestamp {ts[late][0]:.12g} is beyond the year 5000 in unix seconds "
                         "(milliseconds? divide by 1000)")
    return ts


_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=datetime.timezone.utc)


def _seconds(when) -> float:
    """Unix seconds of a datetime (naive: UTC, as in fit), in any year Python's datetime has."""
    if isinstance(when, np.datetime64):
        return float(unix_seconds(when))
    return (when - (_EPOCH if when.tzinfo is None else _EPOCH_UTC)).total_seconds()


def _stable_hash(value, digits_as_int: bool = True) -> int:
    """A process-independent int64 for a session id (Python's str hash is salted per process).
    ``digits_as_int``: the text of an integer hashes as that integer (Personalize sends sessionId
    as text: "1001" continues the CSV's 1001); model files from before that rule hash it as text."""
    if isinstance(value, np.generic):  # np.str_("s") is the session "s"
        value = value.item()
    if digits_as_int and isinstance(value, str) and len(value) <= 20 and _DECIMAL.fullmatch(value):
        value = int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value) & 0x7FFFFFFFFFFFFFFF
    digest = hashlib.blake2b(repr(value).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFFFFFFFFFF


def _session_hashes(session_id, n: int, digits_as_int: bool = True) -> np.ndarray:
    ids = _per_event(session_id, n, "session_id")
    for s in ids:  # (only their hashes are kept: any integer will do, as in fit's SESSION_ID)
        _check_lookup(s, "session_id")
    return np.array([_stable_hash(s, digits_as_int) for s in ids], dtype=np.int64)
