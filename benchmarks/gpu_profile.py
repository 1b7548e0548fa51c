"""Where the CUDA engine's time goes, kernel by kernel (for the next speed-ups of issue 7).

Run under Nsight Compute, which times every kernel of a short fit (four windows at hidden 100, batch
512, n_sample 2048) or of recommend_batch (10,000 users, 1M items, hidden 43, k 25), then summarise
its CSV:

    ncu --clock-control none --metrics gpu__time_duration.sum --csv --log-file k.csv \\
        python benchmarks/gpu_profile.py --fit        # or --score
    python benchmarks/gpu_profile.py --summarise k.csv

--score-timing (without ncu) times the same recommend_batch and the host's share of it.
benchmarks/gpu_check.sh runs the scoring profile when PROFILE=1 (PROFILE=fit: the training one).
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
import warnings
from collections import defaultdict


def fit() -> None:
    import hrnn
    from hrnn.synthetic import make_log

    log = make_log(n_events=30_000, n_items=50_000, seed=1)
    model = hrnn.HRNN(hidden_dimension=100, batch_size=512, n_sample=2048, bptt=32, epochs=1,
                      max_user_history_length_percentile=1.0, show_progress=False, random_state=0,
                      num_threads=0, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(log, check_minimums=False)
    print(f"windows: {model.history_[0].get('windows', '?')}, events: {model.history_[0]['events']}")


def score(timing: bool) -> None:
    import time

    import numpy as np

    from gpu_bench import scoring_engine
    from hrnn import _core

    engine = scoring_engine(1_000_000, 43, n_users=20_000)
    users = np.arange(10_000, dtype=np.int64)
    if timing:  # the host's preparation: the same query on the CPU, its scoring cut to one item
        tiny = np.array([0], dtype=np.int32)
        engine.recommend_batch(users, 25, include=tiny)
        t0 = time.perf_counter()
        engine.recommend_batch(users, 25, include=tiny)
        host = time.perf_counter() - t0
    _core.cuda_attach(engine)
    engine.recommend_batch(users, 25)  # the device copy of the output layer, made once
    t0 = time.perf_counter()
    engine.recommend_batch(users, 25)
    total = time.perf_counter() - t0
    if timing:
        print(f"recommend_batch, 10,000 users: {total * 1e3:.1f} ms on cuda ({len(users) / total:,.0f} users/s); "
              f"the host's preparation about {host * 1e3:.1f} ms")


def kernel_name(full: str) -> str:
    """'void hrnn::cuda::(anonymous namespace)::gemm_kernel<(hrnn::cuda::Op)0, ...>(int, ...)' ->
    'gemm_kernel<0, ...>'."""
    m = re.search(r"([A-Za-z_]\w*)(<.*?>)?\(", full.replace("(anonymous namespace)", ""))
    return m.group(0)[:-1].replace("(hrnn::cuda::Op)", "") if m else full[:60]


def summarise(path: str, top: int = 25) -> None:
    total, count = defaultdict(float), defaultdict(int)
    with open(path, newline="") as f:
        rows = [line for line in f if line.startswith('"')]  # ncu's own messages are not CSV rows
    for row in csv.DictReader(rows):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        name = kernel_name(row["Kernel Name"])
        total[name] += float(row["Metric Value"].replace(",", ""))
        count[name] += 1
    grand = sum(total.values())
    print(f"{len(total)} kernels, {sum(count.values())} launches, {grand / 1e6:.2f} ms of kernel time")
    print(f"{'kernel':<40} {'launches':>8} {'ms':>9} {'share':>6} {'us/launch':>10}")
    for name, ns in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{name[:40]:<40} {count[name]:>8} {ns / 1e6:>9.2f} {ns / grand:>6.1%} {ns / count[name] / 1e3:>10.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fit", action="store_true", help="run the short CUDA fit (under ncu)")
    ap.add_argument("--score", action="store_true", help="run recommend_batch on CUDA (under ncu)")
    ap.add_argument("--score-timing", action="store_true", help="time recommend_batch and its host share")
    ap.add_argument("--summarise", metavar="CSV", help="summarise ncu's CSV by kernel")
    args = ap.parse_args()
    if args.fit:
        fit()
    if args.score or args.score_timing:
        score(args.score_timing)
    if args.summarise:
        summarise(args.summarise)
    return 0


if __name__ == "__main__":
    sys.exit(main())
