"""Validation helpers behind ``hrnn.data.read_interactions``: loading, column matching, checks.

Kept apart from data.py so that each file stays small; the public entry point is
``hrnn.data.read_interactions``.
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import numpy as np
import pandas as pd

from ._ids import MAX_TIMESTAMP, _check_text_ids, check_float_width, unix_seconds, warn_caller

USER_ID, ITEM_ID, TIMESTAMP = "USER_ID", "ITEM_ID", "TIMESTAMP"
EVENT_TYPE, EVENT_VALUE, SESSION_ID = "EVENT_TYPE", "EVENT_VALUE", "SESSION_ID"
REQUIRED = (USER_ID, ITEM_ID, TIMESTAMP)
OPTIONAL = (EVENT_TYPE, EVENT_VALUE, SESSION_ID)
CANONICAL = REQUIRED + OPTIONAL
ID_CHECK_ROWS = 1 << 20  # rows of a CSV's id columns read as text at a time (keep_id_text)


def load(source) -> pd.DataFrame:
    """Turn any accepted source into a DataFrame without copying what it does not have to."""
    if isinstance(source, pd.DataFrame):
        return source
    if isinstance(source, (str, os.PathLike)):
        return read_file(os.fspath(source))
    if isinstance(source, dict):
        lengths = {k: len(v) for k, v in source.items()
                   if hasattr(v, "__len__") and not isinstance(v, (str, bytes)) and np.ndim(v) > 0}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the columns of a dict source have different lengths: {lengths}")
        return frame({k: positional(v) for k, v in source.items()})
    if isinstance(source, (tuple, list)):
        if source and all(isinstance(r, dict) for r in source):
            return pd.DataFrame.from_records(list(source))
        if len(source) != 3 or any(isinstance(a, (str, bytes, dict)) or not hasattr(a, "__len__")
                                   for a in source):
            raise ValueError("a tuple/list source must hold exactly 3 arrays: "
                             "(users, items, timestamps), or be a list of records (dicts)")
        lengths = {len(a) for a in source}
        if len(lengths) != 1:
            raise ValueError(f"users, items and timestamps have different lengths: "
                             f"{[len(a) for a in source]}")
        return frame(dict(zip(REQUIRED, map(positional, source))))
    raise TypeError(f"cannot read interactions from {type(source).__name__}; pass a DataFrame, "
                    f"a path to .csv/.csv.gz/.parquet, a dict of columns, "
                    f"(users, items, timestamps) or a list of records")


def positional(column):
    """A Series as its values in order: columns passed side by side pair up by position, as
    arrays do, not by index label (pandas would align them, turning unmatched labels into NaN)."""
    return column.reset_index(drop=True) if isinstance(column, pd.Series) else column


def frame(columns: dict, labels: Optional[dict] = None) -> pd.DataFrame:
    """``pd.DataFrame(columns)``; text that UTF-8 cannot encode (a lone surrogate, which pandas'
    Arrow strings refuse while building the frame) is a ValueError naming its column."""
    try:
        return pd.DataFrame(columns)
    except UnicodeEncodeError:
        for key, values in columns.items():
            if np.ndim(values) > 0:
                _check_text_ids(np.asarray(values, dtype=object), (labels or {}).get(key, str(key)))
        raise


def read_file(path: str) -> pd.DataFrame:
    """Read a CSV (optionally compressed) or Parquet file, chosen by its name."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")):
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise ImportError("reading Parquet needs pyarrow: pip install pyarrow (or, in hrnn's source "
                              "folder, pip install '.[parquet]')") from e
        reader = functools.partial(pd.read_parquet, path, engine="pyarrow")
    elif _is_csv(path):
        reader = _csv_reader(path)
    else:
        raise ValueError(f"unsupported file type: {path} (expected .csv, .csv.gz, .tsv or "
                         f".parquet)")
    try:
        return reader()
    except (ValueError, OSError, EOFError) as e:  # parser errors, empty or corrupt files
        raise ValueError(f"cannot read {path}: {e}") from e


def _is_csv(path: str) -> bool:
    return path.lower().endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".csv.xz", ".tsv", ".tsv.gz"))


def _csv_reader(path: str, **kwargs):
    sep = "\t" if ".tsv" in path.lower() else ","
    # The C engine is as fast as pyarrow's here and does not turn ISO dates into datetimes
    # behind the caller's back, so a file reads the same whether or not pyarrow is installed.
    return functools.partial(pd.read_csv, path, sep=sep, low_memory=False, **kwargs)


def _decimal_lengths(v: np.ndarray) -> np.ndarray:
    """The length of ``str(x)`` for each integer x (int64 or uint64), exactly."""
    neg = v < 0
    with np.errstate(over="ignore"):  # (the unsigned branch that np.where does not take)
        magnitude = np.where(neg, -(v + 1), v).astype(np.uint64) + neg
    powers = np.array([10**k for k in range(1, 20)], dtype=np.uint64)
    return np.searchsorted(powers, magnitude, side="right") + 1 + neg


def keep_id_text(path: str, raw: pd.DataFrame, id_columns: list) -> pd.DataFrame:
    """``raw`` (read from ``path``) with each id column that pandas read as integers but the file
    does not write as plain integers (leading zeros, a sign: "000050", "+7") read again as text:
    "000050" and "50" are two SKUs, and an answer must give back the id the file has. So is a
    column read as floats that holds values from 2**53 on, which floats round, and one with
    missing values: pandas takes "NA", "null", "None", "nan"... for missing, and an id column
    reads them as ids (only an empty field is missing).

    The check reads the id columns again as text, a million rows at a time (about 0.6 s per
    million rows and two columns); Parquet files keep their types and need none."""
    if not _is_csv(path):
        return raw
    check = [c for c in id_columns if pd.api.types.is_integer_dtype(raw[c].dtype)]
    # Floats from 2**53 on are integer ids that pandas rounded (one row wrote "1.0"): distinct ids
    # merged. Their text is exact.
    text = [c for c in id_columns if pd.api.types.is_float_dtype(raw[c].dtype)
            and bool((np.abs(raw[c].to_numpy(dtype=np.float64)) >= 2.0**53).any())]
    text += [c for c in id_columns if c not in text and bool(raw[c].isna().any())]
    if check:
        lengths = {c: _decimal_lengths(raw[c].to_numpy()) for c in check}
        start = 0
        with _csv_reader(path, usecols=check, dtype=str, chunksize=ID_CHECK_ROWS)() as chunks:
            for chunk in chunks:
                end = start + len(chunk)
                for c in [c for c in check if c not in text]:
                    if (chunk[c].str.strip().str.len().to_numpy() != lengths[c][start:end]).any():
                        text.append(c)
                start = end
                if all(c in text for c in check):
                    break
    if not text:
        return raw
    raw = raw.copy(deep=False)
    columns = _csv_reader(path, usecols=text, dtype=str, keep_default_na=False, na_values=[""])()
    for c in text:  # (stripped, as pandas strips the numbers: " 007" and "007" are one id)
        raw[c] = columns[c].str.strip().to_numpy()
    return raw


# The command line's flag for each canonical column (cli._add_columns), for messages.
_FLAGS = {"USER_ID": "user-col", "ITEM_ID": "item-col", "TIMESTAMP": "time-col", "SESSION_ID": "session-col",
          "EVENT_TYPE": "event-type-col", "EVENT_VALUE": "event-value-col"}


def resolve_columns(found, columns) -> dict:
    """Map each canonical name to a source column name (or None when an optional one is absent)."""
    if columns is not None and not isinstance(columns, dict):
        raise TypeError(f"columns must be a dict of canonical name -> column name, e.g. "
                        f"{{'USER_ID': 'session_id'}}, got {columns!r}")
    mapping = {}
    for key, name in (columns or {}).items():
        canon = str(key).upper()
        if canon not in CANONICAL:
            raise ValueError(f"unknown canonical column {key!r} in columns=; expected one of "
                             f"{', '.join(CANONICAL)}")
        mapping[canon] = name
    by_upper: dict = {}  # (a header written "USER_ID, ITEM_ID" gives the column " ITEM_ID")
    for col in found:
        by_upper.setdefault(str(col).strip().upper(), []).append(col)
    resolved = {}
    for canon, name in mapping.items():
        if name is None and canon in REQUIRED:
            raise ValueError(f"{canon} is required: columns={{{canon!r}: None}} cannot switch it off")
        if name is None:  # explicitly switched off
            resolved[canon] = None
        elif found.count(name) > 1:
            raise ValueError(f"several columns are named {name!r} (given for {canon}); rename them apart")
        elif name in found:
            resolved[canon] = name
        elif len(by_upper.get(str(name).strip().upper(), [])) == 1:
            resolved[canon] = by_upper[str(name).strip().upper()][0]
        elif by_upper.get(str(name).strip().upper()):
            raise ValueError(f"several columns match {name!r} (given for {canon}) case-insensitively: "
                             f"{by_upper[str(name).strip().upper()]}; give one of them exactly")
        else:
            raise KeyError(f"column {name!r} given for {canon} not found; columns found: "
                           f"{', '.join(map(repr, found))}")
    roles: dict = {}  # one source column in two roles (but USER_ID and SESSION_ID: sessions as users)
    for canon, name in resolved.items():
        if name is not None:
            roles.setdefault(name, []).append(canon)
    for name, canons in roles.items():
        if len(canons) > 1 and set(canons) != {USER_ID, SESSION_ID}:
            raise ValueError(f"column {name!r} is given for {' and '.join(canons)} in columns=; each "
                             f"needs its own column")
    # A source column that the caller mapped explicitly is not auto-matched a second time
    # (yoochoose: session_id mapped to USER_ID must not also become SESSION_ID).
    used = {v for v in resolved.values() if v is not None}
    for canon in CANONICAL:
        if canon in resolved:
            continue
        candidates = [c for c in by_upper.get(canon, []) if c not in used]
        if len(candidates) > 1 and canon in candidates and len(set(candidates)) > 1:
            warn_caller(f"columns {', '.join(map(repr, candidates))} all match {canon}; {canon!r}, the "
                        f"exact name, is used (choose another with columns={{'{canon}': ...}}; command line: "
                        f"--{_FLAGS[canon]} ...)")
            candidates = [canon] * candidates.count(canon)
        if len(candidates) > 1 and len(set(candidates)) == 1:
            raise ValueError(f"several columns are named {candidates[0]!r} (they match {canon}); rename them apart")
        if len(candidates) > 1:
            raise ValueError(f"several columns match {canon} case-insensitively: {candidates}; "
                             f"choose one with columns={{'{canon}': ...}}")
        if candidates:
            resolved[canon] = candidates[0]
        elif canon in REQUIRED:
            hint = ""
            if by_upper.get(canon):  # there is one, but columns= gave it another role
                taken = [k for k, v in resolved.items() if v in by_upper[canon]]
                hint = f"; column {by_upper[canon][0]!r} is mapped to {taken[0]} in columns="
            if canon == USER_ID and by_upper.get(SESSION_ID):  # session-only logs (yoochoose)
                hint = (f"; if each session is its own user, pass "
                        f"columns={{'USER_ID': {by_upper[SESSION_ID][0]!r}}} (command line: "
                        f"--user-col {by_upper[SESSION_ID][0]})")
            raise KeyError(f"required column {canon} not found; columns found: "
                           f"{', '.join(map(repr, found)) or '(none)'}{hint}")
    return {k: v for k, v in resolved.items() if v is not None}


def row(i) -> str:
    return f"row {int(i)} (0-based)"


def column_label(canon: str, name) -> str:
    """How error messages name a column: canonical name, plus the source name if different."""
    return canon if str(name) == canon else f"{canon} (column {name!r})"


def check_no_missing(s: pd.Series, label: str) -> None:
    """ValueError with the count and the first row when ``s`` has NaN/None/NA."""
    missing = s.isna().to_numpy()
    if missing.any():
        raise ValueError(f"{label} has {int(missing.sum()):,} missing values (NaN/None); "
                         f"first at {row(np.flatnonzero(missing)[0])}")


def _plain_ids(dtype) -> bool:
    """Integer or string dtypes (numpy, nullable, pyarrow): ids as they are."""
    return (pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)) or (
        dtype != object and pd.api.types.is_string_dtype(dtype))


def _arrow_type(s: pd.Series, test: str) -> bool:
    """Whether ``s`` holds Arrow data of a kind (``pyarrow.types.<test>``), without importing
    pyarrow for other columns."""
    if not isinstance(s.dtype, pd.ArrowDtype):
        return False
    import pyarrow.types
    return getattr(pyarrow.types, test)(s.dtype.pyarrow_dtype)


def ids(s: pd.Series, label: str):
    """An id column's values: strings or integers (what a model file holds). Floats that are all
    whole numbers (an id column read as float) become integers, with a UserWarning; any other
    value (a fraction, a bool, bytes, a date) is a TypeError naming it and its row."""
    def refuse(i, value):
        value = value.item() if isinstance(value, np.generic) else value
        raise TypeError(f"{label} must hold strings or integers (ids); first other value {value!r} "
                        f"({type(value).__name__}) at {row(i)}")

    def converted(values):
        warn_caller(f"{label} holds floats; they are whole numbers and are used as integer ids")
        return values

    if _arrow_type(s, "is_dictionary"):  # Parquet's categoricals, read with dtype_backend="pyarrow"
        s = s.astype(pd.ArrowDtype(s.dtype.pyarrow_dtype.value_type))
    if isinstance(s.dtype, pd.CategoricalDtype):
        if _plain_ids(s.cat.categories.dtype) or pd.api.types.infer_dtype(s.cat.categories) == "string":
            return s.array
        s = s.astype(s.cat.categories.dtype)  # float or mixed categories: checked as values below
    if pd.api.types.is_bool_dtype(s):
        refuse(0, s.iloc[0])
    if pd.api.types.is_float_dtype(s):
        v = s.to_numpy(dtype=np.float64)
        bad = v != np.floor(v)
        if bad.any():
            refuse(int(np.flatnonzero(bad)[0]), v[bad][0])
        rounded = np.abs(v) >= 2.0**53
        if rounded.any():
            i = int(np.flatnonzero(rounded)[0])
            raise ValueError(f"{label} holds floats from 2**53 on (first {v[i]:.0f} at {row(i)}): as floats, "
                             f"integer ids that large are rounded and distinct ids merge; give the ids as "
                             f"integers or as text")
        return converted(v.astype(np.int64))
    if s.dtype != object:
        if not _plain_ids(s.dtype):  # dates, durations, complex numbers...
            refuse(0, s.iloc[0])
        return s.array
    if pd.api.types.infer_dtype(s, skipna=False) in ("string", "integer"):
        return s.array
    values = s.to_numpy(dtype=object, copy=True)
    floats = False
    for i, v in enumerate(values):
        if isinstance(v, (float, np.floating)) and float(v).is_integer() and abs(v) < 2.0**53:
            values[i], floats = int(v), True
        elif isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, int, np.integer)):
            refuse(i, v)
    _warn_text_and_integer(values, label)
    return converted(values) if floats else s.array


def _warn_text_and_integer(values: np.ndarray, label: str) -> None:
    """Ids of both types are different ids (a model file keeps both): say so where the text of an
    integer is there too, which is most likely one id written two ways."""
    text = {v for v in values if isinstance(v, str)}
    both = sorted({str(v) for v in values if not isinstance(v, str)} & text) if text else []
    if both:
        warn_caller(f"{label} holds {len(both):,} ids both as integers and as text (e.g. {both[0]} and "
                    f"{both[0]!r}): they are different ids; convert the column to one type to make "
                    f"them one")


def numeric(s: pd.Series, label: str, what: str, hint: str = "") -> np.ndarray:
    """float64 values of a numeric column; TypeError naming the first non-numeric value."""
    if pd.api.types.is_complex_dtype(s):
        raise TypeError(f"{label} must hold real numbers ({what}), got dtype {s.dtype}{hint}")
    if pd.api.types.is_bool_dtype(s) or not (
            pd.api.types.is_numeric_dtype(s)
            or (s.dtype == object and pd.api.types.infer_dtype(s, skipna=True)
                in ("integer", "floating", "mixed-integer-float", "decimal", "empty"))):
        bad = pd.to_numeric(s, errors="coerce").isna().to_numpy() & s.notna().to_numpy()
        as_text = not bad.any() and (s.dtype == object or pd.api.types.is_string_dtype(s))
        if as_text:  # text that reads as a number
            bad = np.array([isinstance(v, (str, bytes)) for v in s.to_numpy()], dtype=bool)
            as_text = bool(bad.any())  # (a column of booleans has none)
            hint = "; numbers written as text: convert them with pandas.to_numeric" if as_text else hint
        rows = np.flatnonzero(bad)
        kind = "value written as text" if as_text else "non-numeric value"
        example = f"; first {kind} {s.iloc[rows[0]]!r} at {row(rows[0])}" if len(rows) else ""
        raise TypeError(f"{label} must hold numbers ({what}), got dtype {s.dtype}{example}{hint}")
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


# A date and a time of day, with optional seconds, fraction and UTC offset: text that names one
# instant (a date alone is a whole day, refused as the date columns are).
_UTC_OFFSET = r"(?:Z|[+-]\d{2}(?::?\d{2})?)"
_ISO_DATE_TIME = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?" + _UTC_OFFSET + "?"


def _iso_date_times(s: pd.Series, label: str) -> Optional[pd.Series]:
    """Unix seconds from a text column of ISO 8601 date-times (a CSV's "2014-04-07T10:51:09.277Z"),
    with a UserWarning saying so; None when no value is such text."""
    if not len(s) or pd.api.types.infer_dtype(s, skipna=True) != "string":
        return None
    ok = s.str.fullmatch(_ISO_DATE_TIME).fillna(False).astype(bool).to_numpy()
    if not ok.any():
        return None
    if not ok.all():
        first = int(np.flatnonzero(~ok)[0])
        raise TypeError(f"{label} holds ISO 8601 date-time text, but not only: {s.iloc[first]!r} at "
                        f"{row(first)} is not one")
    text = s.str.replace(",", ".", regex=False)
    # Those with an offset and those without are parsed apart: pandas 2.2 reads a column that mixes
    # them with the last offset applied to the naive ones.
    aware = text.str.contains(_UTC_OFFSET + "$", regex=True).fillna(False).to_numpy(dtype=bool)
    seconds = np.empty(len(s))
    try:
        for rows, utc in ((aware, True), (~aware, False)):
            if rows.any():
                when = pd.to_datetime(text[rows], format="ISO8601", utc=utc)
                when = when.dt.tz_localize(None) if utc else when
                seconds[rows] = unix_seconds(when.to_numpy())
    except (ValueError, OverflowError) as e:  # a month 13, a year beyond pandas' range
        reason = str(e).splitlines()[0].split(" You might")[0]  # (not pandas' advice on its arguments)
        raise ValueError(f"{label} holds ISO 8601 date-time text that names no instant: {reason}") from None
    warn_caller(f"{label} holds ISO 8601 date-time text: read as unix seconds (UTC where the text "
                f"gives no offset)")
    return pd.Series(seconds, index=s.index)


def timestamps(s: pd.Series, label: str) -> np.ndarray:
    """float64 unix seconds from a numeric or datetime64 column, or one of ISO 8601 date-time text,
    checked for plausibility."""
    if _arrow_type(s, "is_date"):
        raise TypeError(f"{label} holds dates ({s.dtype}) without a time of day; convert them with "
                        f"pandas.to_datetime if midnight UTC is meant")
    parsed = _iso_date_times(s, label)
    if parsed is not None:
        s = parsed
    if isinstance(s.dtype, pd.ArrowDtype) and s.dtype.kind == "M":  # read_parquet(dtype_backend="pyarrow")
        unit, tz = s.dtype.pyarrow_dtype.unit, s.dtype.pyarrow_dtype.tz
        s = s.astype(pd.DatetimeTZDtype(unit, "UTC") if tz else s.dtype.numpy_dtype)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    is_date = pd.api.types.is_datetime64_dtype(s)
    if is_date:
        # Naive datetimes are taken as UTC; the unit (s/ms/us/ns) is whatever pandas stored.
        ts = unix_seconds(s.to_numpy()) + 0.0
    else:
        hint = ("; text is read only as ISO 8601 date-times (2014-04-07T10:51:09Z, all of them); "
                "convert other date strings with pandas.to_datetime") if s.dtype == object or \
            pd.api.types.is_string_dtype(s) else ""
        check_float_width(s.to_numpy(), label)
        ts = numeric(s, label, "unix seconds", hint) + 0.0  # + 0.0 turns -0.0 into 0.0
    bad = ~np.isfinite(ts)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{label} has {int(bad.sum()):,} infinite values; first {ts[first]} "
                         f"at {row(first)}")
    neg = ts < 0
    if neg.any():
        first = int(np.flatnonzero(neg)[0])
        raise ValueError(f"{label} has {int(neg.sum()):,} negative timestamps; first "
                         f"{ts[first]:g} at {row(first)}")
    median = float(np.median(ts)) if not is_date else 0.0
    for limit, unit, factor in ((1e17, "nanoseconds", "1e9"), (1e14, "microseconds", "1e6"),
                                (1e11, "milliseconds", "1000")):
        if limit < median < 1e20:  # (1e20 ns is the year 5138: beyond it no unit is plausible)
            raise ValueError(f"{label} values look like {unit} (median {median:.4g}); hrnn "
                             f"expects unix seconds: divide by {factor}")
    late = ts > MAX_TIMESTAMP
    if late.any():
        first = int(np.flatnonzero(late)[0])
        raise ValueError(f"{label} has {int(late.sum()):,} values beyond the year 5000 in unix "
                         f"seconds; first {ts[first]:.6g} at {row(first)}")
    return ts


def drop_duplicates(out: pd.DataFrame) -> pd.DataFrame:
    """Drop exact duplicate events (equal in every column; keeping the first), with a UserWarning
    saying how many. Events that differ in value or session are kept: a filter on either may
    want the one that is not first."""
    subset = [c for c in CANONICAL if c in out.columns]
    # A full DataFrame.duplicated over string ids costs seconds on 10M rows; hashing the
    # factorised codes first and checking only rows whose hash repeats is several times faster
    # and still exact.
    h = np.zeros(len(out), dtype=np.uint64)
    for col, mult in zip(subset, (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                                  0x27D4EB2F165667C5, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53)):
        if col == TIMESTAMP:  # the float's bits: equal timestamps, equal bits (-0.0 is gone)
            codes = np.ascontiguousarray(out[col].to_numpy(dtype=np.float64)).view(np.uint64)
        else:
            codes = pd.factorize(out[col])[0].astype(np.uint64)
        h = (h ^ codes) * np.uint64(mult)
        h ^= h >> np.uint64(29)
    candidates = pd.Series(h).duplicated(keep=False).to_numpy()
    if not candidates.any():
        return out
    dup = np.zeros(len(out), dtype=bool)
    dup[candidates] = out.loc[candidates, subset].duplicated().to_numpy()
    n = int(dup.sum())
    if n:
        warn_caller(f"dropped {n:,} exact duplicate interactions (same "
                    f"{', '.join(subset)}); {len(out) - n:,} remain")
        out = out.loc[~dup].reset_index(drop=True)
    return out
