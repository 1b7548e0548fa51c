"""The README's fit-time table: `HRNN().fit(data)` with the defaults on every data set in
../shared/datasets (yoochoose: each session is its own user), with training events/s.

    python benchmarks/fit_times.py [--num-threads 0]
"""
from __future__ import annotations

import argparse
import time

import hrnn

from _common import dataset_names, read_dataset



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-threads", type=int, default=0)
    args = ap.parse_args()
    print("| data set | events | users | items | fit seconds (total) | training events/s | final loss |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in dataset_names():
        table = read_dataset(name)
        model = hrnn.HRNN(num_threads=args.num_threads, random_state=0, show_progress=False)
        t0 = time.perf_counter()
        model.fit(table)
        seconds = time.perf_counter() - t0
        rate = sum(h["events"] for h in model.history_) / sum(h["seconds"] for h in model.history_)
        print(f"| {name} | {len(table):,} | {len(model.user_ids_):,} | {len(model.item_ids_):,} | "
              f"{seconds:.1f} | {rate:,.0f} | {model.history_[-1]['loss']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
