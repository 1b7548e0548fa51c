"""HRNN: the gated hierarchical recurrent recommender."""
from __future__ import annotations

import threading
from collections import Counter
from typing import Callable, Iterable, Optional

import numpy as np

from . import _device, _params, _training
from . import data as _data
from ._ids import (_ONE_ID, _ONE_TIMESTAMP, MAX_TIMESTAMP, IdIndex, _as_list, _check_flag, _check_id, _check_lookup,
                   _events, _ids_of, _lookup, _lookup_all, _query, _session_flags)
from .base import Recommender

BATCH_CHUNK = 8192  # users per native call of recommend_batch


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


class HRNN(Recommender):
    """Hierarchical recurrent recommender with a learned, time-aware discount gate.

    A session-level GRU reads each user's events in time order; its state is blended with a
    proposal from the user-level state by a gate that depends on the item and on the time since
    the previous event; a user-level GRU absorbs each finished session (docs/engine.md).

    Parameters
    ----------
    hidden_dimension : int, default 43
        Size of every state and embedding, in [32, 256] (Personalize's range).
    bptt : int, default 32
        Steps of truncated back-propagation through time, in [1, 32].
    recency_mask : bool, default False
        Weigh each event's loss, and the popularity used for negatives and cold users, by how
        recent it is (halving every ``recency_half_life`` seconds before the log's end, floored
        at 1e-3 of the newest event's weight, then normalised to mean 1). Off by
        default (Personalize's recipe has it on): it teaches the model the *recent* popularity,
        which misleads it about users whose activity lies further back (README, "Model").
    min_user_history_length_percentile, max_user_history_length_percentile : float
        Users whose history length falls outside these percentiles of the length distribution
        (defaults 0.0 and 0.99) are left out of training; they still get states, and items only
        they consumed stay in the catalogue (recommendable through the transition prior).
    event_type : str or list of str, optional
        Train only on events of this EVENT_TYPE.
    event_value_threshold : float, optional
        Train only on events with EVENT_VALUE >= this.
    epochs : int
        Passes over the training events.
    batch_size : int
        Parallel user lanes per mini-batch.
    learning_rate : float
        Step size of the optimizer.
    optimizer : {"adagrad", "adam"}
        Adagrad (with optional ``momentum``) or Adam; both update only the item rows a
        mini-batch touched.
    momentum : float
        Adagrad momentum, in [0, 0.999].
    n_sample : int
        Negative items drawn per step, shared by the mini-batch, in addition to the other lanes'
        targets.
    sample_alpha : float
        Negatives are drawn with probability proportional to popularity ** sample_alpha.
    loss : {"softmax", "bpr-max"}
        Sampled softmax cross-entropy (with logQ correction when ``logq``) or GRU4Rec's BPR-max.
    bpreg : float
        Score regularisation of BPR-max.
    logq : bool
        Subtract the log sampling probability from the sampled logits (softmax only).
    dropout : float
        Dropout on the hidden state before scoring, in [0, 0.9].
    tie_embeddings : bool
        Use the input item embedding as the output item vectors.
    repeat : bool
        Learn a repeat score: the user's last 200 items get a boost learned from how many events
        and how much time ago they were seen (docs/engine.md, "Repeat score").
    repeat_negatives : bool
        In training, the user's other recent items are extra candidates with their repeat score,
        so the model also learns how often recent items do *not* come back (helps where
        re-consumption is rare, e.g. ratings).
    transition_weight : float or "auto", default "auto"
        Weight of the transition prior, in [0, 10]: at query time every item's score gets
        ``transition_weight * log P(item | the user's recent items)``: a smoothed item-to-item
        transition probability out of the last 10 items, mixed with the chance of consuming one of
        the last 200 again, both counted on the training events (docs/engine.md, "Transition
        prior"); on a log where nobody consumed an item twice, the items a user has had are not
        new either and the prior all but rules them out. 0 turns it off. Training does not
        depend on it. "auto" chooses it among 0, 0.25, 0.5, 1, 2, 4 and 8 by the validation
        ``metric`` of ``fit`` on users' last sessions (users with 2+ sessions), scored before the
        model has trained on them, keeping 0.5 (1 on a log without repeats) unless another weight
        is better by two standard errors on it, or on the other next-item metric without being
        clearly worse on it (near-best weights go by the other metric): with
        ``fit(validation=True)`` on the held-out sessions after the last epoch; otherwise the last
        sessions of random users (2% of the events, at least 2,000 and at most 20,000) are held
        out of the first half of the epochs and the choice is made there (``epochs=1`` and logs
        without such users get the fallback). The choice is ``transition_weight_`` (docs/engine.md).
    session_start_mix, session_start_sources : float / bool or "auto", default "auto"
        How a query flagged ``new_session=True`` (the next event starts a new session) is scored:
        from ``(1 - mix) h + mix s'`` (mix in [0, 1]; s' the session state the user-level GRU
        proposes once it has absorbed the session h ends), with a transition prior that keeps the
        user's last items as sources or has none (popularity alone). "auto" chooses among the
        mixes 0, 0.25, ..., 1 and both source settings by the first events of the held-out
        sessions ``transition_weight`` is chosen on (held out if any of the three is "auto") by
        Recall@20 (MRR@20 only among near-best ones), keeping without clear evidence mix 0.25 with
        sources where the median gap between a user's sessions is under a day (a resumed visit),
        else 0.5 without (docs/engine.md, "Session-start queries").
    session_start_neighbors : float or "auto", default "auto"
        Share beta in [0, 0.99] of ``baselines.SessionKNN``'s votes (for the user's last session)
        in ``new_session=True`` answers: ``(1 - beta) p + beta votes``, p the softmax over the
        network's best 200. "auto": 0, 0.25, 0.5, 0.75 or 0.9 by the first events of up to 10,000
        multi-session users' last sessions (held out with validation); 0 without clear evidence.
    session_gap : float
        1..1e9 seconds of inactivity that end a session (a change of SESSION_ID ends one too).
    recency_half_life : float, optional
        Half-life in seconds of the recency weights; None = a quarter of the log's time span.
    num_threads : int
        Threads for training and batch inference; 0 = all cores.
    random_state : int, optional
        Seed; with ``num_threads=1`` two fits give bit-identical models.
    device : {"cpu", "cuda"}
        Where to train and score (``recommend_batch``); "cuda" needs hrnn built with CUDA and a
        visible device (ValueError naming which is missing). Model files are the same for both;
        see also :meth:`to`.
    show_progress : bool
        Show a progress line (events/s, loss) while training.

    Attributes
    ----------
    transition_weight_ : float
        The prior's weight the fitted model uses (``transition_weight`` itself unless "auto").
    transition_weight_scores_ : dict
        With "auto": each weight tried -> its validation score (empty when none was tried).
    session_start_mix_, session_start_sources_ : float, bool
        How the fitted model answers ``new_session=True``.
    session_start_scores_ : dict
        With "auto": each (mix, sources) tried -> its validation first-event Recall@20 (empty when
        none was tried).
    session_start_neighbors_, session_start_neighbors_scores_ : float, dict
        The votes' share in use; with "auto", each share tried -> its first-event Recall@20.
    history_ : list of dict
        One entry per epoch: loss, events, seconds, and the validation scores with
        ``fit(validation=True)`` (with ``transition_weight="auto"`` scored at the fallback
        weight, 0.5 or 1: the weight is chosen after the last epoch).
    best_epoch_ : int
        With ``early_stopping_rounds``: the (0-based) epoch whose parameters the model keeps.
    """

    def __init__(self, hidden_dimension: int = 43, bptt: int = 32, recency_mask: bool = False,
                 min_user_history_length_percentile: float = 0.0,
                 max_user_history_length_percentile: float = 0.99,
                 event_type=None, event_value_threshold: Optional[float] = None,
                 epochs: int = 10, batch_size: int = 16, learning_rate: float = 0.1,
                 optimizer: str = "adagrad", momentum: float = 0.0, n_sample: int = 512,
                 sample_alpha: float = 0.5, loss: str = "softmax", bpreg: float = 1.0,
                 logq: bool = True, dropout: float = 0.2, tie_embeddings: bool = True,
                 repeat: bool = True, repeat_negatives: bool = True, transition_weight="auto",
                 session_start_mix="auto", session_start_sources="auto", session_start_neighbors="auto",
                 session_gap: float = 1800.0, recency_half_life: Optional[float] = None,
                 num_threads: int = 0, random_state: Optional[int] = None, device: str = "cpu",
                 show_progress: bool = True):
        self.hidden_dimension = hidden_dimension
        self.bptt = bptt
        self.recency_mask = recency_mask
        self.min_user_history_length_percentile = min_user_history_length_percentile
        self.max_user_history_length_percentile = max_user_history_length_percentile
        self.event_type = event_type
        self.event_value_threshold = event_value_threshold
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.momentum = momentum
        self.n_sample = n_sample
        self.sample_alpha = sample_alpha
        self.loss = loss
        self.bpreg = bpreg
        self.logq = logq
        self.dropout = dropout
        self.tie_embeddings = tie_embeddings
        self.repeat = repeat
        self.repeat_negatives = repeat_negatives
        self.transition_weight = transition_weight
        self.session_start_mix = session_start_mix
        self.session_start_sources = session_start_sources
        self.session_start_neighbors = session_start_neighbors
        self.session_gap = session_gap
        self.recency_half_life = recency_half_life
        self.num_threads = num_threads
        self.random_state = random_state
        self.device = device
        self.show_progress = show_progress
        self._validate_params()
        self._engine = None

    def _validate_params(self) -> None:
        for name in _params.SPECS:
            setattr(self, name, _params.check(name, getattr(self, name)))
        _data.check_percentiles(self.min_user_history_length_percentile,
                                self.max_user_history_length_percentile)
        et = self.event_type
        if et is not None and not isinstance(et, str) and not (
                isinstance(et, (list, tuple)) and et and all(isinstance(e, str) for e in et)):
            raise TypeError(f"event_type must be a string or a list of strings, got {et!r}")
        self.event_type = list(et) if isinstance(et, (list, tuple)) else et  # a copy, as a file holds it
        _device.require(self.device)

    def set_params(self, **params) -> "HRNN":
        """Set hyperparameters by name (validated; nothing changes if one is invalid).

        On a fitted model ``session_gap``, ``device``, ``event_type`` and
        ``event_value_threshold`` take effect at once (the latter two in ``put_events``), as they
        would in a saved and reloaded copy; the others shape the next ``fit``.
        """
        super().set_params(**params)
        if self._engine is not None:
            self._engine.session_gap = float(self.session_gap)
            if self._engine.device != self.device:
                _device.attach(self._engine, self.device)
        return self

    # ------------------------------------------------------------------------------- training

    def fit(self, data, columns: Optional[dict] = None, validation: bool = False,
            early_stopping_rounds: Optional[int] = None, metric: str = "recall@20",
            callbacks: Iterable[Callable] = (), check_minimums: bool = True) -> "HRNN":
        """Train on an interactions table.

        Parameters
        ----------
        data : DataFrame, path, dict or tuple of arrays
            Anything :func:`hrnn.read_interactions` accepts: USER_ID, ITEM_ID, TIMESTAMP and
            optionally EVENT_TYPE, EVENT_VALUE, SESSION_ID.
        columns : dict, optional
            Canonical column name -> the data's column name, e.g. ``{"USER_ID": "session_id"}``.
        validation : bool
            Hold out each training user's last session (users with 2+ sessions) and, after every
            epoch, predict its events one by one (next-item Recall@20 and MRR@20 against all
            items, recorded in ``history_``). The held-out sessions are not trained on, but they
            are part of the users' states after ``fit``.
        early_stopping_rounds : int, optional
            With ``validation``: stop when ``metric`` has not improved for this many epochs, and
            keep the parameters of the best epoch.
        metric : {"recall@20", "mrr@20"}
            The validation metric that early stopping watches and ``transition_weight="auto"``
            chooses by.
        callbacks : iterable of callables
            Each is called after every epoch as ``cb(model, epoch, stats)`` (stats: a dict with
            ``loss``, ``events``, ``seconds``); returning True stops training, None or False
            goes on (anything else is a TypeError). ``model`` is this estimator: query or save it
            once ``fit`` returns (a first fit refuses; a refit still answers as the previous fit,
            with this fit's records so far).
        check_minimums : bool
            Enforce Personalize's minimums (1,000 interactions, 25 users with 2+ of them).

        Returns
        -------
        HRNN
            self, trained; every user with events left after the event filters has a state. A
            refit starts over from ``data``: users created by ``put_events`` and the counts of
            ``unknown_item_events_`` are not carried over.
        """
        callbacks = _params.check_fit_flags(validation, check_minimums, callbacks)
        log, train_users = _training.training_log(self, data, columns, check_minimums)
        if metric not in ("recall@20", "mrr@20"):
            raise ValueError(f"metric must be 'recall@20' or 'mrr@20', got {metric!r}")
        if early_stopping_rounds is not None:
            if not validation:
                raise ValueError("early_stopping_rounds needs validation=True")
            _params.check_positive_int("early_stopping_rounds", early_stopping_rounds)
        split = _training.held_out_split(self, log, train_users, validation)
        before = dict(self.__dict__)  # a failed refit leaves the fitted model and its records in use
        self._fitting = True
        try:
            _training.train(self, log, np.flatnonzero(train_users), callbacks, split, validation,
                            early_stopping_rounds, metric)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        finally:
            self._fitting = False
        return self

    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
        return int(self.random_state)

    def _set_catalogue(self, engine, log: "_data.EventLog", popularity: np.ndarray) -> None:
        self._log = log
        self._attach(engine, log.user_ids, log.item_ids, popularity)

    def _attach(self, engine, user_ids: np.ndarray, item_ids: np.ndarray,
                popularity: np.ndarray, unknown_items=None) -> None:
        """Make ``engine`` this model's, with its id maps (used by fit and by load)."""
        self._session_digits = True  # session ids' text of an integer hashes as it (load may say not)
        if engine.device != self.device:
            _device.attach(engine, self.device)
        self._engine = engine
        engine.session_gap = float(self.session_gap)
        # Read-only views: a write into one (e.g. known_user_ids()[0] = ...) would give a user's
        # state to another id in the next model file.
        self.user_ids_, self.item_ids_, self.popularity_ = (_read_only(a) for a in (user_ids, item_ids, popularity))
        total = popularity.sum()
        engine.set_fallback_scores((popularity / total if total > 0 else popularity)
                                   .astype(np.float32))
        if self.device == "cpu":  # the scoring table now, not in the first query's time
            engine.prepare_queries(self.num_threads)
        self._user_index = IdIndex(user_ids)
        self._new_users = []  # users that put_events created, after the stored ones
        self._item_lookup = None
        self._lock = threading.RLock()
        self._unknown_items = Counter(unknown_items or {})

    def to(self, device: str) -> "HRNN":
        """Train and score on ``device`` from now on.

        A fitted model moves its batch scoring there at once; its parameters and user states stay
        on the host either way, so model files do not depend on the device.

        Parameters
        ----------
        device : {"cpu", "cuda"}

        Returns
        -------
        HRNN
            self.

        Raises
        ------
        ValueError
            CUDA is not available here (the message says why: no CUDA build, no device).
        """
        _params.check("device", device)
        _device.require(device)
        if self._engine is not None:
            _device.attach(self._engine, device)
        self.device = device
        return self

    # ---------------------------------------------------------------------------- inspection

    def _check_fitted(self) -> None:
        if self._engine is None:
            if getattr(self, "_fitting", False):  # (a callback asking the model under training)
                raise RuntimeError("this HRNN is being fitted: it answers once fit() returns")
            raise RuntimeError("this HRNN is not fitted yet: call fit() first")

    def get_weights(self) -> dict:
        """A copy of every parameter block (names as in docs/engine.md) as float32 arrays."""
        self._check_fitted()
        return {n: self._engine.get_param(n) for n in self._engine.param_names()}

    @property
    def n_items(self) -> int:
        """Number of items the model can recommend (as the baselines' ``n_items``)."""
        self._check_fitted()
        return len(self.item_ids_)

    def user_state(self, user_id) -> tuple:
        """A known user's states after its last event.

        Parameters
        ----------
        user_id
            A user trained on or given to ``put_events``.

        Returns
        -------
        (u, h) : float32 arrays [hidden_dimension]
            Copies of the user-level and the session state.

        Raises
        ------
        KeyError
            For any other user id.
        """
        self._check_fitted()
        _check_lookup(user_id, "user_id")
        user = _lookup(user_id, self._user_index, "user_id")
        if user < 0:
            raise KeyError(f"unknown user id {user_id!r}")
        u, h, _, _ = self._engine.user_state(user)
        return u, h

    # ------------------------------------------------------------------------------ queries

    def _item_index(self) -> dict:
        if self._item_lookup is None:
            self._item_lookup = IdIndex(self.item_ids_)
        return self._item_lookup

    def recommend(self, user_id, num_results: int = 25, exclude_interacted: bool = False,
                  exclude_items=None, include_items=None, new_session: bool = False) -> tuple:
        """The items this user is most likely to interact with next.

        Parameters
        ----------
        user_id : str or int
            A user id as in the training data or in ``put_events``. An unknown user gets the
            (recency-weighted) most popular items; an id that is not a string or an integer
            (True, 2.0, None, NaN) raises TypeError / ValueError.
        num_results : int, default 25
            How many items, 1..500 (Personalize's limit).
        exclude_interacted : bool
            Leave out the items this user has interacted with: in the events the model learned
            from (those ``event_type`` / ``event_value_threshold`` kept) and in ``put_events``.
            Pass the items of filtered-out events as ``exclude_items`` to leave them out too.
        exclude_items, include_items : iterable of item ids, optional
            Never return these / return only these; unknown ids are ignored (an integer array is read at once).
        new_session : bool
            The user's session has ended (e.g. more than ``session_gap`` seconds have passed
            since its last event): answer for the first event of a new session, as
            ``session_start_mix`` and ``session_start_neighbors`` say; False answers for the next
            event of the session in progress. Either way the user's state does not change.

        Returns
        -------
        (item_ids, scores) : (ndarray, float32 ndarray)
            Best first; fewer than ``num_results`` when the catalogue (or ``include_items``) is
            smaller. A known user's scores are the model's log-scale scores; an unknown user's
            are the items' popularity shares (in [0, 1]): compare scores within one answer only.
        """
        self._check_fitted()
        q = _query(num_results, exclude_interacted, exclude_items, include_items, self._item_index())
        _check_lookup(user_id, "user_id")
        user = _lookup(user_id, self._user_index, "user_id")
        items, scores = self._engine.recommend(user, q.pop("k"), exclude_interacted,
                                               num_threads=self.num_threads,
                                               new_session=_check_flag(new_session), **q)
        return self.item_ids_[items], scores

    def recommend_batch(self, user_ids, num_results: int = 25, exclude_interacted: bool = False,
                        exclude_items=None, include_items=None, new_session=False) -> tuple:
        """``recommend`` for many users at once, in C++ on ``num_threads`` threads.

        ``new_session``: one flag for every user or one per user; the rest as in ``recommend``.

        Returns
        -------
        (item_ids, scores) : 2-D arrays [n_users, k], k = min(num_results, catalogue size)
            Row r answers ``user_ids[r]``; a row with fewer candidates is padded with None / -inf.
            Unknown users' rows are scored by popularity share, the others by the model
            (``recommend``): compare scores within a row.
        """
        self._check_fitted()
        q = _query(num_results, exclude_interacted, exclude_items, include_items, self._item_index())
        ids = _as_list(user_ids, "user_ids")
        for u in ids:
            _check_lookup(u, "user_id")
        users = _lookup_all(ids, self._user_index, "user_id")
        starts = _session_flags(new_session, len(users))

        def call(a, b):
            return self._engine.recommend_batch(users[a:b], exclude_interacted=exclude_interacted,
                                                num_threads=self.num_threads, new_session=starts[a:b], **q)

        if len(users) <= BATCH_CHUNK:
            items, scores = call(0, len(users))
        else:  # in chunks, so that Ctrl-C stops a batch of millions between two of them
            items = np.empty((len(users), q["k"]), dtype=np.int32)
            scores = np.empty((len(users), q["k"]), dtype=np.float32)
            for a in range(0, len(users), BATCH_CHUNK):
                items[a:a + BATCH_CHUNK], scores[a:a + BATCH_CHUNK] = call(a, a + BATCH_CHUNK)
        return _ids_of(self.item_ids_, items), scores

    def put_events(self, user_id, item_ids, timestamps, session_id=None, event_type=None,
                   event_value=None) -> None:
        """Record a user's new events and advance its state, without retraining.

        The same C++ step as training moves the user's session and user state; a new session
        starts when the gap to the previous event exceeds ``session_gap`` or, when session ids
        are given, when the session id changes. A new user id is created on the fly, starting
        from the learned initial state. An item the model has never seen enters the step as a
        zero input vector: it still advances the clock and the session logic, and its id is
        counted in ``unknown_item_events_`` (retrain to learn it).

        Parameters
        ----------
        user_id
            The user's id.
        item_ids : item id or sequence of them
        timestamps : number or sequence of numbers (unix seconds), same length, in time order and
            not older than the user's last event; otherwise ValueError and nothing changes.
        session_id : optional
            One session id for all these events, or one per event. A user's first event with a
            session id continues the session of its last training event when that had the same
            SESSION_ID and the gap is within ``session_gap``; without a SESSION_ID column in
            training, the gap alone decides that one. The text of an integer is that integer
            ("1001" continues the session 1001: Personalize sends session ids as text).
        event_type : str or sequence of str, optional
            One event type for all these events, or one per event, compared as text as in ``fit``
            (2 is "2"; None in a list is no type). A model fitted with ``event_type`` records
            only the events of those types (the others change nothing); without this argument
            (None, the default) every event is recorded.
        event_value : number or sequence of numbers, optional
            As ``event_type``, for ``event_value_threshold``: events below it (or NaN / None in a
            list) are not recorded.
        """
        self._check_fitted()
        if (session_id is None and event_type is None and event_value is None
                and isinstance(item_ids, _ONE_ID) and type(item_ids) is not bool
                and isinstance(timestamps, _ONE_TIMESTAMP) and type(timestamps) is not bool
                and 0 <= timestamps <= MAX_TIMESTAMP):
            # one event as plain scalars, the usual real-time call: the checks below, without arrays
            item = item_ids.item() if isinstance(item_ids, np.generic) else item_ids
            idx = _lookup(item, self._item_index(), "item_ids")
            if idx < 0:  # the types were checked above; a new id must also fit a model file
                _check_id(item, "item_ids")
            user = self._user_for_events(user_id)
            if idx >= 0:  # (the hot path: no closure)
                self._engine.put_event(user, idx, float(timestamps))
            else:
                self._record(lambda: self._engine.put_event(user, idx, float(timestamps)), [item])
            return
        # Checked before a new user is created for these events.
        items, idx, unknown, ts, sessions = _events(
            item_ids, timestamps, session_id, self._item_index(), event_type, event_value,
            (self.event_type, self.event_value_threshold), self._session_digits)
        if not items:  # nothing to record: no user is created either
            _check_lookup(user_id, "user_id")
            return
        user = self._user_for_events(user_id)
        self._record(lambda: self._engine.put_events(user, idx, ts, sessions), unknown)

    def _record(self, put: Callable, unknown) -> None:
        """``put()`` events into the engine; with items the model does not know, under the lock
        with their counts, so that a save sees both or neither."""
        if not unknown:
            put()
            return
        with self._lock:
            put()
            self._unknown_items.update(unknown)

    @property
    def unknown_item_events_(self) -> Counter:
        """Events per item id the model does not know, given to ``put_events`` since ``fit``
        (kept in model files): a copy, safe to read while other threads put events; the counts
        start over with the next ``fit``. Only a fitted model has it (AttributeError before)."""
        if self._engine is None:  # as any fitted attribute: hasattr() is False before fit
            raise AttributeError("unknown_item_events_: this HRNN is not fitted yet")
        with self._lock:
            return Counter(self._unknown_items)

    def _user_for_events(self, user_id) -> int:
        """The user's index, creating the user (from the learned initial state) when new."""
        _check_lookup(user_id, "user_id")
        user = self._user_index.get(user_id)  # users are only ever added: no lock to find one
        if user is not None:
            return user
        with self._lock:  # (retyped under the lock too: "7" and 7 at once must not make two users)
            user = _lookup(user_id, self._user_index, "user_id")
            if user < 0:
                _check_id(user_id, "user_id")
                user = len(self._new_users) + len(self.user_ids_)
                self._engine.ensure_users(user + 1)
                self._user_index[user_id] = user
                self._new_users.append(user_id)
        return user

    @property
    def known_user_ids(self) -> np.ndarray:
        """Every user id with a state: the training users, then those created by put_events
        (read-only, as ``user_ids_``, ``item_ids_`` and ``popularity_``)."""
        self._check_fitted()
        with self._lock:
            extra = list(self._new_users)
        if not extra:
            return self.user_ids_
        return np.concatenate([self.user_ids_.astype(object), np.array(extra, dtype=object)])

    # --------------------------------------------------------------------------- model files

    def save(self, path) -> None:
        """Write the model to one file, atomically (:func:`hrnn.load` reads it back).

        The file holds the parameters, the id maps, every user's state and history (users
        created by ``put_events`` included), the transition prior and ``fit``'s records.

        Parameters
        ----------
        path : str or path-like
            The file to write; its folder must exist. An existing file is replaced only once the
            new one is complete.

        Raises
        ------
        OSError
            FileNotFoundError for a missing folder, IsADirectoryError for a folder's path, or what
            writing the file met; the old file, if any, is left as it was.
        """
        self._check_fitted()
        from . import model_file
        model_file.save(self, path)
