"""Files written whole or not at all: a model file, a command's output."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager


def check_output_path(path) -> str:
    """The errors writing ``path`` would meet first, naming ``path`` (not the temporary file);
    commands call it before their long work too. Returns the folder it goes to."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: no such folder {folder}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    return folder


@contextmanager
def atomic_file(path, mode: str = "wb", **open_args):
    """A file whose content replaces ``path`` only if the block ends without an error: written to
    a temporary file beside it, flushed to disk, then renamed over it (never a half-written file)."""
    folder = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=".hrnn-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
