"""HRNN's hyperparameters: defaults, ranges and their validation."""
from __future__ import annotations

import numbers

import numpy as np

# name: (kind, lower, upper) ; kind is "int", "float", "bool" or a tuple of allowed strings; a
# trailing "?" also allows None, "|auto" also allows the string "auto".
SPECS = {
    "hidden_dimension": ("int", 32, 256),
    "bptt": ("int", 1, 32),
    "recency_mask": ("bool", None, None),
    "min_user_history_length_percentile": ("float", 0.0, 1.0),
    "max_user_history_length_percentile": ("float", 0.0, 1.0),
    "event_value_threshold": ("float?", None, None),
    "epochs": ("int", 1, 10_000),
    "batch_size": ("int", 1, 65_536),
    "learning_rate": ("float", 1e-6, 10.0),
    "optimizer": (("adagrad", "adam"), None, None),
    "momentum": ("float", 0.0, 0.999),
    "n_sample": ("int", 0, 1 << 20),
    "sample_alpha": ("float", 0.0, 2.0),
    "loss": (("softmax", "bpr-max"), None, None),
    "bpreg": ("float", 0.0, 100.0),
    "logq": ("bool", None, None),
    "dropout": ("float", 0.0, 0.9),
    "tie_embeddings": ("bool", None, None),
    "repeat": ("bool", None, None),
    "repeat_negatives": ("bool", None, None),
    "transition_weight": ("float|auto", 0.0, 10.0),
    "session_start_mix": ("float|auto", 0.0, 1.0),
    "session_start_sources": ("bool|auto", None, None),
    "session_start_neighbors": ("float|auto", 0.0, 0.99),
    "session_gap": ("float", 1.0, 1e9),
    "recency_half_life": ("float?", 1.0, 1e12),
    "num_threads": ("int", 0, 4096),
    "random_state": ("int?", 0, 2**63 - 1),
    "device": (("cpu", "cuda"), None, None),
    "show_progress": ("bool", None, None),
}


def check(name: str, value):
    """``value`` as a plain Python value (a numpy scalar becomes its Python one, so that the
    hyperparameters can be written to a model file); TypeError / ValueError naming ``name``
    unless it fits its spec."""
    kind, lo, hi = SPECS[name]
    if isinstance(value, np.generic):
        value = value.item()
    if kind in ("float|auto", "bool|auto"):
        if isinstance(value, str):
            if value != "auto":
                what = "a number" if kind == "float|auto" else "True, False"
                raise ValueError(f"{name} must be {what} or 'auto', got {value!r}")
            return value
        kind = kind[:-len("|auto")]
    optional = isinstance(kind, str) and kind.endswith("?")
    if optional:
        if value is None:
            return value
        kind = kind[:-1]
    if isinstance(kind, tuple):
        if value not in kind:
            raise ValueError(f"{name} must be one of {list(kind)}, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if value != value:  # NaN
        raise ValueError(f"{name} must be a number, got NaN")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    if not isinstance(value, (int, float)):  # a Fraction, a Decimal...: what a model file can hold
        value = int(value) if kind == "int" else float(value)
    return value


def check_fit_flags(validation, check_minimums, callbacks) -> list:
    """fit's flags checked (a string is not a yes), and its callbacks as a list of callables."""
    for name, flag in (("validation", validation), ("check_minimums", check_minimums)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if callable(callbacks) or isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"callbacks must be a list of callables, got {callbacks!r}")
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"each of callbacks must be callable, got {cb!r}")
    return callbacks


def check_gap(name: str, value, allow_none: bool = True) -> None:
    """A gap in seconds: a finite number >= 0 (or None where allowed), else ValueError naming it."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or \
            not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds"
                         f"{' or None' if allow_none else ''}, got {value!r}")


def check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
