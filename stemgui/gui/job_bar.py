"""The bar under the lanes that shows the running job (separation or export): stage, progress, time left, Cancel.

It is always there at a fixed height, so showing or hiding a job never re-lays out (and repaints) the lanes.
Cancel emits `cancel_requested`; the window decides which job that stops.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPainter
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QWidget

PROGRESS_STEPS = 1000
BAR_HEIGHT = 34


def format_time(seconds: float) -> str:
    """m:ss.s, as the transport and the job bar show times."""
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


class ElidedLabel(QLabel):
    """A one-line label that takes whatever width is left and elides its text (full text in the tooltip)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.setMinimumWidth(0)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(40, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(0, super().minimumSizeHint().height())

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        super().setText(text)
        self.setToolTip(text)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        rect = self.contentsRect().adjusted(8, 0, -8, 0)
        if rect.width() >= self.fontMetrics().horizontalAdvance("M" * 8):  # no lone "…" in a tiny gap
            p.setPen(self.palette().color(self.foregroundRole()))
            p.drawText(rect, int(self.alignment()), self.fontMetrics().elidedText(self.text(), Qt.ElideMiddle,
                                                                                    rect.width()))
        p.end()


class JobBar(QWidget):
    cancel_requested = Signal()
    folder_shown = Signal(str)  # "Show in folder" opened this folder

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("jobBar")
        self.setAttribute(Qt.WA_StyledBackground, True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 6)
        self.stage_label = QLabel("")
        self.stage_label.setMinimumWidth(260)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setFixedHeight(10)
        self.eta_label = QLabel("")
        self.eta_label.setMinimumWidth(120)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.show_folder_button = QPushButton("Show in folder")
        self.show_folder_button.setToolTip("Open the folder the files were exported to")
        self.show_folder_button.clicked.connect(self._show_folder)
        self.result_folder = ""
        layout.addWidget(self.stage_label)
        layout.addWidget(self.progress_bar, 1)
        layout.addWidget(self.eta_label)
        layout.addWidget(self.cancel_button)
        layout.addStretch(0)
        layout.addWidget(self.show_folder_button)
        self.setFixedHeight(BAR_HEIGHT)
        self.finish("")

    def start(self, stage: str) -> None:
        """A job begins: progress at zero, Cancel available."""
        self.progress_bar.setValue(0)
        self.eta_label.setText("")
        self.stage_label.setText(stage)
        self.cancel_button.setEnabled(True)
        self.show_folder_button.setVisible(False)
        for widget in (self.progress_bar, self.eta_label, self.cancel_button):
            widget.setVisible(True)

    def show_result(self, text: str, folder: str | Path) -> None:
        """A job wrote files: say so and offer "Show in folder" until the next job starts."""
        self.finish(text)
        self.result_folder = str(folder)
        self.show_folder_button.setVisible(True)

    def _show_folder(self) -> None:
        if self.result_folder:
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.result_folder))
            self.folder_shown.emit(self.result_folder)

    def finish(self, text: str) -> None:
        """No job runs any more: only `text` (e.g. "Ready") is left."""
        for widget in (self.progress_bar, self.eta_label, self.cancel_button, self.show_folder_button):
            widget.setVisible(False)
        self.stage_label.setText(text)

    def set_stage(self, text: str) -> None:
        self.stage_label.setText(text)

    def set_progress(self, fraction: float, eta: float | None = None) -> None:
        """Fraction done (0..1) and, while unfinished, the seconds left when known."""
        self.progress_bar.setValue(int(round(fraction * PROGRESS_STEPS)))
        percent = f"{int(round(fraction * 100))}%"
        if eta is not None and fraction < 1.0:
            self.eta_label.setText(f"{percent} · {format_time(float(eta))[:-2]} left")
        else:
            self.eta_label.setText(percent)

    def cancelling(self) -> None:
        """Cancel was pressed and the job stops soon: say so, and do not offer Cancel twice."""
        self.cancel_button.setEnabled(False)
        self.stage_label.setText("Cancelling…")

    @property
    def progress(self) -> float:
        """The fraction shown (0..1)."""
        return self.progress_bar.value() / PROGRESS_STEPS
