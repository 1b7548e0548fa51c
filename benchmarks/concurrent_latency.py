"""What long calls on one model cost the other threads that query it: the latency of ``recommend``
and of creating users (their first ``put_events``) while another thread

- backfills one user, 20,000 events per call back to back: for a user that shares the backfilled
  user's lock stripe (every 64th user) and for one that does not;
- loads a model file of 250,000 users and drops the model it loaded before (a service swapping
  models), during which pure-Python work holds the GIL;

beside the same calls with nothing else running.

    python benchmarks/concurrent_latency.py [--events 20000] [--calls 3000] [--users 250000]

Run it with two builds one after the other (``PYTHONPATH=...``) to compare them.
"""
from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import threading
import time

import numpy as np

import hrnn
from hrnn.synthetic import make_log

STRIPES = 64  # UserStore's lock stripes


def latencies_us(call, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        out[i] = time.perf_counter() - t0
    return out * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20_000, help="events per backfill call")
    ap.add_argument("--calls", type=int, default=3000, help="timed calls per row")
    ap.add_argument("--users", type=int, default=250_000, help="users of the model file loaded")
    args = ap.parse_args()
    table = make_log(n_events=200_000, n_users=2000, n_items=5000, seed=0).drop_duplicates()
    model = hrnn.HRNN(epochs=1, num_threads=1, show_progress=False, random_state=0).fit(table)
    index = {u: model._user_index[u] for u in model.known_user_ids}
    users = list(index)
    busy = users[0]
    same = next(u for u in users[1:] if index[u] % STRIPES == index[busy] % STRIPES)
    other = next(u for u in users[1:] if index[u] % STRIPES != index[busy] % STRIPES)
    item = model.item_ids_[0]

    def create(tag):
        return lambda i: model.put_events(f"{tag}-{i}", [item], [3e9])

    for _ in range(200):
        model.recommend(same, 10)
    rows = {"recommend, nothing else running": latencies_us(lambda i: model.recommend(same, 10), args.calls),
            "new user, nothing else running": latencies_us(create("idle"), args.calls)}
    stop, sent = threading.Event(), [0]

    # Known items only: a call with an unknown item takes the model's lock, which creating a user
    # takes too (README, "Queries").
    known = model.item_ids_[np.arange(args.events) % len(model.item_ids_)]

    def backfill():
        t, n = 2e9, args.events
        while not stop.is_set():
            model.put_events(busy, known, t + np.arange(n))
            t += n + 10
            sent[0] += n

    thread = threading.Thread(target=backfill)
    thread.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    rows["recommend, same stripe as the backfill"] = latencies_us(lambda i: model.recommend(same, 10), args.calls)
    rows["recommend, another stripe"] = latencies_us(lambda i: model.recommend(other, 10), args.calls)
    rows["new user, during the backfill"] = latencies_us(create("busy"), args.calls)
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    rows.update(while_swapping_models(model, same, item, args))
    print(f"backfill: {args.events:,} events per call, {sent[0] / seconds:,.0f} events/s meanwhile")
    print(f"{'':46s} {'p50 us':>8s} {'p99 us':>8s} {'max us':>9s}")
    for name, x in rows.items():
        print(f"{name:46s} {np.percentile(x, 50):8.0f} {np.percentile(x, 99):8.0f} {x.max():9.0f}")


def while_swapping_models(model, user, item, args) -> dict:
    """recommend and user creation while another thread loads a model file and drops the last one."""
    table = make_log(n_events=4 * args.users, n_users=args.users, n_items=20_000, seed=1).drop_duplicates()
    big = hrnn.HRNN(epochs=1, num_threads=0, show_progress=False, random_state=0,
                    max_user_history_length_percentile=1.0).fit(table, check_minimums=False)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "big.hrnn")
        big.save(path)
        del big
        stop, loads = threading.Event(), [0]

        def swap():
            held = [hrnn.load(path)]
            while not stop.is_set():
                held[0] = hrnn.load(path)  # the one loaded before is dropped here
                loads[0] += 1

        thread = threading.Thread(target=swap)
        thread.start()
        time.sleep(0.5)

        def during_three_loads(call) -> np.ndarray:
            out, first = [], loads[0]
            while loads[0] < first + 3:
                out.append(latencies_us(call, 100))
            return np.concatenate(out)

        names = itertools.count()
        rows = {"recommend, while models load and drop": during_three_loads(lambda i: model.recommend(user, 10)),
                "new user, while models load and drop": during_three_loads(
                    lambda i: model.put_events(f"swap-{next(names)}", [item], [4e9]))}
        stop.set()
        thread.join()
    print(f"model swaps: {loads[0]} loads of {args.users:,} users meanwhile")
    return rows


if __name__ == "__main__":
    main()
