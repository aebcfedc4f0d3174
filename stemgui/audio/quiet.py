"""Keep C libraries' own diagnostics off the user's terminal.

libmpg123 (inside libsndfile) prints "Note: Illegal Audio-MPEG-Header ..." and resync notes straight to file
descriptor 2 while it probes or decodes a damaged file, and FFmpeg can log there too. Those lines mean nothing to
a user, who gets our one-sentence AudioError instead. `quiet_stderr()` points fd 2 at /dev/null around each call
into a decoder (short windows: one open or one block read) and restores it after; nested and concurrent uses
share one redirection. Set STEMGUI_DECODER_LOG=1 to see the libraries' output when debugging.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_saved: int | None = None


def _enabled() -> bool:
    return os.environ.get("STEMGUI_DECODER_LOG", "") in ("", "0")


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence fd 2 (what C code writes to) for the duration; Python's sys.stderr object is left alone."""
    global _depth, _saved
    if not _enabled():
        yield
        return
    with _lock:
        if _depth == 0:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                try:
                    _saved = os.dup(2)
                    os.dup2(devnull, 2)
                finally:
                    os.close(devnull)
            except OSError:  # no fd 2 at all (a windowed app): nothing to silence
                _saved = None
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                try:
                    os.dup2(_saved, 2)
                finally:
                    os.close(_saved)
                    _saved = None


def quiet_av_logging() -> None:
    """Ask PyAV to keep FFmpeg's log to itself (belt and braces next to `quiet_stderr`)."""
    try:
        import av.logging

        av.logging.set_level(None)
    except (ImportError, AttributeError, TypeError, ValueError):
        pass
