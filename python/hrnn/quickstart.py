"""`hrnn quickstart`: train and evaluate hrnn beside the baselines on a real data set, then show a few
users' histories with their recommendations."""
from __future__ import annotations

import sys
import time
from typing import Optional

import numpy as np
import pandas as pd

from . import baselines, datasets
from .data import read_interactions
from .evaluate import NEXT_ITEM_METRICS, PERSONALIZE_METRICS, evaluate, split_next_item
from .model import HRNN
from .paired import paired_difference

PERSONALIZE = list(PERSONALIZE_METRICS)
NEXT_ITEM = list(NEXT_ITEM_METRICS)
PROTOCOLS = (("personalize", PERSONALIZE), ("next-item", NEXT_ITEM))


def contenders(epochs: Optional[int], random_state: int, num_threads: int = 0) -> dict:
    """The models compared: hrnn with its defaults, and every baseline."""
    hrnn_kw = {"random_state": random_state, "show_progress": False, "num_threads": num_threads}
    if epochs is not None:
        hrnn_kw["epochs"] = epochs
    return {"hrnn": HRNN(**hrnn_kw),
            "popularity": baselines.Popularity(),
            "markov": baselines.Markov(),
            "repeat-rule": baselines.RepeatRule(),
            "session-knn": baselines.SessionKNN()}


def compare(table: pd.DataFrame, models: dict, random_state: int = 0, out=None,
            details: Optional[dict] = None, fitted: Optional[dict] = None,
            protocols: tuple = PROTOCOLS, fit_params: Optional[dict] = None) -> pd.DataFrame:
    """The evaluation protocols (both by default) for every model; returns one row per (protocol,
    model) with ``evaluate``'s scores and the seconds it took. Dicts passed as ``details`` and
    ``fitted`` receive each run's per-unit details and its fitted model (``evaluate``'s
    ``return_estimator``), keyed (protocol, model). ``fit_params`` go to the HRNN models' fit
    (the baselines' takes none)."""
    out = out or sys.stdout
    rows = []
    for protocol, _ in protocols:
        for name, model in models.items():
            t0 = time.perf_counter()
            scores, det = evaluate(model, table, protocol=protocol, random_state=random_state,
                                   return_details=True, return_estimator=fitted is not None,
                                   fit_params=fit_params if isinstance(model, HRNN) else None)
            if details is not None:
                details[(protocol, name)] = det
            if fitted is not None:
                fitted[(protocol, name)] = scores.pop("estimator")
            rows.append({"protocol": protocol, "model": name, **scores, "seconds": time.perf_counter() - t0})
            print(f"  {protocol:<11} {name:<12} done in {rows[-1]['seconds']:.1f} s", file=out, flush=True)
    return pd.DataFrame(rows)


def format_results(results: pd.DataFrame) -> str:
    """The comparison as two text tables, the best value of each column marked with *."""
    parts = []
    for protocol, metrics in PROTOCOLS:
        if protocol not in set(results.protocol):
            continue
        part = results[results.protocol == protocol].set_index("model")[metrics]
        shown = part.apply(lambda col: [f"{v:.4f}" + ("*" if v == col.max() else " ") for v in col])
        title = ("Personalize protocol (10% of users held out; oldest 90% of their events in, "
                 "newest 10% to find)" if protocol == "personalize" else
                 "Next-item protocol (each user's last session; every event predicted from "
                 "everything before it)")
        parts.append(f"{title}\n{shown.to_string()}")
    return "\n\n".join(parts)


def against_best_baseline(results: pd.DataFrame, details: dict, model: str = "hrnn") -> pd.DataFrame:
    """``model`` minus the best baseline of each per-unit metric (``compare``'s results and
    details), paired unit by unit: one row per (protocol, metric) with ``hrnn.paired_difference``'s
    difference, standard error and z. Rows of other hrnn variants ("hrnn ...") are not baselines."""
    rows = []
    for protocol, metrics in PROTOCOLS:
        part = results[results.protocol == protocol]
        others = part[~part.model.str.startswith("hrnn")]
        if others.empty or model not in set(part.model):
            continue
        # Coverage is a property of all the lists together: no per-unit share. A metric with no
        # units (NaN: no test session has a second event) has nothing to pair.
        for metric in (m for m in metrics if m != "coverage" and m in part and others[m].notna().any()):
            best = others.loc[others[metric].idxmax(), "model"]
            rows.append({"protocol": protocol, "metric": metric, "baseline": best,
                         **paired_difference(details[(protocol, model)], details[(protocol, best)], metric)})
    return pd.DataFrame(rows)


def format_paired(paired: pd.DataFrame) -> str:
    shown = paired[["protocol", "metric", "baseline"]].assign(
        difference=paired.difference.map("{:+.4f}".format),
        standard_error=paired.standard_error.map("{:.4f}".format), z=paired.z.map("{:+.1f}".format))
    return ("hrnn minus the best baseline, paired event by event or user by user "
            "(|z| above 2: a gap beyond the noise of this split)\n" + shown.to_string(index=False))


def show_users(model: HRNN, table: pd.DataFrame, titles: Optional[dict], n_users: int = 3,
               n_items: int = 10, out=None) -> None:
    """A few users' latest events and what hrnn recommends them next."""
    out = out or sys.stdout
    def name(item):
        return titles.get(item, str(item)) if titles else str(item)

    counts = table.USER_ID.value_counts()
    users = counts[counts >= 20].index[:n_users].tolist() or counts.index[:n_users].tolist()
    for user in users:
        history = table[table.USER_ID == user].sort_values("TIMESTAMP", kind="stable").ITEM_ID.tolist()
        ids, _ = model.recommend(user, num_results=n_items, exclude_interacted=True)
        print(f"\nuser {user} ({len(history)} events); latest:", file=out)
        for item in history[-5:]:
            print(f"    {name(item)}", file=out)
        print("  hrnn recommends next:", file=out)
        for rank, item in enumerate(ids, 1):
            print(f"  {rank:3d}. {name(item)}", file=out)


NO_NEXT_ITEM = "no user has 2 or more sessions, 30 minutes apart: no next-item protocol"


def possible_protocols(table: pd.DataFrame) -> tuple:
    """PROTOCOLS, less next-item on a log where no user has two sessions (nothing to test)."""
    return PROTOCOLS if len(split_next_item(table).test) else PROTOCOLS[:1]


def run(data=None, columns: Optional[dict] = None, epochs: Optional[int] = None, random_state: int = 0,
        out=None, fit_params: Optional[dict] = None, num_threads: int = 0) -> pd.DataFrame:
    """The whole quickstart; returns the results table. ``fit_params``: hrnn's fit options."""
    out = out or sys.stdout
    titles = None
    if data is None:
        interactions, items = datasets.load_movielens_small()
        titles = dict(zip(items.item_id, items.title))
        print("Data: MovieLens latest-small, bundled (GroupLens terms: non-commercial, see "
              f"{datasets.movielens_small_path() / 'README.grouplens.txt'})", file=out)
        table = read_interactions(interactions)
    else:
        table = read_interactions(data, columns)
        print(f"Data: {data}", file=out)
    print(f"{len(table):,} events, {table.USER_ID.nunique():,} users, {table.ITEM_ID.nunique():,} items\n",
          file=out)
    print("Evaluating (each model is fitted on the training part only):", file=out)
    protocols = possible_protocols(table)
    if protocols != PROTOCOLS:
        print(f"  ({NO_NEXT_ITEM})", file=out)
    details, fitted = {}, {}
    results = compare(table, contenders(epochs, random_state, num_threads), random_state, out, details, fitted,
                      protocols, fit_params)
    print("\n" + format_results(results), file=out)
    print("\n" + format_paired(against_best_baseline(results, details)), file=out)
    model = fitted.get(("next-item", "hrnn"))
    if model is None:
        print("\nFitting hrnn on all the events ...", file=out, flush=True)
        model = contenders(epochs, random_state, num_threads)["hrnn"].fit(table, **(fit_params or {}))
        what, then = "all the events", ""
    else:  # No third fit: the last sessions arrived through put_events, as in a service.
        what, then = "all but each user's last session", ";\nthose sessions then arrived through put_events"
    rate = np.mean([h["events_per_second"] for h in model.history_])
    print(f"\nhrnn, trained on {what} ({rate:,.0f} training events/s){then}.", file=out)
    show_users(model, table, titles, out=out)
    return results
