"""Hyperparameter optimisation, like Personalize's performHPO: search the tunable hyperparameters on
a validation split carved from the given data, then refit the best on all of it."""
from __future__ import annotations

import itertools
import numbers
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from ._training import raise_if_interrupted
from ._validation import clearly_better
from .data import read_interactions
from .evaluate import NEXT_ITEM_METRICS, PERSONALIZE_METRICS, evaluate
from .model import HRNN
from .paired import per_unit_scores, unit_users


# name: (kind, choices or bounds); the tunable hyperparameters of the recipe plus the training knobs
# that matter most.
SPACE = {
    "hidden_dimension": ("int_log", (32, 256)),
    "recency_mask": ("categorical", (True, False)),
    "bptt": ("int", (1, 32)),
    "learning_rate": ("float_log", (0.01, 0.5)),
    "dropout": ("float", (0.0, 0.5)),
    "n_sample": ("categorical", (128, 512, 2048)),
}
# transition_weight is not searched: its default, "auto", chooses it inside every trial's fit for the
# price of one ranking pass.


@dataclass
class TuneResult:
    """What :func:`tune` found.

    Attributes
    ----------
    best_params : dict
        The chosen hyperparameters (only those searched): the best trial's, unless it beat the
        first trial (the defaults) by too little to tell from noise (``min_standard_errors``).
    best_score : float
        Its validation score.
    trials : DataFrame
        One row per trial: its parameters, every metric of the protocol, seconds.
    model : HRNN
        A model with the best parameters, fitted on all of ``data`` (unfitted with
        ``refit=False``).
    """

    best_params: dict
    best_score: float
    trials: pd.DataFrame
    model: HRNN


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError("hrnn.tune needs Optuna: pip install optuna (or, in hrnn's source folder, "
                          "pip install '.[tune]')") from None
    return optuna


def _suggest(trial, space: dict) -> dict:
    out = {}
    for name, (kind, spec) in space.items():
        if kind == "categorical":
            out[name] = trial.suggest_categorical(name, list(spec))
        elif kind in ("int", "int_log"):
            out[name] = trial.suggest_int(name, spec[0], spec[1], log=kind == "int_log")
        else:  # float, float_log (the kinds are checked up front)
            out[name] = trial.suggest_float(name, spec[0], spec[1], log=kind == "float_log")
    return out


_KINDS = ("categorical", "int", "int_log", "float", "float_log")


def _check_space(space) -> None:
    """``{name: (kind, spec)}``: ValueError / TypeError naming the entry that is not."""
    if not isinstance(space, dict):
        raise TypeError(f"space must be a dict of name -> (kind, spec), got {space!r}")
    for name, entry in space.items():
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and entry[0] in _KINDS):
            raise ValueError(f"space[{name!r}] must be (kind, spec) with kind one of {_KINDS}, got {entry!r}")
        kind, spec = entry
        number = _is_integer if kind.startswith("int") else _is_number
        ok = (isinstance(spec, (tuple, list)) and len(spec) > 0 if kind == "categorical" else
              isinstance(spec, (tuple, list)) and len(spec) == 2 and all(number(v) for v in spec)
              and spec[0] <= spec[1])
        if not ok:
            needs = ("a list of choices" if kind == "categorical" else
                     "(low, high) integers" if kind.startswith("int") else "(low, high)")
            raise ValueError(f"space[{name!r}]: {kind} needs {needs}, got {spec!r}")
        if kind.endswith("_log") and spec[0] <= 0:
            raise ValueError(f"space[{name!r}]: {kind} needs 0 < low <= high, got {spec!r}")


def _points(kind: str, spec) -> list:
    """The choices, or both bounds as the sampler would suggest them (a float range gives floats)."""
    if kind.startswith("float"):
        return [float(v) for v in spec]
    return list(spec)


def _check_space_values(space: dict, base: dict) -> None:
    """Every choice and both bounds of each dimension, and of each pair of dimensions together
    (HRNN's min/max history percentiles depend on each other), must be valid HRNN values:
    ValueError naming the entries now, not a failed trial later."""
    points = {name: _points(*entry) for name, entry in space.items()}  # (unknown names are rejected before)
    for name, values in points.items():
        for value in values:
            try:
                HRNN(**{**base, name: value})
            except (TypeError, ValueError) as e:
                raise ValueError(f"space[{name!r}]: {value!r} is not a valid {name}: {e}") from None
    for a, b in itertools.combinations(points, 2):
        for va, vb in itertools.product(points[a], points[b]):
            try:
                HRNN(**{**base, a: va, b: vb})
            except (TypeError, ValueError) as e:
                raise ValueError(f"space[{a!r}] = {va!r} and space[{b!r}] = {vb!r} cannot be combined, "
                                 f"and a trial may draw both: {e}") from None


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _inside(kind: str, spec, value) -> bool:
    """Whether ``value`` is a point of the search dimension (kind, spec)."""
    if kind == "categorical":
        return value in spec
    return _is_number(value) and spec[0] <= value <= spec[1]


def tune(data, n_trials: int = 20, metric: str = "ndcg@25", space: Optional[dict] = None,
         base_params: Optional[dict] = None, columns: Optional[dict] = None, random_state: int = 0,
         timeout: Optional[float] = None, refit: bool = True,
         min_standard_errors: float = 2.0, fit_params: Optional[dict] = None,
         show_progress: bool = False) -> TuneResult:
    """Search hyperparameters that maximise ``metric`` on a held-out part of ``data``.

    Parameters
    ----------
    data : anything :func:`hrnn.read_interactions` accepts
        The training data. Each trial runs :func:`hrnn.evaluate` on it: the protocol of ``metric``
        carves a validation part out of ``data``, fits on the rest only, and scores; nothing
        outside ``data`` is ever used.
    n_trials : int
        Trials (Optuna's TPE sampler, seeded with ``random_state``). The first one is the starting
        point (HRNN's defaults with ``base_params``) when the space contains it, so that the best
        trial is never worse on validation than not tuning.
    metric : str
        A Personalize metric (``"precision@5"`` .. ``"coverage"``, protocol "personalize") or a
        next-item one (``"recall@20"``, ``"mrr@20"``, ``"first_recall@20"``).
    space : dict, optional
        ``{name: (kind, spec)}`` with kind "int", "int_log", "float", "float_log" or
        "categorical"; defaults to :data:`SPACE` (hidden_dimension, recency_mask, bptt,
        learning_rate, dropout, n_sample; the default ``transition_weight="auto"`` chooses
        the prior's weight inside every trial's fit). Every choice and bound, alone and beside
        those of every other dimension, must make a valid HRNN: a ValueError names the entry
        before the first trial otherwise (int kinds need integer bounds; a float kind draws
        floats, so it cannot search an integer hyperparameter).
    base_params : dict, optional
        Fixed HRNN hyperparameters for every trial (e.g. ``{"epochs": 5}``); one that ``space``
        also varies is the first trial's value, and must lie inside the space (ValueError).
    columns : dict, optional
        As for :func:`hrnn.read_interactions`, e.g. ``{"USER_ID": "session_id"}``.
    random_state : int or None
        Seeds the sampler, the splits and the models; None draws one seed for all of them (every
        trial is scored on the same validation part, whatever the seed).
    timeout : float, optional
        Stop starting trials after this many seconds.
    refit : bool
        Fit the best parameters on all of ``data`` (``result.model``).
    min_standard_errors : float
        The best trial replaces the first one (the defaults) only if it beats it by this many
        standard errors of the paired per-event (next-item, clustered by user) or per-user
        (personalize) difference on the validation part: a small validation split makes the plain
        best follow noise, and tuning should not leave a model worse than the defaults. 0 takes
        the plain best; so does ``metric="coverage"``, which has no per-user share.
    fit_params : dict, optional
        Keyword arguments for every ``fit`` (as :func:`hrnn.evaluate`'s), e.g.
        ``{"check_minimums": False}``.
    show_progress : bool
        One line on stderr per finished trial (its score and seconds): a search takes minutes.

    Returns
    -------
    TuneResult
    """
    if metric in NEXT_ITEM_METRICS:
        protocol = "next-item"
    elif metric in PERSONALIZE_METRICS:
        protocol = "personalize"
    else:
        raise ValueError(f"metric must be one of {NEXT_ITEM_METRICS + PERSONALIZE_METRICS}, got {metric!r}")
    if not _is_integer(n_trials) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    n_trials = int(n_trials)
    if not (_is_number(min_standard_errors) and 0.0 <= min_standard_errors < float("inf")):
        raise ValueError(f"min_standard_errors must be a finite number >= 0, got {min_standard_errors!r}")
    if timeout is not None and not (_is_number(timeout) and 0 < timeout < float("inf")):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if not isinstance(show_progress, (bool, np.bool_)):
        raise TypeError(f"show_progress must be True or False, got {show_progress!r}")
    if base_params is not None and not isinstance(base_params, dict):
        raise TypeError(f"base_params must be a dict of HRNN hyperparameters, got {base_params!r}")
    _check_space(SPACE if space is None else space)
    space = dict(SPACE if space is None else space)
    # A base parameter that the space also varies is the first trial's value: outside the space
    # there would be no first trial to keep, and the search would silently replace it.
    outside = sorted(k for k in set(space) & set(base_params or {}) if not _inside(*space[k], base_params[k]))
    if outside:
        raise ValueError(f"base_params {({k: base_params[k] for k in outside})} lie outside the search space "
                         f"{({k: space[k] for k in outside})}: the search would replace them; widen the space "
                         "or leave them out of it")
    if random_state is None:
        random_state = int(np.random.SeedSequence().generate_state(1)[0])
    base = {"show_progress": False, "random_state": random_state, **(base_params or {})}
    unknown = sorted((set(space) | set(base)) - set(HRNN._param_names()))
    if unknown:
        raise ValueError(f"unknown HRNN hyperparameter(s) {unknown}")
    HRNN(**base)  # fail fast on bad fixed parameters
    _check_space_values(space, base)
    optuna = _optuna()
    table = read_interactions(data, columns)
    rows, shares, first = [], {}, {}

    def objective(trial):
        params = _suggest(trial, space)
        t0 = time.perf_counter()
        scores, details = evaluate(HRNN(**{**base, **params}), table, protocol=protocol,
                                   random_state=random_state, return_details=True, fit_params=fit_params)
        if metric != "coverage":
            shares[trial.number] = per_unit_scores(details, metric)
            if trial.number == 0:  # (every trial's split is the same)
                first["users"] = unit_users(details, metric)
        rows.append({"trial": trial.number, **params,
                     **{k: v for k, v in scores.items() if isinstance(v, float)},
                     "seconds": time.perf_counter() - t0})
        if show_progress:
            print(f"trial {trial.number + 1}/{n_trials}: {metric} {scores[metric]:.4f} "
                  f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
        if np.isnan(scores[metric]):
            raise ValueError(f"{metric} is undefined on this data's validation part (no validation session has "
                             "a second event); tune first_recall@20 or a Personalize metric")
        return scores[metric]

    # Quiet: a trial that fails (bad data) raises its error to the caller, and Optuna would also log
    # it with a traceback at WARNING. The caller's Optuna verbosity is put back afterwards.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=random_state))
        start = {name: value for name, value in HRNN(**base).get_params().items() if name in space}
        from_start = all(_inside(*space[name], value) for name, value in start.items())
        if from_start:
            study.enqueue_trial(start)
        study.optimize(objective, n_trials=n_trials, timeout=timeout)
    finally:
        optuna.logging.set_verbosity(verbosity)
    chosen = study.best_trial
    if from_start and chosen.number != 0 and metric != "coverage" and min_standard_errors > 0:
        if not clearly_better(shares[chosen.number] - shares[0], min_standard_errors, groups=first["users"]):
            chosen = study.trials[0]
    best = dict(chosen.params)
    model = HRNN(**{**base, **best})
    if refit:
        model.fit(table, **(fit_params or {}))
        raise_if_interrupted(model)
    return TuneResult(best_params=best, best_score=float(chosen.value), trials=pd.DataFrame(rows),
                      model=model)
