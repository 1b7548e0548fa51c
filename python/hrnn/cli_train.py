"""The ``hrnn train`` command (registered in cli.py): one flag per HRNN hyperparameter."""
from __future__ import annotations

import argparse
import inspect
import time

from ._files import check_output_path
from .cli import (DATA_FILE_HELP, EXIT_INTERRUPTED, _add_columns, _add_minimums, _add_parser,
                  _columns, _fraction)


def _hrnn_defaults() -> dict:
    """HRNN's hyperparameter defaults, read from its signature (the one place they live)."""
    from .model import HRNN

    return {n: p.default for n, p in inspect.signature(HRNN.__init__).parameters.items()
            if n != "self"}


def _weight(text: str):
    """A number, or "auto" (HRNN's transition_weight, session_start_mix and session_start_neighbors)."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _switch(text: str):
    """"on", "off" or "auto" (HRNN's session_start_sources) as True, False or "auto"."""
    values = {"on": True, "off": False, "auto": "auto"}
    if text not in values:
        raise argparse.ArgumentTypeError(f"expected on, off or auto, got {text!r}")
    return values[text]


def _choices(param: str) -> list:
    from ._params import SPECS

    return list(SPECS[param][0])


# (option strings, HRNN parameter, add_argument keywords, help). Every flag sets the parameter of
# the same name; a flag left out keeps HRNN's default, which the help shows from the signature.
# "{default}" in a help text is replaced by that default.
_TRAIN_FLAGS = [
    (("--hidden-dimension",), "hidden_dimension", dict(type=int, metavar="H"),
     "size of the item embeddings and of the session and user states, 32..256 "
     "(default: {default})"),
    (("--bptt",), "bptt", dict(type=int, metavar="STEPS"),
     "steps of truncated back-propagation through time, 1..32 (default: {default})"),
    (("--recency-mask",), "recency_mask", dict(action=argparse.BooleanOptionalAction),
     "weigh recent events more, in the loss and in the popularity used for negatives and "
     "unknown users (default: {default})"),
    (("--recency-half-life",), "recency_half_life", dict(type=float, metavar="SECONDS"),
     "half-life of the recency weights (default: a quarter of the log's time span)"),
    (("--min-pct", "--min-user-history-length-percentile"),
     "min_user_history_length_percentile", dict(type=_fraction, metavar="P"),
     "leave users whose history is shorter than this percentile of history lengths out of "
     "training; preview the cut with `hrnn inspect` (default: {default})"),
    (("--max-pct", "--max-user-history-length-percentile"),
     "max_user_history_length_percentile", dict(type=_fraction, metavar="P"),
     "leave users whose history is longer than this percentile out of training, e.g. bots "
     "(default: {default})"),
    (("--event-type",), "event_type", dict(action="append", metavar="TYPE"),
     "train only on events of this EVENT_TYPE; repeat the flag for several types "
     "(default: all events)"),
    (("--event-value-threshold",), "event_value_threshold", dict(type=float, metavar="V"),
     "train only on events with EVENT_VALUE >= V (default: no threshold)"),
    (("--epochs",), "epochs", dict(type=int, metavar="N"),
     "passes over the training events (default: {default})"),
    (("--batch-size",), "batch_size", dict(type=int, metavar="N"),
     "users trained side by side in each mini-batch (default: {default})"),
    (("--learning-rate",), "learning_rate", dict(type=float, metavar="LR"),
     "optimizer step size (default: {default})"),
    (("--optimizer",), "optimizer", dict(choices=_choices("optimizer")),
     "optimizer (default: {default})"),
    (("--momentum",), "momentum", dict(type=float, metavar="M"),
     "Adagrad momentum, in [0, 0.999] (default: {default})"),
    (("--loss",), "loss", dict(choices=_choices("loss")),
     "sampled softmax cross-entropy or GRU4Rec's BPR-max (default: {default})"),
    (("--n-sample",), "n_sample", dict(type=int, metavar="N"),
     "negative items sampled per step, shared by the mini-batch (default: {default})"),
    (("--sample-alpha",), "sample_alpha", dict(type=float, metavar="A"),
     "negatives are drawn with probability popularity ** A; 0 = uniform "
     "(default: {default})"),
    (("--no-logq",), "logq", dict(action="store_false"),
     "do not correct the sampled softmax for the sampling probability (logQ)"),
    (("--bpreg",), "bpreg", dict(type=float, metavar="R"),
     "score regularisation of --loss bpr-max (default: {default})"),
    (("--dropout",), "dropout", dict(type=float, metavar="P"),
     "dropout on the state before scoring, in [0, 0.9] (default: {default})"),
    (("--tie-embeddings",), "tie_embeddings", dict(action=argparse.BooleanOptionalAction),
     "use the input item embeddings as the output item vectors (default: {default})"),
    (("--no-repeat",), "repeat", dict(action="store_false"),
     "do not learn the repeat score (by default the user's last items get a learned boost "
     "from how often and how recently they were seen)"),
    (("--repeat-negatives",), "repeat_negatives", dict(action=argparse.BooleanOptionalAction),
     "in training, also score the user's other recent items, so that the repeat score learns "
     "how often they do not come back (default: {default})"),
    (("--transition-weight",), "transition_weight", dict(type=_weight, metavar="W"),
     "weight of the transition prior added to every query's scores: W * log P(item | the "
     "user's last items), transitions and repeats counted on the training events; 0 = off, "
     "auto = chosen after half the epochs on the last sessions of random users (2%% of the events, at "
     "least 2,000, at most 20,000), held out until then (default: {default})"),
    (("--session-start-mix",), "session_start_mix", dict(type=_weight, metavar="MIX"),
     "how `hrnn recommend --new-session` answers, in [0, 1]: from the state after the user's last "
     "event (0), the session state its user state proposes (1), or a mix; auto = chosen on the "
     "first events of the last sessions of random users held out of the first half of the epochs "
     "(as --transition-weight auto does; any of the weight, the mix or the sources at auto holds "
     "them out) (default: {default})"),
    (("--session-start-sources",), "session_start_sources", dict(type=_switch, metavar="on|off|auto"),
     "whether `hrnn recommend --new-session` keeps the user's last items as the transition "
     "prior's sources; auto = chosen with --session-start-mix (default: {default})"),
    (("--session-start-neighbors",), "session_start_neighbors", dict(type=_weight, metavar="BETA"),
     "share in [0, 0.99] of session-kNN votes (for the neighbours of the user's last session) in "
     "`hrnn recommend --new-session`'s answers; auto = chosen on the first events of up to 10,000 "
     "multi-session users' last sessions (default: {default})"),
    (("--session-gap",), "session_gap", dict(type=float, metavar="SECONDS"),
     "inactivity that starts a new session (as does a change of SESSION_ID) "
     "(default: {default})"),
    (("--num-threads",), "num_threads", dict(type=int, metavar="N"),
     "threads for training and batch recommendations; 0 = all cores (default: {default})"),
    (("--random-state",), "random_state", dict(type=int, metavar="SEED"),
     "seed; with --num-threads 1 two runs give bit-identical models (default: random)"),
    (("--device",), "device", dict(choices=_choices("device")),
     "where to train (cuda needs hrnn built with CUDA) (default: {default})"),
    (("--no-progress",), "show_progress", dict(action="store_false"),
     "do not show the progress line (events/s, loss) while training"),
]


def add_train(sub) -> None:
    p = _add_parser(
        sub, "train", help="train a model on an interactions file and save it",
        description="Train an HRNN model (Amazon Personalize's aws-hrnn recipe) on an "
                    "interactions file with USER_ID, ITEM_ID and TIMESTAMP columns (optionally "
                    "EVENT_TYPE, EVENT_VALUE, SESSION_ID; names are matched case-insensitively) "
                    "and save it to one model file for `hrnn recommend` or hrnn.load(). Every "
                    "hyperparameter flag sets the HRNN parameter of the same name "
                    "(--hidden-dimension is hidden_dimension); flags left out keep the "
                    "defaults shown.",
        epilog="""\
examples:
  hrnn train interactions.csv -o model.hrnn
  hrnn train interactions.csv.gz -o model.hrnn --hidden-dimension 64 --epochs 20 --max-pct 0.95
  hrnn train clicks.parquet -o model.hrnn --user-col session_id --event-type click
  hrnn recommend model.hrnn --user 42""")
    p.add_argument("data", help=DATA_FILE_HELP)
    p.add_argument("-o", "--output", required=True, metavar="MODEL",
                   help="where to save the trained model (one file; overwritten)")
    defaults = _hrnn_defaults()
    g = p.add_argument_group("hyperparameters (each sets the HRNN parameter of the same name)")
    for flags, param, kwargs, text in _TRAIN_FLAGS:
        g.add_argument(*flags, dest=param, default=argparse.SUPPRESS,
                       help=text.format(default=defaults[param]), **kwargs)
    _add_minimums(p)
    _add_columns(p)
    p.set_defaults(func=_run_train)


def _train_params(args: argparse.Namespace) -> dict:
    """The HRNN keyword arguments of the flags given on the command line (only those)."""
    params = {param: getattr(args, param) for _, param, _, _ in _TRAIN_FLAGS
              if hasattr(args, param)}
    if "event_type" in params and len(params["event_type"]) == 1:
        params["event_type"] = params["event_type"][0]
    return params


def _run_train(args: argparse.Namespace) -> int:
    from .data import read_interactions
    from .model import HRNN

    params = _train_params(args)
    flag_of = {param: flags[0] for flags, param, _, _ in _TRAIN_FLAGS}
    try:
        model = HRNN(**params)
    except (TypeError, ValueError) as e:  # name the flag rather than the Python parameter
        bad = [p for p in params if p in str(e)] or list(params)
        raise ValueError(f"{flag_of[bad[0]]}: {e}") from e
    check_output_path(args.output)
    t0 = time.perf_counter()
    table = read_interactions(args.data, _columns(args))
    model.fit(table, check_minimums=args.check_minimums)
    seconds = time.perf_counter() - t0
    model.save(args.output)
    history = model.history_
    train_seconds = sum(h["seconds"] for h in history)
    train_events = sum(h["events"] for h in history)
    rows = [("model", f"{args.output}"),
            ("users", f"{len(model.user_ids_):,}"),
            ("items", f"{len(model.item_ids_):,}"),
            ("events", f"{len(table):,}" + (f" ({model._log.n_events:,} after the event filters)"
                                             if model._log.n_events < len(table) else "")),
            ("epochs", f"{len(history)}"),
            ("seconds", f"{seconds:,.1f} (reading, training and computing user states)"),
            ("events/s", f"{train_events / max(train_seconds, 1e-9):,.0f} (training)"),
            ("final loss", f"{history[-1]['loss']:.4f}" if history else "-")]
    print("\n".join(f"{k:<11} {v}" for k, v in rows))
    # Saved as trained so far (the warning says up to when); the status says it is not finished.
    return EXIT_INTERRUPTED if model._fit_interrupted else 0
