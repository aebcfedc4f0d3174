"""The app's window in its own X11 process, for the drag-out test: opens a song with the given model, saves the
vocals lane's samples for comparison and prints `READY <x> <y>` with the screen position of that lane's name
(the drag handle) once every lane is built, then runs until it is terminated.

    DISPLAY=:97 QT_QPA_PLATFORM=xcb python tests/x11_drag_app.py MODEL SONG WORKDIR
WORKDIR gets settings.ini, cache/, exports/ (the export folder, wav) and vocals.npy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from stemgui.gui.cache import StemCache
from stemgui.gui.dialogs import RecordingDialogs
from stemgui.gui.main_window import MainWindow
from stemgui.gui.settings import AppSettings

STEM_LANE = 4  # vocals


def main() -> None:
    os.umask(0o022)  # the default umask of a desktop session: exported files must come out 0644
    model, song, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    app = QApplication(sys.argv[:1])
    settings = AppSettings(QSettings(str(work / "settings.ini"), QSettings.IniFormat))
    settings.output_folder, settings.output_format = str(work / "exports"), "wav"
    window = MainWindow(settings, RecordingDialogs(), StemCache(work / "cache"), model=model, enable_audio=False)
    window.setGeometry(0, 0, 700, 760)
    window.show()

    def when_built() -> None:
        if window.session is None or window.is_busy() or len(window.lanes) < len(window.session.names):
            QTimer.singleShot(100, when_built)
            return
        np.save(work / "vocals.npy", window.session.audio[STEM_LANE])
        title = window.lanes[STEM_LANE].title
        centre = title.mapToGlobal(title.rect().center())
        print("READY", centre.x(), centre.y(), window.session.names[STEM_LANE], flush=True)

    window.separation_done.connect(lambda ok: QTimer.singleShot(200, when_built) if ok else app.exit(1))
    QTimer.singleShot(300, lambda: window.open_song(song))
    app.exec()


if __name__ == "__main__":
    main()
