"""hrnn.data: reading and validating tables, event logs, sessions, filters, weights."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hrnn
from hrnn.data import (EventLog, build_event_log, check_minimums, check_percentiles, featurize, filter_events,
                       last_session_starts, popularity, read_interactions, recency_weights)

DATASETS = Path(__file__).parents[1].parent / "shared" / "datasets"
T0 = 1_600_000_000


def table(n_users=6, per_user=5, string_ids=True, seed=0, **extra):
    """A small interactions table in random row order, lower-case column names."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.integers(0, 20, users.size)
    ts = T0 + rng.permutation(users.size) * 100
    df = pd.DataFrame({"user_id": [f"u{u}" for u in users] if string_ids else users,
                       "item_id": [f"i{i}" for i in items] if string_ids else items,
                       "timestamp": ts, **extra})
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


# ------------------------------------------------------------------------------------- reading

class TestSources:
    def test_dataframe_case_insensitive_and_canonical_output(self):
        df = table(event_type="click", rating=1.0, Event_Value=np.arange(30) // 2)
        out = read_interactions(df)
        assert list(out.columns) == ["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"]
        assert out["TIMESTAMP"].dtype == np.float64 and out["EVENT_VALUE"].dtype == np.float64
        assert out["USER_ID"].tolist() == df["user_id"].tolist()
        assert isinstance(out.index, pd.RangeIndex)

    def test_caller_dataframe_unchanged(self):
        df = table(string_ids=False)
        key = ["user_id", "item_id", "timestamp"]
        df.loc[3, key] = df.loc[2, key]
        df["when"] = pd.to_datetime(df["timestamp"], unit="s")
        df.index = df.index * 10  # a non-default index must survive too
        before = df.copy()
        with pytest.warns(UserWarning, match="dropped 1 exact duplicate"):
            out = read_interactions(df, columns={"TIMESTAMP": "when"})
        pd.testing.assert_frame_equal(df, before)
        out.loc[0, "USER_ID"] = -5
        pd.testing.assert_frame_equal(df, before)

    @pytest.mark.parametrize("rows_at_a_time", [1 << 20, 7])
    def test_csv_ids_that_are_not_plain_integers_stay_text(self, tmp_path, monkeypatch, rows_at_a_time):
        """pandas reads "000050" as 50 (the SKU "50" too): such a column is read as its text,
        whichever chunk of the file holds the first one; plain integers stay integers."""
        monkeypatch.setattr(hrnn._reading, "ID_CHECK_ROWS", rows_at_a_time)
        df = table(string_ids=False)
        plain, path = df.copy(), tmp_path / "ids.csv"
        df["item_id"] = df["item_id"].map("{:06d}".format)
        df.loc[len(df) - 1, "item_id"] = "50"
        df["user_id"] = (df["user_id"] - 3) * 10**17  # negative, and across powers of ten
        df.to_csv(path, index=False)
        out = read_interactions(path)
        assert out["ITEM_ID"].tolist() == df["item_id"].tolist()  # "000050" and "50" apart
        assert out["USER_ID"].dtype == np.int64 and out["USER_ID"].tolist() == df["user_id"].tolist()
        plain.to_csv(path, index=False)
        assert read_interactions(path)["ITEM_ID"].dtype == np.int64
        plain.assign(user_id="+" + plain["user_id"].astype(str)).to_csv(path, index=False)
        assert read_interactions(path)["USER_ID"].tolist()[:1] == ["+" + str(plain["user_id"][0])]
        plain.assign(user_id=" " + plain["user_id"].astype(str)).to_csv(path, index=False)
        assert read_interactions(path)["USER_ID"].dtype == np.int64  # spaces are not part of a number

    def test_ids_that_floats_would_round_are_never_merged(self, tmp_path):
        """One row written "1.0" makes pandas read the column as floats, which round 2**53 + 1 and
        2**53 + 3 to neighbours: a CSV's column is then read as its text, other sources refused."""
        big = [2**53 + 1, 2**53 + 3, 2**53 + 5]
        rows = [f"u{k % 5},{big[k % 3]},{1.6e9 + k:.0f}" for k in range(30)] + ["u9,1.0,1600000100"]
        path = tmp_path / "skus.csv"
        path.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "\n".join(rows) + "\n")
        items = read_interactions(path)["ITEM_ID"]
        assert sorted(set(items.tolist())) == sorted([str(b) for b in big] + ["1.0"])
        floats = pd.DataFrame({"USER_ID": [1, 2], "ITEM_ID": [float(2**53 + 2), 1.0], "TIMESTAMP": [1.0, 2.0]})
        with pytest.raises(ValueError, match=r"ITEM_ID.*floats from 2\*\*53 on \(first 9007199254740994 at row 0"):
            read_interactions(floats)
        with pytest.warns(UserWarning, match="whole numbers"):  # smaller whole floats stay integer ids
            assert read_interactions(floats.iloc[1:])["ITEM_ID"].tolist() == [1]

    def test_ids_spelled_like_missing_values_are_ids(self, tmp_path):
        """pandas reads "NA", "null", "None", "nan", "#N/A" as missing: in a CSV's id columns they
        are ids (an item "NA", a user "null"); only an empty field is missing."""
        words = ["NA", "null", "None", "nan", "#N/A", "7"]
        rows = [f"{'null' if k % 4 == 0 else f'u{k % 4}'},{words[k % 6]},{1.6e9 + k:.0f}" for k in range(36)]
        path = tmp_path / "na.csv"
        path.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "\n".join(rows) + "\n")
        out = read_interactions(path)
        assert sorted(set(out["ITEM_ID"].tolist())) == sorted(words)
        assert "null" in set(out["USER_ID"].tolist())
        path.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "\n".join(rows + ["u1,,1600000100"]) + "\n")
        with pytest.raises(ValueError, match="ITEM_ID .* 1 missing value"):
            read_interactions(path)

    def test_decimal_lengths_are_exact_at_every_power_of_ten(self):
        values = [0, 9, 10, 99, 100, -1, -10, 10**18 - 1, 10**18, 2**63 - 1, -2**63]
        assert hrnn._reading._decimal_lengths(np.array(values, np.int64)).tolist() == [len(str(v)) for v in values]
        big = [2**64 - 1, 10**19 - 1, 10**19]
        assert hrnn._reading._decimal_lengths(np.array(big, np.uint64)).tolist() == [len(str(v)) for v in big]

    @pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".parquet"])
    def test_files(self, tmp_path, suffix):
        df = table(event_type="view")
        path = tmp_path / f"events{suffix}"
        if suffix == ".parquet":
            df.to_parquet(path)
        else:
            df.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
        for source in (path, str(path)):
            out = read_interactions(source)
            assert out["USER_ID"].tolist() == df["user_id"].tolist()
            assert out["ITEM_ID"].tolist() == df["item_id"].tolist()
            assert out["TIMESTAMP"].tolist() == df["timestamp"].astype(float).tolist()
            assert out["EVENT_TYPE"].tolist() == ["view"] * len(df)

    def test_parquet_without_pyarrow(self, tmp_path, monkeypatch):
        path = tmp_path / "x.parquet"
        table().to_parquet(path)
        monkeypatch.setitem(sys.modules, "pyarrow", None)
        with pytest.raises(ImportError, match=r"pip install pyarrow \(or, in hrnn's source folder, pip install '\.\[parquet\]'\)"):
            read_interactions(path)

    def test_dict_tuple_list(self):
        users, items, ts = [1, 1, 2], [10, 11, 10], [T0, T0 + 1, T0 + 2]
        for source in ({"USER_ID": users, "Item_Id": items, "timestamp": ts},
                       (users, items, ts), [np.array(users), np.array(items), np.array(ts)]):
            out = read_interactions(source)
            assert out["USER_ID"].tolist() == users and out["ITEM_ID"].tolist() == items

    def test_ids_keep_their_type(self):
        ints, strs = read_interactions(table(string_ids=False)), read_interactions(table())
        assert pd.api.types.is_integer_dtype(ints["USER_ID"])
        assert pd.api.types.is_integer_dtype(ints["ITEM_ID"])
        assert strs["USER_ID"].iloc[0].startswith("u")
        assert isinstance(build_event_log(strs).user_ids[0], str)

    def test_columns_mapping(self):
        df = table().rename(columns={"user_id": "session_id"})
        with pytest.raises(KeyError, match="columns={'USER_ID': 'session_id'}"):
            read_interactions(df)
        out = read_interactions(df, columns={"user_id": "session_id"})
        assert "SESSION_ID" not in out.columns  # a mapped column is not matched a second time
        assert out["USER_ID"].tolist() == df["session_id"].tolist()
        both = read_interactions(table(session_id=1), columns={"SESSION_ID": None})
        assert "SESSION_ID" not in both.columns

    def test_columns_mapping_errors_and_ambiguous_names(self):
        with pytest.raises(ValueError, match="unknown canonical column 'USER'"):
            read_interactions(table(), columns={"USER": "user_id"})
        with pytest.raises(KeyError, match="'visitor' given for USER_ID not found.*item_id"):
            read_interactions(table(), columns={"USER_ID": "visitor"})
        df = table()
        df["USER_ID"] = df["user_id"] + "x"
        with pytest.warns(UserWarning, match="'user_id', 'USER_ID' all match USER_ID; 'USER_ID', the exact"
                                             r".*\(choose another with columns=\{'USER_ID': ...\}; command line: --user-col"):
            assert read_interactions(df)["USER_ID"].tolist() == df["USER_ID"].tolist()  # exact wins
        assert read_interactions(df, columns={"USER_ID": "user_id"})["USER_ID"].tolist() == \
            df["user_id"].tolist()
        spaced = table().rename(columns={"item_id": " item_id "})  # "USER_ID, ITEM_ID" headers
        assert read_interactions(spaced)["ITEM_ID"].tolist() == spaced[" item_id "].tolist()
        with pytest.raises(KeyError, match="columns found: 'user_id', ' item_id ', 'timestamp_'"):
            read_interactions(spaced.drop(columns="timestamp").assign(timestamp_=1))
        df = table()
        df["User_Id"] = df["user_id"]
        with pytest.raises(ValueError, match="several columns match USER_ID"):
            read_interactions(df)
        # The same through columns=: an exact name wins; one that matches several only by case is refused.
        df = table().assign(Visitor=lambda d: d["user_id"], VISITOR=lambda d: d["user_id"].str.upper())
        assert read_interactions(df, columns={"USER_ID": "Visitor"})["USER_ID"].tolist() == df["user_id"].tolist()
        with pytest.raises(ValueError, match=r"several columns match 'visitor' \(given for USER_ID\)"):
            read_interactions(df, columns={"USER_ID": "visitor"})

    def test_datetime_and_object_timestamps(self):
        df = table()
        naive = df.assign(timestamp=pd.to_datetime(df["timestamp"], unit="s"))
        aware = naive.assign(timestamp=naive["timestamp"].dt.tz_localize("UTC")
                             .dt.tz_convert("America/New_York"))
        for source in (naive, aware, df.assign(timestamp=df["timestamp"].astype(object))):
            assert read_interactions(source)["TIMESTAMP"].tolist() == \
                df["timestamp"].astype(float).tolist()

    @pytest.mark.parametrize("fmt, tz", [("%Y-%m-%dT%H:%M:%SZ", "UTC"), ("%Y-%m-%d %H:%M:%S", None),
                                         ("%Y-%m-%dT%H:%M:%S%z", "Asia/Kolkata")])
    def test_iso_date_time_text(self, tmp_path, fmt, tz):
        """A CSV's date-time text (what the command line reads) is taken as the instants it names."""
        df = table()
        when = pd.to_datetime(df["timestamp"], unit="s", utc=True)
        text = (when.dt.tz_convert(tz) if tz else when).dt.strftime(fmt)
        path = tmp_path / "iso.csv"
        df.assign(timestamp=text).to_csv(path, index=False)
        for source in (df.assign(timestamp=text), path):
            with pytest.warns(UserWarning, match="TIMESTAMP.*holds ISO 8601 date-time text"):
                got = read_interactions(source)["TIMESTAMP"].tolist()
            assert got == df["timestamp"].astype(float).tolist()

    def test_iso_fractions_and_offsets(self):
        df = table().iloc[:3].assign(timestamp=["1970-01-01T00:00:01.25Z", "1970-01-01 02:00:02,5+02:00",
                                                "1970-01-01T00:01"])
        with pytest.warns(UserWarning, match="ISO 8601"):
            assert read_interactions(df)["TIMESTAMP"].tolist() == [1.25, 2.5, 60.0]


def spoil(col, rows, value, **extra):
    """table() with ``value`` written into ``col`` at ``rows`` (the column made object dtype)."""
    df = table(**extra)
    df[col] = df[col].astype(object)
    df.loc[rows, col] = value
    return df


BAD_INPUTS = {  # name: (make the table, exception, what the message must say)
    "no time column": (lambda: table().rename(columns={"timestamp": "ts"}), KeyError,
                       "required column TIMESTAMP not found; columns found: 'user_id', 'item_id', 'ts'"),
    "missing user": (lambda: spoil("user_id", [4, 7], None), ValueError,
                     r"USER_ID \(column 'user_id'\) has 2 missing values.*first at row 4"),
    "missing item": (lambda: spoil("item_id", [7, 9], np.nan), ValueError,
                     r"ITEM_ID \(column 'item_id'\) has 2 missing values.*first at row 7"),
    "missing time": (lambda: spoil("timestamp", [2], None), ValueError,
                     "TIMESTAMP.*1 missing values.*first at row 2"),
    "missing type": (lambda: spoil("event_type", [2], np.nan, event_type="a"), ValueError,
                     "EVENT_TYPE.*1 missing.*row 2"),
    "text time": (lambda: spoil("timestamp", [5], "yesterday"), TypeError,
                  "TIMESTAMP.*numbers.*'yesterday' at row 5"),
    "date strings": (lambda: table().assign(timestamp="2020-01-01"), TypeError,
                     "TIMESTAMP.*'2020-01-01'.*pandas.to_datetime"),
    "date strings among date-times": (lambda: spoil("timestamp", slice(None), "2020-01-01T10:00:00").assign(
        timestamp=lambda d: d["timestamp"].where(d.index != 4, "2020-01-02")), TypeError,
        "TIMESTAMP.*holds ISO 8601 date-time text, but not only: '2020-01-02' at row 4"),
    "impossible date-time": (lambda: spoil("timestamp", slice(None), "2020-13-01T10:00:00"), ValueError,
                             "TIMESTAMP.*holds ISO 8601 date-time text that names no instant.*2020-13-01"),
    "bool time": (lambda: table().assign(timestamp=True), TypeError, "TIMESTAMP.*bool"),
    "negative": (lambda: spoil("timestamp", [3], -5), ValueError,
                 "TIMESTAMP.*1 negative.*-5 at row 3"),
    "milliseconds": (lambda: spoil("timestamp", slice(None), T0 * 1000), ValueError,
                     "TIMESTAMP.*look like milliseconds.*divide by 1000"),
    "microseconds": (lambda: spoil("timestamp", slice(None), T0 * 10**6), ValueError,
                     "TIMESTAMP.*look like microseconds.*divide by 1e6"),
    "absurd": (lambda: spoil("timestamp", slice(None), 1e300), ValueError,
               "TIMESTAMP.*has 30 values beyond the year 5000.*first 1e\\+300 at row 0"),
    "infinite": (lambda: spoil("timestamp", [6], np.inf), ValueError,
                 "TIMESTAMP.*1 infinite.*row 6"),
    "empty": (lambda: table().iloc[:0], ValueError, "empty"),
    "text value": (lambda: table(event_value=["x"] * 30), TypeError, "EVENT_VALUE.*'x'"),
    "a number as text among numbers": (lambda: {"USER_ID": [1, 2, 3], "ITEM_ID": [1, 2, 3],
                                                "TIMESTAMP": [T0, str(T0 + 1), T0]},
                                       TypeError, "TIMESTAMP.*first value written as text '1600000001' at row 1.*"
                                                  "pandas.to_numeric"),
    "epoch seconds as text": (lambda: table().astype({"timestamp": str}), TypeError,
                              "TIMESTAMP.*written as text.*at row 0.*pandas.to_numeric"),
    "2-tuple": (lambda: ([1], [2]), ValueError, "exactly 3 arrays"),
    "ragged": (lambda: ([1, 2], [2], [T0]), ValueError, "different lengths"),
    "records and arrays": (lambda: ([1, 2], {"USER_ID": 1}, [T0, T0]), ValueError, "or be a list of records"),
    "record without a column": (lambda: [{"USER_ID": 1, "ITEM_ID": 2}] * 3, KeyError, "TIMESTAMP not found"),
    "unnamed surrogate": (lambda: {"USER_ID": ["u1", "u\udc80"], "ITEM_ID": [1, 2], "TIMESTAMP": [T0, T0]},
                          ValueError, "USER_ID must be valid Unicode text"),
    "ragged dict": (lambda: {"USER_ID": [1, 2], "ITEM_ID": [2], "TIMESTAMP": [T0, T0]}, ValueError,
                    r"dict source have different lengths: \{'USER_ID': 2, 'ITEM_ID': 1"),
    "an int": (lambda: 5, TypeError, "cannot read interactions from int"),
}


class TestValidation:
    @pytest.mark.parametrize("name", BAD_INPUTS)
    def test_bad_input(self, name):
        make, exc, pattern = BAD_INPUTS[name]
        with pytest.raises(exc, match=pattern):
            read_interactions(make())

    @pytest.mark.parametrize("n", [1, 3, 4])  # (3: not taken for three columns)
    def test_a_list_of_records(self, n):
        records = [{"USER_ID": u, "ITEM_ID": 10 + u, "TIMESTAMP": T0 + u} for u in range(n)]
        out = read_interactions(records)
        assert out["USER_ID"].tolist() == list(range(n)) and out["ITEM_ID"].tolist() == [10 + u for u in range(n)]

    @pytest.mark.parametrize("kind", ["tuple", "dict"])
    def test_series_pair_up_by_position_not_index(self, kind):
        users = pd.Series(["a", "b", "c"], index=[5, 6, 7])
        items = pd.Series(["x", "y", "z"])
        times = pd.Series([T0, T0 + 1, T0 + 2], index=[2, 1, 0])
        source = (users, items, times) if kind == "tuple" else {"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": times}
        out = read_interactions(source)
        assert out["USER_ID"].tolist() == ["a", "b", "c"] and out["ITEM_ID"].tolist() == ["x", "y", "z"]
        assert out["TIMESTAMP"].tolist() == [T0, T0 + 1, T0 + 2]

    def test_a_dict_source_may_broadcast_a_scalar(self):
        out = read_interactions({"USER_ID": [1, 2], "ITEM_ID": [1, 2], "TIMESTAMP": np.array(T0)})
        assert out["TIMESTAMP"].tolist() == [T0, T0]

    def test_duplicates_dropped_with_warning(self):
        df = table(event_type="click")
        dup = pd.concat([df, df.iloc[[1, 2, 2]]], ignore_index=True)
        other_type = df.iloc[[3]].assign(event_type="buy")  # not a duplicate: another type
        with pytest.warns(UserWarning, match="dropped 3 exact duplicate interactions"):
            out = read_interactions(pd.concat([dup, other_type], ignore_index=True))
        assert len(out) == len(df) + 1
        assert out["USER_ID"].tolist()[:len(df)] == df["user_id"].tolist()  # first ones kept

    @pytest.mark.parametrize("column,values", [("EVENT_VALUE", [1.0, 5.0]), ("SESSION_ID", ["s1", "s2"])])
    def test_rows_differing_only_in_value_or_session_are_kept(self, column, values):
        # (a value filter after reading must still see the later event's value)
        df = pd.DataFrame({"USER_ID": ["a", "a", "a"], "ITEM_ID": ["x", "x", "x"], "TIMESTAMP": [T0] * 3,
                           column: values + values[1:]})
        with pytest.warns(UserWarning, match="dropped 1 exact duplicate"):
            out = read_interactions(df)
        assert out[column].tolist() == values

    def test_bad_sources(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no such file"):
            read_interactions(tmp_path / "nope.csv")
        (tmp_path / "a.json").write_text("{}")
        with pytest.raises(ValueError, match="unsupported file type"):
            read_interactions(tmp_path / "a.json")
        (tmp_path / "bad.csv.gz").write_bytes(b"not gzip")
        with pytest.raises(ValueError, match="cannot read .*bad.csv.gz"):
            read_interactions(tmp_path / "bad.csv.gz")
        (tmp_path / "empty.csv").write_text("")
        with pytest.raises(ValueError, match="cannot read .*empty.csv"):
            read_interactions(tmp_path / "empty.csv")


# ------------------------------------------------------------------------------------ event log

def reference_log(users, items, ts, gap):
    """Plain-Python grouping and sessions, to check the vectorised version against."""
    seen = {}
    for u in users:
        seen.setdefault(u, len(seen))
    rows = sorted(range(len(users)), key=lambda r: (seen[users[r]], ts[r], r))
    new = [r == rows[0] or users[r] != users[p] or ts[r] - ts[p] > gap
           for p, r in zip([None] + rows[:-1], rows)]
    return [items[r] for r in rows], [ts[r] for r in rows], [int(b) for b in new], list(seen)


class TestEventLog:
    def test_stable_sort_and_first_appearance(self):
        df = read_interactions(pd.DataFrame({
            "USER_ID": ["b", "a", "b", "a", "b"], "ITEM_ID": [1, 2, 3, 4, 5],
            "TIMESTAMP": [T0 + 5, T0, T0 + 5, T0 - 1, T0]}))
        log = build_event_log(df)
        assert log.user_ids.tolist() == ["b", "a"]
        assert log.offsets.tolist() == [0, 3, 5] and log.lengths().tolist() == [3, 2]
        assert log.item_ids[log.items].tolist() == [5, 1, 3, 4, 2]  # b: ties at T0+5 keep order
        assert log.event_users().tolist() == [0, 0, 0, 1, 1]
        assert (log.n_users, log.n_items, log.n_events) == (2, 5, 5)
        assert (log.offsets.dtype, log.items.dtype, log.timestamps.dtype, log.new_session.dtype) \
            == (np.int64, np.int32, np.float64, np.uint8)
        with pytest.raises(dataclasses.FrozenInstanceError):
            log.items = None

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6), st.integers(0, 8)),
                    min_size=1, max_size=40),
           st.sampled_from([0.0, 1.0, 2.5, None]), st.booleans())
    def test_matches_reference(self, rows, gap, fractional):
        users = [f"u{r[0]}" for r in rows]
        items = [r[1] for r in rows]
        ts = [T0 + r[2] * (0.5 if fractional else 1) for r in rows]
        log = build_event_log(pd.DataFrame({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": ts}),
                              session_gap=gap)
        ref_items, ref_ts, ref_new, ref_users = reference_log(
            users, items, ts, np.inf if gap is None else gap)
        assert log.item_ids[log.items].tolist() == ref_items
        assert log.timestamps.tolist() == ref_ts
        assert log.new_session.tolist() == ref_new
        assert log.user_ids.tolist() == ref_users

    def test_sessions_by_gap(self):
        df = pd.DataFrame({"USER_ID": [1] * 5 + [2] * 2, "ITEM_ID": range(7),
                           "TIMESTAMP": [0, 1800, 3601, 3700, 9999, 3700, 3701]})
        assert build_event_log(df).new_session.tolist() == [1, 0, 1, 0, 1, 1, 0]
        assert build_event_log(df, session_gap=None).new_session.tolist() == [1, 0, 0, 0, 0, 1, 0]
        with pytest.raises(ValueError, match="session_gap"):
            build_event_log(df, session_gap=-1)

    def test_sessions_by_session_id(self):
        # A change of SESSION_ID starts a session, and so does a gap beyond session_gap (DESIGN.md).
        df = read_interactions({"user_id": [1, 1, 1, 1, 1, 2], "item_id": range(6),
                                "timestamp": [0, 10, 11, 12, 10_000, 5],
                                "session_id": ["s", "s", "t", "s", "s", "s"]})
        log = build_event_log(df)
        assert log.new_session.tolist() == [1, 0, 1, 1, 1, 1]
        assert last_session_starts(log).tolist() == [4, 5]
        assert build_event_log(df, session_gap=None).new_session.tolist() == [1, 0, 1, 1, 0, 1]
        # A frame with the canonical required columns but a raw optional one is read first.
        raw = pd.DataFrame({"USER_ID": [1, 1], "ITEM_ID": [1, 2], "TIMESTAMP": [0, 10],
                            "session_id": ["a", "b"]})
        assert build_event_log(raw).new_session.tolist() == [1, 1]

    def test_event_types_compare_as_text(self):
        df = read_interactions({"user_id": [1] * 4, "item_id": range(4), "timestamp": range(4),
                                "event_type": [1.0, 2.0, 2.0, 2.5]})
        assert filter_events(df, "2")["ITEM_ID"].tolist() == [1, 2]  # (1.0 used to read "1.0")
        assert filter_events(df, ["1", "2.5"])["ITEM_ID"].tolist() == [0, 3]

    def test_item_map_event_types_raw_source(self):
        df = read_interactions({"user_id": [1, 1, 2], "item_id": ["x", "zz", "y"],
                                "timestamp": [2, 1, 3], "event_type": ["a", "b", "c"]})
        log = build_event_log(df, item_ids=np.array(["y", "x"], dtype=object))
        assert log.items.tolist() == [-1, 1, 0]
        assert log.item_ids.tolist() == ["y", "x"]
        assert log.event_types.tolist() == ["b", "a", "c"]
        with pytest.raises(ValueError, match="duplicates"):
            build_event_log(df, item_ids=["x", "x"])
        log = build_event_log(([3, 3], [1, 2], [T0 + 1, T0]))
        assert isinstance(log, EventLog) and log.items.tolist() == [1, 0]


# ----------------------------------------------------------------------------- featurization

def lengths_table():
    """Users u0..u9 with 1..10 events each, two event types and event values."""
    n = np.arange(1, 11)
    users = np.repeat([f"u{k}" for k in range(10)], n)
    return read_interactions(pd.DataFrame({
        "USER_ID": users, "ITEM_ID": np.arange(users.size) % 7,
        "TIMESTAMP": T0 + np.arange(users.size), "EVENT_TYPE": np.where(
            np.arange(users.size) % 3 == 0, "buy", "view"),
        "EVENT_VALUE": np.arange(users.size) % 5}))


class TestFeaturize:
    def test_percentiles(self):
        df = lengths_table()
        events, users = featurize(df, 0.25, 0.75)
        lo, hi = np.quantile(np.arange(1, 11), [0.25, 0.75])
        kept = [f"u{k}" for k in range(10) if lo <= k + 1 <= hi]
        assert events is df and users.train_users.tolist() == kept
        assert (users.min_length, users.max_length) == (lo, hi)
        assert (users.n_users, users.n_events, users.n_train_users, users.n_train_events) == \
            (10, 55, len(kept), sum(int(k[1:]) + 1 for k in kept))
        log = build_event_log(events)
        assert log.user_ids[users.user_mask(log.user_ids)].tolist() == kept
        assert featurize(lengths_table(), 0.0, 1.0)[1].n_train_users == 10
        assert featurize(lengths_table())[1].n_train_users == 9  # default p99 cuts the longest

    def test_event_filters(self):
        df = lengths_table()
        events, users = featurize(df, 0.0, 1.0, event_type="buy")
        assert set(events["EVENT_TYPE"]) == {"buy"} and len(events) == users.n_events == 19
        assert len(featurize(df, 0, 1, event_type=["buy", "view"])[0]) == 55
        events, _ = featurize(df, 0.0, 1.0, event_value_threshold=3)
        assert (events["EVENT_VALUE"] >= 3).all() and len(events) == 22
        assert list(events.index) == list(range(22))
        df.loc[df["EVENT_VALUE"] == 4, "EVENT_VALUE"] = np.nan  # NaN fails any threshold
        assert len(featurize(df, 0, 1, event_value_threshold=3)[0]) == 11

    def test_event_filter_errors(self):
        df = lengths_table()
        plain = df.drop(columns=["EVENT_TYPE", "EVENT_VALUE"])
        with pytest.raises(KeyError, match="event_type='buy' needs an EVENT_TYPE column.*--event-type-col NAME"):
            featurize(plain, event_type="buy")
        with pytest.raises(KeyError, match="event_value_threshold needs an EVENT_VALUE.*'EVENT_VALUE': NAME"):
            featurize(plain, event_value_threshold=1)
        with pytest.raises(ValueError, match="no events of type 'click'.*'buy'"):
            featurize(df, event_type="click")
        with pytest.raises(ValueError, match="EVENT_VALUE >= 99"):
            featurize(df, event_value_threshold=99)

    @pytest.mark.parametrize("lo,hi,name", [(-0.1, 0.5, "min_user_history_length_percentile"),
                                            (0.0, 1.5, "max_user_history_length_percentile"),
                                            (float("nan"), 0.5, "min_user"),
                                            ("0.1", 0.5, "min_user"), (True, 0.5, "min_user"),
                                            (0.0, False, "max_user")])
    def test_bad_percentiles(self, lo, hi, name):
        with pytest.raises(ValueError, match=f"{name}.*must be in \\[0, 1\\]"):
            featurize(lengths_table(), lo, hi)

    def test_min_above_max(self):
        with pytest.raises(ValueError, match=r"min_user_history_length_percentile \(0.8\) must "
                                             r"not exceed max_user_history_length_percentile"):
            featurize(lengths_table(), 0.8, 0.2)
        assert check_percentiles(0, 1) == (0.0, 1.0)

    def test_minimums(self):
        check_minimums(1000, 25)
        with pytest.raises(ValueError, match=r"^needs at least 1,000 interactions after filtering, "
                                             r"got 640 \(360 short\) \(check_minimums=False, or "
                                             r"--no-minimums on the command line, trains anyway\)$"):
            check_minimums(640, 30)
        with pytest.raises(ValueError, match=r"25 users with 2 or more interactions after "
                                             r"filtering, got 10 \(15 short\)"):
            check_minimums(5000, 10)
        with pytest.raises(ValueError, match="interactions.*; needs at least 25 users"):
            check_minimums(0, 0)

    def test_fit_counts_users_with_two_events_towards_the_minimum(self):
        """1,200 events from 24 users of 50 plus 30 users of one event: 54 users, but only 24
        with a next event to learn from."""
        rows = [(f"u{u}", f"i{(u + k) % 40}", T0 + 60 * k) for u in range(24) for k in range(50)]
        rows += [(f"once{u}", "i0", T0) for u in range(30)]
        df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP"])
        with pytest.raises(ValueError, match=r"25 users with 2 or more interactions .* got 24 \(1 short\)"):
            hrnn.HRNN(max_user_history_length_percentile=1.0, show_progress=False).fit(df)


# ------------------------------------------------------------------------ weights, popularity

class TestWeights:
    def test_recency_weights(self):
        ts = np.array([T0 + 50, T0, T0 + 100, T0 + 100, T0 - 10**7])
        w = recency_weights(ts, 50.0)
        assert w.dtype == np.float32 and w.shape == ts.shape
        assert abs(float(w.mean()) - 1.0) < 1e-6
        order = np.argsort(ts)
        assert np.all(np.diff(w[order]) >= 0)  # monotone in time
        assert w[0] / w[2] == pytest.approx(0.5) and w[2] == w[3]
        assert w[4] / w[2] == pytest.approx(1e-3)  # floor

    @pytest.mark.parametrize("half_life", [None, 0, -3.0])
    def test_off(self, half_life):
        w = recency_weights(np.array([1.0, 5.0, 9.0]), half_life)
        assert w.dtype == np.float32 and w.tolist() == [1.0, 1.0, 1.0]
        assert recency_weights(np.array([]), 10.0).shape == (0,)
        with pytest.raises(ValueError, match="NaN"):
            recency_weights(np.array([1.0]), float("nan"))

    def test_popularity(self):
        items = np.array([0, 2, 2, -1, 3], dtype=np.int32)
        assert popularity(items, 5).tolist() == [1, 0, 2, 1, 0]
        pop = popularity(items, 5, weights=np.array([1, 2, 3, 100, 0.5], dtype=np.float32))
        assert pop.dtype == np.float64 and pop.tolist() == [1, 0, 5, 0.5, 0]
        with pytest.raises(ValueError, match="out of range"):
            popularity(items, 3)


# --------------------------------------------------------------------------------- real data

@pytest.mark.skipif(not DATASETS.is_dir(), reason=f"{DATASETS} is not present (a fresh clone)")
class TestRealData:
    def test_taobao(self):
        df = read_interactions(DATASETS / "taobao-userbehavior-prefix" / "interactions.csv.gz")
        log = build_event_log(df)
        assert (log.n_events, log.n_users, log.n_items) == (84_287, 814, 55_233)
        assert set(np.unique(log.event_types)) == {"pv", "cart", "fav", "buy"}
        assert np.all(np.diff(log.timestamps)[np.diff(log.event_users()) == 0] >= 0)

    def test_yoochoose_sessions_as_users(self):
        path = DATASETS / "yoochoose-rsc15-100k-sample" / "interactions.csv.gz"
        with pytest.raises(KeyError, match="USER_ID not found.*session_id"):
            read_interactions(path)
        with pytest.raises(ValueError, match="milliseconds"):
            read_interactions(path, columns={"USER_ID": "session_id", "TIMESTAMP": "timestamp_ms"})
        with pytest.warns(UserWarning, match="exact duplicate"):
            df = read_interactions(path, columns={"USER_ID": "session_id"})
        assert build_event_log(df).n_users == 21_210


class TestSyntheticLogs:
    def test_seeded_and_shaped(self):
        from hrnn.synthetic import make_log
        a, b = make_log(500, n_users=20, n_items=50, seed=3), make_log(500, n_users=20, n_items=50, seed=3)
        pd.testing.assert_frame_equal(a, b)
        assert len(a) == 500 and a["USER_ID"].nunique() <= 20 and a["ITEM_ID"].max() < 50

    @pytest.mark.parametrize("kwargs, name", [
        (dict(n_events=0), "n_events"), (dict(n_users=0), "n_users"), (dict(n_items=2.5), "n_items"),
        (dict(session_length=0), "session_length"), (dict(repeat=1.5), "repeat"), (dict(repeat=-1), "repeat"),
        (dict(zipf=-1), "zipf"), (dict(n_events=True), "n_events")])
    def test_arguments_out_of_range_are_named(self, kwargs, name):
        from hrnn.synthetic import make_log
        with pytest.raises(ValueError, match=f"^{name} must be"):
            make_log(**{"n_events": 100, **kwargs})
