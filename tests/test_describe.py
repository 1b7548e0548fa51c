"""hrnn.describe and the ``hrnn inspect`` command."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hrnn.cli import main
from hrnn.describe import BAR_WIDTH, describe

DATASETS = Path(__file__).parents[1].parent / "shared" / "datasets"
T0 = 1_600_000_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def skewed(n_users=200, seed=0):
    """Users with log-normal history lengths, two event types, 1 h gaps between sessions."""
    rng = np.random.default_rng(seed)
    lengths = np.maximum(1, np.round(rng.lognormal(3, 1, n_users))).astype(int)
    users = np.repeat(np.arange(n_users), lengths)
    step = np.where(rng.random(users.size) < 0.2, 3600, 60)
    ts = T0 + np.cumsum(step)
    return pd.DataFrame({"user": users, "item_id": rng.integers(0, 300, users.size),
                         "timestamp": ts, "event_type": np.where(rng.random(users.size) < 0.9,
                                                                 "view", "buy")}), lengths


class TestDescribe:
    def test_numbers(self):
        df, lengths = skewed()
        d = describe(df, min_pct=0.1, max_pct=0.9, columns={"USER_ID": "user"})
        assert (d.n_events, d.n_users) == (lengths.sum(), len(lengths))
        assert d.n_items == df["item_id"].nunique()
        assert d.n_sessions == len(lengths) + int((np.diff(df["timestamp"]) > 1800)[
            np.diff(df["user"]) == 0].sum())
        assert d.event_types == df["event_type"].value_counts().to_dict()
        assert list(d.event_types) == ["view", "buy"]  # most frequent first
        lo, hi = np.quantile(lengths, [0.1, 0.9])
        assert (d.min_length, d.max_length) == (lo, hi)
        assert d.length_stats["min"] == lengths.min() and d.length_stats["max"] == lengths.max()
        assert d.length_stats["median"] == np.median(lengths)
        assert d.length_stats["p99"] == np.quantile(lengths, 0.99)
        assert d.users_dropped_low == (lengths < lo).sum()
        assert d.users_dropped_high == (lengths > hi).sum()
        assert d.events_dropped_high == lengths[lengths > hi].sum()
        assert d.users_kept + d.users_dropped_low + d.users_dropped_high == d.n_users
        assert d.events_kept + d.events_dropped_low + d.events_dropped_high == d.n_events
        assert (d.first_timestamp, d.last_timestamp) == (df["timestamp"].min(),
                                                         df["timestamp"].max())

    def test_numbers_by_hand(self):
        """a: 1 event, b: 2, c: 5 one minute apart; b's events are the earliest; "buy" is the
        more frequent type although "view" comes first."""
        rows = [("a", 1, T0 + 1000, "view"), ("b", 1, T0, "buy"), ("b", 2, T0 + 5, "buy")]
        rows += [("c", k, T0 + 2000 + 60 * k, "buy") for k in range(5)]
        df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE"])
        d = describe(df, max_pct=1.0)
        assert (d.first_timestamp, d.last_timestamp) == (T0, T0 + 2240)
        assert list(d.event_types.items()) == [("buy", 7), ("view", 1)]
        assert (d.users_kept, d.users_kept_2plus, d.n_sessions) == (3, 2, 3)
        assert d.length_stats["mean"] == pytest.approx(8 / 3) and d.length_stats["median"] == 2
        assert describe(df, max_pct=1.0, session_gap=10).n_sessions == 7  # c's five minutes apart
        # Every length is kept: every bar is '#', the first bin's too.
        bars = [line.split("|")[-1] for line in str(d).splitlines() if line.count("|") == 1]
        assert bars and all(set(b) == {"#"} for b in bars if b)

    def test_event_filters_preview_what_fit_keeps(self):
        """With HRNN's event filters, the lengths and cut-offs are those of the kept events, as
        fit computes them; the event-type counts still cover every event."""
        import hrnn
        df, _ = skewed()
        d = describe(df, min_pct=0.1, max_pct=0.9, columns={"USER_ID": "user"}, event_type="buy")
        buys = df[df["event_type"] == "buy"]
        assert d.n_events == len(buys) and d.n_users == buys["user"].nunique()
        assert d.event_types == df["event_type"].value_counts().to_dict()
        shares = {k: f"{k} {v:,} ({100 * v / len(df):.1f}%)" for k, v in d.event_types.items()}
        assert f"event types  {shares['view']}, {shares['buy']}" in str(d)  # shares of every event
        table = hrnn.read_interactions(df, columns={"USER_ID": "user"})
        _, users = hrnn.data.featurize(table, 0.1, 0.9, event_type="buy")
        assert (d.min_length, d.max_length) == (users.min_length, users.max_length)
        assert d.users_kept == users.n_train_users and d.events_kept == users.n_train_events
        for bad in (1, [], ["buy", 2]):
            with pytest.raises(TypeError, match="event_type must be a string or a list of strings"):
                describe(df, columns={"USER_ID": "user"}, event_type=bad)

    def test_histogram_bins(self):
        df, lengths = skewed()
        d = describe(df, 0.05, 0.95, columns={"USER_ID": "user"})
        edges = d.bin_edges
        assert edges[0] == lengths.min() and edges[-1] == lengths.max() + 1
        assert np.all(np.diff(edges) > 0) and len(edges) <= 20
        assert d.bin_users.sum() == d.n_users and d.bin_events.sum() == d.n_events
        # The cut-offs fall on bin edges: each bin is kept or dropped as a whole.
        assert np.ceil(d.min_length) in edges and np.floor(d.max_length) + 1 in edges
        # Log-spaced: the widths grow.
        assert np.diff(edges)[-1] > np.diff(edges)[0]

    def test_text(self):
        df, _ = skewed()
        text = str(describe(df, 0.05, 0.95, columns={"USER_ID": "user"}))
        assert text.isascii()
        for needle in ("events", "users", "items", "sessions", "time span", "UTC",
                       "event types  view", "buy", "median", "p90", "p99",
                       "min cut: keep length >=", "max cut: keep length <=",
                       "min_pct=0.05", "max_pct=0.95", "kept ", "Personalize minimums"):
            assert needle in text, needle
        assert "2020-09-13" in text  # T0 is 2020-09-13 12:26:40 UTC
        bars = [line.split("|")[-1] for line in text.splitlines() if line.count("|") == 1]
        assert bars and max(map(len, bars)) == BAR_WIDTH
        assert any(set(b) == {"."} for b in bars) and any(set(b) == {"#"} for b in bars)

    def test_no_event_types_and_minimums(self):
        d = describe(([1, 1, 2], [5, 6, 5], [T0, T0 + 10, T0 + 20]), max_pct=1.0)
        assert d.event_types is None and "event types" not in str(d)
        assert "needs at least 1,000 interactions" in d.minimums_error
        assert "NOT met" in str(d)
        assert "2020-09-13 12:26" in str(d)  # a short span shows times too

    def test_met_minimums_and_single_length(self):
        users = np.repeat(np.arange(100), 12)
        d = describe((users, users % 7, T0 + np.arange(users.size)), max_pct=1.0)
        assert d.minimums_error is None and ": met" in str(d)
        assert d.bin_users.tolist() == [100]

    def test_as_dict_is_json(self):
        df, _ = skewed(50)
        out = json.loads(json.dumps(describe(df, columns={"USER_ID": "user"}).as_dict()))
        assert out["n_users"] == 50 and "lengths" not in out
        assert sum(out["bin_users"]) == 50

    def test_bad_percentiles(self):
        df, _ = skewed(20)
        with pytest.raises(ValueError, match=r"min_pct \(0.9\) must not exceed max_pct"):
            describe(df, 0.9, 0.1, columns={"USER_ID": "user"})
        with pytest.raises(ValueError, match="max_pct must be in"):
            describe(df, 0.0, 2.0, columns={"USER_ID": "user"})

    def test_plot(self, tmp_path):
        import matplotlib
        backend = matplotlib.get_backend()
        df, _ = skewed()
        out = tmp_path / "h.png"
        assert describe(df, 0.05, 0.95, columns={"USER_ID": "user"}).plot(out) == str(out)
        assert out.read_bytes()[:8] == PNG_MAGIC
        assert matplotlib.get_backend() == backend
        assert "matplotlib.pyplot" not in sys.modules or not sys.modules["matplotlib.pyplot"] \
            .get_fignums()

    def test_plot_format_follows_the_extension(self, tmp_path):
        pytest.importorskip("matplotlib")
        df, _ = skewed()
        d = describe(df, 0.05, 0.95, columns={"USER_ID": "user"})
        d.plot(tmp_path / "h.pdf")
        assert (tmp_path / "h.pdf").read_bytes()[:5] == b"%PDF-"
        d.plot(tmp_path / "h.svg")
        assert b"<svg" in (tmp_path / "h.svg").read_bytes()[:2000]
        d.plot(tmp_path / "noext")
        assert (tmp_path / "noext").read_bytes()[:8] == PNG_MAGIC
        with pytest.raises(ValueError, match=r"cannot write a plot as \.xyz: use one of .*\.png"):
            d.plot(tmp_path / "h.xyz")
        assert not (tmp_path / "h.xyz").exists()

    def test_plot_without_matplotlib(self, tmp_path, monkeypatch):
        d = describe(skewed(20)[0], columns={"USER_ID": "user"})
        monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
        with pytest.raises(ImportError, match=r"pip install matplotlib \(or, in hrnn's source folder, pip install '\.\[plot\]'\)"):
            d.plot(tmp_path / "x.png")


# ------------------------------------------------------------------------------------------ CLI

@pytest.fixture
def csv(tmp_path):
    df, _ = skewed()
    path = tmp_path / "events.csv.gz"
    df.to_csv(path, index=False)
    return path


class TestInspect:
    def test_prints_summary(self, csv, capsys):
        assert main(["inspect", str(csv), "--min-pct", "0.05", "--max-pct", "0.95",
                     "--user-col", "user"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith(f"== {csv}")
        assert "min_pct=0.05" in out and "max_pct=0.95" in out and "history" in out
        assert err == ""

    def test_plot(self, csv, tmp_path, capsys):
        png = tmp_path / "out.png"
        assert main(["inspect", str(csv), "--user-col", "user", "--plot", str(png)]) == 0
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert f"wrote {png}" in capsys.readouterr().out

    def test_event_type_flag_and_plot_path_checked_first(self, csv, tmp_path, capsys):
        assert main(["inspect", str(csv), "--user-col", "user", "--event-type", "buy"]) == 0
        filtered = capsys.readouterr().out
        assert main(["inspect", str(csv), "--user-col", "user"]) == 0
        assert capsys.readouterr().out != filtered
        assert main(["inspect", str(csv), "--user-col", "user", "--plot", str(tmp_path / "no" / "x.png")]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "no such folder" in err
        pytest.importorskip("matplotlib")
        assert main(["inspect", str(csv), "--user-col", "user", "--plot", str(tmp_path / "x.xyz")]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "cannot write a plot as .xyz" in err

    def test_column_overrides(self, tmp_path, capsys):
        path = tmp_path / "renamed.csv"
        pd.DataFrame({"who": [1, 1, 2], "what": [3, 4, 3], "when": [T0, T0 + 1, T0 + 2],
                      "sess": ["a", "b", "c"]}).to_csv(path, index=False)
        assert main(["inspect", str(path), "--user-col", "who", "--item-col", "what",
                     "--time-col", "when", "--session-col", "sess"]) == 0
        out = capsys.readouterr().out
        assert "where SESSION_ID changes or after 1800 s" in out and "sessions                3" in out

    def test_missing_file(self, tmp_path, capsys):
        assert main(["inspect", str(tmp_path / "nope.csv")]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("error: no such file") and err.count("\n") == 1
        assert "Traceback" not in err

    def test_missing_column(self, csv, capsys):
        assert main(["inspect", str(csv)]) == 2  # the user column is called "user"
        err = capsys.readouterr().err
        assert err.startswith("error: required column USER_ID not found; columns found: 'user',")
        assert err.count("\n") == 1

    def test_warnings_go_to_stderr(self, tmp_path, capsys):
        path = tmp_path / "dups.csv"
        pd.DataFrame({"user_id": [1, 1, 1], "item_id": [2, 2, 3],
                      "timestamp": [T0, T0, T0 + 1]}).to_csv(path, index=False)
        assert main(["inspect", str(path)]) == 0
        err = capsys.readouterr().err
        assert err.startswith("warning: dropped 1 exact duplicate")

    @pytest.mark.parametrize("argv", [[], ["inspect"], ["inspect", "x.csv", "--max-pct", "2"],
                                      ["inspect", "x.csv", "--min-pct", "abc"], ["bogus"]])
    def test_usage_errors(self, argv, capsys):
        assert main(argv) == 2
        assert "usage: hrnn" in capsys.readouterr().err

    def test_help_and_traceback(self, tmp_path, capsys):
        assert main(["--help"]) == 0
        assert "inspect" in capsys.readouterr().out
        with pytest.raises(FileNotFoundError):
            main(["--traceback", "inspect", str(tmp_path / "nope.csv")])


class TestRealData:
    def test_taobao_summary(self, capsys):
        path = DATASETS / "taobao-userbehavior-prefix" / "interactions.csv.gz"
        if not path.exists():
            pytest.skip(f"{path} is not present: real-data check skipped")
        d = describe(path, 0.05, 0.95)
        assert (d.n_events, d.n_users, d.n_items) == (84_287, 814, 55_233)
        assert set(d.event_types) == {"pv", "cart", "fav", "buy"}
        assert d.minimums_error is None
        assert main(["inspect", str(path)]) == 0
        assert "84,287" in capsys.readouterr().out
