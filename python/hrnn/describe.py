"""A summary of an interactions table, to choose the history-length percentiles before training.

Personalize asks users to pick ``min/max_user_history_length_percentile`` "after you review user
history lengths, using a histogram"; ``describe`` prints that histogram with the cut-offs marked
and what each cut keeps and drops.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from .data import (EVENT_TYPE, SESSION_ID, build_event_log, check_minimums, check_percentiles, filter_events,
                   length_cutoffs, read_interactions)

BAR_WIDTH = 60
N_BINS = 16
MAX_EVENT_TYPES = 8


def _histogram(lengths: np.ndarray, lo: float, hi: float, n_bins: int = N_BINS):
    """Log-spaced integer bins [edges[k], edges[k+1]) with the cut-offs on bin edges."""
    lmin, lmax = int(lengths.min()), int(lengths.max())
    edges = np.round(np.geomspace(lmin, lmax + 1, n_bins + 1)).astype(np.int64)
    # The first kept length is ceil(lo) and the last floor(hi): making both bin edges means every
    # bin is either wholly kept or wholly dropped.
    cuts = np.array([np.ceil(lo), np.floor(hi) + 1], dtype=np.int64)
    inside = cuts[(cuts > lmin) & (cuts <= lmax)]
    edges = np.unique(np.concatenate([[lmin, lmax + 1], edges, inside]))
    idx = np.searchsorted(edges, lengths, side="right") - 1
    users = np.bincount(idx, minlength=len(edges) - 1)
    events = np.bincount(idx, weights=lengths, minlength=len(edges) - 1).astype(np.int64)
    return edges, users, events


def _num(x: float) -> str:
    return f"{x:,g}"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _date(ts: float, with_time: bool) -> str:
    return pd.Timestamp(ts, unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M" if with_time
                                                         else "%Y-%m-%d")


@dataclass(frozen=True, eq=False)
class Description:
    """What ``describe`` found. ``str()`` renders it; ``as_dict()`` gives the numbers.

    Attributes
    ----------
    n_events, n_users, n_items, n_sessions : int
    first_timestamp, last_timestamp : float
        Unix seconds.
    event_types : dict or None
        EVENT_TYPE value -> count, most frequent first.
    length_stats : dict
        User history length: min, median, p90, p99, max, mean.
    min_pct, max_pct, min_length, max_length : float
        The percentiles and the history-length cut-offs they give.
    users_dropped_low, users_dropped_high, events_dropped_low, events_dropped_high : int
        Users (and their events) under the min cut and over the max cut.
    users_kept, events_kept, users_kept_2plus : int
        What training would keep; the last counts kept users with 2 or more events.
    minimums_error : str or None
        Why Personalize's minimums would fail after filtering, None when they are met.
    bin_edges, bin_users, bin_events : ndarray
        The histogram: bin k holds lengths ``[bin_edges[k], bin_edges[k+1])``.
    """

    n_events: int
    n_users: int
    n_items: int
    n_sessions: int
    session_gap: Optional[float]
    sessions_from_ids: bool
    first_timestamp: float
    last_timestamp: float
    event_types: Optional[dict]
    length_stats: dict
    min_pct: float
    max_pct: float
    min_length: float
    max_length: float
    users_dropped_low: int
    users_dropped_high: int
    events_dropped_low: int
    events_dropped_high: int
    users_kept: int
    events_kept: int
    users_kept_2plus: int
    minimums_error: Optional[str]
    bin_edges: np.ndarray
    bin_users: np.ndarray
    bin_events: np.ndarray
    title: Optional[str] = None
    lengths: np.ndarray = field(default=None, repr=False)

    def as_dict(self) -> dict:
        """The figures as plain Python values (JSON-friendly); per-user lengths left out."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if name == "lengths":
                continue
            out[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    def _cut_lines(self) -> list:
        def cut(name, pct, length, op, users, events):
            return (f"{name} cut    {name}_pct={pct:g} -> p{100 * pct:g} = {_num(length)}: "
                    f"keeps length {op} {_num(length)}; drops {users:,} users ({_pct(users, self.n_users)}),"
                    f" {events:,} events ({_pct(events, self.n_events)})")
        return [cut("min", self.min_pct, self.min_length, ">=", self.users_dropped_low,
                    self.events_dropped_low),
                cut("max", self.max_pct, self.max_length, "<=", self.users_dropped_high,
                    self.events_dropped_high),
                f"kept       {self.users_kept:,} users ({_pct(self.users_kept, self.n_users)}), "
                f"{self.events_kept:,} events ({_pct(self.events_kept, self.n_events)}) "
                f"for training"]

    def _histogram_lines(self) -> list:
        labels = [f"{a}" if b - a == 1 else f"{a}-{b - 1}"
                  for a, b in zip(self.bin_edges[:-1].tolist(), self.bin_edges[1:].tolist())]
        width = max(len("length"), *map(len, labels))
        top = max(int(self.bin_users.max()), 1)
        lines = ["users by history length (log bins; '#' kept for training, '.' left out)",
                 f"  {'length':>{width}} {'users':>9} {'events':>11}"]
        lo_edge, hi_edge = np.ceil(self.min_length), np.floor(self.max_length) + 1
        for k, label in enumerate(labels):
            a = self.bin_edges[k]
            if a == lo_edge and k > 0:
                lines.append(f"  {'-' * width} min cut: keep length >= {_num(self.min_length)} "
                             f"(p{100 * self.min_pct:g})")
            if a == hi_edge and k > 0:
                lines.append(f"  {'-' * width} max cut: keep length <= {_num(self.max_length)} "
                             f"(p{100 * self.max_pct:g})")
            n = int(self.bin_users[k])
            kept = self.min_length <= a <= self.max_length
            bar = ("#" if kept else ".") * (max(1, round(BAR_WIDTH * n / top)) if n else 0)
            lines.append(f"  {label:>{width}} {n:>9,} {int(self.bin_events[k]):>11,} |{bar}")
        return lines

    def __str__(self) -> str:
        span = self.last_timestamp - self.first_timestamp
        with_time = span < 2 * 86400
        rules = (["where SESSION_ID changes"] if self.sessions_from_ids else []) + (
            [f"after {self.session_gap:g} s without events"] if self.session_gap is not None else [])
        how = "a new one " + " or ".join(rules) if rules else "one per user"
        s = self.length_stats
        lines = [f"== {self.title}" if self.title else None,
                 f"events       {self.n_events:>12,}",
                 f"users        {self.n_users:>12,}",
                 f"items        {self.n_items:>12,}",
                 f"sessions     {self.n_sessions:>12,}  ({how})",
                 f"time span    {_date(self.first_timestamp, with_time)} .. "
                 f"{_date(self.last_timestamp, with_time)} UTC ({span / 86400:,.1f} days)"]
        if self.event_types:
            shown = list(self.event_types.items())[:MAX_EVENT_TYPES]
            more = len(self.event_types) - len(shown)
            every = sum(self.event_types.values())  # (n_events counts the filters' events only)
            lines.append("event types  " + ", ".join(
                f"{k} {v:,} ({_pct(v, every)})" for k, v in shown)
                + (f", +{more} more" if more else ""))
        lines += [f"history      min {s['min']:,} | median {_num(s['median'])} | p90 "
                  f"{_num(s['p90'])} | p99 {_num(s['p99'])} | max {s['max']:,} | "
                  f"mean {s['mean']:,.1f} events per user",
                  ""] + self._histogram_lines() + [""] + self._cut_lines()
        lines.append("Personalize minimums (1,000 interactions, 25 users with 2+ interactions): "
                     + ("met" if self.minimums_error is None else
                        f"NOT met: {self.minimums_error}"))
        return "\n".join(line for line in lines if line is not None)

    def plot(self, path) -> str:
        """Write the history-length histogram with the cut-offs; returns the path. The format is
        the one the file name's extension names (.png, .svg, .pdf, ...; PNG without one), a
        ValueError for one matplotlib cannot write.

        Needs matplotlib (``pip install '.[plot]'``). Draws on a standalone Figure, so
        pyplot's global state and the caller's backend are left alone.
        """
        Figure, ext = _plot_format(path)
        # Uniform log bins here, without the cut edges the text inserts: a thin bin drawn as a bar
        # of its count would look empty. Each bar is split into kept and dropped users instead.
        lengths = self.lengths
        lmin, lmax = int(lengths.min()), int(lengths.max())
        edges = np.unique(np.round(np.geomspace(lmin, lmax + 1, 2 * N_BINS + 1))).astype(float)
        idx = np.searchsorted(edges, lengths, side="right") - 1
        keep = (lengths >= self.min_length) & (lengths <= self.max_length)
        kept = np.bincount(idx[keep], minlength=len(edges) - 1)
        dropped = np.bincount(idx[~keep], minlength=len(edges) - 1)
        fig = Figure(figsize=(8, 4.5), dpi=100)
        ax = fig.add_subplot()
        ax.bar(edges[:-1], kept, width=np.diff(edges), align="edge", color="tab:blue",
               edgecolor="white", label="kept for training")
        ax.bar(edges[:-1], dropped, bottom=kept, width=np.diff(edges), align="edge",
               color="lightgray", edgecolor="white", label="left out")
        for x, name, pct, style in ((self.min_length, "min", self.min_pct, "--"),
                                    (self.max_length, "max", self.max_pct, ":")):
            ax.axvline(x, color="tab:red", linestyle=style, linewidth=1.2,
                       label=f"{name} cut: p{100 * pct:g} = {x:g}")
        ax.set_xscale("log")
        # Plain numbers at 1-2-5 steps read better than matplotlib's 2x10^1 minor labels.
        ticks = [m * 10.0**e for e in range(10) for m in (1, 2, 5)
                 if lmin <= m * 10.0**e <= lmax + 1] or [lmin]
        ax.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter("")
        ax.set_ylim(0, 1.3 * max(int((kept + dropped).max()), 1))
        ax.set_xlabel("history length (events per user)")
        ax.set_ylabel("users")
        ax.legend(loc="upper right", fontsize=8, frameon=False)
        # The folder says more than "interactions.csv.gz" does; the full path is too long.
        name = ("/".join(os.path.normpath(self.title).split(os.sep)[-2:]) + ": "
                if self.title else "")
        ax.set_title(f"{name}{self.n_users:,} users, "
                     f"{self.n_events:,} events; kept {self.users_kept:,} users, "
                     f"{self.events_kept:,} events", fontsize=9)
        fig.tight_layout()
        fig.savefig(os.fspath(path), format=ext)
        return os.fspath(path)


def _plot_format(path) -> tuple:
    """(matplotlib's Figure, the format ``path``'s extension names): the errors plotting would meet,
    raised before anything is read or drawn."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install matplotlib (or, in hrnn's source "
                          "folder, pip install '.[plot]')") from e
    ext = os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
    formats = Figure().canvas.get_supported_filetypes()
    if ext not in formats:
        raise ValueError(f"cannot write a plot as .{ext}: use one of "
                         f"{', '.join('.' + e for e in sorted(formats))}")
    return Figure, ext


def describe(data, min_pct: float = 0.0, max_pct: float = 0.99, session_gap: Optional[float] = 1800,
             columns: Optional[dict] = None, event_type=None,
             event_value_threshold: Optional[float] = None) -> Description:
    """Summarise an interactions table: counts, time span, event types, history lengths.

    Parameters
    ----------
    data : anything ``read_interactions`` accepts
    min_pct, max_pct : float
        The ``min/max_user_history_length_percentile`` to preview, in [0, 1].
    session_gap : float or None
        Seconds without events that start a new session (as does a change of SESSION_ID).
    columns : dict, optional
        Canonical -> source column names, as in ``read_interactions``.
    event_type, event_value_threshold : optional
        HRNN's event filters: the history lengths and cut-offs are those of the events they
        keep, as ``fit`` computes them (the event-type counts cover every event).

    Returns
    -------
    Description
        ``print()`` it for the report; its attributes and ``as_dict()`` hold the numbers;
        ``plot(path)`` writes the histogram (PNG, SVG, PDF... by the file name's extension).
    """
    min_pct, max_pct = check_percentiles(min_pct, max_pct, names=("min_pct", "max_pct"))
    title = os.fspath(data) if isinstance(data, (str, os.PathLike)) else None
    df = read_interactions(data, columns=columns)
    every, df = df, filter_events(df, event_type, event_value_threshold)
    log = build_event_log(df, session_gap=session_gap)
    lengths = log.lengths()
    lo, hi = length_cutoffs(lengths, min_pct, max_pct)
    low, high = lengths < lo, lengths > hi
    kept = ~(low | high)
    n_kept, n_kept_events = int(kept.sum()), int(lengths[kept].sum())
    kept_2plus = int((lengths[kept] >= 2).sum())
    try:
        check_minimums(n_kept_events, kept_2plus)
        minimums_error = None
    except ValueError as e:
        minimums_error = str(e)
    event_types = None
    if EVENT_TYPE in every.columns:
        counts = every[EVENT_TYPE].value_counts()
        event_types = {str(k): int(v) for k, v in counts.items()}
    q = np.quantile(lengths, [0.5, 0.9, 0.99])
    edges, bin_users, bin_events = _histogram(lengths, lo, hi)
    return Description(
        n_events=log.n_events, n_users=log.n_users, n_items=log.n_items,
        n_sessions=int(log.new_session.sum()), session_gap=session_gap,
        sessions_from_ids=SESSION_ID in df.columns,
        first_timestamp=float(log.timestamps.min()), last_timestamp=float(log.timestamps.max()),
        event_types=event_types,
        length_stats=dict(min=int(lengths.min()), median=float(q[0]), p90=float(q[1]),
                          p99=float(q[2]), max=int(lengths.max()), mean=float(lengths.mean())),
        min_pct=min_pct, max_pct=max_pct, min_length=lo, max_length=hi,
        users_dropped_low=int(low.sum()), users_dropped_high=int(high.sum()),
        events_dropped_low=int(lengths[low].sum()), events_dropped_high=int(lengths[high].sum()),
        users_kept=n_kept, events_kept=n_kept_events, users_kept_2plus=kept_2plus,
        minimums_error=minimums_error, bin_edges=edges, bin_users=bin_users,
        bin_events=bin_events, title=title, lengths=lengths)
