"""The ``hrnn`` command line.

Each subcommand is one small ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``func`` to the function that runs it; ``COMMANDS`` lists them in help order. A command
returns an exit code (None means 0). User errors (a bad file, a missing column, a bad value) end
as a one-line ``error: ...`` on stderr with exit code 2; ``--traceback`` shows the full trace.
"""
from __future__ import annotations

import argparse
import gzip
import inspect
import json
import os
import re
import sys
import textwrap
import warnings
from typing import Callable, List, Optional

from ._files import atomic_file, check_output_path

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C, as a shell reports it
DATA_FILE_HELP = "interactions file (.csv or .tsv, plain or .gz, or .parquet)"

# Exceptions that mean "the input or the arguments are wrong", not "hrnn has a bug".
# OSError covers missing/unreadable files and corrupt gzip; pandas' parser errors are ValueErrors.
USER_ERRORS = (OSError, EOFError, KeyError, ValueError, TypeError, ImportError)


class _Formatter(argparse.HelpFormatter):
    """Wraps prose paragraphs to the terminal; keeps indented lines (the examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for para in textwrap.dedent(text).strip("\n").split("\n\n"):
            lines = para.split("\n")
            if any(line.startswith(" ") for line in lines):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(textwrap.fill(" ".join(para.split()), width, break_on_hyphens=False,
                                         initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)


def _add_parser(sub, name: str, help: str, description: str, epilog: str):
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=_Formatter)


def _add_columns(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("column names (default: matched case-insensitively)")
    g.add_argument("--user-col", metavar="NAME", help="source column to use as USER_ID")
    g.add_argument("--item-col", metavar="NAME", help="source column to use as ITEM_ID")
    g.add_argument("--time-col", metavar="NAME", help="source column to use as TIMESTAMP")
    g.add_argument("--session-col", metavar="NAME", help="source column to use as SESSION_ID")
    g.add_argument("--event-type-col", metavar="NAME", help="source column to use as EVENT_TYPE")
    g.add_argument("--event-value-col", metavar="NAME", help="source column to use as EVENT_VALUE")


def _add_minimums(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-minimums", dest="check_minimums", action="store_false",
                   help="train on a log below Personalize's minimums (1,000 interactions, 25 users "
                        "with 2 or more)")


def _fit_params(args: argparse.Namespace) -> Optional[dict]:
    """hrnn's fit options from --no-minimums (None: the defaults)."""
    return None if args.check_minimums else {"check_minimums": False}


def _columns(args: argparse.Namespace) -> Optional[dict]:
    """The ``columns=`` mapping for read_interactions from the --*-col options."""
    pairs = {"USER_ID": args.user_col, "ITEM_ID": args.item_col, "TIMESTAMP": args.time_col,
             "SESSION_ID": args.session_col, "EVENT_TYPE": args.event_type_col,
             "EVENT_VALUE": args.event_value_col}
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
    p = _add_parser(sub, "inspect", help="summarise an interactions file and its history lengths",
                    description="Print events, users, items, sessions, time span, event "
                                "types and a histogram of user history lengths with the "
                                "percentile cut-offs marked, to choose "
                                "min/max_user_history_length_percentile before training.",
                    epilog="""\
examples:
  hrnn inspect interactions.csv
  hrnn inspect interactions.csv.gz --max-pct 0.95 --plot lengths.png
  hrnn inspect clicks.parquet --user-col session_id""")
    p.add_argument("data", help=DATA_FILE_HELP)
    p.add_argument("--min-pct", type=_fraction, default=0.0, metavar="P",
                   help="min_user_history_length_percentile to preview (default 0.0)")
    p.add_argument("--max-pct", type=_fraction, default=0.99, metavar="P",
                   help="max_user_history_length_percentile to preview (default 0.99)")
    p.add_argument("--session-gap", type=float, default=1800.0, metavar="SECONDS",
                   help="inactivity that starts a new session (default 1800)")
    p.add_argument("--plot", metavar="FILE", help="also write the histogram to this file (.png, .svg, "
                                                  ".pdf, ...: as its extension names)")
    p.add_argument("--event-type", action="append", metavar="TYPE",
                   help="preview the lengths of these events only, as `hrnn train --event-type`")
    p.add_argument("--event-value-threshold", type=float, metavar="V",
                   help="preview the lengths of events with EVENT_VALUE >= V only")
    _add_columns(p)
    p.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from .describe import _plot_format, describe

    if args.plot:  # before the report, not after it
        check_output_path(args.plot)
        _plot_format(args.plot)
    summary = describe(args.data, min_pct=args.min_pct, max_pct=args.max_pct,
                       session_gap=args.session_gap, columns=_columns(args), event_type=args.event_type,
                       event_value_threshold=args.event_value_threshold)
    print(summary)
    if args.plot:
        print(f"wrote {summary.plot(args.plot)}")
    return 0


# ----------------------------------------------------------------------------------- recommend

def _num_results(text: str) -> int:
    from ._ids import MAX_RESULTS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_RESULTS:
        raise argparse.ArgumentTypeError(f"must be in [1, {MAX_RESULTS}], got {text}")
    return value


def _add_recommend(sub) -> None:
    from .model import HRNN

    n_default = inspect.signature(HRNN.recommend).parameters["num_results"].default
    p = _add_parser(
        sub, "recommend", help="recommend items for one user, or for a file of users",
        description="Print the items a saved model recommends next for a user, best first, "
                    "with their scores; or, with --users, recommend for every user in a file "
                    "(Personalize batch inference) and write one JSON line per user. User ids "
                    "on the command line and in plain-text files are strings; when the model's "
                    "user ids are integers, a numeric id such as 42 is looked up as the "
                    "integer 42. A user the model does not know gets the most popular items "
                    "(with a warning).",
        epilog="""\
examples:
  hrnn recommend model.hrnn --user 42
  hrnn recommend model.hrnn --user 42 -n 10 --exclude-interacted --json
  hrnn recommend model.hrnn --user 42 --new-session
  hrnn recommend model.hrnn --users users.txt -o recommendations.jsonl

--users file: one user id per line, or Personalize batch-inference input lines
  {"userId": "42"}
output (--json, --users): one JSON line per user, in the order of the file
  {"userId": 42, "recommendedItems": [7, 3, ...], "scores": [5.12, 4.9, ...]}
output with --format personalize (Personalize's batch-inference lines: the input echoed, ids as text)
  {"input": {"userId": "42"}, "output": {"recommendedItems": ["7", "3", ...], "scores": [...]}, "error": null}""")
    p.add_argument("model", help="a model file written by `hrnn train` or HRNN.save()")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="USER_ID", help="recommend for this user")
    who.add_argument("--users", metavar="FILE",
                     help="recommend for every user id in FILE (one per line, or JSON lines "
                          "{\"userId\": ...}; - reads standard input), in one batch")
    p.add_argument("-n", "--num-results", type=_num_results, default=n_default, metavar="N",
                   help=f"how many items per user, 1..500 (default: {n_default})")
    p.add_argument("--exclude-interacted", action="store_true",
                   help="leave out items the user has already interacted with")
    p.add_argument("--new-session", action="store_true",
                   help="the users' sessions have ended: recommend for the first event of a new "
                        "session (the model's session_start_mix and session_start_neighbors) rather "
                        "than the next one of the "
                        "session in progress")
    p.add_argument("--json", action="store_true",
                   help="with --user: print one JSON line instead of 'item<TAB>score' lines (in "
                        "which an item id whose text holds a tab, a line break or a leading "
                        "double quote is written as a JSON string)")
    p.add_argument("--format", choices=("hrnn", "personalize"), default="hrnn",
                   help="the JSON lines' shape: hrnn's, or Personalize's batch-inference output "
                        "(the input line echoed, output with ids as text, error), for code that "
                        "reads those; personalize implies --json with --user (default: hrnn)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the results to FILE instead of standard output "
                        "(JSON lines with --users; gzip-compressed when FILE ends in .gz)")
    p.add_argument("--num-threads", type=int, metavar="N",
                   help="threads for --users; 0 = all cores (default: the model's)")
    p.set_defaults(func=_run_recommend)


# The text str() gives an integer, as _ids._DECIMAL (not imported: it would load numpy for --help):
# "007" and "+7" are not 7, as in a CSV.
_INT = re.compile(r"0|-?[1-9][0-9]*")


class _UserIds:
    """Turns user ids read as text into the model's ids: "42" -> 42 when ids are integers."""

    def __init__(self, model):
        ids = model.known_user_ids
        self.kind = ids.dtype.kind
        self.known = set(ids.tolist()) if self.kind == "O" else None

    def __call__(self, value, typed: bool = False):
        """``value`` as the model's id. ``typed``: a JSON value, whose type and spaces are the
        writer's: the number 5 is user 5, the text " 7" user " 7" (a plain line is text, trimmed)."""
        if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
            raise ValueError(f"a user id must be a string or a number, got {value!r}")
        if self.kind == "O" and isinstance(value, (str, int)) and value in self.known:
            return value  # (as given: a text id with spaces around it, " 7", is a user of its own)
        text = value if typed and isinstance(value, str) else str(value).strip()
        if self.kind in "iu":
            if isinstance(value, float) and value.is_integer():  # JSON writers may give 42 as 42.0
                return int(value)
            return int(text) if _INT.fullmatch(text) else text
        if self.kind == "f":
            try:
                return float(text)
            except ValueError:
                return text
        if self.known is not None and text not in self.known and _INT.fullmatch(text) \
                and int(text) in self.known:  # ids of mixed types
            return int(text)
        return text


def _plain(value):
    """A JSON-ready Python scalar from a numpy one."""
    return value.item() if hasattr(value, "item") else value


def _tab_field(value) -> str:
    """An item id as one field of a tab-separated line: its text, or its JSON string where that
    text would break the line (or read as such a string)."""
    text = str(_plain(value))
    return json.dumps(text) if any(c in text for c in "\t\n\r") or text.startswith('"') else text


def _result(user, items, scores, shape: str = "hrnn", given=None) -> dict:
    """One answer as a JSON object; ``given``: the input object Personalize's lines echo."""
    keep = [i for i, (item, s) in enumerate(zip(items, scores))
            if item is not None and s != float("-inf")]
    # str() of a float32 is its shortest round-tripping text: 4.9760084, not 4.976008415
    scores = [float(str(scores[i])) for i in keep]
    if shape == "personalize":  # (Personalize's ids are always strings)
        return {"input": given,
                "output": {"recommendedItems": [str(_plain(items[i])) for i in keep], "scores": scores},
                "error": None}
    return {"userId": _plain(user), "recommendedItems": [_plain(items[i]) for i in keep], "scores": scores}


def _read_user_file(path: str, to_id) -> tuple:
    """(the users' ids as the model's, each line's input object: the JSON object as written, or
    {"userId": the plain line})."""
    if path != "-" and not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    f = sys.stdin if path == "-" else open(path, encoding="utf-8-sig")  # (-sig: a BOM is not an id)
    users, inputs = [], []
    try:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("["):
                raise ValueError(f"{path} line {n}: a JSON array; the file holds one user id, or "
                                 f"one JSON object {{\"userId\": ...}}, per line")
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                    value = record["userId"]
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path} line {n}: not valid JSON ({e})") from None
                except (KeyError, TypeError):
                    raise ValueError(f"{path} line {n}: a JSON line needs a \"userId\" "
                                     f"field") from None
            else:
                value = record = line
            try:
                users.append(to_id(value, typed=line.startswith("{")))
                inputs.append(record if isinstance(record, dict) else {"userId": record})
            except ValueError as e:
                raise ValueError(f"{path} line {n}: {e}") from None
    finally:
        if f is not sys.stdin:
            f.close()
    if not users:
        raise ValueError(f"{path} holds no user ids")
    return users, inputs


def _warn_unknown(unknown: list, n: int) -> None:
    if len(unknown) == 1:
        warnings.warn(f"user {unknown[0]!r} is not in the model: it gets the most popular "
                      "items", UserWarning)
    elif unknown:
        warnings.warn(f"{len(unknown):,} of {n:,} users are not in the model (e.g. "
                      f"{unknown[0]!r}): they get the most popular items", UserWarning)


def _run_recommend(args: argparse.Namespace) -> int:
    from .model_file import load

    if not os.path.exists(args.model):
        raise FileNotFoundError(f"no such file: {args.model}")
    if args.output:
        check_output_path(args.output)
    model = load(args.model)
    if args.num_threads is not None:
        try:
            model.set_params(num_threads=args.num_threads)
        except (TypeError, ValueError) as e:
            raise ValueError(f"--num-threads: {e}") from e
    to_id = _UserIds(model)
    known = set(model.known_user_ids.tolist())
    if args.user is not None:
        users = [to_id(args.user)]
        items, scores = model.recommend(users[0], num_results=args.num_results,
                                        exclude_interacted=args.exclude_interacted,
                                        new_session=args.new_session)
        as_json = args.json or args.format == "personalize"
        lines = ([json.dumps(_result(users[0], items, scores, args.format, {"userId": args.user})) + "\n"]
                 if as_json else
                 [f"{_tab_field(i)}\t{str(s)}\n" for i, s in zip(items, scores)])
    else:
        users, inputs = _read_user_file(args.users, to_id)
        items, scores = model.recommend_batch(users, num_results=args.num_results,
                                              exclude_interacted=args.exclude_interacted,
                                              new_session=args.new_session)
        lines = (json.dumps(_result(user, items[r], scores[r], args.format, inputs[r])) + "\n"
                 for r, user in enumerate(users))
    _write_lines(args.output, lines)  # only now: a failed call leaves an existing output file alone
    _warn_unknown([u for u in users if u not in known], len(users))
    if args.output and args.user is None:
        print(f"wrote recommendations for {len(users):,} users to {args.output}")
    return 0


def _write_lines(path: Optional[str], lines) -> None:
    """To stdout, or to ``path`` whole or not at all (gzip-compressed when it ends in .gz)."""
    if path is None:
        sys.stdout.writelines(lines)
        return
    if str(path).lower().endswith(".gz"):
        with atomic_file(path, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8") as f:
            f.writelines(lines)
        return
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.writelines(lines)


def _eval_commands() -> List[Callable]:
    from . import cli_eval
    return [cli_eval.add_quickstart, cli_eval.add_evaluate, cli_eval.add_tune]


def _add_train(sub) -> None:
    from .cli_train import add_train  # imported late: cli_train takes its helpers from here
    add_train(sub)


COMMANDS: List[Callable] = [_add_inspect, _add_train, _add_recommend]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="hrnn", formatter_class=_Formatter,
        description="Hierarchical recurrent recommender (gated HRNN, like Amazon Personalize's "
                    "aws-hrnn recipe): learns from a log of USER_ID, ITEM_ID, TIMESTAMP "
                    "interactions what each user will interact with next.",
        epilog="""\
examples:
  hrnn quickstart                                 # train + evaluate on the bundled data set
  hrnn inspect interactions.csv                   # look at the data first
  hrnn train interactions.csv -o model.hrnn       # train and save a model
  hrnn recommend model.hrnn --user 42             # top 25 items for user 42
  hrnn recommend model.hrnn --users users.txt -o recs.jsonl
  hrnn evaluate model.hrnn interactions.csv       # Personalize + next-item metrics
  hrnn tune interactions.csv -o tuned.hrnn        # hyperparameter search

Run `hrnn COMMAND --help` for a command's options.""")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full Python traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS + _eval_commands():
        add(sub)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("hrnn")
    except Exception:  # not installed (running from a source tree)
        return getattr(sys.modules.get("hrnn"), "__version__", "unknown")


def _silence_stdout() -> None:
    """What is left in stdout's buffer would fail again at exit: it goes nowhere instead."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # (a stdout without a descriptor, as under pytest)
        pass
    finally:
        os.close(devnull)


def _message(exc: BaseException) -> str:
    # KeyError's str() is the repr of its argument; show the text itself, on one line.
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(line.strip() for line in str(text).splitlines()) or type(exc).__name__


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
    error, interrupted = None, False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = args.func(args)
        except BrokenPipeError:  # the reader stopped reading (| head): as other tools, quietly
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        except KeyboardInterrupt:
            if args.traceback:
                raise
            interrupted = True
        except USER_ERRORS as e:
            if args.traceback:
                raise
            error = e
    for w in caught:
        print(f"warning: {_message(w.message)}", file=sys.stderr)
    if interrupted:  # (after the warnings: what was left when Ctrl-C came)
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if error is not None:
        print(f"error: {_message(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0 if code is None else int(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
