"""The bar under the lanes that shows the running job (separation or export): stage, progress, time left, Cancel.

It is always there at a fixed height, so showing or hiding a job never re-lays out (and repaints) the lanes.
Cancel emits `cancel_requested`; the window decides which job that stops.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

PROGRESS_STEPS = 1000
BAR_HEIGHT = 34


def format_time(seconds: float) -> str:
    """m:ss.s, as the transport and the job bar show times."""
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


class JobBar(QWidget):
    cancel_requested = Signal()

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
        layout.addWidget(self.stage_label)
        layout.addWidget(self.progress_bar, 1)
        layout.addWidget(self.eta_label)
        layout.addWidget(self.cancel_button)
        self.setFixedHeight(BAR_HEIGHT)
        self.finish("")

    def start(self, stage: str) -> None:
        """A job begins: progress at zero, Cancel available."""
        self.progress_bar.setValue(0)
        self.eta_label.setText("")
        self.stage_label.setText(stage)
        self.cancel_button.setEnabled(True)
        for widget in (self.progress_bar, self.eta_label, self.cancel_button):
            widget.setVisible(True)

    def finish(self, text: str) -> None:
        """No job runs any more: only `text` (e.g. "Ready") is left."""
        for widget in (self.progress_bar, self.eta_label, self.cancel_button):
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
