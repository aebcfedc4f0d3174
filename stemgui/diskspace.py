"""Free disk space: checked before a big write, and recognised when a write failed for the lack of it.

The one owner of "is the disk full?" for the export and `stemgui separate`. A full disk reaches us in two
shapes: an `OSError` with `ENOSPC`/`EDQUOT` somewhere in the exception chain (Python's own file writes), or
libsndfile's bare "System error." (soundfile's `LibsndfileError` code 2, the errno lost); for the latter the
free space left decides.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from stemgui.errors import AudioError

FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
NEARLY_FULL = 1 << 20  # with less than this free, a failed write is taken to be a full disk
SNDFILE_SYSTEM_ERROR = 2  # libsndfile's SF_ERR_SYSTEM: a failed write(2), errno not kept


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Bytes free for the user in `folder` (or its nearest existing parent); None when it cannot be told."""
    path = Path(folder)
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def check_free_space(folder: str | os.PathLike, needed: int) -> None:
    """Raise AudioError before any work when `folder`'s disk has less than `needed` bytes free."""
    free = free_bytes(folder)
    if free is not None and free < needed:
        raise AudioError(f"{folder}: the disk is full ({free // 2**20} MB free, about {needed // 2**20 + 1} MB "
                         "needed); nothing was written.")


def is_disk_full(exc: BaseException | None, folder: str | os.PathLike, needed: int = NEARLY_FULL) -> bool:
    """Whether `exc` (or what caused it) means the disk holding `folder` ran out of space.

    `needed`: what the failed write still wanted; a bare libsndfile system error with less than that free
    counts as a full disk, and so does any other I/O error with under NEARLY_FULL left.
    """
    seen: set[int] = set()
    sndfile_system = io_error = False
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
            return True
        if getattr(exc, "code", None) == SNDFILE_SYSTEM_ERROR and type(exc).__name__ == "LibsndfileError":
            sndfile_system = True
        io_error = io_error or isinstance(exc, OSError)
        exc = exc.__cause__ or exc.__context__
    if not (sndfile_system or io_error):  # e.g. a corrupt input file: not about space, however full the disk
        return False
    free = free_bytes(folder)
    return free is not None and free < (max(needed, NEARLY_FULL) if sndfile_system else NEARLY_FULL)
