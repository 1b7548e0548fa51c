"""Shared fixtures: small generated logs, and the real data sets when ../shared is present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def planted_log(n_users=120, n_items=60, length=30, seed=0, gap=60.0):
    """Every user walks the items in a fixed cycle i -> i+1 (mod n_items) from a random start."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, n_users)
    items = ((starts[:, None] + np.arange(length)[None, :]) % n_items).ravel()
    users = np.repeat(np.arange(n_users), length)
    ts = 1.6e9 + np.tile(np.arange(length) * gap, n_users) + np.repeat(rng.integers(0, 10**6, n_users), length)
    return users, items, ts


@pytest.fixture
def planted():
    return planted_log()


@pytest.fixture
def datasets():
    if not DATASETS.is_dir():
        pytest.skip("../shared/datasets is not present (a fresh clone): real-data tests skipped")
    return DATASETS
