"""The README's results table: hrnn (defaults and tuned) beside every baseline, on every data set in
../shared/datasets, under both evaluation protocols. Prints markdown; takes a while on 2 cores.

    python benchmarks/results.py [--tune-trials 8] [--seeds 3] [--datasets movielens-100k ...] [--jsonl out.jsonl]
    python benchmarks/results.py --personalize-splits 5 [--datasets ...]

The hrnn rows are means over ``--seeds`` fits (random_state 0, 1, ...); the baselines are
deterministic. A last table compares hrnn (defaults) with the best baseline of each metric unit by
unit (``hrnn.paired_difference``): the difference and its standard error over the held-out events or
users, which says whether a gap is more than the noise of the split.

``--personalize-splits N`` instead holds out N different samples of users (split seeds 0..N-1) in
the Personalize protocol, hrnn (defaults) fitted with random_state = the split seed and every
baseline on each: N times the held-out users of one split, for the paired differences that one
split of a small data set cannot resolve. A user held out by several splits counts once per split.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

import hrnn
from hrnn import quickstart

from _common import read_dataset

NAMES = ["movielens-100k", "movielens-latest-small", "movielens-1m-users1-2999",
         "taobao-userbehavior-prefix", "yoochoose-rsc15-100k-sample"]
SHOWN = {"personalize": ["precision@5", "ndcg@10", "ndcg@25", "mrr@25", "coverage"],
         "next-item": ["recall@20", "mrr@20", "first_recall@20"]}
TUNE_METRIC = {"personalize": "ndcg@25", "next-item": "recall@20"}
# A search space sized for 2 cores: narrower bounds than hrnn.tune's default space, n_sample left at
# its default, plus the repeat-score switch (repeat_negatives), which the default space lacks.
TUNE_SPACE = {
    "hidden_dimension": ("int_log", (32, 128)),
    "learning_rate": ("float_log", (0.03, 0.3)),
    "bptt": ("int", (4, 32)),
    "dropout": ("float", (0.0, 0.3)),
    "recency_mask": ("categorical", (True, False)),
    "repeat_negatives": ("categorical", (True, False)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="*", default=NAMES)
    ap.add_argument("--tune-trials", type=int, default=0, help="trials of hrnn.tune per data set and protocol")
    ap.add_argument("--seeds", type=int, default=1, help="hrnn fits (random states 0, 1, ...) averaged per row")
    ap.add_argument("--jsonl", help="also append every result as a JSON line here")
    ap.add_argument("--personalize-splits", type=int, default=0,
                    help="only the Personalize protocol, over this many held-out samples of users")
    args = ap.parse_args()
    if args.personalize_splits:
        return over_splits(args)
    rows, paired = [], []
    for name in args.datasets:
        table = read_dataset(name)
        for protocol in SHOWN:
            models = quickstart.contenders(None, 0)
            if args.tune_trials:
                # Tuned on the evaluation's training part only: its own validation split is carved
                # from that, so the held-out events scored below are never seen while tuning.
                train = (hrnn.split_personalize(table, random_state=0) if protocol == "personalize"
                         else hrnn.split_next_item(table)).train
                tuned = hrnn.tune(train, n_trials=args.tune_trials, metric=TUNE_METRIC[protocol], space=TUNE_SPACE,
                                  refit=False)
                models["hrnn tuned"] = hrnn.HRNN(**{**tuned.best_params, "show_progress": False, "random_state": 0})
            details = {}
            measured = {}  # the same hyperparameters give the same fits: tuning that kept the defaults
            for model_name, model in models.items():
                t0 = time.perf_counter()
                fits = ([model.clone().set_params(random_state=s) for s in range(args.seeds)]
                        if isinstance(model, hrnn.HRNN) else [model])
                key = (json.dumps(model.get_params(), sort_keys=True, default=str)
                       if isinstance(model, hrnn.HRNN) else model_name)
                if key not in measured:
                    measured[key] = ([hrnn.evaluate(m, table, protocol=protocol, random_state=0,
                                                    return_details=True) for m in fits],
                                     time.perf_counter() - t0)
                runs, seconds = measured[key]
                details[(protocol, model_name)] = [d for _, d in runs]
                runs = [r for r, _ in runs]
                row = {"data": name, "protocol": protocol, "model": model_name,
                       **{m: float(np.mean([r[m] for r in runs])) for m in SHOWN[protocol]},
                       "seeds": len(runs), "seconds": seconds / len(runs)}
                if model_name == "hrnn tuned":
                    row["params"] = tuned.best_params
                rows.append(row)
                record(args.jsonl, row)
                print(json.dumps(row), flush=True)
            here = quickstart.against_best_baseline(pd.DataFrame(rows[-len(models):]), details)
            for p in here.assign(data=name).to_dict("records"):
                paired.append(p)
                record(args.jsonl, {"kind": "paired", **p})
    print(markdown(pd.DataFrame(rows)))
    print(paired_markdown(paired))


def over_splits(args) -> None:
    """The Personalize protocol over ``args.personalize_splits`` samples of held-out users."""
    rows, paired = [], []
    metrics = SHOWN["personalize"]
    for name in args.datasets:
        table = read_dataset(name)
        results, details = [], {}
        for model_name, model in quickstart.contenders(None, 0).items():
            runs = []
            for split in range(args.personalize_splits):
                fit = model.clone().set_params(random_state=split) if isinstance(model, hrnn.HRNN) else model
                scores, det = hrnn.evaluate(fit, table, protocol="personalize", random_state=split,
                                            return_details=True)
                runs.append((scores, det.assign(USER_ID=f"{split}:" + det.USER_ID.astype(str))))
            # One frame of (split, user) units: the models' frames pair up unit by unit.
            details[("personalize", model_name)] = pd.concat([d for _, d in runs], ignore_index=True)
            row = {"data": name, "protocol": "personalize", "model": model_name,
                   **{m: float(np.mean([r[m] for r, _ in runs])) for m in metrics},
                   "splits": args.personalize_splits}
            results.append(row)
            record(args.jsonl, row)
            print(json.dumps(row), flush=True)
        rows += results
        here = quickstart.against_best_baseline(pd.DataFrame(results), details)
        for p in here.assign(data=name).to_dict("records"):
            paired.append(p)
            record(args.jsonl, {"kind": "paired", **p})
    print(markdown(pd.DataFrame(rows)))
    print(paired_markdown(paired))


def record(path, row: dict) -> None:
    """Append ``row`` to the JSON-lines file ``path`` (nothing without one)."""
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def paired_markdown(paired: list) -> str:
    lines = ["\n**hrnn minus the best baseline, paired by event or user**\n",
             "| data set | protocol | metric | best baseline | difference | standard error | z |",
             "|---|---|---|---|---:|---:|---:|"]
    for p in paired:
        lines.append(f"| {p['data']} | {p['protocol']} | {p['metric']} | {p['baseline']} | "
                     f"{p['difference']:+.4f} | {p['standard_error']:.4f} | {p['z']:+.1f} |")
    return "\n".join(lines)


def markdown(df: pd.DataFrame) -> str:
    """Both protocols as markdown tables, the best value per data set and column in bold."""
    out = []
    for protocol, metrics in SHOWN.items():
        part = df[df.protocol == protocol]
        if part.empty:
            continue
        lines = [f"\n**{protocol}**\n", "| data set | model | " + " | ".join(metrics) + " |",
                 "|---|---|" + "---:|" * len(metrics)]
        for name, group in part.groupby("data", sort=False):
            shown = group[metrics].round(4)  # values equal as printed are equally bold
            best = shown.max()
            for (_, row), (_, value) in zip(group.iterrows(), shown.iterrows()):
                cells = [f"**{value[m]:.4f}**" if value[m] == best[m] else f"{value[m]:.4f}" for m in metrics]
                lines.append(f"| {name} | {row['model']} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n".join(out)


if __name__ == "__main__":
    main()
