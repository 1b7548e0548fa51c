"""Save and load time of a model file with a large catalogue (default 1M items, hidden 43).

    python benchmarks/model_file_speed.py [--items 1000000] [--hidden 43]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import hrnn
from hrnn import _core


def build(n_items: int, hidden: int, n_users: int) -> hrnn.HRNN:
    """A model with random weights and n_users users of 20 events each (training is not the point)."""
    engine = _core.Engine(n_items, hidden, False, 0)
    rng = np.random.default_rng(0)
    lengths = np.full(n_users, 20)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    items = rng.integers(0, n_items, offsets[-1]).astype(np.int32)
    ts = 1.6e9 + np.arange(offsets[-1], dtype=np.float64) * 60
    new = np.zeros(offsets[-1], dtype=np.uint8)
    new[offsets[:-1]] = 1
    engine.compute_states(offsets, items, ts, new, num_threads=0)
    model = hrnn.HRNN(hidden_dimension=hidden, show_progress=False)
    model._attach(engine, np.arange(n_users), np.arange(n_items) * 7, rng.random(n_items))
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--hidden", type=int, default=43)
    ap.add_argument("--users", type=int, default=10_000)
    args = ap.parse_args()
    model = build(args.items, args.hidden, args.users)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.hrnn")
        t0 = time.perf_counter()
        model.save(path)
        t_save = time.perf_counter() - t0
        size = os.path.getsize(path) / 2**20
        loads = []
        for _ in range(3):
            t0 = time.perf_counter()
            loaded = hrnn.load(path)
            loads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loaded.recommend(3, 25)
        t_first = time.perf_counter() - t0
    print(f"{args.items:,} items, hidden {args.hidden}, {args.users:,} users: file {size:,.0f} MB, "
          f"save {t_save:.2f} s, load {min(loads):.2f} s (best of 3), first recommend {t_first * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
