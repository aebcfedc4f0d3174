"""The visible time range shared by every lane: zoom (Ctrl+wheel, + / −, Fit), scroll (a scroll bar, Shift+wheel),
following the playhead, and the step sizes that seek and loop nudges use at the current zoom.

`TimeView` is the one owner of the range; lanes and the scroll bar only show it and ask it to change. On a
5-minute song the range can shrink to a fraction of a second, so a loop can be set to the beat.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QScrollBar

MIN_SPAN = 0.2  # seconds: the deepest zoom
ZOOM_STEP = 1.5  # one + / − press or one wheel notch
SCROLLBAR_UNITS = 1000  # scroll bar steps per second
NUDGE_FRACTION = 0.01  # Shift+arrows move the loop by this fraction of the visible span...
MIN_NUDGE = 0.005  # ...but never less than 5 ms
MAX_NUDGE = 1.0


class TimeView(QObject):
    """The visible range [start, end) of a song of `duration` seconds; `changed(start, end)` on every change."""

    changed = Signal(float, float)

    def __init__(self, duration: float = 10.0, parent: QObject | None = None):
        super().__init__(parent)
        self.duration = max(float(duration), 1e-3)
        self.start, self.end = 0.0, self.duration

    @property
    def span(self) -> float:
        return self.end - self.start

    @property
    def zoom(self) -> float:
        """How many times the whole song the view is magnified (1 = the whole song)."""
        return self.duration / self.span

    @property
    def zoomed(self) -> bool:
        return self.span < self.duration * 0.999

    @property
    def nudge_step(self) -> float:
        """Seconds a loop nudge moves at this zoom: 1 % of the visible span, 5 ms to 1 s."""
        return min(MAX_NUDGE, max(MIN_NUDGE, self.span * NUDGE_FRACTION))

    def set_duration(self, duration: float) -> None:
        """A new song: show all of it."""
        self.duration = max(float(duration), 1e-3)
        self.set_range(0.0, self.duration)

    def set_range(self, start: float, end: float) -> None:
        """Show [start, end), clamped to the song and to the deepest zoom; emits `changed` if it moved."""
        span = min(self.duration, max(MIN_SPAN if self.duration > MIN_SPAN else self.duration, end - start))
        start = min(max(0.0, start), self.duration - span)
        if abs(start - self.start) < 1e-9 and abs(start + span - self.end) < 1e-9:
            return
        self.start, self.end = start, start + span
        self.changed.emit(self.start, self.end)

    def zoom_by(self, factor: float, anchor: float | None = None) -> None:
        """Magnify by `factor` (> 1 zooms in) keeping `anchor` (seconds, default the centre) where it is."""
        anchor = (self.start + self.end) / 2 if anchor is None else min(max(anchor, self.start), self.end)
        span = self.span / factor
        fraction = (anchor - self.start) / self.span if self.span > 0 else 0.5
        start = anchor - fraction * span
        self.set_range(start, start + span)

    def zoom_in(self, anchor: float | None = None) -> None:
        self.zoom_by(ZOOM_STEP, anchor)

    def zoom_out(self, anchor: float | None = None) -> None:
        self.zoom_by(1.0 / ZOOM_STEP, anchor)

    def fit(self) -> None:
        self.set_range(0.0, self.duration)

    def show_region(self, start: float, end: float, margin: float = 0.1) -> None:
        """Zoom so that [start, end) fills the view with `margin` of its length either side."""
        pad = (end - start) * margin
        self.set_range(start - pad, end + pad)

    def scroll_to(self, start: float) -> None:
        self.set_range(start, start + self.span)

    def scroll_by(self, pages: float) -> None:
        """Scroll by a fraction of the visible span (negative: back)."""
        self.scroll_to(self.start + pages * self.span)

    def follow(self, seconds: float) -> None:
        """Keep the playhead in view: when it leaves the range, turn the page so it is near the left edge."""
        if self.zoomed and not (self.start <= seconds <= self.end):
            self.scroll_to(seconds - 0.05 * self.span)


class TimeScrollBar(QScrollBar):
    """A horizontal scroll bar over the song (milliseconds) bound to a TimeView; disabled (not hidden: no re-layout) when the whole song is in view."""

    def __init__(self, view: TimeView, parent=None):
        super().__init__(Qt.Horizontal, parent)
        self.view = view
        self.setObjectName("timeScroll")
        self.setFocusPolicy(Qt.NoFocus)  # arrows seek; the bar is for the mouse
        self.setToolTip("Scroll through the song (Shift+wheel on a lane); zoom with Ctrl+wheel or + / −")
        view.changed.connect(self._show)
        self.valueChanged.connect(self._on_value)
        self._show(view.start, view.end)

    def _show(self, start: float, end: float) -> None:
        with QSignalBlocker(self):
            span = int(round((end - start) * SCROLLBAR_UNITS))
            self.setRange(0, max(0, int(round(self.view.duration * SCROLLBAR_UNITS)) - span))
            self.setPageStep(max(1, span))
            self.setSingleStep(max(1, span // 20))
            self.setValue(int(round(start * SCROLLBAR_UNITS)))
        self.setEnabled(self.view.zoomed)

    def _on_value(self, value: int) -> None:
        self.view.scroll_to(value / SCROLLBAR_UNITS)
