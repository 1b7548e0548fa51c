"""Files written whole or not at all: a model file, a command's output."""
from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager


def check_output_path(path) -> str:
    """The errors writing ``path`` would meet first, naming ``path`` (not the temporary file);
    commands call it before their long work too. Returns the folder it goes to."""
    target, in_place, folder = _checked(path)
    if not in_place:  # the temporary file beside it: a folder it cannot be created in fails now
        fd, probe = _temporary(folder, path)
        os.close(fd)
        os.unlink(probe)
    return folder


def _checked(path) -> tuple:
    """(the file to write, whether in place, its folder), or the error writing ``path`` would meet:
    a FIFO or a device (/dev/stdout) is written in place; a symbolic link's target is replaced, the
    link kept (a deploy link current.hrnn -> v1.hrnn stays a link); any other path is replaced
    whole."""
    path = os.fspath(path)
    if not path:
        raise ValueError("the output path is empty")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        if not os.access(path, os.W_OK):
            raise PermissionError(f"cannot write {path}: permission denied")
        return path, True, os.path.dirname(os.path.abspath(path))
    target = os.path.realpath(path) if os.path.islink(path) else path
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: no such folder {folder}")
    if os.path.isdir(target):
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    return target, False, folder


def _temporary(folder: str, path) -> tuple:
    """mkstemp in ``folder``, its error naming ``path``."""
    try:
        return tempfile.mkstemp(prefix=".hrnn-", suffix=".tmp", dir=folder)
    except OSError as e:
        raise type(e)(f"cannot write {os.fspath(path)}: cannot create a file in {folder} "
                      f"({e.strerror or e})") from None


@contextmanager
def atomic_file(path, mode: str = "wb", **open_args):
    """A file whose content replaces ``path`` only if the block ends without an error: written to
    a temporary file beside it, flushed to disk, then renamed over it (never a half-written file).
    A FIFO or a device is written in place; a symbolic link's target is replaced."""
    target, in_place, folder = _checked(path)
    if in_place:
        with open(target, mode, **open_args) as f:
            yield f
        return
    permissions = _permissions(target)
    fd, tmp = _temporary(folder, path)
    try:
        os.chmod(tmp, permissions)
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
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
