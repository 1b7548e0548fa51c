"""The ``hrnn quickstart``, ``hrnn evaluate`` and ``hrnn tune`` commands (registered in cli.py)."""
from __future__ import annotations

import argparse
import json
import sys

from ._files import check_output_path

METRIC_CHOICES = ("precision@5", "precision@10", "precision@25", "ndcg@5", "ndcg@10", "ndcg@25",
                  "mrr@25", "coverage", "recall@20", "mrr@20", "first_recall@20")


def _cli():
    from . import cli  # the shared helpers; imported late because cli imports this module
    return cli


def add_quickstart(sub) -> None:
    cli = _cli()
    p = cli._add_parser(
        sub, "quickstart", help="train and evaluate hrnn beside the baselines on a real data set",
        description="The first thing to run. Trains hrnn on the bundled MovieLens latest-small "
                    "(100,836 ratings; GroupLens terms: non-commercial) or on your own file, "
                    "evaluates it beside the baselines (popularity, Markov, a repeat-aware rule, "
                    "session-kNN) with Personalize's metrics and the next-item metrics of the "
                    "HRNN papers, then shows a few users' latest items and what hrnn recommends "
                    "them next.",
        epilog="""\
examples:
  hrnn quickstart
  hrnn quickstart --data interactions.csv.gz
  hrnn quickstart --data clicks.parquet --user-col session_id""")
    p.add_argument("--data", metavar="FILE", help="your own interactions file instead of the bundled one")
    p.add_argument("--epochs", type=int, metavar="N", help="hrnn's training epochs (default: hrnn's)")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="seed (default: 0)")
    p.add_argument("--num-threads", type=int, default=0, metavar="N",
                   help="hrnn's threads; 0 = all cores (default); 1 is faster on a busy machine")
    cli._add_minimums(p)
    cli._add_columns(p)
    p.set_defaults(func=run_quickstart)


def run_quickstart(args: argparse.Namespace) -> int:
    from . import quickstart

    cli = _cli()
    quickstart.run(args.data, cli._columns(args), epochs=args.epochs, random_state=args.random_state,
                   fit_params=cli._fit_params(args), num_threads=args.num_threads)
    return 0


def add_evaluate(sub) -> None:
    cli = _cli()
    p = cli._add_parser(
        sub, "evaluate", help="measure a model's hyperparameters on a data set (both protocols)",
        description="Evaluate the hyperparameters of a saved model on DATA, the way Personalize "
                    "computes solution metrics: DATA is split, a fresh model with MODEL's "
                    "hyperparameters is trained on the training part only, and the held-out part "
                    "is scored, so no test event can leak into training. Protocol 'personalize': "
                    "10% of users held out, their oldest 90% of events go in, the newest 10% are "
                    "the truth (precision, NDCG, MRR, coverage). Protocol 'next-item': each user's "
                    "last session, every event predicted from everything before it (Recall@20, "
                    "MRR@20, first-item Recall@20).",
        epilog="""\
examples:
  hrnn evaluate model.hrnn interactions.csv
  hrnn evaluate model.hrnn interactions.csv --protocol next-item --baselines --json""")
    p.add_argument("model", help="a model file saved by `hrnn train` (its hyperparameters are used)")
    p.add_argument("data", help=cli.DATA_FILE_HELP)
    p.add_argument("--protocol", choices=("personalize", "next-item", "both"), default="both",
                   help="which evaluation (default: both)")
    p.add_argument("--baselines", action="store_true",
                   help="also evaluate the baselines, and hrnn's paired difference from the best "
                        "baseline of each metric, with its standard error (JSON: lines with "
                        "\"kind\": \"paired\")")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED",
                   help="seed of the split, and of the training when MODEL was trained without "
                        "one (`hrnn train` without --random-state), so that two runs give the "
                        "same figures (default: 0)")
    p.add_argument("--json", action="store_true", help="print the results as JSON lines")
    cli._add_minimums(p)
    cli._add_columns(p)
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from . import quickstart
    from .data import filter_events, read_interactions
    from .model_file import load

    model = load(args.model)
    params = {**model.get_params(), "show_progress": False}
    if params["random_state"] is None:
        params["random_state"] = args.random_state
    contenders = {"hrnn": type(model)(**params)}
    if args.baselines:
        contenders.update({k: v for k, v in quickstart.contenders(None, args.random_state).items() if k != "hrnn"})
    cli = _cli()
    # The model's event filters apply to every contender's log: the baselines have none of their
    # own, and a paired difference needs the same held-out events on both sides.
    table = filter_events(read_interactions(args.data, cli._columns(args)), params["event_type"],
                          params["event_value_threshold"])
    fit_params = cli._fit_params(args)
    protocols = (quickstart.possible_protocols(table) if args.protocol == "both"
                 else [p for p in quickstart.PROTOCOLS if p[0] == args.protocol])
    if args.protocol == "both" and len(protocols) == 1:
        print(f"note: {quickstart.NO_NEXT_ITEM}", file=sys.stderr)
    for protocol, metrics in protocols:
        details = {}  # the per-unit details pair hrnn with the best baseline (below)
        results = quickstart.compare(table, contenders, args.random_state, sys.stderr, details,
                                     protocols=((protocol, metrics),), fit_params=fit_params)
        paired = quickstart.against_best_baseline(results, details) if args.baselines else None
        if args.json:
            lines = results.to_dict("records")
            if paired is not None:  # marked as benchmarks/results.py marks them in its JSON lines
                lines += [{"kind": "paired", **row} for row in paired.to_dict("records")]
            for row in lines:  # an undefined metric (NaN) is null: NaN is not JSON
                print(json.dumps({k: None if isinstance(v, float) and v != v else v for k, v in row.items()}))
            continue
        print(f"{protocol}:\n{results.set_index('model')[metrics].round(4).to_string()}\n")
        if paired is not None:
            print(quickstart.format_paired(paired) + "\n")
    return 0


def add_tune(sub) -> None:
    cli = _cli()
    p = cli._add_parser(
        sub, "tune", help="search hyperparameters (HPO) and save the best model",
        description="Hyperparameter optimisation like Personalize's performHPO: Optuna (install "
                    "with pip install '.[tune]') searches hidden_dimension, recency_mask, bptt, "
                    "learning_rate, dropout and n_sample (each fit chooses transition_weight); each "
                    "trial is scored on a validation part carved out of DATA (trained on the rest "
                    "only). The chosen parameters (the defaults unless a trial is clearly "
                    "better, see --min-standard-errors) are refitted on all of DATA and saved "
                    "with -o.",
        epilog="""\
examples:
  hrnn tune interactions.csv --trials 20 -o tuned.hrnn
  hrnn tune interactions.csv --metric recall@20 --trials 30 --epochs 5""")
    p.add_argument("data", help=cli.DATA_FILE_HELP)
    p.add_argument("-o", "--output", metavar="MODEL", help="save the refitted best model here")
    p.add_argument("--trials", type=int, default=20, metavar="N", help="trials (default: 20)")
    p.add_argument("--metric", choices=METRIC_CHOICES, default="ndcg@25",
                   help="what to maximise (default: ndcg@25, as Personalize's HPO)")
    p.add_argument("--epochs", type=int, metavar="N", help="fixed training epochs of every trial")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long")
    p.add_argument("--min-standard-errors", type=float, default=2.0, metavar="N",
                   help="keep the defaults unless the best trial beats them by N standard errors on "
                        "validation (default: 2; 0 takes the plain best)")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED", help="seed (default: 0)")
    cli._add_minimums(p)
    cli._add_columns(p)
    p.set_defaults(func=run_tune)


def run_tune(args: argparse.Namespace) -> int:
    from .tune import tune

    cli = _cli()
    if args.output:
        check_output_path(args.output)
    base = {"epochs": args.epochs} if args.epochs is not None else None
    result = tune(args.data, n_trials=args.trials, metric=args.metric, base_params=base,
                  columns=cli._columns(args), random_state=args.random_state, timeout=args.timeout,
                  refit=bool(args.output), min_standard_errors=args.min_standard_errors,
                  fit_params=cli._fit_params(args), show_progress=True)
    print(result.trials.round(4).to_string(index=False))
    print(f"\nchosen {args.metric}: {result.best_score:.4f} with {json.dumps(result.best_params)}")
    if args.output:
        result.model.save(args.output)
        print(f"saved the refitted model to {args.output}")
    return 0
