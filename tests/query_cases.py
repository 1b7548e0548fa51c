"""Helpers of the query-score tests: a model fitted with the transition prior and random repeat
parameters, its users' histories and prior as tests/reference_query.py takes them, and every
item's score as recommend_batch gives it."""
from __future__ import annotations

import numpy as np

import hrnn
import reference_query as ref
from hrnn.synthetic import make_log

WEIGHT = 0.7
FIT = dict(hidden_dimension=32, n_sample=32, batch_size=8, bptt=8, epochs=2, random_state=0,
           num_threads=1, show_progress=False, max_user_history_length_percentile=1.0)


def make_query_log():
    df = make_log(n_events=3000, n_users=40, n_items=80, repeat=0.3, cover_items=True, seed=1)
    return df.drop_duplicates()


def fitted(log, weight=WEIGHT):
    m = hrnn.HRNN(transition_weight=weight, **FIT).fit(log)
    # Random repeat parameters, so that every bucket moves the scores (training leaves some at 0).
    rng = np.random.default_rng(3)
    for name in ("rc", "rd", "rV"):
        m._engine.set_param(name, rng.normal(0, 0.5, m.get_weights()[name].shape).astype(np.float32))
    return m


def histories(model, log):
    """Every user's (item indices, timestamps), in time order, as the model holds them."""
    index = model._item_index()
    out = {}
    for uid, g in log.sort_values(["USER_ID", "TIMESTAMP"], kind="stable").groupby("USER_ID", sort=False):
        out[uid] = ([index.get(i, -1) for i in g["ITEM_ID"]], g["TIMESTAMP"].to_numpy(np.float64))
    return out


def sessions_of(histories, gap=1800.0):
    """Each user's sessions (a new one when the gap exceeds `gap`), as lists of item indices."""
    out = []
    for items, ts in histories.values():
        cuts = np.flatnonzero(np.diff(ts) > gap) + 1
        out += [list(s) for s in np.split(np.asarray(items), cuts)]
    return out


def prior_of(model, hist, weight=WEIGHT):
    kept, out = ref.transition_table(sessions_of(hist), len(model.item_ids_))
    curve = ref.repeat_curve([items for items, _ in hist.values()], 200)
    return kept, out, model.popularity_, weight, curve


def params64(model):
    return {k: v.astype(np.float64) for k, v in model.get_weights().items()}


def all_scores(model, users, new_session=False):
    """Every item's score for each user, from recommend_batch asked for the whole catalogue."""
    n = len(model.item_ids_)
    flags = np.full(len(users), new_session, dtype=np.uint8)
    idx, sc = model._engine.recommend_batch(np.array([model._user_index[u] for u in users]), n, new_session=flags)
    out = np.full((len(users), n), np.nan)
    np.put_along_axis(out, idx.astype(np.int64), sc.astype(np.float64), axis=1)
    return out
