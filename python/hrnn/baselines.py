"""Baselines with HRNN's fit / recommend / recommend_batch / put_events interface, for honest
comparison (no model files: they fit in seconds).

``Popularity``, ``Markov``, ``RepeatRule`` and ``SessionKNN`` learn from an interactions table
with ``fit``, keep every user's history (dense item indices) and extend it with ``put_events``,
and answer ``recommend`` / ``recommend_batch`` with the user's own item ids, best first. Each model
scores a chunk of users as sparse evidence (gathered from CSR arrays with numpy) plus a weighted
popularity back-off; the top k is taken over the evidence and the head of the popularity ranking,
or over a dense block when the catalogue is small. No Python loop runs over events; a few run over
the users of a batch.

Scores are each model's own: Popularity's (weighted) counts; Markov's transition count plus a
popularity back-off in [0, 1); SessionKNN's neighbour votes mapped to (1, 2] (plus a tie-breaking
1e-6 share of popularity) with popularity-only items below 1; RepeatRule's mixture probability.
Equal scores go to the more popular item.
"""
from __future__ import annotations

import numpy as np

from ._baseline_base import Baseline, check_exclude_seen, check_range, lift
from ._params import check_gap
from ._baseline_history import coalesce, csr_gather
from ._neighbors import neighbor_index
from ._transitions import repeat_curve, top_successors, transition_counts
from .data import popularity, recency_weights

__all__ = ["Popularity", "Markov", "RepeatRule", "SessionKNN"]


class Popularity(Baseline):
    """The most popular items, the same list for everyone (minus exclusions).

    Parameters
    ----------
    recency_half_life : float, optional
        In seconds (>= 1); each event counts ``2 ** -(age / half_life)`` with age measured from
        the newest event, at least 1e-3 (``hrnn.data.recency_weights``: events older than ten
        half-lives all count the same). None counts every event once.
    exclude_seen : bool or "auto"
        Leave the items a user has consumed out of every answer. "auto" (the default) does so
        when fewer than 1% of the training events consume an item their user had consumed before
        (ratings logs like MovieLens: nobody rates a film twice), and not on logs where users come
        back to items (clicks, plays); ``exclude_seen_`` holds the fitted choice.
    """

    def __init__(self, recency_half_life=None, exclude_seen="auto"):
        self.recency_half_life = recency_half_life
        self.exclude_seen = exclude_seen
        super().__init__()

    def _validate_params(self):
        check_exclude_seen(self.exclude_seen)
        if self.recency_half_life is not None:  # (as HRNN's: 0 would silently mean unweighted)
            check_range("recency_half_life", self.recency_half_life, 1.0, 1e12)

    def _fit_model(self, log, df):
        w = recency_weights(log.timestamps, self.recency_half_life)
        # The score is the (weighted) count itself: there is nothing to back off from.
        self._pop = self._backoff = popularity(log.items, log.n_items, w)


class Markov(Baseline):
    """First-order transitions: items that followed the user's last item, by count.

    Parameters
    ----------
    session_gap : float or None
        Seconds; consecutive events further apart than this (or with different SESSION_IDs) are in
        different sessions and their transition is not counted. None counts every consecutive pair
        of a user's events.
    exclude_seen : bool or "auto"
        Leave the items a user has consumed out of every answer. "auto" (the default) does so
        when fewer than 1% of the training events consume an item their user had consumed before
        (ratings logs like MovieLens: nobody rates a film twice), and not on logs where users come
        back to items (clicks, plays); ``exclude_seen_`` holds the fitted choice.

    Popularity fills the slots that the transitions leave, and the whole list of a user whose last
    item is unknown or without successors.
    """

    def __init__(self, session_gap=1800.0, exclude_seen="auto"):
        self.session_gap = session_gap
        self.exclude_seen = exclude_seen
        super().__init__()

    def _validate_params(self):
        check_gap("session_gap", self.session_gap)
        check_exclude_seen(self.exclude_seen)

    def _fit_model(self, log, df):
        self._indptr, self._succ, self._count = transition_counts(log.items, log.new_session, log.n_items)

    def _evidence(self, users):
        # Score = count(last -> i) + back-off in [0, 1): counts rank first, popularity breaks
        # their ties and fills the rest.
        last = self._hist.tails(users, 1)[:, 0]
        rows = np.flatnonzero(last >= 0)
        owner, flat = csr_gather(self._indptr, last[rows])
        return rows[owner], self._succ[flat], self._count[flat], np.ones(len(users))


class RepeatRule(Baseline):
    """Repeat-aware sequential rule: a mixture of "consume again" and "try something new".

    ``score(i) = P(i | repeat) + w * (1 - r) * P(i | new)``, where

    - ``P(i | repeat) = sum of q[p]`` over the positions p (0 = the latest event) of item i among
      the user's last ``history_length`` events, and ``r`` is its total over all items (at most
      0.95). ``q[p]``, the chance that the next item is the one p + 1 events back (given that
      this is the latest occurrence of that item), is measured on the training histories, so
      the rule learns e.g. that taobao users never view the same item twice in a row but often
      come back to it two to five events later, and that MovieLens users never repeat (r = 0);
    - ``P(i | new)`` covers only items the user has never interacted with: transitions out of
      the recent items (weighted ``transition_decay ** position``), each estimated as
      ``(count(i -> j) + smoothing * pop(j)) / (count(i -> .) + smoothing)``, so that one
      observed transition of a rare item is not taken for certain.

    Defaults were tuned on the next-item and personalize protocols of taobao, yoochoose and the
    MovieLens sets (``hrnn.evaluate``).

    Parameters
    ----------
    decay : float or None
        None learns ``q`` from the data (recommended); a number in [1e-9, 1] imposes the shape
        ``q[p] ~ decay ** p`` with the learned total. Used by ``fit``, as ``history_length``.
    transition_weight : float
        >= 0; ``w`` above: the weight of new items against repeats (1 = the plain mixture).
    transition_decay : float
        In [1e-9, 1]: position decay of the transition part.
    smoothing : float
        > 0: pseudo-counts that pull the transition estimates towards popularity.
    history_length : int
        1..1000 latest events considered for repeats.
    session_gap : float or None
        Transitions across a longer gap are not counted (None: all consecutive pairs count).
    """

    def __init__(self, decay=None, transition_weight=1.0, transition_decay=0.8, smoothing=30.0,
                 history_length=200, session_gap=None):
        self.decay = decay
        self.transition_weight = transition_weight
        self.transition_decay = transition_decay
        self.smoothing = smoothing
        self.history_length = history_length
        self.session_gap = session_gap
        super().__init__()

    def _validate_params(self):
        if self.decay is not None:
            check_range("decay", self.decay, 1e-9, 1.0)
        check_range("transition_weight", self.transition_weight, 0.0, 1e6)
        check_range("transition_decay", self.transition_decay, 1e-9, 1.0)
        check_range("smoothing", self.smoothing, 1e-9, 1e9)
        check_range("history_length", self.history_length, 1, 1000, integer=True)
        check_gap("session_gap", self.session_gap)

    def _fit_model(self, log, df):
        self._indptr, self._succ, self._count, self._out = top_successors(
            *transition_counts(log.items, log.new_session, log.n_items))
        self._curve = repeat_curve(log.offsets, log.items, log.n_items, self.history_length)
        if self.decay is not None:  # a fixed shape with the learned total
            shape = np.asarray(self.decay, np.float64) ** np.arange(self.history_length)
            self._curve = shape * self._curve.sum() / shape.sum()
        self._pop_total = float(self._pop.sum())

    def _evidence(self, users):
        b, n, L = len(users), self.n_items, len(self._curve)  # (the fitted history_length)
        tails = self._hist.tails(users, L)
        rr, pp = np.nonzero(tails >= 0)
        it = tails[rr, pp]
        # Repeat part: P(next == the item p events back), summed over an item's occurrences.
        rep = self._curve[pp]
        r = np.minimum(np.bincount(rr, weights=rep, minlength=b), 0.95)
        # Items the user has seen (whole history): no "new" probability for them.
        h_rows, h_items = self._hist.rows_items(users)
        s_rows, s_items, _ = coalesce(h_rows, h_items, np.zeros(len(h_rows)), n)
        # New-item part: per recent position, P(j | item) smoothed towards popularity with
        # `smoothing` pseudo-counts, so one observed transition of a rare item is not certain.
        # Positions whose weight fell under 1e-3 of the latest one are left out: they would
        # change nothing and cost a successor list each.
        near = pp < np.log(1e-3) / np.log(min(self.transition_decay, 1.0 - 1e-9))
        t_r, t_p, t_i = rr[near], pp[near], it[near]
        w_t = np.asarray(self.transition_decay, np.float64) ** t_p
        w_t /= np.bincount(t_r, weights=w_t, minlength=b)[t_r]
        denom = self._out[t_i] + self.smoothing
        pop_mass = np.bincount(t_r, weights=w_t * self.smoothing / denom, minlength=b)
        pop_mass[np.bincount(t_r, minlength=b) == 0] = 1.0
        owner, flat = csr_gather(self._indptr, t_i)
        t_rows, t_items = t_r[owner], self._succ[flat]
        t_val = w_t[owner] * self._count[flat] / denom[owner]
        fresh = ~np.isin(t_rows * n + t_items, s_rows * n + s_items)
        t_rows, t_items, t_val = t_rows[fresh], t_items[fresh], t_val[fresh]
        z_new = np.bincount(t_rows, weights=t_val, minlength=b) + pop_mass
        new = self.transition_weight * (1.0 - r) / z_new
        z_pop = np.maximum(self._pop_total - np.bincount(s_rows, weights=self._pop[s_items],
                                                         minlength=b), 1e-12)
        # The back-off term is scale * pop / (max pop + 1); seen items get it subtracted again.
        scale = new * pop_mass * (self._pop.max() + 1.0) / z_pop
        cancel = -scale[s_rows] * self._backoff[s_items]
        return (np.concatenate([rr, t_rows, s_rows]), np.concatenate([it, t_items, s_items]),
                np.concatenate([rep, new[t_rows] * t_val, cancel]), scale)


_MAX_SESSION = 1000  # SessionKNN reads at most the last 1000 events of the current session
_OVERLAP_CELLS = 1 << 22  # cells of SessionKNN's dense table of the current sessions (32 MB)


class SessionKNN(Baseline):
    """V-SKNN (Ludewig & Jannach 2018): items of the past sessions most similar to the current one.

    The current session is the user's last one (by the gap rule or SESSION_ID; at most its last
    1000 events), its items weighted by linear position decay (the i-th of n events weighs i / n; a repeated item keeps
    its latest weight). Candidate neighbours are recent training sessions sharing an item with it
    (each item contributes its ``max(1, sample_size // items in the session)`` most recent
    sessions, so a query touches about ``sample_size`` sessions). Similarity is
    ``sum of the shared items' weights / sqrt(|current| * |neighbour|)`` over distinct items; the
    ``k`` most similar neighbours vote for their items with their similarity. Popularity fills
    the remaining slots and answers users without a session.

    Parameters
    ----------
    k : int
        1..10000 neighbours.
    sample_size : int
        1..100000 candidate sessions per query (see above).
    session_gap : float or None
        Seconds of inactivity that end a session (a change of SESSION_ID ends one too).
    exclude_seen : bool or "auto"
        Leave the items a user has consumed out of every answer. "auto" (the default) does so
        when fewer than 1% of the training events consume an item their user had consumed before
        (ratings logs like MovieLens: nobody rates a film twice), and not on logs where users come
        back to items (clicks, plays); ``exclude_seen_`` holds the fitted choice.
    """

    def __init__(self, k=100, sample_size=500, session_gap=1800.0, exclude_seen="auto"):
        self.k = k
        self.sample_size = sample_size
        self.session_gap = session_gap
        self.exclude_seen = exclude_seen
        super().__init__()

    def _validate_params(self):
        check_range("k", self.k, 1, 10000, integer=True)
        check_range("sample_size", self.sample_size, 1, 100000, integer=True)
        check_gap("session_gap", self.session_gap)
        check_exclude_seen(self.exclude_seen)

    def _fit_model(self, log, df):
        ix = neighbor_index((log.offsets, log.items, log.timestamps, log.new_session), log.n_items)
        self._sess_ptr, self._sess_items = ix["session_offsets"], ix["session_items"]
        self._sess_len = np.diff(self._sess_ptr).astype(np.float64)
        self._item_ptr, self._item_sess, self._recency = ix["item_offsets"], ix["item_sessions"], ix["recency"]
        # A fitted user's current session is its last training session until a new one starts:
        # it must not be its own neighbour.
        self._own_session, self._n_fit_events = ix["own_session"], ix["fit_events"]

    def _evidence(self, users):
        b, n = len(users), self.n_items
        rows, items, pos, length = self._hist.sessions(users, max_len=_MAX_SESSION)
        ok = items >= 0
        rows, items, w = rows[ok], items[ok], pos[ok] / length[rows[ok]]
        # Distinct items of each current session, keeping the latest (largest) weight.
        order = np.lexsort((w, items, rows))
        key = rows[order] * n + items[order]
        last = np.ones(len(key), dtype=bool)
        last[:-1] = key[1:] != key[:-1]
        rows, items, w = rows[order][last], items[order][last], w[order][last]
        n_cur = np.bincount(rows, minlength=b)
        cap = np.maximum(1, self.sample_size // np.maximum(n_cur, 1))[rows]
        owner, flat = csr_gather(self._item_ptr, items, cap)
        c_rows, c_sess = rows[owner], self._item_sess[flat]
        own = self._own_sessions(users, length)
        keep = c_sess != own[c_rows]
        c_rows, c_sess, _ = coalesce(c_rows[keep], c_sess[keep], np.zeros(int(keep.sum())),
                                     len(self._sess_len))
        c_w = self._overlap(rows, items, w, c_rows, c_sess, b)
        sim = c_w / np.sqrt(n_cur[c_rows] * self._sess_len[c_sess])
        # The k most similar neighbours of each row (ties: the more recent session).
        order = np.lexsort((-self._recency[c_sess], -sim, c_rows))
        c_rows, c_sess, sim = c_rows[order], c_sess[order], sim[order]
        rank = np.arange(len(c_rows)) - np.searchsorted(c_rows, np.arange(b))[c_rows]
        top = rank < self.k
        owner, flat = csr_gather(self._sess_ptr, c_sess[top])
        v_rows, v_items, votes = coalesce(c_rows[top][owner], self._sess_items[flat],
                                          sim[top][owner], n)
        return (*lift(v_rows, v_items, votes, self._backoff, b), np.ones(b))

    def _overlap(self, rows, items, w, c_rows, c_sess, b):
        """Each candidate's sum of the weights of every item it shares with its row's session, not
        only of those whose lists reached it: its items looked up in a dense [rows, items] table
        of the current sessions' weights, a few rows at a time (at most _OVERLAP_CELLS cells).
        ``rows`` and ``c_rows`` are sorted."""
        n = self.n_items
        out = np.zeros(len(c_sess))
        step = max(1, _OVERLAP_CELLS // n)
        for r0 in range(0, b, step):
            r1 = min(b, r0 + step)
            a, e = np.searchsorted(rows, [r0, r1])
            ca, ce = np.searchsorted(c_rows, [r0, r1])
            if a == e or ca == ce:
                continue
            table = np.zeros((r1 - r0, n))
            table[rows[a:e] - r0, items[a:e]] = w[a:e]
            owner, flat = csr_gather(self._sess_ptr, c_sess[ca:ce])
            out[ca:ce] = np.bincount(owner, weights=table[c_rows[ca:ce][owner] - r0, self._sess_items[flat]],
                                     minlength=ce - ca)
        return out

    def _own_sessions(self, users, length):
        """Training session that each user's current session is, or -1."""
        own = np.full(len(users), -1, dtype=np.int64)
        fitted = (users >= 0) & (users < len(self._own_session))
        u = users[fitted]
        total = np.array([len(self._hist.items[x]) for x in u.tolist()], dtype=np.int64)
        same = total - length[fitted] < self._n_fit_events[u]
        own[np.flatnonzero(fitted)[same]] = self._own_session[u[same]]
        return own
