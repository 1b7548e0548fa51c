"""hrnn's query (and, with --train, training) speed beside numpy doing the same computation,
measured side by side in one run, as one table.

    python benchmarks/compare.py            # queries: about 1-3 minutes
    python benchmarks/compare.py --train    # + training events/s, beside
                                                              # PyTorch when torch is installed

Variants are measured interleaved (blocks of calls, rotating), so a load spike from another
process hits all of them; read the ratios, not the absolute times. See benchmarks/README.md for
what each figure means.
"""
from __future__ import annotations

import argparse
import inspect
import os
import platform
import sys
import time

import numpy as np

import hrnn
import _common
from _common import K, N_ITEMS


# ------------------------------------------------------------------------------ measuring

LABEL, NAME = 12, 42  # widths of the two label columns of the tables
PRIOR = 0.5  # a typical transition_weight (what "auto" falls back to)

def interleaved(variants: dict, calls: int, block: int = 25, warmup: int = 5) -> dict:
    """name -> per-call seconds; ``variants`` maps a name to (function, BLAS threads or None).
    Blocks of ``block`` calls of each variant in turn, the order rotating every round; a block of
    several calls starts with one untimed call, which pays for what the previous variant left
    behind (BLAS threads still spinning, its own data in the caches)."""
    blas = _common.Blas()
    names = list(variants)
    times = {n: [] for n in names}
    for n in names:  # warm up caches, thread pools and lazily built lookups
        f, threads = variants[n]
        with blas.threads(threads):
            for _ in range(warmup):
                f()
    rounds = max(1, -(-calls // block))
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            f, threads = variants[n]
            out = times[n]
            with blas.threads(threads):
                if block > 1:
                    f()
                for _ in range(block):
                    t = time.perf_counter_ns()
                    f()
                    out.append(time.perf_counter_ns() - t)
    return {n: np.asarray(v, dtype=np.float64) * 1e-9 for n, v in times.items()}


def pct_us(t: np.ndarray, q: float) -> float:
    return float(np.percentile(t, q)) * 1e6


# ------------------------------------------------------------------------------ the sections

def environment(blas: "_common.Blas") -> None:
    info = blas.info()
    build = hrnn.build_info()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"hrnn {hrnn.__version__}  build {build}")
    print(f"python {platform.python_version()}  numpy {np.__version__}  cpu "
          f"{platform.processor() or platform.machine()}  cores available {cores}  "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if blas.found:
        print(f"numpy BLAS: {info['config'].strip()}; kernel (core) in use: {info['core']}; "
              f"threads: {info['threads']}")
    else:
        print("numpy BLAS: not found in this process (numpy 1-thread rows use the default)")
    env = info["env"]
    print("environment: " + (", ".join(f"{k}={v}" for k, v in env.items()) or "no BLAS/OpenMP "
                                                                               "variables set"))
    if "OPENBLAS_CORETYPE" in env:
        print(f"  note: OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE']} forces that kernel set on "
              "whatever CPU this is (left as found; numpy may be slower than it could be)")
    if "threadpoolctl" in info:
        for pool in info["threadpoolctl"]:
            print(f"  threadpoolctl: {pool.get('internal_api')} {pool.get('version')} "
                  f"threads={pool.get('num_threads')} arch={pool.get('architecture')} "
                  f"{pool.get('filepath')}")
    else:
        print("  threadpoolctl: not installed")


def sgemm(blas) -> dict:
    rates = {"default": _common.sgemm_gflops()}
    with blas.threads(1):
        rates["1 thread"] = _common.sgemm_gflops()
    n_default = blas.num_threads() if blas.found else "?"
    print(f"\nnumpy sgemm, 2048 x 2048 float32 matmul: {rates['default']:.1f} GFLOP/s "
          f"({n_default} BLAS threads), {rates['1 thread']:.1f} GFLOP/s (1 thread)")
    return rates


def header(title: str, cols: str) -> None:
    print(f"\n{title}")
    print(f"  {'':<{LABEL + NAME}}{cols}")


def queries(hidden_sizes, calls: int, batch_rounds: int, cache, blas, rates) -> None:
    n_thr = blas.num_threads() if blas.found else "default"
    built = {}
    print(f"\nbuilding the {N_ITEMS:,}-item models (one epoch on {_common.N_EVENTS:,} events; "
          "cached with --cache)")
    for hidden in hidden_sizes:
        model = _common.bench_model(hidden, cache_dir=cache, verbose=True)
        O, bo = _common.output_layer(model)
        users = _common.bench_users(model, _common.BATCH_USERS)
        _common.check_same_answers(model, O, bo, users)
        _common.check_same_step(model, "compare-check-step", model.item_ids_[0], 2.0e9)
        states = np.stack([model.user_state(u)[1] for u in users])
        built[hidden] = (model, O, bo, users, states)
    print("  checked: hrnn and numpy give the same top-25 and the same put_events state")
    # The same models with the default transition prior (extra boosts per query: the successors of
    # the user's last 10 items); the numpy rows have no such term.
    prior = {h: _common.bench_model(h, cache_dir=cache, transition_weight=PRIOR)
             for h in hidden_sizes if "transition_weight" in inspect.signature(hrnn.HRNN).parameters}
    for hidden, (model, O, bo, users, states) in built.items():
        table = getattr(model._engine, "scoring_table_bytes", None)  # absent in older versions
        if table is not None:
            print(f"  hidden {hidden}: scoring table {table() / 1e6:.1f} MB (int8 codes, a scale "
                  f"and a bias per item) beside the float32 output layer's {O.nbytes / 1e6:.1f} MB")

    header(f"recommend: one user, top {K} of {N_ITEMS:,} items ({calls} calls each)",
           f"{'p50 us':>10}{'p99 us':>10}   hrnn speed-up (p50)")
    for hidden, (model, O, bo, users, states) in built.items():
        u, h = users[1], states[1]
        t = interleaved({
            "hrnn recommend": (lambda: model.recommend(u, K), None),
            f"numpy O@h+bo, argpartition ({n_thr} BLAS thr)":
                (lambda: _common.numpy_recommend(O, bo, h, K), None),
            "numpy, 1 BLAS thread": (lambda: _common.numpy_recommend(O, bo, h, K), 1)}, calls)
        base = pct_us(t["hrnn recommend"], 50)
        for i, (name, v) in enumerate(t.items()):
            label = f"hidden {hidden:<4}" if i == 0 else ""
            ratio = "" if i == 0 else f"   {pct_us(v, 50) / base:5.2f}x"
            print(f"  {label:<{LABEL}}{name:<{NAME}}{pct_us(v, 50):>10,.0f}{pct_us(v, 99):>10,.0f}{ratio}")
        # as a server runs it: one call after another, nothing else in between
        v = interleaved({"": (lambda: model.recommend(u, K), None)}, 5 * calls, block=5 * calls)[""]
        name = f"hrnn recommend, {5 * calls:,} calls back to back"
        print(f"  {'':<{LABEL}}{name:<{NAME}}{pct_us(v, 50):>10,.0f}{pct_us(v, 99):>10,.0f}")
        if prior.get(hidden) is not None:  # what a default model adds: the transition prior's boosts
            v = interleaved({"": (lambda: prior[hidden].recommend(u, K), None)}, calls)[""]
            name = f"hrnn recommend, transition_weight={PRIOR}"
            print(f"  {'':<{LABEL}}{name:<{NAME}}{pct_us(v, 50):>10,.0f}{pct_us(v, 99):>10,.0f}")

    header(f"put_events: one event per call, inside a session ({4 * calls} calls each)",
           f"{'p50 us':>10}{'p99 us':>10}   hrnn speed-up (p50)")
    for hidden, (model, O, bo, users, states) in built.items():
        w = model.get_weights()
        u_state, h_state = model.user_state(users[2])
        clock = iter(range(2_100_000_000, 2_200_000_000))
        item = model.item_ids_[7]
        user = f"compare-put-{hidden}"
        t = interleaved({
            "hrnn put_events": (lambda: model.put_events(user, item, next(clock)), None),
            "numpy step (gate + session GRU)":
                (lambda: _common.numpy_step(w, u_state, h_state, 7, 1.0), None)}, 4 * calls)
        base = pct_us(t["hrnn put_events"], 50)
        for i, (name, v) in enumerate(t.items()):
            label = f"hidden {hidden:<4}" if i == 0 else ""
            ratio = "" if i == 0 else f"   {pct_us(v, 50) / base:5.2f}x"
            print(f"  {label:<{LABEL}}{name:<{NAME}}{pct_us(v, 50):>10,.1f}{pct_us(v, 99):>10,.1f}{ratio}")

    n_users = _common.BATCH_USERS
    header(f"recommend_batch: {n_users:,} users, top {K} of {N_ITEMS:,} items (median of "
           f"{batch_rounds} calls each)", f"{'users/s':>10}{'GFLOP/s':>10}   hrnn speed-up")
    print(f"  {'':<{LABEL}}(GFLOP/s counts the scoring only, 2 * items * hidden per user; numpy "
          f"sgemm: {rates['default']:.0f} GFLOP/s, {rates['1 thread']:.0f} on 1 thread)")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    for hidden, (model, O, bo, users, states) in built.items():
        def hrnn_batch(threads):
            def run():
                model.set_params(num_threads=threads)  # read by recommend_batch per call
                model.recommend_batch(users, K)
            return run
        t = interleaved({
            f"hrnn num_threads=0 ({cores} cores)": (hrnn_batch(0), None),
            "hrnn num_threads=1": (hrnn_batch(1), None),
            f"numpy states@O.T+bo ({n_thr} BLAS thr)":
                (lambda: _common.numpy_recommend_batch(O, bo, states, K), None),
            "numpy, 1 BLAS thread": (lambda: _common.numpy_recommend_batch(O, bo, states, K), 1)},
            batch_rounds, block=1, warmup=1)
        model.set_params(num_threads=0)
        flop = 2.0 * N_ITEMS * hidden * n_users
        rows = {name: float(np.median(v)) for name, v in t.items()}
        best_hrnn = min(list(rows.values())[:2])
        for i, (name, sec) in enumerate(rows.items()):
            label = f"hidden {hidden:<4}" if i == 0 else ""
            ratio = f"   {sec / best_hrnn:5.2f}x" if i >= 2 else ""
            print(f"  {label:<{LABEL}}{name:<{NAME}}{n_users / sec:>10,.0f}{flop / sec / 1e9:>10,.1f}"
                  f"{ratio}")
    print("  (speed-up: the faster hrnn row against each numpy row)")


TORCH_VERSION = "2.13.0"


def _torch_model():
    """benchmarks/torch_hrnn.py, or None (with the line that says how to get it) without torch."""
    try:
        import torch_hrnn
    except ImportError as exc:
        if getattr(exc, "name", None) != "torch":
            raise
        print(f"  pip install torch=={TORCH_VERSION} (or hrnn[bench]) to add the PyTorch column")
        return None
    return torch_hrnn


def training(n_events: int, rates, rounds: int) -> None:
    import warnings

    from hrnn.synthetic import make_log

    B, S, T = 64, 2048, 32
    df = make_log(n_events=n_events, seed=0)
    header(f"training: {n_events:,}-event synthetic log ({df['ITEM_ID'].nunique():,} items), "
           f"one epoch, batch_size {B}, bptt {T}, n_sample {S}, best of {rounds} (interleaved)",
           f"{'events/s':>10}{'GFLOP/s':>10}{'of sgemm':>10}{'loss':>8}   hrnn speed-up")
    print(f"  {'':<{LABEL}}(GFLOP/s estimated as events/s x (2*3*(B+S)*H + 2*3*10*H^2); sgemm "
          f"{rates['default']:.0f} GFLOP/s, {rates['1 thread']:.0f} on 1 thread)")
    # dropout off: the PyTorch model has none (hrnn's default is 0.2)
    base = dict(batch_size=B, bptt=T, n_sample=S, epochs=1, dropout=0.0, show_progress=False,
                random_state=0)
    th = _torch_model()
    if th is not None:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            errors = th.check_same_math()
            events = th.Events.like_hrnn(hrnn.HRNN(**base), df)
        pad = " " * (2 + LABEL)
        print(f"{pad}PyTorch {torch.__version__} (benchmarks/torch_hrnn.py): the same model with "
              "hrnn's defaults (repeat score,\n"
              f"{pad}extra columns, tied embeddings, logQ, Adagrad; dropout off in both), checked "
              "first against hrnn: states,\n"
              f"{pad}loss and gradients of training windows, user states, recommend scores "
              f"(largest relative error {max(errors.values()):.1e})")
        t0 = time.perf_counter()
        recent = th.RecentLists(events)
        print(f"{pad}(its repeat lists of each event, built once per data set, not timed: "
              f"{time.perf_counter() - t0:.1f} s)")

    def run_hrnn(hidden, threads):
        model = hrnn.HRNN(hidden_dimension=hidden, num_threads=threads, **base)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(df)
        return model.history_[0]

    def run_torch(hidden, threads, r):
        torch.set_num_threads(threads)
        return th.Trainer(events, hidden, batch_size=B, bptt=T, n_sample=S, seed=r,
                          recent=recent).epoch()

    for hidden in (43, 100):
        flop_per_event = 2 * 3 * (B + S) * hidden + 2 * 3 * 10 * hidden ** 2
        for threads in (1, 2):
            runs = {"hrnn": [], "torch": []}
            for r in range(rounds):  # alternate which goes first: a load spike hits both
                order = ("hrnn", "torch") if r % 2 == 0 else ("torch", "hrnn")
                for name in order:
                    if name == "hrnn":
                        runs[name].append(run_hrnn(hidden, threads))
                    elif th is not None:
                        runs[name].append(run_torch(hidden, threads, r))
            best = {n: max(v, key=lambda st: st["events_per_second"]) for n, v in runs.items() if v}
            if "torch" in best and best["torch"]["events"] != best["hrnn"]["events"]:
                raise AssertionError(f"hrnn trained on {best['hrnn']['events']:,} events, the "
                                     f"PyTorch model on {best['torch']['events']:,}")
            ref = rates["1 thread"] if threads == 1 else rates["default"]
            for i, (name, st) in enumerate(best.items()):
                eps = st["events_per_second"]
                gflops = eps * flop_per_event / 1e9
                label = f"hidden {hidden:<4}" if threads == 1 and i == 0 else ""
                what = (f"hrnn num_threads={threads}" if name == "hrnn" else
                        f"PyTorch, set_num_threads({threads})")
                ratio = (f"   {best['hrnn']['events_per_second'] / eps:5.2f}x"
                         if name == "torch" else "")
                print(f"  {label:<{LABEL}}{what:<{NAME}}{eps:>10,.0f}{gflops:>10,.1f}"
                      f"{gflops / ref:>10.1%}{st['loss']:>8.3f}{ratio}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python "
                                       "benchmarks/compare.py --train --cache /tmp/hrnn-bench")
    p.add_argument("--hidden", type=int, nargs="+", default=list(_common.HIDDEN),
                   help="hidden dimensions of the query models (default: 43 256)")
    p.add_argument("--calls", type=int, default=400,
                   help="calls per variant for the latency percentiles (default: 400)")
    p.add_argument("--batch-rounds", type=int, default=5,
                   help="recommend_batch calls per variant (default: 5)")
    p.add_argument("--cache", metavar="DIR", help="keep the fitted query models in DIR "
                   "(default: $HRNN_BENCH_CACHE, else rebuild every run)")
    p.add_argument("--train", action="store_true", help="also measure training events/s")
    p.add_argument("--train-events", type=int, default=300_000,
                   help="events in the training log (default: 300,000)")
    p.add_argument("--train-rounds", type=int, default=2,
                   help="epochs of each training variant, interleaved; the best counts "
                        "(default: 2)")
    p.add_argument("--no-queries", action="store_true", help="skip the query benchmarks")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    blas = _common.Blas()
    environment(blas)
    rates = sgemm(blas)
    if not args.no_queries:
        queries(args.hidden, args.calls, args.batch_rounds, args.cache, blas, rates)
    if args.train:
        training(args.train_events, rates, args.train_rounds)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s; load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
