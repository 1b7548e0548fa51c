"""The CUDA engine's speed beside the CPU's, in one run (issue 7's figures):

* training events/s at hidden 100 and 256, batch 256 / 512 / 1024, n_sample 2048, bptt 32, on a
  synthetic log (the CPU on fewer events: it is much slower, and events/s does not depend on the
  log's length once it spans many windows);
* recommend_batch users/s on a 1M-item catalogue (random parameters, the repeat score on, k = 25):
  the CUDA engine's default (the candidate pass) beside its full pass (every score written) and the CPU.

    python benchmarks/gpu_bench.py [--out figures.json] [--quick]

Needs hrnn built with CUDA (pip install . -Ccmake.define.HRNN_CUDA=ON) and a visible device;
benchmarks/gpu_check.sh runs it with the CUDA tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

import hrnn
from hrnn import _core, _device
from hrnn.synthetic import make_log


def train_rate(log, device: str, hidden: int, batch: int, n_sample: int = 2048) -> dict:
    """Training events/s of one epoch (the fit's own figure: planning, windows, optimizer)."""
    model = hrnn.HRNN(hidden_dimension=hidden, batch_size=batch, n_sample=n_sample, bptt=32, epochs=1,
                      max_user_history_length_percentile=1.0, show_progress=False, random_state=0,
                      num_threads=0, device=device)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(log, check_minimums=False)
    h = model.history_[0]
    return {"events": h["events"], "seconds": h["seconds"], "events_per_second": h["events_per_second"],
            "loss": h["loss"], "fit_seconds": time.perf_counter() - t0}


def scoring_engine(n_items: int, hidden: int, n_users: int, seed: int = 0):
    """An engine with random parameters and a state for each of n_users users (a few events each)."""
    rng = np.random.default_rng(seed)
    e = _core.Engine(n_items, hidden, True, seed)
    for name in ("rc", "rd", "rV"):
        e.set_param(name, rng.normal(0, 0.1, e.get_param(name).shape).astype(np.float32))
    lengths = rng.integers(1, 6, n_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = rng.integers(0, n_items, offsets[-1]).astype(np.int32)
    ts = np.concatenate([np.sort(rng.uniform(1.6e9, 1.6e9 + 1e5, n)) for n in lengths])
    new = np.zeros(offsets[-1], np.uint8)
    new[offsets[:-1]] = 1
    e.compute_states(offsets, items, ts, new)
    e.set_fallback_scores(np.zeros(n_items, np.float32))
    return e


def scoring_rate(engine, users: np.ndarray, batch: int, k: int = 25, seconds: float = 5.0) -> dict:
    """recommend_batch users/s over batches of `batch` users, for about `seconds`."""
    engine.recommend_batch(users[:batch], k)  # warm-up (device upload, thread pools)
    done, t0, at = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        engine.recommend_batch(users[at:at + batch], k)
        done += len(users[at:at + batch])
        at = (at + batch) % (len(users) - batch + 1)
    dt = time.perf_counter() - t0
    return {"users": done, "seconds": dt, "users_per_second": done / dt}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="write the figures to this JSON file")
    ap.add_argument("--gpu-events", type=int, default=2_000_000, help="training log size on the GPU")
    ap.add_argument("--cpu-events", type=int, default=100_000, help="training log size on the CPU")
    ap.add_argument("--items", type=int, default=1_000_000, help="catalogue size for recommend_batch")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.gpu_events, args.cpu_events, args.items = 200_000, 60_000, 100_000
    reason = _device.cuda_unavailable_reason()
    if reason:
        print(f"gpu_bench: CUDA is not available: {reason}", file=sys.stderr)
        return 2
    figures = {"build": hrnn.build_info(), "machine": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "training": [], "recommend_batch": []}
    print(f"build: {figures['build']}", flush=True)

    print("\ntraining events/s (n_sample 2048, bptt 32, repeat on, tied)", flush=True)
    print(f"{'hidden':>6} {'batch':>6} {'cuda':>12} {'cpu':>12} {'ratio':>7}  loss cuda / cpu", flush=True)
    gpu_log = make_log(n_events=args.gpu_events, n_items=50_000, seed=1)
    cpu_log = make_log(n_events=args.cpu_events, n_items=50_000, seed=1)
    for hidden in (100, 256):
        for batch in (256, 512, 1024):
            g = train_rate(gpu_log, "cuda", hidden, batch)
            c = train_rate(cpu_log, "cpu", hidden, batch)
            figures["training"].append({"hidden": hidden, "batch": batch, "cuda": g, "cpu": c})
            print(f"{hidden:>6} {batch:>6} {g['events_per_second']:>12,.0f} {c['events_per_second']:>12,.0f} "
                  f"{g['events_per_second'] / c['events_per_second']:>6.1f}x  {g['loss']:.3f} / {c['loss']:.3f}",
                  flush=True)

    # Where a window's time goes: the output layer's share grows with n_sample, the rest is the
    # recurrent part (sequential over bptt steps) and the optimizer.
    print("\ncuda training events/s at hidden 100, batch 512, by n_sample", flush=True)
    figures["training_by_n_sample"] = []
    for n_sample in (0, 512, 2048):
        g = train_rate(gpu_log, "cuda", 100, 512, n_sample)
        figures["training_by_n_sample"].append({"n_sample": n_sample, "cuda": g})
        print(f"{n_sample:>6} {g['events_per_second']:>12,.0f}", flush=True)

    print(f"\nrecommend_batch users/s, {args.items:,} items, k 25 (cuda: the candidate pass, and every score "
          "written)", flush=True)
    print(f"{'hidden':>6} {'batch':>6} {'cuda':>12} {'cuda full':>12} {'cpu':>12} {'ratio':>7}", flush=True)
    for hidden in (43, 100):
        engine = scoring_engine(args.items, hidden, n_users=50_000)
        users = np.arange(50_000, dtype=np.int64)
        for batch in (1_000, 10_000):
            c = scoring_rate(engine, users, batch, seconds=3.0)
            _core.cuda_attach(engine, scoring="full")
            f = scoring_rate(engine, users, batch)
            _core.cuda_attach(engine, scoring="auto")
            g = scoring_rate(engine, users, batch)
            engine.use_cpu()
            figures["recommend_batch"].append({"items": args.items, "hidden": hidden, "batch": batch, "cuda": g,
                                               "cuda_full": f, "cpu": c})
            print(f"{hidden:>6} {batch:>6} {g['users_per_second']:>12,.0f} {f['users_per_second']:>12,.0f} "
                  f"{c['users_per_second']:>12,.0f} {g['users_per_second'] / c['users_per_second']:>6.1f}x",
                  flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=1)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
