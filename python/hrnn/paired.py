"""Paired comparison of two models evaluated on the same split.

Two models scored by ``hrnn.evaluate(..., return_details=True)`` on the same data, protocol and
``random_state`` rank the same events (next-item) or answer the same held-out users (personalize),
so their difference can be measured unit by unit: the standard error of the mean of the paired
differences is much smaller than that of either metric when the two models agree on most units, and
it is what says whether a gap between two rows of a results table is more than the noise of the
held-out events.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._validation import _per_event, standard_error
from .data import ITEM_ID, USER_ID
from .evaluate import NEXT_ITEM_METRICS, PERSONALIZE_METRICS

__all__ = ["per_unit_scores", "paired_difference"]

# Coverage is a property of all the lists together: it has no per-unit share.
_PER_USER = tuple(m for m in PERSONALIZE_METRICS if m != "coverage")


def per_unit_scores(details: pd.DataFrame, metric: str) -> np.ndarray:
    """Each unit's share of ``metric``, from ``evaluate(..., return_details=True)``'s details.

    Units are the predicted events (next-item ``recall@20`` / ``mrr@20``), the test sessions
    (``first_recall@20``) or the held-out users (personalize: ``precision@k``, ``ndcg@k``,
    ``mrr@25``), in the split's order; their mean is the metric. ``coverage`` is a property of all
    the lists together and has no per-unit share.
    """
    _check_frame(details)
    next_item = "rank" in details
    allowed = NEXT_ITEM_METRICS if next_item else _PER_USER
    if metric not in allowed:
        raise ValueError(f"metric {metric!r} has no per-unit share in {'next-item' if next_item else 'personalize'} "
                         f"details; use one of {', '.join(allowed)}")
    if not next_item:
        if metric not in details:
            raise ValueError(f"details lack the column {metric!r}: pass evaluate(..., return_details=True)'s")
        return details[metric].to_numpy(np.float64)
    if "position" not in details:
        raise ValueError("details lack the column 'position': pass evaluate(..., return_details=True)'s")
    rank = details["rank"].to_numpy(dtype=np.float64, na_value=np.nan)
    if not (np.isfinite(rank).all() and (rank >= 0).all()):
        raise ValueError("the details' rank has missing, negative or infinite values: not evaluate()'s details")
    return _per_event(rank[_ranked(details, metric)], "mrr@20" if metric == "mrr@20" else "recall@20")


def _ranked(details: pd.DataFrame, metric: str) -> np.ndarray:
    """The next-item details' rows that are units of ``metric``: the sessions' first events for
    first_recall@20, the others for recall@20 and mrr@20."""
    first = details["position"].to_numpy() == 0
    return first if metric == "first_recall@20" else ~first


def unit_users(details: pd.DataFrame, metric: str) -> np.ndarray:
    """The user of each unit of ``metric`` in ``details`` (as ``per_unit_scores`` orders them)."""
    users = details[USER_ID].to_numpy()
    return users[_ranked(details, metric)] if "position" in details else users


def _units(details, metric: str) -> tuple:
    """(per-unit scores averaged over the runs, the details' unit keys) of one model's details:
    one DataFrame, or several (e.g. fits with different seeds) of the same split."""
    if not isinstance(details, (pd.DataFrame, list, tuple)):
        raise TypeError(f"details must be a DataFrame from evaluate(..., return_details=True) or a "
                        f"list of them, got {type(details).__name__}")
    runs = [details] if isinstance(details, pd.DataFrame) else list(details)
    if not runs:
        raise ValueError("no details given")
    keys = [_unit_keys(d) for d in runs]
    if any(not k.equals(keys[0]) for k in keys[1:]):
        raise ValueError("the details come from different splits: their units do not pair up (the same "
                         "users / events in the same order, as evaluate returns them)")
    scores = np.mean([per_unit_scores(d, metric) for d in runs], axis=0)
    if not np.isfinite(scores).all():
        raise ValueError(f"the details' {metric} has missing or infinite values: not evaluate()'s details")
    return scores, keys[0]


def _check_frame(details) -> None:
    if not isinstance(details, pd.DataFrame):
        raise TypeError(f"details must be a DataFrame from evaluate(..., return_details=True), "
                        f"got {type(details).__name__}")


def _unit_keys(details: pd.DataFrame) -> pd.DataFrame:
    """What identifies a unit: its user (and position), and, where the details have it, what it
    was scored against (the target item; the number of held-out items): two models fed
    different events (one with event filters, one without) do not pair up."""
    _check_frame(details)
    cols = [USER_ID, "position"] if "rank" in details else [USER_ID]
    missing = [c for c in cols if c not in details]
    if missing:
        raise ValueError(f"details lack the column {missing[0]!r}: pass evaluate(..., return_details=True)'s")
    cols += [c for c in (ITEM_ID, "n_truth") if c in details]
    return details[cols].reset_index(drop=True)


def paired_difference(details_a, details_b, metric: str) -> dict:
    """How much model A beats model B on ``metric``, with the standard error of the difference.

    Parameters
    ----------
    details_a, details_b : DataFrame or sequence of DataFrames
        ``hrnn.evaluate(..., return_details=True)[1]`` of each model, on the same data, protocol
        and ``random_state``; a sequence (e.g. one per ``random_state`` of the model) is averaged
        unit by unit first.
    metric : str
        A per-unit metric of the protocol (see :func:`per_unit_scores`).

    Returns
    -------
    dict
        ``difference`` (A's metric minus B's), ``standard_error`` (of the mean of the paired
        per-unit differences), ``z`` (their ratio; 0 when both are 0, infinite when every unit
        differs by the same amount), ``n`` (the units) and ``users`` (the users they belong
        to). The units are clustered by user: the events of one test session are not
        independent draws, so next-item's ``recall@20`` and ``mrr@20`` get the cluster-robust
        standard error over users; with one unit per user (the Personalize metrics,
        ``first_recall@20``) it is the sample standard deviation over sqrt(n). The standard error
        and ``z`` are NaN with fewer than two users, and the difference too with no unit (e.g.
        ``mrr@20`` where no test session has a second event).

    Examples
    --------
    >>> _, a = hrnn.evaluate(hrnn.HRNN(), data, protocol="next-item", return_details=True)
    >>> _, b = hrnn.evaluate(hrnn.baselines.RepeatRule(), data, protocol="next-item", return_details=True)
    >>> hrnn.paired_difference(a, b, "mrr@20")  # z above 2: A is ahead beyond the noise
    """
    a, keys_a = _units(details_a, metric)
    b, keys_b = _units(details_b, metric)
    if not keys_a.equals(keys_b):
        raise ValueError("details_a and details_b come from different splits: their units do not pair up "
                         "(the same users / events in the same order, as evaluate returns them)")
    diff = a - b
    users = unit_users(keys_a, metric)
    se = standard_error(diff, users)
    mean = float(diff.mean()) if len(diff) else np.nan  # (no units: nothing measured, as evaluate's NaN)
    if np.isnan(se) or se > 0:
        z = mean / se
    else:  # every unit differs by the same amount
        z = 0.0 if mean == 0 else float(np.copysign(np.inf, mean))
    return {"difference": mean, "standard_error": se, "z": z, "n": len(diff),
            "users": len(pd.unique(users))}
