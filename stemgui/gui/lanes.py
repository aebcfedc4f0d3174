"""One lane per stem (plus the original mix): header with controls, a spectrogram, a playhead and loop region.

Lanes only display and report; the main window owns the state (lane mixes, position, loop) and pushes it to
every lane, which keeps playheads and loop regions in sync across lanes.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QLinearGradient, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGraphicsItem,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from stemgui.gui.mixer import LaneMix
from stemgui.gui.spectrogram import SpectrogramLayout

LANE_COLOURS = {
    "mix": "#c9cdd6",
    "drums": "#ff6b6b",
    "bass": "#ffb347",
    "other": "#4fc3f7",
    "vocals": "#c792ea",
    "guitar": "#7ee081",
    "piano": "#f78fb3",
}
EXTRA_COLOURS = ("#7ee081", "#f78fb3", "#ffd866", "#78dce8")
DB_LEVELS = (-75.0, -12.0)
VOLUME_MIN_DB = -60.0  # the slider's bottom means silence
VOLUME_MAX_DB = 12.0
HEADER_WIDTH = 216
AXIS_WIDTH = 42


def lane_colour(name: str, index: int = 0) -> QColor:
    return QColor(LANE_COLOURS.get(name.lower(), EXTRA_COLOURS[index % len(EXTRA_COLOURS)]))


def db_to_gain(db: float) -> float:
    return 0.0 if db <= VOLUME_MIN_DB else 10.0 ** (db / 20.0)


def gain_to_db(gain: float) -> float:
    return VOLUME_MIN_DB if gain <= 0 else max(VOLUME_MIN_DB, 20.0 * math.log10(gain))


def colour_map(colour: QColor) -> pg.ColorMap:
    """Dark background -> the lane's colour -> near white: every lane reads as its own instrument."""
    c = colour
    return pg.ColorMap([0.0, 0.25, 0.7, 1.0], [(14, 16, 22), (int(c.red() * 0.35), int(c.green() * 0.35),
                       int(c.blue() * 0.35)), (c.red(), c.green(), c.blue()), (250, 250, 240)])


class LevelMeter(QWidget):
    """A thin vertical peak meter (-60..0 dBFS) with green/yellow/red zones."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.level = 0.0
        self.setFixedWidth(8)
        self.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Expanding)

    def set_level(self, peak: float) -> None:
        if abs(peak - self.level) > 1e-4:
            self.level = float(peak)
            self.update()

    def fraction(self) -> float:
        if self.level <= 1e-6:
            return 0.0
        return float(np.clip((20 * math.log10(self.level) + 60.0) / 60.0, 0.0, 1.0))

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        r = self.rect()
        p.fillRect(r, QColor("#15171d"))
        h = int(r.height() * self.fraction())
        if h > 0:
            grad = QLinearGradient(0, r.bottom(), 0, r.top())
            grad.setColorAt(0.0, QColor("#3ddc84"))
            grad.setColorAt(0.75, QColor("#e6d35a"))
            grad.setColorAt(1.0, QColor("#ff5252"))
            p.fillRect(QRectF(r.left(), r.bottom() - h + 1, r.width(), h), grad)
        p.end()


class LaneViewBox(pg.ViewBox):
    """No pan/zoom of its own: a click seeks, a horizontal drag paints a loop region, Ctrl+wheel asks to zoom
    around the pointer and Shift+wheel (or a horizontal wheel) to scroll; the window's TimeView decides."""

    clicked = Signal(float)  # seconds
    dragged = Signal(float, float, bool)  # start seconds, current seconds, finished
    zoom_requested = Signal(float, float)  # anchor seconds, wheel notches (> 0: in)
    scroll_requested = Signal(float)  # wheel notches (> 0: forward in time)

    def __init__(self):
        super().__init__(enableMouse=False, enableMenu=False)
        self.setMouseEnabled(False, False)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.clicked.emit(float(self.mapSceneToView(ev.scenePos()).x()))
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        start = float(self.mapSceneToView(ev.buttonDownScenePos()).x())
        now = float(self.mapSceneToView(ev.scenePos()).x())
        self.dragged.emit(start, now, bool(ev.isFinish()))

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph API
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        horizontal = ev.orientation() == Qt.Orientation.Horizontal if hasattr(ev, "orientation") else False
        mods = ev.modifiers()
        if mods & Qt.KeyboardModifier.ControlModifier:
            ev.accept()
            self.zoom_requested.emit(float(self.mapSceneToView(ev.scenePos()).x()), delta / 120.0)
        elif mods & Qt.KeyboardModifier.ShiftModifier or horizontal:
            ev.accept()
            self.scroll_requested.emit(-delta / 120.0)
        else:
            ev.ignore()  # a plain wheel scrolls the lanes up and down


class FrequencyAxis(pg.AxisItem):
    """Rows are log- or mel-spaced; label them with round frequencies."""

    def __init__(self, layout: SpectrogramLayout):
        super().__init__("left")
        self.set_layout(layout)
        self.setWidth(AXIS_WIDTH)

    def set_layout(self, layout: SpectrogramLayout) -> None:
        ticks = []
        for hz, label in ((50, "50"), (100, "100"), (200, "200"), (500, "500"), (1000, "1k"), (2000, "2k"),
                          (5000, "5k"), (10000, "10k")):
            if layout.fmin <= hz <= layout.fmax:
                ticks.append((layout.row_of_frequency(hz) + 0.5, label))
        major = [t for t in ticks if t[1] in ("100", "1k", "10k")]
        self.setTicks([major, [t for t in ticks if t not in major]])


class Lane(QFrame):
    """Header (name, colour, M/S, volume, pan, meter) + spectrogram plot with playhead and loop region."""

    mix_changed = Signal(int, object)  # lane index, LaneMix
    seek_requested = Signal(float)  # seconds
    loop_requested = Signal(float, float, bool)  # start, end seconds, drag finished
    activated = Signal(int)  # the lane was clicked or got keyboard focus: it is the focused lane for M/S keys
    tab_requested = Signal(int, bool)  # lane index, forward: Tab / Shift+Tab move between lanes
    zoom_requested = Signal(float, float)  # anchor seconds, wheel notches
    scroll_requested = Signal(float)  # wheel notches
    drag_out_requested = Signal(int)  # the stem was dragged out of the lane's header (to a file manager or a DAW)

    def __init__(self, index: int, name: str, layout: SpectrogramLayout, mix: LaneMix | None = None,
                 show_time_axis: bool = False, parent=None):
        super().__init__(parent)
        self.index = index
        self.name = name
        self.colour = lane_colour(name, index)
        self.layout_info = layout
        self._mix = mix or LaneMix()
        self._updating = False
        self.setObjectName("lane")
        self.setFrameShape(QFrame.StyledPanel)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMinimumHeight(110 if show_time_axis else 86)
        self._press: QPoint | None = None
        self.waveform_visible = False
        self._build(show_time_axis)
        self.set_mix(self._mix)
        self.set_focused(False)

    # ---- construction --------------------------------------------------------------------------------------
    def _build(self, show_time_axis: bool) -> None:
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 6, 0)
        row.setSpacing(0)
        self.stripe = QFrame()
        self.stripe.setFixedWidth(6)
        self.stripe.setStyleSheet(f"background: {self.colour.name()}; border: none;")
        row.addWidget(self.stripe)

        header = QWidget()
        header.setObjectName("laneHeader")
        header.setFixedWidth(HEADER_WIDTH)
        hl = QHBoxLayout(header)
        hl.setContentsMargins(10, 6, 6, 6)
        hl.setSpacing(6)
        controls = QVBoxLayout()
        controls.setSpacing(4)
        top = QHBoxLayout()
        self.title = QLabel(self.name.capitalize() if self.name != "mix" else "Original mix")
        self.title.setObjectName("laneTitle")
        self.title.setStyleSheet(f"color: {self.colour.name()};")
        if self.name != "mix":
            self.title.setToolTip("Drag the name out to a file manager or a DAW to get this stem as a file")
            self.title.setCursor(Qt.OpenHandCursor)
        top.addWidget(self.title, 1)
        self.mute_button = self._toggle("M", "Mute this lane (M)", "mute")
        self.solo_button = self._toggle("S", "Solo this lane (S): only soloed lanes sound", "solo")
        top.addWidget(self.mute_button)
        top.addWidget(self.solo_button)
        controls.addLayout(top)

        vol = QHBoxLayout()
        vol.setSpacing(4)
        vol.addWidget(self._small_label("Vol"))
        self.volume = QSlider(Qt.Horizontal)
        self.volume.setRange(int(VOLUME_MIN_DB * 2), int(VOLUME_MAX_DB * 2))  # half-dB steps
        self.volume.setFocusPolicy(Qt.NoFocus)
        self.volume.setToolTip("Volume (double-click the value to reset to 0 dB)")
        self.volume.valueChanged.connect(self._on_volume)
        vol.addWidget(self.volume, 1)
        self.volume_label = self._small_label("0.0 dB", 48)
        self.volume_label.mouseDoubleClickEvent = lambda _e: self.volume.setValue(0)
        vol.addWidget(self.volume_label)
        controls.addLayout(vol)

        pan = QHBoxLayout()
        pan.setSpacing(4)
        pan.addWidget(self._small_label("Pan"))
        self.pan = QSlider(Qt.Horizontal)
        self.pan.setRange(-100, 100)
        self.pan.setFocusPolicy(Qt.NoFocus)
        self.pan.setToolTip("Pan (double-click the value to centre)")
        self.pan.valueChanged.connect(self._on_pan)
        pan.addWidget(self.pan, 1)
        self.pan_label = self._small_label("C", 48)
        self.pan_label.mouseDoubleClickEvent = lambda _e: self.pan.setValue(0)
        pan.addWidget(self.pan_label)
        controls.addLayout(pan)
        controls.addStretch(1)
        hl.addLayout(controls, 1)
        self.meter = LevelMeter()
        hl.addWidget(self.meter)
        row.addWidget(header)

        self.view = LaneViewBox()
        self.freq_axis = FrequencyAxis(self.layout_info)
        axes = {"left": self.freq_axis}
        if show_time_axis:
            axes["bottom"] = TimeAxis()
        self.plot = pg.PlotWidget(viewBox=self.view, axisItems=axes)
        self.plot.setBackground("#0e1016")
        self.plot.hideButtons()
        self.plot.setMenuEnabled(False)
        self.plot.setFocusPolicy(Qt.NoFocus)  # the lane takes the keyboard focus (Tab, M / S), not its plot
        if not show_time_axis:
            self.plot.hideAxis("bottom")
        self.plot.getPlotItem().setContentsMargins(0, 4, 0, 2)
        self.plot.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(colour_map(self.colour))
        self.image.setCacheMode(QGraphicsItem.DeviceCoordinateCache)  # playhead moves blit, not re-render
        self.view.addItem(self.image)
        # when zoomed in: the visible range again at one column per pixel, over the whole-song image
        self.detail = pg.ImageItem(axisOrder="row-major")
        self.detail.setColorMap(colour_map(self.colour))
        self.detail.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        self.detail.setZValue(1)
        self.detail.hide()
        self.view.addItem(self.detail)
        self.detail_columns_done = 0
        self.detail_layout: SpectrogramLayout | None = None
        self.loop_region = pg.LinearRegionItem(values=(0, 0), movable=False,
                                               brush=pg.mkBrush(255, 255, 255, 38),
                                               pen=pg.mkPen(255, 255, 255, 120))
        self.loop_region.setZValue(5)
        self.loop_region.hide()
        self.view.addItem(self.loop_region)
        self.playhead = pg.InfiniteLine(pos=0, angle=90, movable=False, pen=pg.mkPen("#ffffff", width=1.5))
        self.playhead.setZValue(10)
        self.view.addItem(self.playhead)
        self.done_line = pg.InfiniteLine(pos=0, angle=90, movable=False,
                                         pen=pg.mkPen(self.colour, width=1, style=Qt.DashLine))
        self.done_line.setZValue(8)
        self.done_line.hide()
        self.view.addItem(self.done_line)
        self.waveform = pg.PlotDataItem(pen=pg.mkPen(self.colour.lighter(130), width=1), connect="all")
        self.waveform.setDownsampling(auto=True, method="peak")
        self.waveform.setClipToView(True)
        self.waveform.setZValue(3)
        self.waveform.hide()
        self.view.addItem(self.waveform)
        self.view.clicked.connect(self._on_click)
        self.view.dragged.connect(self._on_drag)
        self.view.zoom_requested.connect(self.zoom_requested)
        self.view.scroll_requested.connect(self.scroll_requested)
        row.addWidget(self.plot, 1)
        self.reset_image(self.layout_info)

    def _toggle(self, text: str, tip: str, kind: str) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setCheckable(True)
        b.setToolTip(tip)
        b.setObjectName(f"{kind}Button")
        b.setFocusPolicy(Qt.NoFocus)
        b.setFixedSize(24, 22)
        b.toggled.connect(lambda on, kind=kind: self._on_toggle(kind, on))
        return b

    @staticmethod
    def _small_label(text: str, width: int | None = None) -> QLabel:
        label = QLabel(text)
        label.setObjectName("small")
        if width:
            label.setFixedWidth(width)
            label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        return label

    # ---- spectrogram -------------------------------------------------------------------------------------------
    def reset_image(self, layout: SpectrogramLayout) -> None:
        """A blank (not yet computed) image with this layout; columns arrive through `set_columns`."""
        self.layout_info = layout
        self.spec = np.full((layout.rows, layout.columns), DB_LEVELS[0] - 10, dtype=np.float32)
        self.image.setImage(self.spec, autoLevels=False, levels=DB_LEVELS)
        self.image.setRect(QRectF(0.0, 0.0, layout.duration, float(layout.rows)))
        self.freq_axis.set_layout(layout)
        # limits first: the old song's limits would clamp the new range
        self.view.setLimits(xMin=0, xMax=layout.duration, yMin=0, yMax=layout.rows)
        self.view.setRange(xRange=(0, layout.duration), yRange=(0, layout.rows), padding=0)
        self.columns_done = 0
        self.hide_detail()
        self.waveform.setData([], [])
        self.waveform_data = (np.zeros(0), np.zeros(0))
        self.waveform_points = 0

    def set_detail(self, start: float, layout: SpectrogramLayout) -> None:
        """Start a sharper picture of seconds [start, start + layout.duration) (columns via set_detail_columns)."""
        self.detail_layout = layout
        self.detail_spec = np.full((layout.rows, layout.columns), DB_LEVELS[0] - 10, dtype=np.float32)
        self.detail_columns_done = 0
        self.detail.hide()  # shown once its first columns arrive, so the zoom never flashes blank
        self.detail.setImage(self.detail_spec, autoLevels=False, levels=DB_LEVELS)
        self.detail.setRect(QRectF(start, 0.0, layout.duration, float(layout.rows)))

    def set_detail_columns(self, first: int, block: np.ndarray) -> None:
        if self.detail_layout is None or first + block.shape[1] > self.detail_spec.shape[1]:
            return
        self.detail_spec[:, first:first + block.shape[1]] = block
        self.detail_columns_done = max(self.detail_columns_done, first + block.shape[1])
        if self.detail_columns_done >= self.detail_layout.columns:  # swap in the whole sharper picture at once
            self.detail.setImage(self.detail_spec, autoLevels=False, levels=DB_LEVELS)
            self.detail.show()

    def hide_detail(self) -> None:
        self.detail_layout = None
        self.detail.hide()

    def plot_width(self) -> int:
        """Pixels of the spectrogram area (one detail column each)."""
        return max(1, int(self.view.width()))

    def set_x_range(self, start: float, end: float) -> None:
        """Show seconds [start, end) (the window's TimeView: the same on every lane)."""
        self.view.setXRange(start, end, padding=0)

    def set_waveform(self, x: np.ndarray, y: np.ndarray) -> None:
        """The peak envelope (seconds, -1..1) drawn over the spectrogram, centred, when the view is on."""
        rows = self.layout_info.rows
        self.waveform_data = (x, rows / 2 + np.clip(y, -1, 1) * (rows * 0.46))
        self.waveform.setData(*self.waveform_data)
        self.waveform_points = len(x)

    def show_waveform(self, on: bool) -> None:
        """The waveform view on or off (the spectrogram dims under it)."""
        self.waveform_visible = bool(on)
        self.waveform.setVisible(self.waveform_visible)
        self.image.setOpacity(0.45 if self.waveform_visible else 1.0)
        self.detail.setOpacity(0.45 if self.waveform_visible else 1.0)

    def set_columns(self, first: int, block: np.ndarray) -> None:
        self.spec[:, first:first + block.shape[1]] = block
        self.columns_done = max(self.columns_done, first + block.shape[1])
        self.image.setImage(self.spec, autoLevels=False, levels=DB_LEVELS)

    # ---- state pushed by the window ----------------------------------------------------------------------------
    @property
    def mix(self) -> LaneMix:
        return self._mix

    def set_mix(self, mix: LaneMix) -> None:
        """Show `mix` in the controls without emitting `mix_changed`."""
        self._mix = mix
        self._updating = True
        try:
            self.volume.setValue(int(round(gain_to_db(mix.gain) * 2)))
            self.pan.setValue(int(round(mix.pan * 100)))
            self.mute_button.setChecked(mix.mute)
            self.solo_button.setChecked(mix.solo)
        finally:
            self._updating = False
        self._update_labels()

    def set_audible(self, audible: bool) -> None:
        """Dim the spectrogram of lanes that are not heard (muted, or not soloed while others are)."""
        self.plot.setOpacity(1.0 if audible else 0.38)
        self.title.setEnabled(audible)

    def set_playhead(self, seconds: float) -> None:
        self.playhead.setValue(seconds)

    def set_done(self, seconds: float | None) -> None:
        """Mark where separation has got to (None hides the marker)."""
        if seconds is None:
            self.done_line.hide()
        else:
            self.done_line.setValue(seconds)
            self.done_line.show()

    def set_loop(self, region: tuple[float, float] | None, enabled: bool = True) -> None:
        if region is None:
            self.loop_region.hide()
            return
        self.loop_region.setRegion(region)
        self.loop_region.setBrush(pg.mkBrush(255, 255, 255, 40 if enabled else 14))
        self.loop_region.show()

    def set_focused(self, focused: bool) -> None:
        self.setProperty("focused", focused)
        self.style().unpolish(self)
        self.style().polish(self)

    # ---- user input ----------------------------------------------------------------------------------------------
    def _emit(self) -> None:
        self._update_labels()
        if not self._updating:
            self.mix_changed.emit(self.index, self._mix)

    def _on_volume(self, value: int) -> None:
        if not self._updating:
            self._mix = self._mix.with_(gain=db_to_gain(value / 2.0))
        self._emit()

    def _on_pan(self, value: int) -> None:
        if not self._updating:
            self._mix = self._mix.with_(pan=value / 100.0)
        self._emit()

    def _on_toggle(self, kind: str, on: bool) -> None:
        if not self._updating:
            self._mix = self._mix.with_(**{kind: on})
            self.activated.emit(self.index)
        self._emit()

    def _update_labels(self) -> None:
        db = self.volume.value() / 2.0
        self.volume_label.setText("-inf dB" if db <= VOLUME_MIN_DB else f"{db:+.1f} dB")
        p = self.pan.value()
        self.pan_label.setText("C" if p == 0 else (f"L{-p}" if p < 0 else f"R{p}"))

    def _on_click(self, seconds: float) -> None:
        self.setFocus(Qt.MouseFocusReason)
        self.activated.emit(self.index)
        self.seek_requested.emit(seconds)

    def _on_drag(self, start: float, now: float, finished: bool) -> None:
        if not self.hasFocus():
            self.setFocus(Qt.MouseFocusReason)
        self.activated.emit(self.index)
        self.loop_requested.emit(start, now, finished)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.activated.emit(self.index)
        self.setFocus(Qt.MouseFocusReason)
        inside_title = self.title.geometry().contains(self.title.parentWidget().mapFrom(self, event.position().toPoint()))
        self._press = event.position().toPoint() if event.button() == Qt.LeftButton and inside_title else None
        super().mousePressEvent(event)
        if self._press is not None:
            event.accept()  # the lane follows the drag

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        if (self._press is not None and self.name != "mix" and event.buttons() & Qt.LeftButton
                and (event.position().toPoint() - self._press).manhattanLength() >= QApplication.startDragDistance()):
            self._press = None
            self.drag_out_requested.emit(self.index)
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._press = None
        super().mouseReleaseEvent(event)

    def focusInEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.activated.emit(self.index)
        super().focusInEvent(event)

    def focusNextPrevChild(self, forward: bool) -> bool:  # noqa: N802 - Qt API
        """Tab / Shift+Tab go to the next / previous lane (the window wraps around), not out of the lanes."""
        self.tab_requested.emit(self.index, forward)
        return True


class TimeAxis(pg.AxisItem):
    """Seconds shown as m:ss."""

    def __init__(self):
        super().__init__("bottom")
        self.setHeight(22)

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph API
        if spacing >= 1:
            return [f"{int(v // 60)}:{int(round(v) % 60):02d}" for v in values]
        return [f"{int(v // 60)}:{v % 60:04.1f}" for v in values]
