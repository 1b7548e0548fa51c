"""Training at scale: a synthetic log of 1M and 10M events (Zipf items, many sessions per user,
repeats), one epoch with the issue's settings (batch 64, bptt 32, n_sample 2048), each size in its
own process so that its peak memory is its own.

Prints events/s, the peak resident memory of the whole process (input DataFrame included) and what
the model's parameters and optimizer state take, so that the rest (the input arrays and the
O(batch x bptt x hidden) training buffers) can be read off.

    python benchmarks/scale.py                 # 1M and 10M events, hidden 43, all cores
    python benchmarks/scale.py --events 1000000 --hidden 100 --threads 1
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one_run(n_events: int, hidden: int, threads: int) -> dict:
    import warnings

    import hrnn
    from hrnn.synthetic import make_log

    t0 = time.perf_counter()
    df = make_log(n_events=n_events, seed=0)
    made = time.perf_counter() - t0
    model = hrnn.HRNN(hidden_dimension=hidden, batch_size=64, bptt=32, n_sample=2048, epochs=1,
                      num_threads=threads, show_progress=False, random_state=0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(df)
    fit = time.perf_counter() - t0
    weights = model.get_weights()
    param_mb = sum(v.nbytes for v in weights.values()) / 1e6
    return {
        "events": n_events, "items": int(df["ITEM_ID"].nunique()), "users": int(df["USER_ID"].nunique()),
        "input_mb": df.memory_usage(deep=True).sum() / 1e6, "generate_s": made, "fit_s": fit,
        "epoch_events_per_s": model.history_[0]["events_per_second"], "param_mb": param_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--hidden", type=int, default=43)
    p.add_argument("--threads", type=int, default=0, help="num_threads (0 = all cores)")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.events[0], args.hidden, args.threads)))
        return 0
    print(f"{'events':>12}{'items':>9}{'users':>9}{'epoch ev/s':>12}{'fit s':>8}{'input MB':>10}"
          f"{'params MB':>11}{'peak RSS MB':>13}")
    for n in args.events:
        out = subprocess.run([sys.executable, __file__, "--one", "--events", str(n), "--hidden",
                              str(args.hidden), "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['events']:>12,}{r['items']:>9,}{r['users']:>9,}{r['epoch_events_per_s']:>12,.0f}"
              f"{r['fit_s']:>8.1f}{r['input_mb']:>10.0f}{r['param_mb']:>11.1f}{r['peak_rss_mb']:>13,.0f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
