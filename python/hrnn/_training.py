"""One fit's training run: the epochs, validation and early stopping, Ctrl-C, and the choice of
``transition_weight="auto"`` on held-out sessions (docs/engine.md).

Private; what HRNN.fit does once the log is read and split.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from . import _core, _device
from . import data as _data
from ._ids import warn_caller
from ._neighbors import NEIGHBORS_K, NEIGHBORS_SAMPLE, neighbor_index
from ._progress import Progress, stops
from ._transitions import apply_table, transition_table
from ._validation import (auto_fallback, auto_holdout_users, choose_neighbors, choose_session_start,
                          choose_transition_weight, first_event_users, n_targets, resumes_visits,
                          start_fallback, validation_scores, validation_split, without_first_events)


def weights_and_popularity(model, arrays: tuple, n_items: int, train_users: np.ndarray) -> tuple:
    """(loss weight per event or None, item popularity): what ``model`` trains ``arrays`` with."""
    return _data.loss_weights_and_popularity(arrays, n_items, train_users, model.recency_mask,
                                             model.recency_half_life)


def _auto_start(model) -> bool:
    return "auto" in (model.session_start_mix, model.session_start_sources)


def training_log(model, data, columns: Optional[dict] = None, check_minimums: bool = True) -> tuple:
    """(event log, boolean mask of its training users): what ``model.fit`` trains on."""
    table = _data.read_interactions(data, columns)
    events, users = _data.featurize(table, model.min_user_history_length_percentile,
                                    model.max_user_history_length_percentile,
                                    model.event_type, model.event_value_threshold)
    train_rows = users.user_mask(events[_data.USER_ID])
    # The catalogue: the training users' items, then those only users left out of training
    # consumed. The network learns nothing about the latter, but they stay recommendable: the
    # prior's repeat part returns them to the users who keep coming back to them.
    items = events[_data.ITEM_ID]
    item_ids = _data.pd.unique(_data.pd.concat([items[train_rows], items[~train_rows]]))
    log = _data.build_event_log(events, model.session_gap, item_ids=item_ids)
    train_users = users.user_mask(log.user_ids)
    if not train_users.any():
        raise ValueError(f"the history-length percentiles {users.min_pct}..{users.max_pct} keep no "
                         f"user for training (lengths {users.min_length}..{users.max_length})")
    _data.check_trainable(log.lengths(), train_users, check_minimums)
    return log, train_users


def held_out_split(model, log: "_data.EventLog", train_users: np.ndarray, validation: bool) -> Optional[tuple]:
    """The sessions fit holds out (``validation_split``'s arrays): with ``validation`` every
    training user's last one; else, for the settings that are "auto", those of random users
    (``auto_holdout_users``); None when nobody is held out (the fallbacks are kept then)."""
    if validation:
        return validation_split(log, train_users)
    if "auto" in (model.transition_weight, model.session_start_mix, model.session_start_sources) \
            and model.epochs >= 2:
        held = auto_holdout_users(log, train_users, np.random.default_rng(model.random_state))
        if held.any():
            return validation_split(log, held)
    return None


def choose_share(model, engine, first: Callable[[], tuple], start: tuple) -> float:
    """The neighbours' share "auto" chooses (``choose_neighbors``; scores kept on ``model``) on
    the first events of the test sessions of the split ``first`` builds (when asked: it copies the
    log), at the engine's prior and the session-start setting ``start``."""
    split = first()
    engine.set_neighbors(neighbor_index(split[0], engine.n_items), NEIGHBORS_K, NEIGHBORS_SAMPLE, 0.0)
    beta, model.session_start_neighbors_scores_ = choose_neighbors(engine, split, start, model.num_threads)
    return beta


def choose_on_split(model, engine, split: tuple, metric: str, fallback: float, resumed: bool, table,
                    first: Optional[Callable[[], tuple]]) -> tuple:
    """(transition weight, (session-start mix, sources), neighbours' share): those of ``model``
    that are "auto" as ``split``'s held-out sessions rank best (the share: ``choose_share`` on
    ``first``, if any), the others as given. ``fallback``: the weight's; ``resumed``: whether the
    log's sessions resume visits (``start_fallback``)."""
    weight = model.transition_weight
    if weight == "auto":
        weight, model.transition_weight_scores_ = choose_transition_weight(engine, split, metric,
                                                                           model.num_threads, fallback)
    start = start_fallback(model.session_start_mix, model.session_start_sources, resumed)
    if _auto_start(model) or first is not None:
        apply_table(engine, table, weight)  # the first events are ranked as queries at that weight
    if _auto_start(model):
        start, model.session_start_scores_ = choose_session_start(
            engine, split, model.num_threads, model.session_start_mix, model.session_start_sources, resumed)
    beta = choose_share(model, engine, first, start) if first is not None else None
    return weight, start, beta


def raise_if_interrupted(model) -> None:
    """KeyboardInterrupt where ``model``'s last fit was stopped by Ctrl-C: for the callers that
    must not go on with a half-trained model (evaluate's metrics, tune's refit)."""
    if getattr(model, "_fit_interrupted", False):
        raise KeyboardInterrupt("training was interrupted: no metrics or models from a half-trained model")


class _Run:
    """What the epochs found out: best validation score and its parameters, a Ctrl-C, the weight."""

    def __init__(self):
        self.interrupted = False
        self.best, self.best_epoch, self.best_weights = -1.0, -1, None
        self.weight: Optional[float] = None
        self.start: Optional[tuple] = None
        self.beta: Optional[float] = None


_warned_single_threaded = False


def warn_if_single_threaded(num_threads: int) -> None:
    """Once per process: a build without OpenMP runs everything on one thread, whatever
    ``num_threads`` asks for (pip's quiet output hides CMake's own warning)."""
    global _warned_single_threaded
    if num_threads != 1 and not _warned_single_threaded and not _core.build_info()["openmp"]:
        _warned_single_threaded = True
        warn_caller(f"hrnn was built without OpenMP: num_threads={num_threads} runs on one thread "
                    f"(rebuild with a compiler that has OpenMP for more)", RuntimeWarning)


def train(model, log: "_data.EventLog", train_users: np.ndarray, callbacks: list,
          split: Optional[tuple], validation: bool, patience: Optional[int], metric: str) -> None:
    """Train a new engine for ``model`` on ``log`` and make it the model's (its records too)."""
    warn_if_single_threaded(model.num_threads)
    seed = model._seed()
    engine = _core.Engine(log.n_items, model.hidden_dimension, model.tie_embeddings, seed)
    _device.attach(engine, model.device)
    full = (log.offsets, log.items, log.timestamps, log.new_session)
    arrays = split[0] if split else full
    w, pop = weights_and_popularity(model, arrays, log.n_items, train_users)
    auto = model.transition_weight == "auto"
    table = (transition_table(arrays, train_users, pop)
             if auto or model.transition_weight > 0 else None)
    fallback, resumed = auto_fallback(table), resumes_visits(arrays)
    apply_table(engine, table, fallback if auto else model.transition_weight)
    # "auto" without validation: the held-out sessions, the most recent ones, join the second
    # half of the epochs once the weight has been chosen on them. Negatives are drawn by the
    # popularity of every event from the start: an item seen only in a held-out session must
    # not have a zero sampling probability (its logQ correction) when it becomes a target.
    choosing = auto or _auto_start(model)
    rejoin = choosing and split is not None and not validation
    # The share is chosen with the others where they are chosen, its first events no training
    # targets until then; else after training, holding nothing out (docs/engine.md; with
    # validation they are the held-out sessions, never trained on).
    first = None
    if model.session_start_neighbors == "auto":
        users = first_event_users(log, np.isin(np.arange(log.n_users), train_users),
                                  np.random.default_rng(model.random_state))
        if users is not None:
            first = lambda: validation_split(log, users)  # noqa: E731
            if rejoin:
                w = without_first_events(arrays, w, users, log.offsets)
    full_w, full_pop = (weights_and_popularity(model, full, log.n_items, train_users)
                        if rejoin else (w, pop))
    engine.start_training(full_pop, batch_size=model.batch_size, bptt=model.bptt,
                          n_sample=model.n_sample, sample_alpha=model.sample_alpha,
                          loss=model.loss, logq=model.logq, bpreg=model.bpreg,
                          optimizer=model.optimizer, learning_rate=model.learning_rate,
                          momentum=model.momentum, dropout=model.dropout, repeat=model.repeat,
                          repeat_negatives=model.repeat_negatives,
                          seed=seed,
                          num_threads=model.num_threads)
    progress = Progress(model.epochs, n_targets(arrays, train_users), enabled=model.show_progress)
    model.history_ = []
    model.transition_weight_scores_ = {}
    model.session_start_scores_ = {}
    model.session_start_neighbors_scores_ = {}
    model.__dict__.pop("best_epoch_", None)  # (a previous fit's)
    run = _Run()

    def rejoin_epoch() -> tuple:
        run.weight, run.start, run.beta = choose_on_split(model, engine, split, metric, fallback, resumed, table,
                                                          first)
        progress.total = max(n_targets(full, train_users), 1)
        return full, full_w

    try:
        _epochs(model, engine, arrays, w, train_users, callbacks, split if validation else None,
                patience, metric, progress, run, rejoin_epoch if rejoin else None)
    except KeyboardInterrupt:  # Ctrl-C while Python code ran between two native epochs
        run.interrupted = True
    finally:  # any other error propagates (fit puts the model back as it was)
        progress.close()
        engine.end_training()
    if run.best_weights is not None:
        for name, value in run.best_weights.items():
            engine.set_param(name, value)
        model.best_epoch_ = run.best_epoch
    # Not trained on the held-out sessions: choose on them now, unless the user is waiting for
    # an interrupted fit (the pass takes seconds on large logs).
    if choosing and split is not None and run.weight is None and not run.interrupted:
        run.weight, run.start, run.beta = choose_on_split(model, engine, split, metric, fallback, resumed, table,
                                                          first)
    if rejoin:  # the prior and the cold users' popularity count every event
        pop = full_pop
        table = transition_table(full, train_users, pop) if table is not None else None
    chosen = run.weight is not None
    if not chosen:
        run.weight = fallback if auto else model.transition_weight
        run.start = start_fallback(model.session_start_mix, model.session_start_sources, resumed)
    model.transition_weight_ = float(run.weight)
    model.session_start_mix_ = engine.session_start_mix = float(run.start[0])
    model.session_start_sources_ = engine.session_start_sources = bool(run.start[1])
    apply_table(engine, table, model.transition_weight_)
    if run.beta is None:  # not chosen with the others
        run.beta = model.session_start_neighbors
        if run.beta == "auto":
            ready = first is not None and not run.interrupted
            run.beta = choose_share(model, engine, first, run.start) if ready else 0.0
    model.session_start_neighbors_ = float(run.beta)
    if run.beta > 0:
        engine.set_neighbors(neighbor_index(full, log.n_items), NEIGHBORS_K, NEIGHBORS_SAMPLE, run.beta)
    else:
        engine.clear_neighbors()
    engine.compute_states(*full, num_threads=model.num_threads)
    if log.last_sessions is not None:
        engine.set_last_sessions(log.last_sessions)
    model._set_catalogue(engine, log, pop)
    model._fit_interrupted = run.interrupted  # (see raise_if_interrupted; hrnn train exits 130)
    if run.interrupted:
        kept = []
        if split is not None and not chosen:
            kept += [f"the transition weight {run.weight:g}"] if auto else []
            kept += ([f"the session-start mix {run.start[0]:g} (sources {'kept' if run.start[1] else 'dropped'})"]
                     if _auto_start(model) else [])
        if model.session_start_neighbors == "auto" and not model.session_start_neighbors_scores_:
            kept.append("no neighbours' share in session starts")
        unchosen = f" and {' and '.join(kept)} (not chosen on held-out sessions)" if kept else ""
        warn_caller(f"training interrupted by the user during epoch {len(model.history_)}; "
                    f"the model holds the parameters of the last completed mini-batch{unchosen}", RuntimeWarning)


def _epochs(model, engine, arrays, w, train_users, callbacks, split, patience, metric,
            progress, run: _Run, rejoin: Optional[Callable] = None) -> None:
    for epoch in range(model.epochs):
        if rejoin is not None and epoch == model.epochs // 2:
            arrays, w = rejoin()
        t0 = time.perf_counter()
        stats = engine.train_epoch(*arrays, w, train_users, progress.update)
        stats["seconds"] = time.perf_counter() - t0
        stats["events_per_second"] = stats["events"] / max(stats["seconds"], 1e-9)
        if split:
            stats.update(validation_scores(engine, split, model.num_threads))
        model.history_.append(stats)
        progress.end_epoch(stats)
        if stats["keyboard_interrupt"]:
            run.interrupted = True
            return
        if split and stats["val_" + metric] > run.best:
            run.best, run.best_epoch = stats["val_" + metric], epoch
            if patience is not None:
                run.best_weights = {n: engine.get_param(n) for n in engine.param_names()}
        if any(stops(cb(model, epoch, stats), cb) for cb in callbacks):
            return
        if patience is not None and epoch - run.best_epoch >= patience:
            return
