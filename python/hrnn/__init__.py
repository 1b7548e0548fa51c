"""hrnn: a hierarchical recurrent recommender (gated HRNN) with a native C++ core."""
from __future__ import annotations

from . import _core, baselines, synthetic
from .data import read_interactions
from .describe import describe
from .evaluate import evaluate, split_next_item, split_personalize
from .model import HRNN
from .model_file import load
from .paired import paired_difference, per_unit_scores
from .tune import tune

__version__ = "0.1.0"


def build_info() -> dict:
    """How this copy of hrnn was built: OpenMP, CUDA compiled in, compiler."""
    return dict(_core.build_info())


__all__ = ["HRNN", "baselines", "build_info", "describe", "evaluate", "load", "paired_difference",
           "per_unit_scores", "read_interactions", "split_next_item", "split_personalize", "synthetic", "tune",
           "__version__"]
