"""The lanes' audio on disk: one raw float32 file (lanes, channels, frames), memory-mapped, pages released often.

A 1-hour song's five stereo lanes at 44.1 kHz are 6.4 GB, too much to hold in RAM, so the app maps the lanes
file from the stem cache and every consumer (player, pictures, export) slices it like the in-RAM array it used
to be. File-backed pages a process has touched count in its RSS for as long as they stay mapped, though, so a
background thread tells the kernel, every `TRIM_SECONDS` in which the process's resident file pages grew by
`TRIM_GROWTH`, that no mapping needs its pages (`MADV_DONTNEED`): on a
shared file mapping that drops them from the page tables only (they stay in the page cache, dirty ones are still
written back), and the next access refaults them in microseconds. RSS then holds only what was touched in the
last interval (the player's few blocks, a picture's or an export's block), whatever the song's length.

The file is preallocated (`posix_fallocate`) when created, so a full disk is an OSError up front instead of a
SIGBUS at the first write into a hole.

`mmap.flush()` and `mmap.madvise()` hold the GIL for the whole system call (CPython 3.11), and an msync of a
5-minute song's dirty lanes takes a quarter of a second on a fast disk: every thread of the app, the GUI's
included, would stop for that long. Both calls therefore go through ctypes (`libc.msync`, `libc.madvise`), which
releases the GIL, with the mmap methods as the fallback where libc cannot be loaded. Qt-free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
import sys
import threading
import weakref
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
DTYPE = np.dtype("<f4")
TRIM_SECONDS = 0.25
TRIM_GROWTH = 32 << 20  # bytes of newly resident file pages that make the trimmer release the lanes

_maps: "weakref.WeakSet[_TrimmedMap]" = weakref.WeakSet()
_maps_lock = threading.Lock()
_trimmer: threading.Thread | None = None
_baseline: int | None = None  # resident file pages after the last release


MS_SYNC = {"linux": 4, "darwin": 0x10}.get(sys.platform)  # <sys/mman.h>; elsewhere the mmap methods are used


def _load_libc() -> ctypes.CDLL | None:
    """libc through ctypes (a CDLL call releases the GIL), None where it cannot be found or lacks the calls."""
    if MS_SYNC is None:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        for name in ("msync", "madvise"):
            fn = getattr(libc, name)
            fn.argtypes, fn.restype = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int), ctypes.c_int
        return libc
    except (OSError, AttributeError) as exc:
        log.debug("libc not usable through ctypes (%s): mmap methods hold the GIL", exc)
        return None


_libc = _load_libc()


def _call_without_gil(mm: mmap.mmap, name: str, flag: int) -> bool:
    """libc.`name`(address of `mm`, len(mm), flag) with the GIL released; False where not possible."""
    if _libc is None or len(mm) == 0:
        return False
    view = np.frombuffer(mm, dtype=np.uint8)  # the mapping's address; raises ValueError once it is closed
    try:
        if getattr(_libc, name)(view.ctypes.data, len(mm), flag) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{name}: {os.strerror(err)}")
    finally:
        del view
    return True


def sync_mapping(mm: mmap.mmap) -> None:
    """Write a shared mapping's dirty pages to its file and wait for them (msync MS_SYNC), GIL released."""
    if not _call_without_gil(mm, "msync", MS_SYNC or 0):
        mm.flush()


def drop_mapped_pages(mm: mmap.mmap) -> None:
    """Drop a shared file mapping's pages from this process's page tables (MADV_DONTNEED), GIL released."""
    if not _call_without_gil(mm, "madvise", mmap.MADV_DONTNEED):
        mm.madvise(mmap.MADV_DONTNEED)


class _TrimmedMap:
    """An mmap registered with the trimmer thread (weakly: it goes when the last array using it goes)."""

    def __init__(self, mm: mmap.mmap) -> None:
        self.mm = mm

    def release(self) -> None:
        try:
            drop_mapped_pages(self.mm)
        except (ValueError, OSError) as exc:  # closed, or a platform without it: nothing to release
            log.debug("madvise failed: %s", exc)


def _file_pages() -> int | None:
    """Resident file-backed (and shared) pages of this process (Linux /proc), None where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return None


def _trim_loop() -> None:
    """Every TRIM_SECONDS, release the mappings if resident file pages grew by TRIM_GROWTH since the last release
    (a paused song costs nothing; playback touches ~0.2 MB a second, an export or a picture much more)."""
    global _baseline
    event = threading.Event()
    page = mmap.PAGESIZE
    _baseline = _file_pages()
    while True:
        event.wait(TRIM_SECONDS)
        now, baseline = _file_pages(), _baseline
        if now is not None and baseline is not None:
            _baseline = min(baseline, now)  # other mappings went away: growth counts from the lowest point
            if (now - _baseline) * page < TRIM_GROWTH:
                continue
        release_all()


def _register(mm: mmap.mmap) -> _TrimmedMap:
    global _trimmer
    holder = _TrimmedMap(mm)
    if not hasattr(mmap, "MADV_DONTNEED"):  # e.g. Windows: the OS pages mapped files out by itself
        return holder
    with _maps_lock:
        _maps.add(holder)
        if _trimmer is None:
            _trimmer = threading.Thread(target=_trim_loop, name="stemgui-lane-trimmer", daemon=True)
            _trimmer.start()
    return holder


def release_all() -> None:
    """Drop every mapped lane page from this process's RSS now (the trimmer; tests, benchmarks, after a long
    read); the trimmer counts growth from here."""
    global _baseline
    with _maps_lock:
        maps = list(_maps)
    for m in maps:
        m.release()
    del maps
    _baseline = _file_pages()


def nbytes(shape: tuple[int, int, int]) -> int:
    return int(np.prod(shape, dtype=np.int64)) * DTYPE.itemsize


class _MappedArray(np.ndarray):
    """An ndarray over a lanes file's mapping; keeps the mapping (and its trimmer registration) alive."""

    _holder: _TrimmedMap | None = None
    path: Path | None = None

    def __array_finalize__(self, obj) -> None:  # views and slices keep the mapping alive too
        if obj is not None:
            self._holder = getattr(obj, "_holder", None)
            self.path = getattr(obj, "path", None)

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        """Results of arithmetic on lanes are plain arrays in RAM (as np.memmap does), not mapped views."""
        arr = super().__array_wrap__(arr, context, return_scalar)
        if arr is self or not isinstance(arr, np.ndarray) or np.may_share_memory(arr, self):
            return arr
        return arr[()] if arr.shape == () else arr.view(np.ndarray)

    def __reduce__(self):  # a pickled slice is plain data
        return np.asarray(self).copy().__reduce__()


def _map(path: Path, shape: tuple[int, int, int], writable: bool) -> np.ndarray:
    size = nbytes(shape)
    with open(path, "r+b" if writable else "rb") as f:
        if os.fstat(f.fileno()).st_size < size:
            raise ValueError(f"{path}: holds {os.fstat(f.fileno()).st_size} bytes, {size} expected")
        mm = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
    holder = _register(mm)
    arr = np.ndarray(shape, dtype=DTYPE, buffer=mm).view(_MappedArray)
    arr._holder = holder
    arr.path = Path(path)
    return arr


def create_lanes(path: str | os.PathLike, shape: tuple[int, int, int]) -> np.ndarray:
    """A new zero-filled lanes file of `shape`, mapped writable. Raises OSError (ENOSPC) if it cannot fit."""
    path = Path(path)
    size = nbytes(shape)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, max(size, 1))
        else:
            os.ftruncate(fd, max(size, 1))
    except OSError:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return _map(path, shape, writable=True)


def open_lanes(path: str | os.PathLike, shape: tuple[int, int, int], writable: bool = False) -> np.ndarray:
    """An existing lanes file mapped (read-only by default) as a (lanes, channels, frames) float32 array."""
    return _map(Path(path), shape, writable)


def is_mapped(audio: np.ndarray) -> bool:
    """Whether `audio` (or the array it is a view of) lives in a mapped lanes file."""
    return getattr(audio, "_holder", None) is not None


def flush(audio: np.ndarray) -> None:
    """Write a writable mapping's dirty pages to its file (before its checksum is taken and it is renamed)."""
    holder = getattr(audio, "_holder", None)
    if holder is not None:
        sync_mapping(holder.mm)


def lane_blocks(audio: np.ndarray, lane: int, block: int = 1 << 16, start: int = 0, stop: int | None = None):
    """Consecutive (channels, n) float32 copies of one lane, `block` frames at a time (streaming readers)."""
    stop = audio.shape[2] if stop is None else min(int(stop), audio.shape[2])
    for a in range(int(start), stop, block):
        yield np.array(audio[lane, :, a:min(stop, a + block)], dtype=np.float32)
