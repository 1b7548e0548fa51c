"""An experiment the README reports and the model does not adopt: a time-aware popularity bias.

    python benchmarks/time_popularity.py movielens-latest-small --days 365 --weights 0,0.5,1 --seeds 0,1,2 [--top 100]

Each query's scores are hrnn's (defaults) plus ``v * log(1 + c_j / 0.5)``, c_j being item j's
training events in the ``--days`` before the user's latest event (training or real-time), through
both evaluation protocols. ``--top N`` keeps the bias of the window's N most popular items only.
One fit per seed serves every weight (weight 0 is hrnn as it is). Prints the mean over the seeds.
Reads ../shared/datasets; takes minutes (every query scores the whole catalogue in Python).
"""
from __future__ import annotations

import argparse

import numpy as np

import hrnn
from hrnn.base import Recommender
from hrnn.data import ITEM_ID, TIMESTAMP, USER_ID, read_interactions

from _common import read_dataset, shared_fit

PSEUDO_COUNT = 0.5


class TimePopularity(Recommender):
    """hrnn's scores plus the time-aware popularity bias (``weight`` 0: hrnn itself)."""

    def __init__(self, weight: float = 0.0, days: float = 365.0, top: int = 0, seed: int = 0):
        self.weight, self.days, self.top, self.seed = weight, days, top, seed

    def fit(self, data, columns=None):
        df = read_interactions(data, columns)
        self.model_ = shared_fit(df, self.seed)
        index = {v: i for i, v in enumerate(self.model_.item_ids_.tolist())}
        order = np.argsort(df[TIMESTAMP].to_numpy(np.float64), kind="stable")
        self.times_ = df[TIMESTAMP].to_numpy(np.float64)[order]
        self.items_ = np.array([index[i] for i in df[ITEM_ID].to_numpy()[order].tolist()])
        self.latest_ = df.groupby(USER_ID)[TIMESTAMP].max().astype(float).to_dict()
        return self

    def put_events(self, user_id, item_ids, timestamps, session_id=None):
        self.model_.put_events(user_id, item_ids, timestamps, session_id)
        t = float(np.max(np.atleast_1d(np.asarray(timestamps, np.float64))))
        self.latest_[user_id] = max(self.latest_.get(user_id, -np.inf), t)

    def _bias(self, t: float) -> np.ndarray:
        lo = np.searchsorted(self.times_, t - self.days * 86400.0, "right")
        hi = np.searchsorted(self.times_, t, "right")
        n = len(self.model_.item_ids_)
        counts = np.bincount(self.items_[lo:hi], minlength=n).astype(np.float64)
        bias = np.log1p(counts / PSEUDO_COUNT)
        if 0 < self.top < n:
            bias[counts < np.partition(counts, n - self.top)[n - self.top]] = 0.0
        return self.weight * bias

    def recommend_batch(self, user_ids, num_results: int = 25, exclude_interacted: bool = False, **_):
        model = self.model_
        n = len(model.item_ids_)
        rows_i, rows_s = [], []
        for user in user_ids:
            items, scores = model._engine.recommend(model._user_index.get(user, -1), n,  # noqa: SLF001
                                                    exclude_interacted, num_threads=0)
            full = np.full(n, -np.inf)
            full[items] = scores
            if self.weight and user in self.latest_:
                full += self._bias(self.latest_[user])
            best = np.argsort(-full, kind="stable")[:num_results]
            rows_i.append(model.item_ids_[best])
            rows_s.append(full[best])
        return np.array(rows_i), np.array(rows_s)

    def recommend(self, user_id, num_results: int = 25, **kw):
        items, scores = self.recommend_batch([user_id], num_results, **kw)
        return items[0], scores[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--days", type=float, default=365.0)
    ap.add_argument("--weights", default="0,0.5,1")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--top", type=int, default=0)
    a = ap.parse_args()
    data = read_dataset(a.dataset)
    metrics = {"next-item": ["recall@20", "mrr@20", "first_recall@20"],
               "personalize": ["precision@5", "ndcg@10", "ndcg@25", "mrr@25", "coverage"]}
    for protocol, keys in metrics.items():
        for w in [float(x) for x in a.weights.split(",")]:
            runs = [hrnn.evaluate(TimePopularity(w, a.days, a.top, int(s)), data, protocol=protocol,
                                  random_state=int(s)) for s in a.seeds.split(",")]
            means = {k: round(float(np.mean([r[k] for r in runs])), 4) for k in keys}
            print(a.dataset, protocol, f"weight {w} days {a.days} top {a.top}", means, flush=True)


if __name__ == "__main__":
    main()
