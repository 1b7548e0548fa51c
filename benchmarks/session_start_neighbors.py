"""An experiment the README reports and the model does not have yet: session-kNN as a second expert
for the first event of a session.

    python benchmarks/session_start_neighbors.py movielens-latest-small --betas 0.25,0.5,0.75,0.9 --seeds 0,1,2 [--validation] [--temperature T]

A session-start query (``new_session=True``) is answered from the mixture
``(1 - beta) p + beta v``: p is hrnn's distribution (the softmax of its session-start scores over
the whole catalogue, defaults otherwise; ``--temperature prior`` divides the scores by 1 + the
fitted transition weight, which sharpens them that much), v session-kNN's votes
(``baselines.SessionKNN``, its defaults, fitted on the same training part: the neighbours of the
user's last session), normalised to sum to 1. Every later event is hrnn's own answer. Through the next-item protocol, one hrnn fit
per seed for every beta; prints first_recall@20 (mean over the seeds) and its paired difference
from hrnn alone. ``--validation`` runs on the protocol's training part instead (its own split
holds out each user's previous session): what a fit could choose beta on.
Reads ../shared/datasets; takes minutes (every first event scores the whole catalogue in Python).
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

import hrnn
from hrnn.base import Recommender
from hrnn.baselines import SessionKNN
from hrnn.data import read_interactions
from hrnn.evaluate import split_next_item

from _common import read_dataset, shared_fit


class NeighborStart(Recommender):
    """hrnn, whose session-start answers mix in session-kNN's votes (``beta`` 0: hrnn itself)."""

    def __init__(self, beta: float = 0.0, seed: int = 0, temperature="1"):
        self.beta, self.seed, self.temperature = beta, seed, temperature

    def fit(self, data, columns=None):
        df = read_interactions(data, columns)
        self.model_ = shared_fit(df, self.seed)
        self.knn_ = SessionKNN().fit(df)  # its own: the protocol puts the test events into it
        return self

    def put_events(self, user_id, item_ids, timestamps, session_id=None):
        self.model_.put_events(user_id, item_ids, timestamps, session_id)
        self.knn_.put_events(user_id, item_ids, timestamps, session_id)

    def recommend_batch(self, user_ids, num_results: int = 25, new_session: bool = False):
        model = self.model_
        if not new_session or self.beta == 0.0:
            return model.recommend_batch(user_ids, num_results, new_session=new_session)
        n = len(model.item_ids_)
        index = pd.Index(model.item_ids_)
        v_items, v_scores = self.knn_.recommend_batch(user_ids, 500)
        t = 1.0 + model.transition_weight_ if self.temperature == "prior" else float(self.temperature)
        rows_i, rows_s = [], []
        for r, user in enumerate(user_ids):
            items, scores = model._engine.recommend(model._user_index.get(user, -1), n,  # noqa: SLF001
                                                    num_threads=0, new_session=True)
            p = np.zeros(n)
            p[items] = np.exp((scores - scores.max()) / t)
            p /= p.sum()
            # SessionKNN's evidence scores lie in (1, 2]: their excess over 1 is the vote share of
            # the row's best item; popularity back-off (below 1) is no vote.
            votes = np.maximum(v_scores[r] - 1.0, 0.0)
            known = index.get_indexer(v_items[r])
            v = np.zeros(n)
            v[known[known >= 0]] = votes[known >= 0]
            v /= v.sum() or 1.0
            with np.errstate(divide="ignore"):  # an item neither expert gives any mass ranks last
                mixed = np.log((1.0 - self.beta) * p + self.beta * v)
            best = np.argsort(-mixed, kind="stable")[:num_results]
            rows_i.append(model.item_ids_[best])
            rows_s.append(mixed[best])
        return np.array(rows_i), np.array(rows_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--betas", default="0.25,0.5,0.75,0.9")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--validation", action="store_true")
    ap.add_argument("--temperature", default="1", help='a number, or "prior": 1 + the transition weight')
    a = ap.parse_args()
    data = read_dataset(a.dataset)
    if a.validation:
        data = split_next_item(data).train
    key = "first_recall@20"
    seeds = [int(s) for s in a.seeds.split(",")]
    base = {s: hrnn.evaluate(NeighborStart(0.0, s), data, protocol="next-item", return_details=True)
            for s in seeds}
    print(a.dataset, "validation" if a.validation else "test", f"temperature {a.temperature}, hrnn {key}",
          round(float(np.mean([base[s][0][key] for s in seeds])), 4), flush=True)
    for beta in [float(x) for x in a.betas.split(",")]:
        runs = [hrnn.evaluate(NeighborStart(beta, s, a.temperature), data, protocol="next-item", return_details=True)
                for s in seeds]
        paired = hrnn.paired_difference([d for _, d in runs], [base[s][1] for s in seeds], key)
        print(f"  beta {beta:g}: {key} {np.mean([out[key] for out, _ in runs]):.4f}, "
              f"paired with hrnn {paired['difference']:+.4f} (z {paired['z']:+.1f})", flush=True)


if __name__ == "__main__":
    main()
