"""A real drop target in its own process, for the X11 drag-out test: a window that accepts file drops and prints
`DROP <path>` for each local file URL it receives (then quits), so the test sees what another application
would get through XDND.

    DISPLAY=:97 QT_QPA_PLATFORM=xcb python tests/x11_drop_target.py X Y WIDTH HEIGHT
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel


class DropTarget(QLabel):
    def __init__(self):
        super().__init__("drop a file here")
        self.setAcceptDrops(True)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        for url in event.mimeData().urls():
            print("DROP", url.toLocalFile() if url.isLocalFile() else url.toString(), flush=True)
        event.acceptProposedAction()
        QTimer.singleShot(300, QApplication.instance().quit)


def main() -> None:
    x, y, w, h = (int(v) for v in sys.argv[1:5])
    app = QApplication(sys.argv[:1])
    target = DropTarget()
    target.setGeometry(x, y, w, h)
    target.show()
    QTimer.singleShot(300, lambda: print("READY", flush=True))
    app.exec()


if __name__ == "__main__":
    main()
