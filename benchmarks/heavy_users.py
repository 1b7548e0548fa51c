"""recommend latency by history length, on the bundled MovieLens latest-small (a log without repeats,
where the prior floors every item of a user's history): the median user and the heaviest one, with
and without ``exclude_interacted``, one thread, calls interleaved as in compare.py.

    python benchmarks/heavy_users.py [--model FILE] [--calls 4000]

``--model FILE`` keeps the fitted model (defaults, random_state 0) there for later runs, so that
two builds can be measured on the same model one after the other.
"""
from __future__ import annotations

import argparse
import os

import hrnn
from hrnn.datasets import load_movielens_small

from compare import interleaved, pct_us


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="load the fitted model from FILE, or fit and save it there")
    ap.add_argument("--calls", type=int, default=4000, help="timed calls per variant")
    args = ap.parse_args()
    table, _ = load_movielens_small()
    if args.model and os.path.exists(args.model):
        model = hrnn.load(args.model)
    else:
        model = hrnn.HRNN(random_state=0, show_progress=False).fit(table)
        if args.model:
            model.save(args.model)
    model.set_params(num_threads=1)
    lengths = table.groupby("user_id").size().sort_values(kind="stable")
    users = {"median": lengths.index[len(lengths) // 2], "heaviest": lengths.index[-1]}
    variants = {}
    for label, user in users.items():
        for exclude in (False, True):
            name = f"{label} user ({lengths[user]:,} events)" + (", exclude_interacted" if exclude else "")
            variants[name] = (lambda u=user, e=exclude: model.recommend(u, 25, exclude_interacted=e), None)
    times = interleaved(variants, args.calls)
    print(f"recommend, top 25 of {len(model.item_ids_):,} items, transition_weight_ "
          f"{model.transition_weight_:g}, one thread")
    for name, t in times.items():
        print(f"  {name:<52} p50 {pct_us(t, 50):7.1f} us   p99 {pct_us(t, 99):7.1f} us")


if __name__ == "__main__":
    main()
