"""A one-line training progress display on stderr (events/s, loss), and the rule by which a fit
callback stops training."""
from __future__ import annotations

import sys
import time

import numpy as np


class Progress:
    """Shows epoch, share done, events/s and loss; redraws in place on a terminal."""

    def __init__(self, epochs: int, events_per_epoch: int, enabled: bool = True, stream=None):
        self.epochs = epochs
        self.total = max(int(events_per_epoch), 1)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.epoch = 0
        self.t0 = time.perf_counter()

    def update(self, stats: dict) -> bool:
        """Called by the engine between mini-batches; returns False (do not stop)."""
        if self.enabled and self.tty:
            self._draw(stats, end="\r")
        return False

    def end_epoch(self, stats: dict) -> None:
        if self.enabled:
            self._draw(stats, end="\n")
        self.epoch += 1
        self.t0 = time.perf_counter()

    def close(self) -> None:
        self.stream.flush()

    def _draw(self, stats: dict, end: str) -> None:
        seconds = max(time.perf_counter() - self.t0, 1e-9)
        done = min(stats["events"] / self.total, 1.0)
        line = (f"epoch {self.epoch + 1}/{self.epochs} {100 * done:5.1f}%  "
                f"{stats['events'] / seconds:10,.0f} events/s  loss {stats['loss']:.4f}")
        self.stream.write(line + end)
        self.stream.flush()


def stops(answer, callback) -> bool:
    """A fit callback's answer: True stops training, None / False go on; anything else (a dict
    returned by mistake) would stop it silently, so it is an error naming the callback."""
    if answer is None or isinstance(answer, (bool, np.bool_)):
        return bool(answer)
    raise TypeError(f"callback {getattr(callback, '__name__', callback)!r} returned {type(answer).__name__}: "
                    "return True to stop training, None or False to go on")
