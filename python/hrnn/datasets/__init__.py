"""Data sets bundled with hrnn (with their licenses beside them)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
# Installed: beside this file (CMake installs it there). A source checkout keeps it in data/.
_PLACES = (HERE / "movielens-latest-small", HERE.parents[2] / "data" / "movielens-latest-small")


def movielens_small_path() -> Path:
    """The folder of the bundled MovieLens latest-small (GroupLens terms: non-commercial; see
    ``README.grouplens.txt`` and ``NOTICE.md`` there)."""
    for place in _PLACES:
        if (place / "interactions.csv.gz").exists():
            return place
    raise FileNotFoundError("the bundled MovieLens latest-small is missing: reinstall hrnn (pip install .)")


def load_movielens_small() -> tuple:
    """(interactions, items) DataFrames of the bundled MovieLens latest-small.

    interactions: user_id, item_id, timestamp, rating (100,836 rows); items: item_id, title, genres.
    """
    folder = movielens_small_path()
    interactions = pd.read_csv(folder / "interactions.csv.gz")
    items = pd.read_csv(folder / "items.csv.gz", usecols=["item_id", "title", "genres"])
    return interactions, items
