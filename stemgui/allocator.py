"""The C heap under concurrent CPU inference: one glibc malloc arena instead of one per worker thread.

glibc gives each thread that allocates its own arena (up to 8 x cores), and an arena keeps what its thread
freed for that thread's reuse. With two segments computed at once, each worker's freed activations stay in
its own arena, so the peak RSS carries both workers' high-water marks plus their fragmentation. Sharing one
arena lets either worker reuse what the other freed: the bundled model on 60 s (2 workers) peaked at
1,014-1,068 MB (3 runs) against 1,051-1,184 MB (2 runs), at the same speed; as MALLOC_ARENA_MAX=1 set
before start, 972-1,043 MB (benchmarks/separate_speed.py, issue 15 notes). Large allocations take the arena
lock for microseconds, so contention costs nothing measurable.

Only glibc has `mallopt`; elsewhere (macOS, Windows, musl) this is a logged no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h
_lock = threading.Lock()
_applied: bool | None = None


def share_malloc_arena() -> bool:
    """Cap glibc's arenas at one for the rest of the process (threads that already have one keep it).

    Returns whether the cap is in force. Idempotent; call before starting worker threads.
    """
    global _applied
    with _lock:
        if _applied is None:
            _applied = _set_arena_max(1)
        return _applied


def _set_arena_max(count: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:  # musl has no mallopt
        log.debug("malloc arenas left as they are: %s", exc)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_ARENA_MAX, count))
    log.debug("malloc arenas capped at %d: %s", count, ok)
    return ok
