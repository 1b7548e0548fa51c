"""The ``hrnn`` command line.

Each subcommand is one small ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``func`` to the function that runs it; ``COMMANDS`` lists them in help order. A command
returns an exit code (None means 0). User errors (a bad file, a missing column, a bad value) end
as a one-line ``error: ...`` on stderr with exit code 2; ``--traceback`` shows the full trace.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable, List, Optional

EXIT_USER_ERROR = 2

# Exceptions that mean "the input or the arguments are wrong", not "hrnn has a bug".
# OSError covers missing/unreadable files and corrupt gzip; pandas' parser errors are ValueErrors.
USER_ERRORS = (OSError, EOFError, KeyError, ValueError, TypeError, ImportError)


def _add_columns(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("column names (default: matched case-insensitively)")
    g.add_argument("--user-col", metavar="NAME", help="source column to use as USER_ID")
    g.add_argument("--item-col", metavar="NAME", help="source column to use as ITEM_ID")
    g.add_argument("--time-col", metavar="NAME", help="source column to use as TIMESTAMP")
    g.add_argument("--session-col", metavar="NAME", help="source column to use as SESSION_ID")


def _columns(args: argparse.Namespace) -> Optional[dict]:
    """The ``columns=`` mapping for read_interactions from the --*-col options."""
    pairs = {"USER_ID": args.user_col, "ITEM_ID": args.item_col, "TIMESTAMP": args.time_col,
             "SESSION_ID": args.session_col}
    return {k: v for k, v in pairs.items() if v is not None} or None


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


# ------------------------------------------------------------------------------------- inspect

def _add_inspect(sub) -> None:
    p = sub.add_parser("inspect", help="summarise an interactions file and its history lengths",
                       description="Print events, users, items, sessions, time span, event "
                                   "types and a histogram of user history lengths with the "
                                   "percentile cut-offs marked, to choose "
                                   "min/max_user_history_length_percentile before training.")
    p.add_argument("data", help="interactions file (.csv, .csv.gz or .parquet)")
    p.add_argument("--min-pct", type=_fraction, default=0.0, metavar="P",
                   help="min_user_history_length_percentile to preview (default 0.0)")
    p.add_argument("--max-pct", type=_fraction, default=0.99, metavar="P",
                   help="max_user_history_length_percentile to preview (default 0.99)")
    p.add_argument("--session-gap", type=float, default=1800.0, metavar="SECONDS",
                   help="inactivity that starts a new session (default 1800)")
    p.add_argument("--plot", metavar="PNG", help="also write the histogram to this PNG file")
    _add_columns(p)
    p.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from .describe import describe

    summary = describe(args.data, min_pct=args.min_pct, max_pct=args.max_pct,
                       session_gap=args.session_gap, columns=_columns(args))
    print(summary)
    if args.plot:
        print(f"wrote {summary.plot(args.plot)}")
    return 0


# Later subcommands (train, recommend, evaluate, tune, quickstart) add an _add_<name> here.
COMMANDS: List[Callable] = [_add_inspect]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="hrnn", description="Hierarchical recurrent recommender (gated HRNN).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full Python traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("hrnn")
    except Exception:  # not installed (running from a source tree)
        return getattr(sys.modules.get("hrnn"), "__version__", "unknown")


def _message(exc: BaseException) -> str:
    # KeyError's str() is the repr of its argument; show the text itself, on one line.
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``hrnn`` command line; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or argparse's own usage error (code 2)
        return e.code if isinstance(e.code, int) else EXIT_USER_ERROR
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = args.func(args)
        except USER_ERRORS as e:
            if args.traceback:
                raise
            error = e
    for w in caught:
        print(f"warning: {_message(w.message)}", file=sys.stderr)
    if error is not None:
        print(f"error: {_message(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0 if code is None else int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
