"""Drag a stem out of its lane to a file manager or a DAW.

The stem is exported on the fly, with the app's own export (`export.export_stems`, in an `ExportWorker` off the
GUI thread while a local event loop keeps the window responsive), to the configured export folder and format,
then handed to the system as a file URL. A file written for a drag is reused by the next drag of the same stem;
an unrelated file of the same name is never replaced (the new one gets a " (2)" suffix). Written files have
ordinary permissions (the export writer honours the umask), so a DAW or another user can read them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QEventLoop, QMimeData, QObject, Qt, QUrl
from PySide6.QtGui import QDrag, QGuiApplication

from stemgui.gui import export as exporter
from stemgui.gui.workers import ExportWorker, Session

log = logging.getLogger(__name__)


class StemDragOut(QObject):
    """Makes (or reuses) the file for one stem of a session and runs the drag."""

    def __init__(self, folder: Callable[[], str], fmt: Callable[[], str], parent: QObject | None = None):
        super().__init__(parent)
        self._folder, self._fmt = folder, fmt
        self._made: dict[tuple, Path] = {}  # (session id, stem, frames, format, folder) -> file we wrote
        self.last_error = ""

    def stem_file(self, session: Session, stem: str) -> Path | None:
        """The stem's file in the export folder (written now unless this session already wrote it), or None."""
        frames = session.frames if session.complete else session.available
        if frames <= 0 or stem not in session.stem_names:
            self.last_error = "Nothing of this stem is separated yet."
            return None
        folder, fmt = Path(self._folder()), self._fmt()
        key = (id(session), session.path, stem, frames, fmt, str(folder))
        made = self._made.get(key)
        if made is not None and made.is_file():
            return made
        song = session.path.stem
        ours = set(self._made.values())  # files earlier drags wrote may be replaced (e.g. a longer part now)
        n = 1
        while True:
            name = song if n == 1 else f"{song} ({n})"
            target = exporter.stem_paths(folder, name, [stem], fmt)[0]
            if not target.exists() or target in ours:
                break
            n += 1
        stems = session.stems[:, :, :frames]
        names = list(session.stem_names)

        def job(progress, cancel):
            return exporter.export_stems(stems, names, session.samplerate, folder, name, fmt, [stem],
                                         progress=progress, cancel=cancel, confirm_overwrite=lambda _p: True)

        written = self._run(job)
        if written is None:
            return None
        self._made[key] = written
        return written

    def _run(self, job) -> Path | None:
        worker = ExportWorker(job)
        result: dict[str, object] = {}
        loop = QEventLoop()
        worker.finished_ok.connect(lambda paths: result.setdefault("path", Path(paths[0])))
        worker.failed.connect(lambda text: result.setdefault("error", text))
        worker.cancelled.connect(lambda: result.setdefault("error", "Cancelled."))
        worker.finished.connect(loop.quit)
        QGuiApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            worker.start()
            if not worker.isFinished():
                loop.exec()  # the window keeps repainting while the file is written
            worker.wait()
            QGuiApplication.processEvents()  # deliver the worker's queued result signals
        finally:
            QGuiApplication.restoreOverrideCursor()
        if "error" in result:
            self.last_error = str(result["error"])
            return None
        return result.get("path")  # type: ignore[return-value]

    @staticmethod
    def mime_for(path: Path) -> QMimeData:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        mime.setText(str(path))
        return mime

    def drag(self, source, session: Session, stem: str) -> Path | None:
        """Export the stem if needed and drag it from `source` (a widget); returns the file, or None."""
        path = self.stem_file(session, stem)
        if path is None:
            return None
        drag = QDrag(source)
        drag.setMimeData(self.mime_for(path))
        pixmap = source.grab() if hasattr(source, "grab") else None
        if pixmap is not None and not pixmap.isNull():
            drag.setPixmap(pixmap.scaledToHeight(min(48, max(1, pixmap.height())), Qt.SmoothTransformation))
        drag.exec(Qt.CopyAction)
        return path


def frames_ready(session: Session) -> int:
    return session.frames if session.complete else session.available

