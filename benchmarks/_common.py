"""What the benchmarks share: the fitted models they query, and the numpy computations that
hrnn's answers are compared with (same weights, same states, same top-k).

Used by conftest.py (pytest-benchmark) and by compare.py (the one-run table).
"""
from __future__ import annotations

import inspect
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import hrnn
from hrnn import datasets
from hrnn._neighbors import neighbor_index
from hrnn.data import TIMESTAMP, build_event_log
from hrnn.synthetic import make_log

N_ITEMS = 100_000          # the catalogue the query benchmarks score
N_EVENTS = 100_000         # one event per item: the smallest log that puts every item in it
N_USERS = 2_000
K = 25                     # items per recommendation (Personalize's default)
BATCH_USERS = 1_000        # users per recommend_batch call
HIDDEN = (43, 256)         # Personalize's default, and the largest hidden_dimension it allows


# The data sets beside the repository (not part of a clone: see each folder's PROVENANCE.md).
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
BUNDLED = "movielens-latest-small"  # also shipped with hrnn


def dataset_names() -> list:
    """The data sets of ``DATASETS``, or the bundled one alone where that folder is missing."""
    if not DATASETS.is_dir():
        return [BUNDLED]
    return sorted(p.name for p in DATASETS.iterdir() if (p / "interactions.csv.gz").exists())


def read_dataset(name: str):
    """A data set as hrnn reads it (yoochoose: each session is its own user); the bundled
    MovieLens latest-small where ``DATASETS`` does not have it. SystemExit naming what is missing."""
    path = DATASETS / name / "interactions.csv.gz"
    if not path.exists():
        if name != BUNDLED:
            raise SystemExit(f"{path} not found: this benchmark reads the data sets of ../shared/datasets "
                             f"beside the repository; without them, only the bundled {BUNDLED} is here")
        path = datasets.movielens_small_path() / "interactions.csv.gz"
    columns = {"USER_ID": "session_id"} if name.startswith("yoochoose") else None
    return hrnn.read_interactions(path, columns=columns)


_FITS: dict = {}  # (seed, training-set fingerprint) -> a saved fit that several evaluations share


def shared_fit(df, seed: int, **params):
    """An HRNN with its defaults (but ``params``) fitted on ``df`` with ``random_state=seed``:
    fitted once per seed, parameters and training set (the experiments evaluate several variants
    of one fit), a loaded copy each call (an evaluation puts its test events into the model it gets)."""
    key = (seed, len(df), float(df[TIMESTAMP].sum()), tuple(sorted(params.items())))
    if key not in _FITS:
        path = Path(tempfile.mkdtemp()) / "model.hrnn"
        hrnn.HRNN(random_state=seed, show_progress=False, **params).fit(df).save(path)
        _FITS[key] = path
    return hrnn.load(_FITS[key])


def bench_model(hidden: int, cache_dir: str | None = None, verbose: bool = False,
                transition_weight: float = 0.0):
    """An HRNN with a ``N_ITEMS``-item catalogue and ``hidden`` dimensions, quickly.

    Latency does not depend on how well the model is trained, so it is one epoch over a log in
    which every item appears once (``make_log(cover_items=True)`` with as many events as items),
    with one thread (robust on a shared machine). ``repeat=False`` and (unless asked for)
    ``transition_weight=0`` when HRNN has those parameters, so that ``recommend`` is exactly
    ``O h + bo`` and the numpy versions below compute the same thing. With ``cache_dir`` (or the environment variable ``HRNN_BENCH_CACHE``), the fitted
    model is saved there and loaded by later runs (``hrnn.load``: under a second).
    """
    cache_dir = cache_dir or os.environ.get("HRNN_BENCH_CACHE")
    path = None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, f"bench-h{hidden}-n{N_ITEMS}-t{transition_weight:g}"
                                       f"-v{hrnn.__version__}.hrnn")
        if os.path.exists(path):
            try:
                model = hrnn.load(path)
                model.set_params(num_threads=0)
                if verbose:
                    print(f"  loaded the hidden={hidden} model from {path}", flush=True)
                return model
            except (ValueError, TypeError, KeyError, OSError):  # an older engine's file
                pass
    t0 = time.perf_counter()
    df = make_log(n_events=N_EVENTS, n_users=N_USERS, n_items=N_ITEMS, cover_items=True)
    params = dict(hidden_dimension=hidden, epochs=1, n_sample=256, num_threads=1,
                  max_user_history_length_percentile=1.0, show_progress=False, random_state=0)
    accepted = inspect.signature(hrnn.HRNN.__init__).parameters
    if "repeat" in accepted:
        params["repeat"] = False
    if "transition_weight" in accepted:
        params["transition_weight"] = transition_weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. duplicate rows dropped: harmless here
        model = hrnn.HRNN(**params).fit(df, check_minimums=False)
    if len(model.item_ids_) != N_ITEMS:
        raise RuntimeError(f"expected a {N_ITEMS:,}-item catalogue, got {len(model.item_ids_):,}")
    if verbose:
        print(f"  built the hidden={hidden} model in {time.perf_counter() - t0:.1f} s", flush=True)
    if path:
        model.save(path)
    model.set_params(num_threads=0)  # queries: all cores, like numpy's BLAS
    return model


def session_index(model, n_events: int = 300_000, seed: int = 1) -> dict:
    """A neighbour index (``session_start_neighbors``) of the sessions of a ``make_log`` log over
    the model's catalogue: what a session-start query with votes reads, for timing it."""
    df = make_log(n_events=n_events, n_items=len(model.item_ids_), seed=seed)
    df = df[df["ITEM_ID"].isin(model.item_ids_)]
    log = build_event_log(df, model.session_gap, item_ids=model.item_ids_)
    return neighbor_index((log.offsets, log.items, log.timestamps, log.new_session), log.n_items)


def output_layer(model):
    """(O, bo) as contiguous float32 arrays (O is E when the embeddings are tied)."""
    w = model.get_weights()
    return np.ascontiguousarray(w.get("O", w["E"])), np.ascontiguousarray(w["bo"])


def bench_users(model, n: int, seed: int = 0) -> list:
    """``n`` distinct user ids the model knows."""
    ids = model.user_ids_
    return ids[np.random.default_rng(seed).choice(len(ids), n, replace=False)].tolist()


# ----------------------------------------------------------------------- the numpy versions

def numpy_recommend(O, bo, h, k: int = K):
    """Top-k items of one state: scores = O h + bo, argpartition, then sort the k."""
    scores = O @ h
    scores += bo
    top = np.argpartition(scores, -k)[-k:]
    order = np.argsort(-scores[top], kind="stable")
    return top[order], scores[top[order]]


def numpy_recommend_batch(O, bo, states, k: int = K, chunk: int = 256):
    """Top-k of many states: (states @ O.T + bo) in chunks of users, argpartition per row."""
    n = len(states)
    items = np.empty((n, k), dtype=np.int64)
    scores = np.empty((n, k), dtype=np.float32)
    for a in range(0, n, chunk):
        s = states[a:a + chunk] @ O.T
        s += bo
        top = np.argpartition(s, -k, axis=1)[:, -k:]
        vals = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        items[a:a + chunk] = np.take_along_axis(top, order, axis=1)
        scores[a:a + chunk] = np.take_along_axis(vals, order, axis=1)
    return items, scores


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gru(Wx, Wh, b, x, h):
    H = h.shape[0]
    a = Wx @ x + b
    r = _sigmoid(a[:H] + Wh[:H] @ h)
    z = _sigmoid(a[H:2 * H] + Wh[H:2 * H] @ h)
    n = np.tanh(a[2 * H:] + Wh[2 * H:] @ (r * h))
    return (1.0 - z) * n + z * h


def numpy_step(w: dict, u, h, item: int, gap: float):
    """One real-time event inside a session (docs/engine.md, "One step of one lane"): the gate
    over the item and the elapsed time, the blend with the user's proposal, the session GRU."""
    x = w["E"][item]
    s = np.tanh(w["W0"] @ u + w["b0"])
    phi = np.array([np.log1p(max(gap, 0.0) / 60.0), 0.0], dtype=np.float32)
    g = _sigmoid(w["Wg"] @ x + w["Vg"] @ phi + w["bg"])
    return _gru(w["Wsx"], w["Wsh"], w["bs"], x, g * h + (1.0 - g) * s)


# ---------------------------------------------------------------- same answers, checked once

def check_same_answers(model, O, bo, users) -> None:
    """hrnn and numpy agree on the top-k (same scores; items up to ties) before being timed."""
    items, scores = model.recommend_batch(users, num_results=K)
    states = np.stack([model.user_state(u)[1] for u in users])
    n_items, n_scores = numpy_recommend_batch(O, bo, states)
    np.testing.assert_allclose(scores, n_scores, rtol=1e-4, atol=1e-4)
    same = (np.asarray(items, dtype=np.int64) == model.item_ids_[n_items]).mean()
    if same < 0.99:
        raise AssertionError(f"hrnn and numpy top-{K} items differ in {1 - same:.1%} of places")
    one_items, one_scores = model.recommend(users[0], num_results=K)
    np.testing.assert_allclose(one_scores, scores[0], rtol=1e-5, atol=1e-5)


def check_same_step(model, user, item_id, t0: float) -> None:
    """put_events moves the state exactly as numpy_step does (an event 60 s into a session)."""
    w = model.get_weights()
    model.put_events(user, item_id, t0)  # opens a session
    u, h = model.user_state(user)
    model.put_events(user, item_id, t0 + 60.0)
    expected = numpy_step(w, u, h, int(np.flatnonzero(model.item_ids_ == item_id)[0]), 60.0)
    np.testing.assert_allclose(model.user_state(user)[1], expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ numpy's BLAS

class Blas:
    """numpy's OpenBLAS, found in this process: its kernel (core) name, configuration and thread
    count, and a way to run numpy on a given number of BLAS threads (what threadpoolctl does,
    without the dependency). Environment variables are reported, never changed."""

    ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS",
           "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")

    def __init__(self):
        import ctypes

        self.lib, self.prefix, self.suffix = None, "", ""
        try:
            with open("/proc/self/maps") as f:
                paths = sorted({line.split()[-1] for line in f
                                if "openblas" in line.lower() and ".so" in line})
        except OSError:
            paths = []
        for path in paths:
            lib = ctypes.CDLL(path)
            for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"),
                                   ("openblas", "")):
                if hasattr(lib, f"{prefix}_get_num_threads{suffix}"):
                    self.lib, self.prefix, self.suffix = lib, prefix, suffix
                    break
            if self.lib is not None:
                break
        if self.lib is not None:
            for name in ("get_corename", "get_config"):
                getattr(self.lib, f"{self.prefix}_{name}{self.suffix}").restype = ctypes.c_char_p

    def _call(self, name, *args):
        return getattr(self.lib, f"{self.prefix}_{name}{self.suffix}")(*args)

    @property
    def found(self) -> bool:
        return self.lib is not None

    def num_threads(self):
        return self._call("get_num_threads") if self.found else None

    def info(self) -> dict:
        out = {"env": {k: os.environ[k] for k in self.ENV if k in os.environ}}
        if self.found:
            out.update(core=self._call("get_corename").decode(),
                       config=self._call("get_config").decode(), threads=self.num_threads())
        try:
            import threadpoolctl
            out["threadpoolctl"] = threadpoolctl.threadpool_info()
        except ImportError:
            pass
        return out

    def threads(self, n):
        """Context manager: numpy's BLAS on ``n`` threads inside (None: leave as is)."""
        import contextlib

        @contextlib.contextmanager
        def ctx():
            if n is None or not self.found:
                yield
                return
            old = self.num_threads()
            self._call("set_num_threads", n)
            try:
                yield
            finally:
                self._call("set_num_threads", old)
        return ctx()


def sgemm_gflops(n: int = 2048, repeats: int = 3) -> float:
    """numpy's float32 matrix product rate: the best of ``repeats`` n x n x n products."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm up (threads, pages)
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t
