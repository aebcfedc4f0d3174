"""The app's log: a rotating file in the user log folder, and faulthandler's traces of fatal crashes beside it.

Qt-free, so the log is set up before Qt loads (a crash while importing PySide6 or torch is still traced).
`install_logging` returns a `LogSetup` whose `close()` puts back what it changed (root level and handlers,
warnings capture, faulthandler), so an in-process run (a test calling `stemgui.gui.app.main`) leaves the
interpreter as it found it.

- `stemgui.log` (+ `.1` ... `.5`): every record at INFO and above, with tracebacks; 2 MB per file.
- `crash.log`: what `faulthandler` writes on a segfault, an abort or a fatal signal (every thread's stack).
  Each session appends a start line first, so `previous_crash()` can tell whether the last session died.
"""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from stemgui import __version__
from stemgui.paths import user_log_dir

LOG_NAME = "stemgui.log"
CRASH_NAME = "crash.log"
MAX_BYTES = 2 * 2**20  # per log file: a few days of ordinary use, a storm of tracebacks stays bounded
BACKUPS = 5
CRASH_MAX_BYTES = 1 * 2**20  # crash.log is cut to its last part at start when it grows past this
SESSION_MARK = "--- stemgui session start"
FATAL_MARK = "Fatal Python error"
LOG_FORMAT = "%(asctime)s %(levelname)-8s %(threadName)s %(name)s: %(message)s"

log = logging.getLogger(__name__)


@dataclass
class LogSetup:
    """What `install_logging` changed, and how to undo it."""

    folder: Path
    log_file: Path
    crash_file: Path
    handler: logging.Handler
    crash_stream: IO[str] | None
    previous_crash: str | None = None
    _root_level: int = logging.WARNING
    _fault_was_enabled: bool = False
    _closed: bool = field(default=False, repr=False)

    def close(self) -> None:
        """Stop logging to the file and tracing crashes to `crash_file`; restore the previous state."""
        if self._closed:
            return
        self._closed = True
        root = logging.getLogger()
        root.removeHandler(self.handler)
        root.setLevel(self._root_level)
        self.handler.close()
        logging.captureWarnings(False)
        faulthandler.disable()
        if self.crash_stream is not None:
            self.crash_stream.close()
        if self._fault_was_enabled:  # e.g. pytest's own faulthandler on stderr
            try:
                faulthandler.enable(sys.__stderr__ or sys.stderr)
            except (AttributeError, ValueError, OSError):  # no usable stderr (a windowed build)
                pass


def previous_crash(crash_file: Path) -> str | None:
    """The trace of the last session in `crash_file` if it died of a fatal error, else None."""
    try:
        text = crash_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    last = text.rfind(SESSION_MARK)
    tail = text[last:] if last >= 0 else text
    return tail.strip() if FATAL_MARK in tail else None


def _trim(path: Path, keep: int) -> None:
    """Cut `path` to its last `keep` bytes (at a line start) when it is longer than `keep`."""
    try:
        if path.stat().st_size <= keep:
            return
        with open(path, "rb") as f:
            f.seek(-keep, os.SEEK_END)
            data = f.read()
        cut = data.find(b"\n")
        path.write_bytes(data[cut + 1:] if cut >= 0 else data)
    except OSError as exc:
        log.debug("cannot trim %s: %s", path, exc)


def install_logging(folder: str | os.PathLike | None = None, level: int = logging.INFO) -> LogSetup:
    """Log to a rotating file in `folder` (default: the user log folder) and trace fatal crashes beside it.

    A folder that cannot be written (read-only home, full disk) leaves logging on stderr only: the app must
    start anyway. The returned `LogSetup.log_file` is what the crash dialog names.
    """
    folder = Path(folder) if folder is not None else user_log_dir()
    log_file, crash_file = folder / LOG_NAME, folder / CRASH_NAME
    root = logging.getLogger()
    handler: logging.Handler
    crash_stream = None
    crashed = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=MAX_BYTES, backupCount=BACKUPS,
                                                       encoding="utf-8", delay=False)
        crashed = previous_crash(crash_file)
        _trim(crash_file, CRASH_MAX_BYTES)
        crash_stream = open(crash_file, "a", encoding="utf-8")  # noqa: SIM115 - faulthandler keeps its fd
        crash_stream.write(f"{SESSION_MARK} {__version__} pid {os.getpid()} "
                           f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} ---\n")
        crash_stream.flush()
    except OSError as exc:
        handler = logging.StreamHandler(sys.stderr)
        print(f"stemgui: warning: {folder}: cannot write the log there ({exc.strerror or exc}); "
              "logging to the terminal only", file=sys.stderr)
        if crash_stream is not None:
            crash_stream.close()
            crash_stream = None
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    setup = LogSetup(folder, log_file, crash_file, handler, crash_stream, crashed,
                     _root_level=root.level, _fault_was_enabled=faulthandler.is_enabled())
    root.addHandler(handler)
    if root.level > level:
        root.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn in the app reach the log, not a terminal nobody reads
    try:
        faulthandler.enable(crash_stream if crash_stream is not None else sys.__stderr__, all_threads=True)
    except (AttributeError, ValueError, OSError) as exc:  # no file to trace to (a windowed build)
        log.warning("faulthandler is off: %s", exc)
    log.info("stemgui %s started (pid %d, Python %s)", __version__, os.getpid(), sys.version.split()[0])
    if crashed:
        log.warning("the previous session ended in a fatal error; its trace is in %s", crash_file)
    return setup
