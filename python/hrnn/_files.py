"""Files written whole or not at all: a model file, a command's output."""
from __future__ import annotations

import os
import stat
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
    permissions = _permissions(path)
    fd, tmp = tempfile.mkstemp(prefix=".hrnn-", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, permissions)
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _permissions(path) -> int:
    """The permissions ``path`` should get: an existing file's own, else those of any new file
    (0o666 less the umask), not mkstemp's 0o600, which would lock a serving process running as
    another user out of a model file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        pass
    try:  # Linux says it without changing it
        with open("/proc/self/status") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask
