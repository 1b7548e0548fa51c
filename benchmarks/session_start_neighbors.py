"""hrnn's session-start neighbours (``session_start_neighbors``, docs/engine.md) at fixed shares
and "auto": the first_recall@20 table of README "Where hrnn loses".

    python benchmarks/session_start_neighbors.py movielens-latest-small [--betas 0.25,0.5,0.75,0.9] [--seeds 0,1,2] [--validation]

A fixed share only changes answers, not training: one fit per seed with a fixed share (its
neighbour index kept) answers for every fixed share, beta 0 being that fit without the votes.
"auto" is its own fit per seed, at the share it chose: its network differs by the first events it
chooses on, which the first half of its epochs does not train on.
Through the next-item protocol; prints first_recall@20 (mean over the seeds) and its paired
difference from beta 0, and the shares "auto" chose. ``--validation`` runs on the protocol's
training part instead (its own split holds out each user's previous session). Reads
../shared/datasets; minutes per data set.
"""
from __future__ import annotations

import argparse

import numpy as np

import hrnn
from hrnn.base import Recommender
from hrnn.data import read_interactions
from hrnn.evaluate import split_next_item

from _common import read_dataset, shared_fit


CHOSEN = []  # the share of each "auto" fit (evaluate fits a clone of the estimator it is given)


class Share(Recommender):
    """hrnn with the votes' share ``beta`` in its session-start answers ("auto": its own choice)."""

    def __init__(self, beta=0.0, seed: int = 0):
        self.beta, self.seed = beta, seed

    def fit(self, data, columns=None):
        df = read_interactions(data, columns)
        if self.beta == "auto":
            self.model_ = shared_fit(df, self.seed)
            CHOSEN.append(self.model_.session_start_neighbors_)
            return self
        self.model_ = shared_fit(df, self.seed, session_start_neighbors=0.5)
        engine = self.model_._engine  # noqa: SLF001 - the same fit at another share
        index, k, sample_size, _ = engine.get_neighbors()
        if self.beta == 0.0:
            engine.clear_neighbors()
        else:
            engine.set_neighbors(index, k, sample_size, self.beta)
        return self

    def put_events(self, user_id, item_ids, timestamps, session_id=None):
        self.model_.put_events(user_id, item_ids, timestamps, session_id)

    def recommend_batch(self, user_ids, num_results: int = 25, new_session: bool = False):
        return self.model_.recommend_batch(user_ids, num_results, new_session=new_session)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--betas", default="0.25,0.5,0.75,0.9")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--validation", action="store_true")
    a = ap.parse_args()
    data = read_dataset(a.dataset)
    if a.validation:
        data = split_next_item(data).train
    key = "first_recall@20"
    seeds = [int(s) for s in a.seeds.split(",")]

    def run(beta, seed):
        return hrnn.evaluate(Share(beta, seed), data, protocol="next-item", return_details=True)

    base = {s: run(0.0, s) for s in seeds}
    print(a.dataset, "validation" if a.validation else "test", f"beta 0 {key}",
          round(float(np.mean([base[s][0][key] for s in seeds])), 4), flush=True)
    for beta in [float(x) for x in a.betas.split(",")] + ["auto"]:
        CHOSEN.clear()
        runs = [run(beta, s) for s in seeds]
        paired = hrnn.paired_difference([d for _, d in runs], [base[s][1] for s in seeds], key)
        chosen = f" (chosen: {', '.join(f'{b:g}' for b in CHOSEN)})" if beta == "auto" else ""
        print(f"  beta {beta}: {key} {np.mean([out[key] for out, _ in runs]):.4f}, "
              f"paired with beta 0 {paired['difference']:+.4f} (z {paired['z']:+.1f}){chosen}", flush=True)


if __name__ == "__main__":
    main()
