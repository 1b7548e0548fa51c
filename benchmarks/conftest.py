"""Fixtures of the query benchmarks: fitted models with a 100,000-item catalogue (built once per
session, hidden 43 and 256, each only when a benchmark asks for it) and numpy's BLAS.

Run with ``python -m pytest benchmarks --benchmark-only`` (needs pytest-benchmark:
``pip install pytest-benchmark``, or ``'.[bench]'`` with torch). The default ``python -m pytest``
runs ``tests/`` only.
Set ``HRNN_BENCH_CACHE=/some/folder`` to keep the fitted models between runs.
"""
from __future__ import annotations

import numpy as np
import pytest

import _common  # (benchmarks/ is on sys.path: pytest's rootdir-relative import)

try:
    import pytest_benchmark  # noqa: F401
except ImportError:  # one line saying what to install, not a traceback
    def pytest_addoption(parser):  # (the plugin's options, so that parsing gets as far as the message)
        for name in ("--benchmark-only", "--benchmark-disable", "--benchmark-skip"):
            parser.addoption(name, action="store_true")

    def pytest_configure(config):
        raise pytest.UsageError("the benchmarks need pytest-benchmark: pip install pytest-benchmark "
                                "(or '.[bench]', which adds torch for the PyTorch comparison)")


@pytest.fixture(scope="session")
def blas():
    return _common.Blas()


@pytest.fixture(scope="session")
def bench_setup():
    """``bench_setup(hidden)`` -> (model, O, bo, users, states): the fitted model, its output
    layer, ``BATCH_USERS`` known users and their session states. Checked once: hrnn and numpy
    give the same top-k (and put_events the same state) before anything is timed."""
    built = {}

    def get(hidden: int):
        if hidden not in built:
            model = _common.bench_model(hidden)
            O, bo = _common.output_layer(model)
            users = _common.bench_users(model, _common.BATCH_USERS)
            _common.check_same_answers(model, O, bo, users)
            _common.check_same_step(model, "bench-check-step", model.item_ids_[0], 2.0e9)
            states = np.stack([model.user_state(u)[1] for u in users])
            built[hidden] = (model, O, bo, users, states)
        return built[hidden]

    return get
