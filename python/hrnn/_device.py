"""Where HRNN trains and scores: the CPU, or a CUDA device (hrnn built with HRNN_CUDA)."""
from __future__ import annotations

from typing import Optional

from . import _core

BUILD_HINT = "pip install . -Ccmake.define.HRNN_CUDA=ON"


def cuda_unavailable_reason() -> Optional[str]:
    """None when a CUDA device can be used here, else why not (not compiled in, or no device)."""
    if not _core.build_info()["cuda_compiled"]:
        return f"hrnn was built without CUDA (build it with: {BUILD_HINT})"
    count, reason = _core.cuda_status()
    if count == 0:
        return f"no CUDA device is visible ({reason})"
    return None


def require(device: str) -> None:
    """ValueError naming the reason when ``device`` cannot be used here."""
    if device == "cuda":
        reason = cuda_unavailable_reason()
        if reason is not None:
            raise ValueError(f"device='cuda' is not available: {reason}")


def attach(engine, device: str) -> None:
    """Make ``engine`` train (from its next start_training on) and score on ``device``."""
    if device == "cuda":
        _core.cuda_attach(engine)
    else:
        engine.use_cpu()
