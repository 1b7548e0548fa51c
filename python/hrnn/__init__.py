"""hrnn: a hierarchical recurrent recommender (gated HRNN) with a native C++ core."""
from __future__ import annotations

from . import _core
from .data import read_interactions
from .describe import describe
from .model import HRNN
from .model_file import load

__version__ = "0.1.0"


def build_info() -> dict:
    """How this copy of hrnn was built: OpenMP, CUDA compiled in, compiler."""
    return dict(_core.build_info())


__all__ = ["HRNN", "build_info", "describe", "load", "read_interactions", "__version__"]
