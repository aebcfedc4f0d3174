"""Atomic file writes: the one place that knows how a file appears complete or not at all.

Every writer (model cards and weights, checkpoints, reports, MIDI, settings, the cache, screenshots) goes
through `atomic_write`: a temp file in the destination folder (same filesystem, so the rename is atomic), fsync,
ordinary permissions (temp files are created 0600; a result is as readable as any file the user writes), rename.
A crash, a full disk or an exception leaves the previous file (or none), never a half-written one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_path",
           "ordinary_permissions"]


def ordinary_permissions(path: str | os.PathLike) -> None:
    """Give `path` the permissions a plain `open(path, "w")` would have under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def fsync_path(path: Path) -> None:
    """Flush a finished file to disk before it is renamed into place (after a power cut it is whole or absent)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (and Windows directories) refuse fsync: the rename is still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside `dest`; on normal exit it is fsynced and renamed to `dest`, else removed.

    `suffix` lets writers that pick a format by extension (soundfile, matplotlib, Qt) see the right one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_path(tmp)
        ordinary_permissions(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(dest: str | os.PathLike, write: Callable[[Path], object], suffix: str = ".tmp") -> Path:
    """Call `write(tmp_path)` and move the result to `dest` atomically; returns `dest`."""
    with atomic_path(dest, suffix=suffix) as tmp:
        write(tmp)
    return Path(dest)


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(dest, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(dest: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write(dest, lambda tmp: tmp.write_text(text, encoding=encoding))
