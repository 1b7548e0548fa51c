"""hrnn's model (docs/engine.md) in PyTorch, written as a careful PyTorch user would: what
``compare.py --train`` times hrnn's training against.

The same model, data and work per event as hrnn's trainer (cpp/src/trainer.cpp):

- B lanes, each walking one user's events, users taken in a seeded random order as lanes free up;
  windows of ``bptt`` steps; lane states carried from window to window without gradient;
- per step, ``n_sample`` negatives shared by all lanes, drawn with probability
  popularity ** sample_alpha, plus the other lanes' targets; sampled softmax with the logQ
  correction; per-event (recency) loss weights;
- the repeat score over each user's last 200 events: the target's own repeat term, and every other
  recent item as an extra candidate column of its lane;
- Adagrad as hrnn (lr 0.1, the repeat score's rV at a tenth of it), with sparse updates of the
  item rows a window touched (``F.embedding(..., sparse=True)``).

The windows are the dicts of docs/engine.md ("A training window"), so that one window can go both
to hrnn's own engine (``hrnn._core.window_loss_grad``) and to this model: ``check_same_math``
does that before anything is timed.
"""
from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hrnn import _training

REPEAT_WINDOW = 200                    # L: a user's recent events that can be repeated
N_POS = N_AGE = 8                      # repeat buckets by position and by age
AGE_EDGES_MINUTES = np.array([1, 5, 30, 180, 1440, 4320, 10080], dtype=np.float64)
# position bucket of "d events before": 0, 1, 2, 3, 4-7, 8-15, 16-31, 32+
POS_BUCKET = np.array([0, 1, 2, 3] + [4] * 4 + [5] * 8 + [6] * 16 + [7] * (REPEAT_WINDOW - 32),
                      dtype=np.uint8)
REPEAT_LR_SCALE = 0.1                  # hrnn's rV learns at a tenth of the learning rate


def age_bucket(seconds) -> np.ndarray:
    """The number of edges (in minutes) that the age reaches."""
    return np.searchsorted(AGE_EDGES_MINUTES, np.asarray(seconds, np.float64) / 60.0,
                           side="right").astype(np.uint8)


def segments(starts: np.ndarray, lengths: np.ndarray) -> tuple:
    """The elements of the ranges [starts[k], starts[k] + lengths[k]), in order: (k, index)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    first = np.cumsum(lengths) - lengths
    return owner, np.asarray(starts, dtype=np.int64)[owner] + (np.arange(owner.size) - first[owner])


def offsets_of(counts) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)


# ------------------------------------------------------------------------------ the data

@dataclass
class Events:
    """The training input exactly as hrnn's engine gets it (see hrnn._training.train)."""
    offsets: np.ndarray        # int64 [n_users + 1]
    items: np.ndarray          # int32 [n_events]
    timestamps: np.ndarray     # float64 [n_events]
    new_session: np.ndarray    # uint8 [n_events]
    weights: np.ndarray        # float32 [n_events] loss weight of each event as a target
    users: np.ndarray          # int64: the training users
    popularity: np.ndarray     # float64 [n_items]

    @classmethod
    def like_hrnn(cls, model, data) -> "Events":
        """What ``model.fit(data)`` trains on (same featurization, weights and popularity)."""
        log, train = _training.training_log(model, data)
        arrays = (log.offsets, log.items, log.timestamps, log.new_session)
        users = np.flatnonzero(train)
        weights, pop = _training.weights_and_popularity(model, arrays, log.n_items, users)
        if weights is None:
            weights = np.ones(len(log.items), dtype=np.float32)
        return cls(*arrays, weights, users, pop)

    @property
    def n_items(self) -> int:
        return len(self.popularity)

    @property
    def n_targets(self) -> int:
        return int(np.maximum(np.diff(self.offsets)[self.users] - 1, 0).sum())


class RecentLists:
    """For every training event p that has a target (docs/engine.md, "Repeat score"): the target's
    occurrences among the user's last L events up to p, and the other distinct items there, each
    with its occurrences, as (position, age) buckets. They depend on the data only: built once
    (vectorized), then every epoch gathers its windows' lists from them."""

    def __init__(self, ev: Events, extras: bool = True):
        n = len(ev.items)
        lengths = np.diff(ev.offsets)
        start = np.repeat(ev.offsets[:-1], lengths)
        end = np.repeat(ev.offsets[1:], lengths)
        trained = np.zeros(len(lengths), dtype=bool)
        trained[ev.users] = True
        p = np.flatnonzero(np.repeat(trained, lengths) & (np.arange(n) + 1 < end))
        lo = np.maximum(start[p], p - REPEAT_WINDOW + 1)
        owner, j = segments(lo, p - lo + 1)           # oldest first, as the C++ planner
        at = p[owner]
        del owner
        item = ev.items[j]
        target = item == ev.items[at + 1]
        keep = target & (item >= 0)
        self.rep_offsets = offsets_of(np.bincount(at[keep], minlength=n))
        self.rep_pos = POS_BUCKET[at[keep] - j[keep]]
        self.rep_age = age_bucket(ev.timestamps[at[keep]] - ev.timestamps[j[keep]])
        keep = ~target & (item >= 0) & extras
        at, j, item = at[keep], j[keep], item[keep]
        order = np.lexsort((item, at))                 # by event, then item; stable
        at, j, item = at[order], j[order], item[order]
        first = np.ones(len(at), dtype=bool)
        first[1:] = (at[1:] != at[:-1]) | (item[1:] != item[:-1])
        self.ext_offsets = offsets_of(np.bincount(at[first], minlength=n))
        self.ext_items = item[first].astype(np.int32)
        self.ext_occ_offsets = np.append(np.flatnonzero(first), len(at)).astype(np.int32)
        self.ext_pos = POS_BUCKET[at - j]
        self.ext_age = age_bucket(ev.timestamps[at] - ev.timestamps[j])

    def lists(self, events: np.ndarray) -> dict:
        """The window's repeat keys (docs/engine.md) for its events [T*B] (-1: none)."""
        ok = events >= 0
        e = np.where(ok, events, 0)
        out = {}
        a, n = self.rep_offsets[e], np.where(ok, self.rep_offsets[e + 1] - self.rep_offsets[e], 0)
        _, idx = segments(a, n)
        out.update(rep_offsets=offsets_of(n), rep_pos=self.rep_pos[idx], rep_age=self.rep_age[idx])
        a, n = self.ext_offsets[e], np.where(ok, self.ext_offsets[e + 1] - self.ext_offsets[e], 0)
        _, ext = segments(a, n)
        oa = self.ext_occ_offsets[ext]
        on = self.ext_occ_offsets[ext + 1] - oa
        _, occ = segments(oa, on)
        out.update(ext_offsets=offsets_of(n), ext_items=self.ext_items[ext],
                   ext_occ_offsets=offsets_of(on), ext_pos=self.ext_pos[occ],
                   ext_age=self.ext_age[occ])
        return out


def lane_schedule(offsets: np.ndarray, order: np.ndarray, batch_size: int) -> tuple:
    """The epoch's lanes as hrnn's planner forms them: users (``order``, those with 2+ events)
    go to lanes as lanes free up, lower lanes first; each lane's input at a step is event p of its
    user, the target event p+1. Returns (event [steps, B], -1 where the lane is idle; fresh
    [steps, B]: the lane starts a user there)."""
    lengths = np.diff(offsets)
    order = order[lengths[order] >= 2]
    B = int(max(1, min(batch_size, len(order))))
    free = [(0, b) for b in range(B)]                  # (step from which the lane is free, lane)
    first_step = np.empty(len(order), dtype=np.int64)
    lane = np.empty(len(order), dtype=np.int64)
    for k, steps in enumerate((lengths[order] - 1).tolist()):
        s, b = heapq.heappop(free)
        first_step[k], lane[k] = s, b
        heapq.heappush(free, (s + steps, b))
    n_steps = max(s for s, _ in free)
    owner, p = segments(offsets[order], lengths[order] - 1)
    grid = np.full((n_steps, B), -1, dtype=np.int64)
    grid[first_step[owner] + (p - offsets[order][owner]), lane[owner]] = p
    fresh = np.zeros((n_steps, B), dtype=bool)
    fresh[first_step, lane] = True
    return grid, fresh


def make_window(ev: Events, recent: RecentLists, events: np.ndarray, fresh: np.ndarray,
                negatives: np.ndarray) -> dict:
    """A docs/engine.md training window (without u_init, h_init, logq) for the lanes' events
    [T, B] (-1: idle), their fresh flags and the step's negatives [T, S]."""
    ok = events >= 0
    p = np.where(ok, events, 0)
    gaps = np.where(fresh | ~ok, 0.0, ev.timestamps[p] - ev.timestamps[np.maximum(p - 1, 0)])
    win = {"items": np.where(ok, ev.items[p], -1).astype(np.int32),
           "targets": np.where(ok, ev.items[np.minimum(p + 1, len(ev.items) - 1)], -1)
           .astype(np.int32),
           "gaps": gaps.astype(np.float32).astype(np.float64),   # hrnn keeps float32 gaps
           "fresh": (fresh & ok).astype(np.uint8),
           "new_session": np.where(ok, ev.new_session[p], 0).astype(np.uint8),
           "weights": np.where(ok, ev.weights[np.minimum(p + 1, len(ev.items) - 1)], 0)
           .astype(np.float32),
           "negatives": negatives.astype(np.int32)}
    win.update(recent.lists(events.reshape(-1)))
    return win


# ------------------------------------------------------------------------------ the model

def take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[index] along the first dimension, through index_select (its backward is an index_add,
    much faster on CPU than advanced indexing's accumulating index_put)."""
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def gru(a: torch.Tensor, h: torch.Tensor, Wh: torch.Tensor) -> torch.Tensor:
    """docs/engine.md's GRU given its input part a = Wx x + b: gates (r, z, n), the reset gate
    applied before the recurrent product."""
    H = h.shape[-1]
    r, z = torch.sigmoid(a[..., :2 * H] + F.linear(h, Wh[:2 * H])).chunk(2, dim=-1)
    n = torch.tanh(a[..., 2 * H:] + F.linear(r * h, Wh[2 * H:]))
    return n + z * (h - n)


class TorchHRNN(nn.Module):
    """The parameters of docs/engine.md (names and shapes as ``HRNN.get_weights()``, except bo,
    kept [N, 1] for the sparse embedding lookup), tied embeddings (hrnn's default)."""

    DENSE = ("Wg", "Vg", "bg", "W0", "b0", "Wsx", "Wsh", "bs", "Wux", "Wuh", "bu", "u0",
             "rc", "rd", "rV")

    def __init__(self, n_items: int, hidden: int, seed: int = 0):
        super().__init__()
        H = hidden
        g = torch.Generator().manual_seed(seed)

        def uniform(*shape, a):  # hrnn's initialization (cpp/src/params.cpp)
            return nn.Parameter((torch.rand(*shape, generator=g) * 2 - 1) * a)

        def zeros(*shape):
            return nn.Parameter(torch.zeros(*shape))

        a = H ** -0.5
        self.hidden = H
        self.E, self.bo = uniform(n_items, H, a=a), zeros(n_items, 1)
        self.Wg, self.Vg, self.bg = uniform(H, H, a=a), uniform(H, 2, a=0.1), zeros(H)
        self.W0, self.b0 = uniform(H, H, a=a), zeros(H)
        self.Wsx, self.Wsh, self.bs = uniform(3 * H, H, a=a), uniform(3 * H, H, a=a), zeros(3 * H)
        self.Wux, self.Wuh, self.bu = uniform(3 * H, H, a=a), uniform(3 * H, H, a=a), zeros(3 * H)
        self.u0 = zeros(H)
        self.rc, self.rd, self.rV = zeros(N_POS), zeros(N_AGE), zeros(H, N_POS + N_AGE)

    @torch.no_grad()
    def load_hrnn_weights(self, weights: dict) -> None:
        """Copy ``HRNN.get_weights()`` (tied embeddings) into this model."""
        if "O" in weights:
            raise ValueError("TorchHRNN implements tied embeddings (hrnn's default) only")
        for name, param in self.named_parameters():
            value = torch.from_numpy(np.ascontiguousarray(weights[name], dtype=np.float32))
            param.copy_(value.view(param.shape))

    def weights(self) -> dict:
        """The parameters as numpy arrays, in ``HRNN.get_weights()``'s layout."""
        return {n: p.detach().numpy().reshape(-1 if n == "bo" else p.shape).copy()
                for n, p in self.named_parameters()}

    def recurrence(self, x, phi, fresh, active, u, h, absorb_lanes):
        """States (u, h) leaving each step [T, B, H] for inputs x [T, B, H], time features phi
        [T, B, 2] and flags [T, B, 1]; ``absorb_lanes[t]``: the lanes whose user GRU absorbs
        a finished session at step t (new session, not fresh; a LongTensor, or None)."""
        ax = F.linear(x, self.Wsx, self.bs)           # input parts of all steps at once
        gate_in = F.linear(x, self.Wg, self.bg) + F.linear(phi, self.Vg)
        s_fresh = torch.tanh(F.linear(self.u0, self.W0, self.b0))
        us, hs = [], []
        for t in range(x.shape[0]):
            lanes = absorb_lanes[t]
            if lanes is None:
                u_c = u
            elif len(lanes) == u.shape[0]:
                u_c = gru(F.linear(h, self.Wux, self.bu), u, self.Wuh)
            else:  # the user GRU only for the lanes that start a session
                hl, ul = h.index_select(0, lanes), u.index_select(0, lanes)
                u_c = u.index_copy(0, lanes, gru(F.linear(hl, self.Wux, self.bu), ul, self.Wuh))
            s = torch.tanh(F.linear(u_c, self.W0, self.b0))
            g = torch.sigmoid(gate_in[t])
            h_tilde = torch.where(fresh[t], s_fresh, s + g * (h - s))
            u_next = torch.where(fresh[t], self.u0, u_c)
            h_next = gru(ax[t], h_tilde, self.Wsh)
            u = torch.where(active[t], u_next, u)
            h = torch.where(active[t], h_next, h)
            us.append(u)
            hs.append(h)
        return torch.stack(us), torch.stack(hs)

    def window_loss(self, win: dict, u_init, h_init, logq) -> dict:
        """Forward of one window (dict of docs/engine.md, numpy arrays; u_init, h_init [B, H] and
        logq [N] tensors): the weighted loss sum, the number of targets, the states."""
        items, targets, negs = win["items"], win["targets"], win["negatives"]
        T, B = items.shape
        ext_items = win.get("ext_items", np.zeros(0, np.int32))
        # every item row the window reads, gathered once: one sparse gradient row per item
        used = np.concatenate([items.ravel(), targets.ravel(), negs.ravel(), ext_items])
        uniq, inv = np.unique(np.maximum(used, 0), return_inverse=True)
        k0, k1, k2 = items.size, items.size + targets.size, items.size + targets.size + negs.size
        inp = torch.from_numpy(inv[:k0].reshape(T, B))
        cols = torch.from_numpy(np.concatenate([inv[k0:k1].reshape(T, B), inv[k1:k2]
                                                .reshape(T, -1)], axis=1))
        uniq_t = torch.from_numpy(uniq)
        rows = F.embedding(uniq_t, self.E, sparse=True)               # [U, H]
        bias = F.embedding(uniq_t, self.bo, sparse=True).squeeze(1)   # [U]

        active = items >= 0
        has_target = active & (targets >= 0)
        new_session = win["new_session"].astype(bool)
        phi = np.stack([np.log1p(np.maximum(win["gaps"], 0.0) / 60.0), new_session], axis=-1)
        absorb = active & new_session & ~win["fresh"].astype(bool)
        absorb_lanes = [torch.from_numpy(np.flatnonzero(a)) if a.any() else None for a in absorb]

        def flag(a):
            return torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(-1)

        us, hs = self.recurrence(take(rows, inp), torch.from_numpy(phi.astype(np.float32)),
                                 flag(win["fresh"].astype(bool)), flag(active), u_init, h_init,
                                 absorb_lanes)
        ce = self.event_losses(hs, win, rows, bias, cols, take(logq, uniq_t), has_target,
                               torch.from_numpy(inv[k2:]))
        w = torch.from_numpy(np.where(has_target, win["weights"], 0).astype(np.float32))
        return {"loss_sum": (w * ce).sum(), "n_targets": int(has_target.sum()), "u": us, "h": hs}

    def event_losses(self, hs, win, rows, bias, cols, logq_u, has_target, ext_u):
        """ce [T, B] of docs/engine.md's sampled softmax (0 where no target)."""
        T, B, H = hs.shape
        C = cols.shape[1]
        tgt = np.where(has_target, win["targets"], -1)
        col_items = np.concatenate([np.where(win["targets"] >= 0, win["targets"], -1),
                                    win["negatives"]], axis=1)
        # l = O[item] . h + bo[item] - logq[item] for the B + S shared columns of each step
        logits = torch.baddbmm((take(bias, cols) - take(logq_u, cols)).unsqueeze(1), hs,
                               take(rows, cols).transpose(1, 2))
        excluded = (col_items[:, None, :] == tgt[:, :, None]) | (col_items < 0)[:, None, :]
        excluded[:, np.arange(B), np.arange(B)] = False               # the own column
        logits.masked_fill_(torch.from_numpy(excluded), float("-inf"))

        hv = (hs @ self.rV).reshape(-1)                  # h . rV[:, j] at [(t * B + b) * 16 + j]

        def repeat_terms(tb, pos, age):
            pos = torch.from_numpy(pos.astype(np.int64))
            age = torch.from_numpy(age.astype(np.int64))
            at = tb * (N_POS + N_AGE)
            return (take(self.rc, pos) + take(self.rd, age) + take(hv, at + pos)
                    + take(hv, at + N_POS + age))

        own = logits.diagonal(dim1=1, dim2=2)                         # [T, B]: column c == b
        if "rep_offsets" in win and len(win["rep_pos"]):              # the target's repeat term
            tb = torch.from_numpy(np.repeat(np.arange(T * B), np.diff(win["rep_offsets"])))
            own.add_(torch.zeros(T * B).index_add(0, tb, repeat_terms(tb, win["rep_pos"],
                                                                      win["rep_age"])).view(T, B))
        flat = logits.reshape(T * B, C)
        n_ext = len(ext_u)
        if n_ext:
            counts = np.diff(win["ext_offsets"])
            tb_np = np.repeat(np.arange(T * B), counts)
            slot = np.arange(n_ext) - (np.cumsum(counts) - counts)[tb_np]
            tb = torch.from_numpy(tb_np)
            hf = hs.reshape(T * B, H)
            score = (take(rows, ext_u) * take(hf, tb)).sum(1) + take(bias, ext_u)  # as inference
            occ = torch.from_numpy(np.repeat(np.arange(n_ext), np.diff(win["ext_occ_offsets"])))
            score = score.index_add(0, occ, repeat_terms(take(tb, occ), win["ext_pos"],
                                                         win["ext_age"]))
            pad = torch.full((T * B, int(counts.max())), float("-inf"))
            pad = pad.index_put((tb, torch.from_numpy(slot)), score)
            flat = torch.cat([flat, pad], dim=1)
        ce = torch.logsumexp(flat, dim=1) - own.reshape(T * B)
        return ce.view(T, B)

    @torch.no_grad()
    def user_state(self, items, timestamps, new_session) -> tuple:
        """(u, h) after a user's whole history (a fresh lane, forward only; hrnn's advance: an
        unknown item, -1, is a zero input)."""
        n = len(items)
        gaps = np.diff(np.asarray(timestamps, np.float64), prepend=timestamps[0])
        gaps = gaps.astype(np.float32).astype(np.float64)
        ns = np.asarray(new_session).astype(bool).reshape(n, 1)
        fresh = np.zeros((n, 1), dtype=bool)
        fresh[0] = True
        phi = np.stack([np.log1p(np.maximum(gaps, 0) / 60.0), ns[:, 0]], -1)[:, None, :]
        absorb = [torch.zeros(1, dtype=torch.long) if ns[t, 0] and t else None for t in range(n)]
        items = torch.from_numpy(np.asarray(items, np.int64)).unsqueeze(1)
        x = torch.where(items.unsqueeze(-1) >= 0, take(self.E, items.clamp(min=0)), 0.0)
        us, hs = self.recurrence(x, torch.from_numpy(phi.astype(np.float32)),
                                 torch.from_numpy(fresh).unsqueeze(-1),
                                 torch.ones(n, 1, 1, dtype=torch.bool),
                                 torch.zeros(1, self.hidden), torch.zeros(1, self.hidden), absorb)
        return us[-1, 0], hs[-1, 0]

    @torch.no_grad()
    def scores(self, h, items, timestamps) -> torch.Tensor:
        """Every item's score after a user's history: O h + bo + the repeat boost of its last L
        events (docs/engine.md, "Repeat score"; unknown items, -1, have none)."""
        items = np.asarray(items)[-REPEAT_WINDOW:]
        ts = np.asarray(timestamps, np.float64)[-REPEAT_WINDOW:]
        known = items >= 0
        pos = POS_BUCKET[len(items) - 1 - np.arange(len(items))][known]
        pos = torch.from_numpy(pos.astype(np.int64))
        age = torch.from_numpy(age_bucket(ts[-1] - ts[known]).astype(np.int64))
        items = items[known]
        hv = h @ self.rV
        boost = self.rc[pos] + self.rd[age] + hv[pos] + hv[N_POS + age]
        out = self.E @ h + self.bo[:, 0]
        return out.index_add(0, torch.from_numpy(items.astype(np.int64)), boost)


# ------------------------------------------------------------------------------ training

class Trainer:
    """hrnn's trainer in PyTorch: ``epoch()`` is one pass of ``HRNN.fit`` over ``Events``."""

    def __init__(self, ev: Events, hidden: int, batch_size: int = 64, bptt: int = 32,
                 n_sample: int = 2048, sample_alpha: float = 0.5, learning_rate: float = 0.1,
                 seed: int = 0, recent: RecentLists = None):
        self.ev, self.B, self.T, self.S = ev, batch_size, bptt, n_sample
        self.model = TorchHRNN(ev.n_items, hidden, seed)
        q = np.where(ev.popularity > 0, ev.popularity, 0.0) ** sample_alpha
        q /= q.sum()
        self.cdf = np.cumsum(q)
        self.logq = torch.from_numpy(np.log(np.maximum(q, 1e-30)).astype(np.float32))
        self.recent = recent if recent is not None else RecentLists(ev)
        self.rng = np.random.default_rng(seed)
        rV = [self.model.rV]
        rest = [p for n, p in self.model.named_parameters() if n != "rV"]
        # hrnn divides by sqrt(sum of g^2 + 1e-6); torch by sqrt(sum of g^2) + eps: eps 1e-3 is
        # the same at 0 and for large sums
        self.optimizer = torch.optim.Adagrad(
            [{"params": rest}, {"params": rV, "lr": learning_rate * REPEAT_LR_SCALE}],
            lr=learning_rate, eps=1e-3)

    def negatives(self, T: int) -> np.ndarray:
        """[T, S] items drawn with probability popularity ** alpha (inverse CDF)."""
        u = self.rng.random((T, self.S)) * self.cdf[-1]
        return np.minimum(np.searchsorted(self.cdf, u, side="right"), len(self.cdf) - 1)

    def windows(self):
        """The epoch's windows, in order: (window dict, events [T, B])."""
        grid, fresh = lane_schedule(self.ev.offsets, self.rng.permutation(self.ev.users), self.B)
        for t0 in range(0, len(grid), self.T):
            events = grid[t0:t0 + self.T]
            pad = self.T - len(events)
            if pad:  # the last window keeps its length; its tail lanes are idle
                events = np.concatenate([events, np.full((pad, events.shape[1]), -1)])
            f = np.zeros(events.shape, dtype=bool)
            f[:len(grid) - t0] = fresh[t0:t0 + self.T]
            yield make_window(self.ev, self.recent, events, f, self.negatives(self.T)), events

    def epoch(self) -> dict:
        """One epoch; returns events (targets), loss (weighted mean), seconds."""
        t0 = time.perf_counter()
        H = self.model.hidden
        u = h = None
        loss_sum, n_events = 0.0, 0
        for win, _ in self.windows():
            if u is None:
                u, h = torch.zeros(win["items"].shape[1], H), torch.zeros(win["items"].shape[1], H)
            out = self.model.window_loss(win, u, h, self.logq)
            if out["n_targets"]:
                self.optimizer.zero_grad(set_to_none=True)
                (out["loss_sum"] / out["n_targets"]).backward()
                # the sparse gradients are built by autograd: valid, no need to re-check them
                with torch.sparse.check_sparse_tensor_invariants(enable=False):
                    self.optimizer.step()
            u, h = out["u"][-1].detach(), out["h"][-1].detach()   # truncated BPTT
            loss_sum += out["loss_sum"].item()
            n_events += out["n_targets"]
        seconds = time.perf_counter() - t0
        return {"events": n_events, "loss": loss_sum / max(n_events, 1), "seconds": seconds,
                "events_per_second": n_events / max(seconds, 1e-9)}


# ------------------------------------------------------------------------------ same math

def check_same_math(seed: int = 0, rtol: float = 1e-4) -> dict:
    """Raise AssertionError unless this model computes what hrnn computes.

    A small HRNN is fitted (so that every block, the repeat score's included, is non-zero); its
    weights go into a TorchHRNN. Then, on the same data:

    - training: windows formed by this module's planner (states carried as in an epoch; the one
      checked has lanes that switch users mid-window, new sessions, idle lanes, repeat occurrences
      and extra columns) go to hrnn's engine (``hrnn._core.window_loss_grad``) and to this model:
      the states of every step, the loss and the gradient of every parameter block must agree;
    - inference: the state after each of a few users' whole history must equal
      ``HRNN.user_state``, and the top scores (repeat boosts included) ``HRNN.recommend``'s.

    Returns the largest relative errors seen, by what was compared. Runs on one torch thread
    (tiny operations), and leaves torch's thread count as it found it.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _check_same_math(seed, rtol)
    finally:
        torch.set_num_threads(threads)


def _check_same_math(seed: int, rtol: float) -> dict:
    import hrnn
    from hrnn import _core
    from hrnn.synthetic import make_log

    df = make_log(n_events=3000, n_users=250, n_items=120, seed=seed).drop_duplicates()
    B, T, S, H = 8, 6, 24, 32
    # No dropout (this model has none) and no transition prior (a query-time term it lacks).
    model = hrnn.HRNN(hidden_dimension=H, batch_size=B, bptt=T, n_sample=S, epochs=2, dropout=0.0,
                      transition_weight=0.0, num_threads=1, random_state=seed, show_progress=False)
    model.fit(df, check_minimums=False)
    weights = model.get_weights()
    ev = Events.like_hrnn(model, df)
    trainer = Trainer(ev, H, batch_size=B, bptt=T, n_sample=S, seed=seed)
    torch_model = trainer.model
    torch_model.load_hrnn_weights(weights)
    errors = {}

    def agree(what, actual, expected):
        actual = np.asarray(actual, dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        err = float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-6))
        errors[what] = max(err, errors.get(what, 0.0))
        if not err <= rtol:
            raise AssertionError(f"the PyTorch model does not compute hrnn's {what}: relative "
                                 f"error {err:.2e} > {rtol:g} (benchmarks/torch_hrnn.py)")

    u = h = torch.zeros(B, H)
    checked = 0
    for win, _ in trainer.windows():
        fresh = win["fresh"].astype(bool)
        active = win["items"] >= 0
        interesting = (fresh[1:].any() and (~active).any() and len(win["ext_items"])
                       and len(win["rep_pos"]) and (win["new_session"] & ~fresh).any())
        if interesting or checked == 0:
            full = dict(win, u_init=u.numpy().copy(), h_init=h.numpy().copy(),
                        logq=trainer.logq.numpy())
            ref = _core.window_loss_grad(params=weights, window=full, num_threads=1)
            torch_model.zero_grad(set_to_none=True)
            out = torch_model.window_loss(win, u, h, trainer.logq)
            loss = out["loss_sum"] / out["n_targets"]
            loss.backward()
            agree("window loss", loss.item(), ref["loss"])
            agree("session states", out["h"].detach().numpy(), ref["h"])
            agree("user states", out["u"].detach().numpy(), ref["u"])
            for name, p in torch_model.named_parameters():
                g = p.grad.to_dense() if p.grad.is_sparse else p.grad
                agree(f"gradient of {name}", g.reshape(ref["grads"][name].shape).numpy(),
                      ref["grads"][name])
            checked += 1
            if interesting:
                break
        with torch.no_grad():
            out = torch_model.window_loss(win, u, h, trainer.logq)
        u, h = out["u"][-1], out["h"][-1]
    if checked < 2:
        raise AssertionError("no training window with mid-window user switches, idle lanes, "
                             "new sessions, repeats and extra columns to check")

    index = {v: i for i, v in enumerate(model.user_ids_.tolist())}
    for user_id in model.user_ids_[:: max(1, len(model.user_ids_) // 4)][:4].tolist():
        k = index[user_id]
        a, b = ev.offsets[k], ev.offsets[k + 1]
        u1, h1 = torch_model.user_state(ev.items[a:b], ev.timestamps[a:b], ev.new_session[a:b])
        u2, h2 = model.user_state(user_id)
        agree("state after a user's history", np.concatenate([u1, h1]), np.concatenate([u2, h2]))
        scores = torch_model.scores(h1, ev.items[a:b], ev.timestamps[a:b])
        top = torch.topk(scores, 10)
        items, hrnn_scores = model.recommend(user_id, 10)
        agree("recommend scores", top.values.numpy(), hrnn_scores)
        same = np.mean(model.item_ids_[top.indices.numpy()] == items)
        if same < 0.8:  # ties may reorder a few
            raise AssertionError(f"the PyTorch model's top-10 differs from hrnn's: {same:.0%} "
                                 "of the items agree")
    return errors
