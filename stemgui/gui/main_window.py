"""The main window: drop a song, watch it separate into lanes, play / mute / solo / loop, export.

The window owns the session's state (its audio, one LaneMix per lane) and pushes it to the lanes and the player;
the player is the one owner of the loop (region and on/off), which the lanes and the Loop action only show.
Heavy work goes to the workers in `workers.py`, so the event loop never stalls. The settings dock
(`settings_panel`), the job bar (`job_bar`) and the Fine-tune dock (`finetune`) are widgets of their own.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QSignalBlocker, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QStyle,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from stemgui import SOURCES
from stemgui.errors import StemGUIError
from stemgui.gui import export as exporter
from stemgui.gui.batch import BatchPanel, BatchQueue, audio_files
from stemgui.gui.cache import StemCache
from stemgui.gui.collector import collect_on_gui_thread
from stemgui.gui.dialogs import Dialogs, ExportOptions
from stemgui.gui.dragout import StemDragOut, frames_ready
from stemgui.gui.finetune import FineTunePanel
from stemgui.gui.job_bar import ElidedLabel, JobBar, format_time
from stemgui.gui.lanes import AXIS_WIDTH, HEADER_WIDTH, Lane
from stemgui.gui.mixer import PRESETS, LaneMix, apply_preset, audible
from stemgui.gui.player import Player, audio_output_status
from stemgui.gui.practice import PracticeControls, choose_comparison_model
from stemgui.gui.settings import AppSettings
from stemgui.gui.settings_panel import SeparationSettingsPanel
from stemgui.gui.shortcuts import KeyRegistry, ShortcutsSheet, sheet_rows
from stemgui.gui.spectrogram import SpectrogramLayout
from stemgui.gui.timeline import TimeScrollBar, TimeView
from stemgui.gui.workers import (
    MIX_NAME,
    ExportWorker,
    SeparationWorker,
    Session,
    SpectrogramWorker,
    single_threaded_blas,
)
from stemgui.separate import SeparationSettings

log = logging.getLogger(__name__)
UI_REFRESH_MS = 33
DETAIL_DELAY_MS = 120  # a sharper picture of the visible range is computed once zooming pauses this long
DETAIL_MIN_ZOOM = 1.5
DETAIL_LANE = 1 << 20  # spectrogram requests for detail pictures: DETAIL_LANE + token * 64 + lane
DEFAULT_LOOP_SECONDS = 8.0  # Loop switched on with no region dragged: loop this much from the playhead
MIN_LOOP_SECONDS = 0.05  # a shorter drag is a click, not a region
PLACEHOLDER_SECONDS = 10  # the blank lanes shown before any song is opened
WARNING_STYLE = "color: #f2c94c;"
SEEK_SECONDS = 1.0  # Left / Right
BIG_SEEK_SECONDS = 10.0  # Ctrl+Left / Right


class MainWindow(QMainWindow):
    separation_done = Signal(bool)  # True: stems complete; False: failed or cancelled
    pictures_done = Signal()  # every lane's spectrogram is drawn
    audio_open_failed = Signal(str)  # opening the output stream on the helper thread failed: the reason

    def __init__(self, settings: AppSettings | None = None, dialogs: Dialogs | None = None,
                 cache: StemCache | None = None, model: str | None = None, enable_audio: bool = True):
        super().__init__()
        single_threaded_blas()  # before any analysis or downmix starts a BLAS pool beside the separation
        collect_on_gui_thread()  # Qt objects in cyclic garbage must never be destroyed on a worker thread
        self.settings = settings or AppSettings()
        self.dialogs = dialogs or Dialogs(self)
        self.cache = cache or StemCache()
        self.setWindowTitle("StemGUI")
        self.setAcceptDrops(True)
        self.resize(1360, 860)
        self.audio_ok, self.audio_reason = audio_output_status() if enable_audio else (False, "Playback is off for this run.")
        self.player = Player()
        self.audio_open_failed.connect(self._on_audio_open_failed)
        self.session: Session | None = None
        self.lanes: list[Lane] = []
        self.mixes: list[LaneMix] = []
        self.focused_lane = 0
        self.worker: SeparationWorker | None = None
        self.export_worker: ExportWorker | None = None
        self._job: SeparationWorker | ExportWorker | None = None  # the job the job bar shows (Cancel stops it)
        self._old_workers: list[SeparationWorker] = []
        self.generation = 0
        self._spec_requested: list[int] = []
        self._last_position = -1
        self._docks_sized = False
        self.models_dialog = None  # the "Get models…" dialog, created on first use
        self.shortcuts_sheet: ShortcutsSheet | None = None
        self.time_view = TimeView(PLACEHOLDER_SECONDS, self)
        self.time_view.changed.connect(self._on_time_range)
        self._detail_token = 0
        self._detail_timer = QTimer(self)
        self._detail_timer.setSingleShot(True)
        self._detail_timer.setInterval(DETAIL_DELAY_MS)
        self._detail_timer.timeout.connect(self._refresh_detail)
        self.keys = KeyRegistry(self)
        self.batch = BatchQueue(self.cache, self)
        self.batch.job_finished.connect(self._on_batch_job)
        self.batch.ready_to_open.connect(self.open_batch_job)  # a queued song the user opened is done
        self.drag_out = StemDragOut(lambda: self.settings.output_folder, lambda: self.settings.output_format, self)
        self._started_at = 0.0
        self.spec_worker = SpectrogramWorker(self)
        self.spec_worker.columns_ready.connect(self._on_columns)
        self.spec_worker.idle.connect(self._on_spec_idle)
        self.spec_worker.waveform_ready.connect(self._on_waveform)
        self.spec_worker.start()
        self._build_actions()
        self._build_menus()
        self._build_transport_bar()
        self._build_mix_bar()
        self._build_central()
        self._build_status_bar()
        self._build_docks(model)
        self._prebuild_lanes()
        self._update_actions()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.timer.start(UI_REFRESH_MS)
        geometry = self.settings.geometry
        if geometry is not None:
            self.restoreGeometry(geometry)

    # ================================================================== construction
    def _build_actions(self) -> None:
        def action(text, slot, shortcut=None, tip=None, checkable=False):
            a = QAction(text, self)
            if shortcut:
                a.setShortcut(QKeySequence(shortcut))
            if tip:
                a.setToolTip(tip)
                a.setStatusTip(tip)
            a.setCheckable(checkable)
            a.triggered.connect(slot)
            self.addAction(a)
            return a

        self.open_action = action("Open…", self.choose_song, QKeySequence.Open, "Open a song to separate")
        self.export_action = action("Export…", self.export_dialog, "Ctrl+E", "Export stems or the mix as you hear it")
        self.clear_cache_action = action("Clear cache", self.clear_cache, None, "Delete every cached separation")
        self.quit_action = action("Quit", self.close, QKeySequence.Quit)
        self.play_action = action("Play", self.toggle_play, None, "Play / pause (Space)")
        self.home_action = action("Start", self.go_home, None, "Back to the start (Home)")
        self.loop_action = action("Loop", self.enable_loop, None,
                                  "Loop the region dragged on a lane (L)", checkable=True)
        style = self.style()
        self.play_icon = style.standardIcon(QStyle.SP_MediaPlay)
        self.pause_icon = style.standardIcon(QStyle.SP_MediaPause)
        self.open_action.setIcon(style.standardIcon(QStyle.SP_DialogOpenButton))
        self.play_action.setIcon(self.play_icon)
        self.home_action.setIcon(style.standardIcon(QStyle.SP_MediaSkipBackward))
        self.loop_action.setIcon(style.standardIcon(QStyle.SP_BrowserReload))
        self.export_action.setIcon(style.standardIcon(QStyle.SP_DialogSaveButton))
        self.cancel_action = action("Cancel", self.cancel_separation, None, "Stop the separation")
        self.get_models_action = action("Get models…", self.open_models_dialog, None,
                                        "Download published separation models (HTDemucs and others)")
        self.rerun_action = action("Separate again", self.separate_again, "Ctrl+R",
                                   "Separate the current song again with the current settings")
        self.open_several_action = action("Open several…", self.choose_songs, "Ctrl+Shift+O",
                                          "Queue several songs to separate one after another into the cache")
        self.zoom_in_action = action("Zoom in", lambda: self.time_view.zoom_in(self._zoom_anchor()), None,
                                     "Zoom in on the playhead (+, Ctrl+wheel on a lane)")
        self.zoom_out_action = action("Zoom out", lambda: self.time_view.zoom_out(self._zoom_anchor()), None,
                                      "Zoom out (−, Ctrl+wheel on a lane)")
        self.zoom_fit_action = action("Whole song", self.time_view.fit, None, "Show the whole song (0)")
        self.zoom_loop_action = action("Zoom to loop", self.zoom_to_loop, None, "Fill the lanes with the loop (Z)")
        self.waveform_action = action("Waveforms", self.show_waveforms, None,
                                      "Draw each lane's waveform over its spectrogram (W)", checkable=True)
        self.compare_action = action("Compare with another model…", self.choose_comparison, None,
                                     "Separate this song with a second model too and switch between them with A/B")
        self.shortcuts_action = action("Keyboard shortcuts", self.show_shortcuts, "F1", "Every key, on one sheet")
        # Single keys are window-wide QShortcuts (bound through the registry, so the shortcuts sheet lists them).
        k = self.keys.bind
        k("Space", self.toggle_play, "Play / pause", "Playback")
        k("Home", self.go_home, "Back to the start (the loop's start while looping)", "Playback")
        k(("Left", "Right"), (lambda: self.seek_by(-SEEK_SECONDS), lambda: self.seek_by(SEEK_SECONDS)),
          f"Seek {SEEK_SECONDS:g} s back / forward", "Playback", "← / →")
        k(("Ctrl+Left", "Ctrl+Right"), (lambda: self.seek_by(-BIG_SEEK_SECONDS), lambda: self.seek_by(BIG_SEEK_SECONDS)),
          f"Seek {BIG_SEEK_SECONDS:g} s back / forward", "Playback", "Ctrl+← / →")
        k("L", self.toggle_loop, "Loop on / off (8 s from the playhead when no region was dragged)", "Loop")
        k("A", lambda: self.practice.toggle_ab(), "A/B: the original song / your mix (or the two models compared)",
          "Playback")
        k(("[", "]"), (lambda: self.set_loop_edge_here(0), lambda: self.set_loop_edge_here(1)),
          "Loop starts / ends at the playhead", "Loop", "[ / ]")
        k(("Shift+Left", "Shift+Right"), (lambda: self.nudge_loop(-1), lambda: self.nudge_loop(1)),
          "Nudge the loop earlier / later (1 % of the visible time: zoom in for finer steps)", "Loop", "Shift+← / →")
        k(("Ctrl+Shift+Left", "Ctrl+Shift+Right"), (lambda: self.nudge_loop(-1, edge=1), lambda: self.nudge_loop(1, edge=1)),
          "Shorten / lengthen the loop (moves its end)", "Loop", "Ctrl+Shift+← / →")
        # Tab is the lanes' own (a window-wide Tab would break Tab between the fields of the docks)
        self.keys.describe("Tab / Shift+Tab", "Next / previous lane (the focused lane has a blue ring)", "Lanes")
        k("M", lambda: self.toggle_lane_flag("mute"), "Mute the focused lane", "Lanes")
        k("S", lambda: self.toggle_lane_flag("solo"), "Solo the focused lane (only soloed lanes sound)", "Lanes")
        k(("+", "=", "Ctrl++", "Ctrl+="), [self.zoom_in_action.trigger] * 4, "Zoom in (also Ctrl+wheel on a lane)",
          "View", "+ / Ctrl++")
        k(("-", "Ctrl+-"), [self.zoom_out_action.trigger] * 2, "Zoom out", "View", "− / Ctrl+−")
        k(("0", "Ctrl+0"), [self.time_view.fit] * 2, "Show the whole song", "View", "0")
        k("Z", self.zoom_to_loop, "Zoom to the loop", "View")
        k("W", self.waveform_action.trigger, "Waveforms over the spectrograms on / off", "View")
        self.keys.describe("Ctrl+wheel", "Zoom in / out around the pointer (on a lane)", "View")
        self.keys.describe("Shift+wheel", "Scroll through the song (or drag the scroll bar under the lanes)", "View")
        self.keys.describe("Drag a stem's name", "Drop the stem as a file into a file manager or a DAW", "Lanes")
        k("?", self.show_shortcuts, "This sheet (also F1)", "Help")
        self.scale_group = QActionGroup(self)
        self.scale_actions = {}
        for scale, label in (("log", "Log-frequency axis"), ("mel", "Mel axis")):
            a = QAction(label, self, checkable=True)
            a.setChecked(self.settings.frequency_scale == scale)
            a.triggered.connect(lambda _=False, s=scale: self.set_frequency_scale(s))
            self.scale_group.addAction(a)
            self.scale_actions[scale] = a

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addAction(self.open_several_action)
        self.recent_menu = file_menu.addMenu("Open recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        file_menu.addSeparator()
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.clear_cache_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        play_menu = menu.addMenu("&Playback")
        for a in (self.play_action, self.home_action, self.loop_action):
            play_menu.addAction(a)
        self.preset_actions = {}
        presets_menu = menu.addMenu("P&resets")
        for name, tip in PRESETS.items():
            a = QAction(name, self)
            a.setToolTip(f"Hear {tip}")
            a.triggered.connect(lambda _=False, n=name: self.apply_preset(n))
            presets_menu.addAction(a)
            self.preset_actions[name] = a
        models_menu = menu.addMenu("&Models")
        models_menu.addAction(self.get_models_action)
        sep_menu = menu.addMenu("&Separation")
        sep_menu.addAction(self.rerun_action)
        sep_menu.addAction(self.compare_action)
        sep_menu.addAction(self.cancel_action)
        self.tools_menu = menu.addMenu("&Tools")
        self.listening_action = self.tools_menu.addAction("Listening test…", lambda: self.open_listening_test())
        self.listening_action.setToolTip("Run a prepared MUSHRA / MOS test (stemgui listening-test create)")
        self.view_menu = menu.addMenu("&View")
        for a in (self.zoom_in_action, self.zoom_out_action, self.zoom_fit_action, self.zoom_loop_action):
            self.view_menu.addAction(a)
        self.view_menu.addSeparator()
        self.view_menu.addAction(self.waveform_action)
        for a in self.scale_actions.values():
            self.view_menu.addAction(a)
        self.view_menu.addSeparator()
        self.help_menu = menu.addMenu("&Help")
        self.help_menu.addAction(self.shortcuts_action)

    def _build_transport_bar(self) -> None:
        bar = self.addToolBar("Transport")
        bar.setObjectName("transport")
        bar.setMovable(False)
        bar.setIconSize(QSize(18, 18))
        bar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        bar.addAction(self.open_action)
        bar.addSeparator()
        bar.addAction(self.home_action)
        bar.addAction(self.play_action)
        bar.addAction(self.loop_action)
        self.time_label = QLabel("0:00.0 / 0:00.0")
        self.time_label.setObjectName("timeLabel")
        bar.addWidget(self.time_label)
        bar.addSeparator()
        self.practice = PracticeControls(self.player)  # tempo, transpose, BPM and key, A/B
        bar.addWidget(self.practice)
        self.transport_bar = bar  # (Play's width is fixed in _fit_toolbars)
        self._icon_savings: dict = {}
        self._fit_pending = False
        bar.installEventFilter(self)

    @staticmethod
    def _widest_text_width(button: QToolButton, texts) -> int:
        """The button's width with the widest of `texts` (measured, not set: setting would relayout the bar)."""
        fm = button.fontMetrics()
        base = button.sizeHint().width() - fm.horizontalAdvance(button.text())
        return base + max(fm.horizontalAdvance(t) for t in texts) + 4  # + rounding slack of the style

    def _build_mix_bar(self) -> None:
        """The second row: presets, zoom, waveforms, the song's name and Export (wraps below the transport)."""
        self.addToolBarBreak(Qt.TopToolBarArea)
        bar = QToolBar("Mix and view", self)
        bar.setObjectName("mixBar")
        bar.setMovable(False)
        bar.setIconSize(QSize(16, 16))
        bar.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.addToolBar(Qt.TopToolBarArea, bar)
        self.mix_bar = bar
        bar.installEventFilter(self)
        presets = QWidget()
        pl = QHBoxLayout(presets)
        pl.setContentsMargins(4, 0, 4, 0)
        pl.setSpacing(6)
        pl.addWidget(QLabel("Presets"))
        self.preset_buttons = {}
        for name, tip in PRESETS.items():
            b = QToolButton()
            b.setObjectName("preset")
            b.setText(name)
            b.setToolTip(f"Hear {tip}")
            b.setFocusPolicy(Qt.NoFocus)
            b.clicked.connect(lambda _=False, n=name: self.apply_preset(n))
            pl.addWidget(b)
            self.preset_buttons[name] = b
        bar.addWidget(presets)
        bar.addSeparator()
        bar.addWidget(QLabel(" Zoom "))
        self.zoom_buttons = {}
        for text, a in (("−", self.zoom_out_action), ("+", self.zoom_in_action), ("Fit", self.zoom_fit_action),
                        ("To loop", self.zoom_loop_action)):
            b = QToolButton()
            b.setObjectName("zoomButton")
            b.setText(text)
            b.setToolTip(a.toolTip())
            b.setFocusPolicy(Qt.NoFocus)
            b.clicked.connect(a.trigger)
            bar.addWidget(b)
            self.zoom_buttons[text] = b
        bar.addAction(self.waveform_action)
        self.song_label = ElidedLabel("")  # takes the room that is left, elided: the bar never overflows
        self.song_label.setObjectName("songLabel")
        self.song_label.setAlignment(Qt.AlignRight | Qt.AlignVCenter)
        bar.addWidget(self.song_label)
        bar.addAction(self.export_action)

    def _build_central(self) -> None:
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.lanes_host = QWidget()
        self.lanes_layout = QVBoxLayout(self.lanes_host)
        self.lanes_layout.setContentsMargins(10, 10, 10, 10)
        self.lanes_layout.setSpacing(8)
        self.scroll.setWidget(self.lanes_host)
        cl.addWidget(self.scroll, 1)
        self.time_scroll = TimeScrollBar(self.time_view)
        time_row = QHBoxLayout()
        time_row.setContentsMargins(10 + 6 + HEADER_WIDTH + AXIS_WIDTH, 0, 16, 2)
        time_row.addWidget(self.time_scroll)
        cl.addLayout(time_row)
        # Empty state: the (blank) lanes are already there, with a hint floating over them.
        self.drop_hint = QLabel("Drop a song here\nor use File ▸ Open (Ctrl+O)", self.scroll)
        self.drop_hint.setObjectName("dropHint")
        self.drop_hint.setAlignment(Qt.AlignCenter)
        self.drop_hint.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.scroll.installEventFilter(self)
        self.job_bar = JobBar()
        self.job_bar.cancel_requested.connect(self.cancel_job)
        cl.addWidget(self.job_bar)
        self.setCentralWidget(central)

    def _build_status_bar(self) -> None:
        self.audio_label = QLabel("")
        self.statusBar().addPermanentWidget(self.audio_label)
        if not self.audio_ok:
            self._show_audio_problem()
        self.statusBar().showMessage("Drop a song to split it into drums, bass, other and vocals.")

    def _build_docks(self, model_override: str | None) -> None:
        self.settings_panel = SeparationSettingsPanel(self.settings, self.dialogs, model_override)
        self.settings_panel.separate_again_requested.connect(self.separate_again)
        self.settings_panel.get_models_requested.connect(self.open_models_dialog)
        self.settings_dock = self.add_panel(self.settings_panel, "Separation settings", Qt.RightDockWidgetArea)
        self.settings_dock.setObjectName("settingsDock")
        self.settings_dock.setMinimumWidth(250)
        self.settings_dock.setMaximumWidth(340)  # the lanes get the room

        self.finetune_panel = FineTunePanel(self, settings=self.settings.store)
        self.finetune_panel.modelRegistered.connect(self._on_model_registered)
        self.finetune_dock = self.add_panel(self.finetune_panel, "Fine-tune", Qt.BottomDockWidgetArea)
        self.finetune_dock.setObjectName("fineTuneDock")
        if not self.finetune_panel.is_training():  # hidden until opened, unless an earlier training still runs
            self.finetune_dock.hide()

        self.batch_panel = BatchPanel(self.batch)
        self.batch_panel.open_requested.connect(self.open_batch_job)
        self.batch_dock = self.add_panel(self.batch_panel, "Batch queue", Qt.BottomDockWidgetArea)
        self.batch_dock.setObjectName("batchDock")
        self.batch_dock.hide()  # shown when songs are queued
        self._rerun_buttons = [b for b in self.settings_panel.findChildren(QPushButton) if b.text() == "Separate again"]

    def add_panel(self, widget: QWidget, title: str, area=Qt.RightDockWidgetArea) -> QDockWidget:
        """Dock a tool panel and list it under View."""
        dock = QDockWidget(title, self)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetClosable | QDockWidget.DockWidgetMovable)
        self.addDockWidget(area, dock)
        self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not self._docks_sized:  # docks can only be sized once the window is laid out
            self._docks_sized = True
            self.resizeDocks([self.settings_dock], [300], Qt.Horizontal)
            self._fit_toolbars()
            self._focus_lanes()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._fit_toolbars()

    def _fit_toolbars(self) -> None:
        """Text beside icons when a toolbar row fits the window, icons only (tooltips say what) when not, so
        nothing vanishes into a toolbar's overflow menu at 1024 px. Re-run whenever a bar's contents change
        size (a longer BPM / key text); nothing is set unless it changes, so this settles at once."""
        self._fit_pending = False
        text = Qt.ToolButtonTextBesideIcon
        for bar in (getattr(self, "transport_bar", None), getattr(self, "mix_bar", None)):
            if bar is None:
                continue
            need = bar.sizeHint().width() + (0 if bar.toolButtonStyle() == text else self._icon_savings.get(bar, 0))
            want = text if need <= self.width() else Qt.ToolButtonIconOnly
            if want != bar.toolButtonStyle():
                before = bar.sizeHint().width()
                bar.setToolButtonStyle(want)
                if want != text:
                    self._icon_savings[bar] = max(0, before - bar.sizeHint().width())
            play_button = bar.widgetForAction(self.play_action)
            if play_button is not None:  # as wide as its widest text: Play -> Pause never shifts the bar
                width = self._widest_text_width(play_button, ("Play", "Pause")) if want == text else 0
                if play_button.minimumWidth() != width:
                    play_button.setMinimumWidth(width)

    def _schedule_fit(self) -> None:
        if not self._fit_pending:
            self._fit_pending = True
            QTimer.singleShot(0, self._fit_toolbars)

    def _focus_lanes(self) -> None:
        """Keys go to the lanes (not to a tempo field that happened to be first in the tab order)."""
        if 0 <= self.focused_lane < len(self.lanes):
            focus = self.focusWidget()
            if focus is None or not any(d.isAncestorOf(focus) for d in self.findChildren(QDockWidget)):
                self.lanes[self.focused_lane].setFocus(Qt.OtherFocusReason)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if obj is self.scroll and event.type() == QEvent.Resize:
            self.drop_hint.setGeometry(self.scroll.rect())
        elif event.type() == QEvent.LayoutRequest and obj in (self.transport_bar, self.mix_bar):
            self._schedule_fit()
        return super().eventFilter(obj, event)

    # ================================================================== models and settings
    def current_model_path(self) -> Path:
        """The chosen model's weights; raises ModelError with one sentence when it is missing."""
        return self.settings_panel.current_model_path()

    def separation_settings(self) -> SeparationSettings:
        return self.settings_panel.separation_settings()

    def open_listening_test(self, path: str | None = None):
        """Tools > Listening test…: a prepared MUSHRA / MOS test in its own window (see gui/listening.py)."""
        from stemgui.gui.listening import open_listening_test

        return open_listening_test(self, path)

    def open_models_dialog(self) -> QDialog | None:
        """The catalog of published models; a finished download is listed and selected in the picker."""
        from stemgui.gui.models_dialog import ModelsDialog

        if self.models_dialog is None:
            try:
                self.models_dialog = ModelsDialog(self.dialogs, parent=self)
            except StemGUIError as exc:
                self.dialogs.error("Get models", str(exc))
                return None
            self.models_dialog.installed.connect(self._on_model_downloaded)
        self.models_dialog.show()
        self.models_dialog.raise_()
        return self.models_dialog

    def _on_model_downloaded(self, name: str) -> None:
        from stemgui.models.registry import resolve_model

        try:
            self._on_model_registered(resolve_model(name))
        except StemGUIError as exc:
            self.dialogs.error("Get models", str(exc))

    def _on_model_registered(self, path: Path) -> None:
        """A fine-tuned model joined the registry: list it and choose it."""
        self.settings_panel.refresh_models()
        self.settings_panel.select_model(path)
        self.statusBar().showMessage(f"Model '{path.stem}' is ready and selected: separate a song with it.", 10000)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        files = self.settings.recent_files
        if not files:
            self.recent_menu.addAction("(none)").setEnabled(False)
        for f in files:
            self.recent_menu.addAction(Path(f).name, lambda f=f: self.open_song(f)).setToolTip(f)

    def set_frequency_scale(self, scale: str) -> None:
        self.settings.frequency_scale = scale
        self.scale_actions[scale].setChecked(True)
        if self.session is not None:
            self._reset_pictures()

    # ================================================================== opening and separating
    def choose_song(self) -> None:
        recent = self.settings.recent_files
        path = self.dialogs.open_song(str(Path(recent[0]).parent) if recent else "")
        if path:
            self.open_song(path)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        files = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if files:
            event.acceptProposedAction()
            if len(files) == 1 and not Path(files[0]).is_dir():
                self.open_song(files[0])
            else:  # several songs, or a folder: the batch queue
                self.queue_songs(files)

    def choose_songs(self) -> None:
        """File > Open several…: queue the chosen songs."""
        recent = self.settings.recent_files
        paths = self.dialogs.open_songs(str(Path(recent[0]).parent) if recent else "")
        if paths:
            self.queue_songs(paths)

    def queue_songs(self, paths) -> list:
        """Separate songs (folders searched for audio files) one after another into the cache; returns the jobs."""
        songs = audio_files(paths)
        if not songs:
            self.dialogs.error("Nothing to separate", "No audio files were found in what was dropped.")
            return []
        try:
            model_path = self.current_model_path()
            settings = self.separation_settings()
        except StemGUIError as exc:
            self.dialogs.error("Model missing", str(exc))
            return []
        jobs = self.batch.add(songs, model_path, settings)
        self.batch_dock.show()
        self.batch_dock.raise_()
        self.statusBar().showMessage(f"{len(jobs)} song(s) queued; open one from the Batch queue when it is done.",
                                     8000)
        return jobs

    def open_batch_job(self, job) -> bool:
        """Open a finished song of the queue (from the cache: instant) with the model and settings it used."""
        return self.open_song(job.path, model_path=job.model_path, settings=job.settings)

    def _on_batch_job(self, job) -> None:
        left = sum(1 for j in self.batch.model.jobs if not j.state.finished)
        tail = f"; {left} left in the queue" if left else "; the queue is done"
        self.statusBar().showMessage(f"Batch: {job.path.name} {job.state.value.lower()}{tail}.", 8000)

    def open_song(self, path: str | Path, model_path: Path | None = None,
                  settings: SeparationSettings | None = None) -> bool:
        """Open and separate a song (by default with the chosen model and settings); errors become a dialog.

        Returns False when nothing was started. The song joins Open recent once it opened successfully.
        """
        path = Path(path)
        if not path.is_file():
            self.dialogs.error("Cannot open the song", f"{path}: no such file.")
            return False
        try:
            model_path = model_path or self.current_model_path()
            settings = settings or self.separation_settings()
        except StemGUIError as exc:
            self.dialogs.error("Model missing", str(exc))
            return False
        if self.batch.claim(path, model_path, settings) is not None:  # queued or separating there: not twice
            self.batch_dock.show()
            self.batch_dock.raise_()
            self.statusBar().showMessage(f"{path.name} is in the batch queue; it opens here when it is done.", 10000)
            return True
        self._stop_worker()
        worker = SeparationWorker(path, model_path, settings, self.cache, self)
        worker.stage.connect(self._on_stage)
        worker.progress.connect(self._on_progress)
        worker.prepared.connect(self._on_prepared)
        worker.chunk.connect(self._on_chunk)
        worker.notice.connect(self._on_notice)
        worker.finished_ok.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self.worker = worker
        self._show_job(worker, f"Opening {path.name}")
        self.statusBar().showMessage(f"Opening {path}…")
        self.batch.run_direct(worker)  # one separation at a time: the queue waits for this one
        self._update_actions()
        return True

    def _show_job(self, job: SeparationWorker | ExportWorker, stage: str) -> None:
        self._job = job
        self.job_bar.start(stage)

    def _end_job(self) -> None:
        self._job = None
        self.job_bar.finish("Ready" if self.session is not None else "")

    def separate_again(self) -> None:
        if self.session is not None:
            self.open_song(self.session.path)

    def cancel_job(self) -> None:
        """The job bar's Cancel: stop the job it shows (a separation or an export)."""
        if self._job is not None and self._job.isRunning():
            self._job.cancel()
            self.job_bar.cancelling()

    # ---- A/B between two models: a second separation of the same song, played with the same lane settings
    def choose_comparison(self) -> None:
        if self.session is None or not self.session.complete:
            self.dialogs.info("Compare", "Open a song and let its separation finish first.")
            return
        model = choose_comparison_model(self, str(self.current_model_path()))
        if model is None:
            self.dialogs.info("Compare", "No other model is installed: get one with Models ▸ Get models….")
            return
        self.compare_with_model(Path(model))

    def compare_with_model(self, model_path: Path) -> SeparationWorker | None:
        """Separate the open song with `model_path` in the background; A/B then switches between the two."""
        if self.session is None:
            return None
        self._stop_comparison()
        worker = SeparationWorker(self.session.path, Path(model_path), self.separation_settings(), self.cache, self)
        worker.progress.connect(self._on_progress)
        worker.finished_ok.connect(self._on_comparison_done)
        worker.failed.connect(lambda m: (self._end_job(), self.dialogs.error("Compare", m)))
        worker.cancelled.connect(self._end_job)
        self.compare_worker = worker
        self._show_job(worker, f"Separating with {Path(model_path).stem} for comparison")
        self.batch.run_direct(worker)
        return worker

    def _on_comparison_done(self, other: Session) -> None:
        self._end_job()
        session = self.session
        if session is None or other.path != session.path:
            return
        if other.names != session.names or other.audio.shape != session.audio.shape:
            self.dialogs.error("Compare", f"{other.model_name} gives the stems {', '.join(other.stem_names)}, "
                               f"{session.model_name} {', '.join(session.stem_names)}: A/B needs the same stems.")
            return
        self.player.set_alternate(other.audio)
        self.practice.set_comparison((session.model_name, other.model_name))
        self.statusBar().showMessage(f"A/B now switches between {session.model_name} (A) and {other.model_name} (B).",
                                     10000)

    def _stop_comparison(self) -> None:
        worker = getattr(self, "compare_worker", None)
        self.compare_worker = None
        if worker is not None:
            for sig in (worker.progress, worker.finished_ok, worker.failed, worker.cancelled):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError) as exc:  # nothing connected
                    log.debug("disconnecting the comparison worker: %s", exc)
            worker.cancel()
            if worker.isRunning():  # it stops within a second; the window does not wait for it
                self._old_workers.append(worker)
                worker.finished.connect(lambda w=worker: self._old_workers.remove(w) if w in self._old_workers else None)
        self.player.set_alternate(None)
        self.practice.set_comparison(None)

    def cancel_separation(self) -> None:
        if self.worker is not None and self.worker.isRunning():
            self.worker.cancel()
            if self._job is self.worker:
                self.job_bar.cancelling()

    def _stop_worker(self) -> None:
        """Cancel a running separation before another starts (it stops within a second)."""
        worker, self.worker = self.worker, None
        if worker is None:
            return
        for sig in (worker.stage, worker.progress, worker.prepared, worker.chunk, worker.notice,
                    worker.finished_ok, worker.failed, worker.cancelled):
            try:
                sig.disconnect()
            except (RuntimeError, TypeError) as exc:  # nothing connected: nothing to disconnect
                log.debug("disconnecting an old separation worker: %s", exc)
        worker.cancel()
        if worker.isRunning():
            self._old_workers.append(worker)
            worker.finished.connect(lambda w=worker: self._old_workers.remove(w) if w in self._old_workers else None)

    def is_busy(self) -> bool:
        building = self.session is not None and len(self.lanes) < len(self.session.names)
        return building or (self.worker is not None and self.worker.isRunning()) or self.spec_worker.pending > 0

    def pictures_complete(self) -> bool:
        """Every lane's spectrogram is drawn to its last column."""
        return all(lane.columns_done >= lane.layout_info.columns for lane in self.lanes)

    def _on_progress(self, fraction: float, eta, message: str) -> None:
        self.job_bar.set_progress(fraction, eta)

    def _on_stage(self, text: str) -> None:
        """The job bar and the status bar say what the separation is doing now (not "Opening…" throughout)."""
        self.job_bar.set_stage(text)
        name = self.worker.song.name if self.worker is not None else ""
        self.statusBar().showMessage(f"{name}: {text[0].lower()}{text[1:]}…" if name and text else text)

    def _on_notice(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)
        self.dialogs.warning("Separation", text)

    def _on_prepared(self, session: Session) -> None:
        """The song is read: build the lanes (stems fill in as they are separated)."""
        self.player.pause()
        self.session = session
        self.generation += 1
        self.spec_worker.generation = self.generation
        self.mixes = [LaneMix(mute=(name == MIX_NAME)) for name in session.names]
        complete = [True] + [session.complete] * (len(session.names) - 1)
        self.player.load(session.audio, self.mixes, complete, session.available)  # no loop for a new song
        self._stop_comparison()
        self.practice.reset()
        self.practice.analyse(session.audio[0], session.samplerate)
        self._show_loop()
        self._layout = self._layout_for(session)
        self._spec_requested = [0] * len(session.names)
        if [lane.name for lane in self.lanes] != session.names:
            for lane in self.lanes:
                lane.setParent(None)
                lane.deleteLater()
            self.lanes = []
        else:  # same stems as the last song: reuse the lane widgets (building them is the costly part)
            for lane in self.lanes:
                self._setup_lane(lane)
        self.drop_hint.hide()
        self._build_next_lane()
        self._open_audio_soon()
        self.song_label.setText(f"{session.path.name} · {format_time(session.duration)[:-2]}")
        self.setWindowTitle(f"{session.path.name} — StemGUI")
        self.time_view.set_duration(session.duration)
        self._last_position = -1  # the time label shows the new song's length even when both are at 0:00
        self._tick(force=True)
        self._update_actions()

    def _on_chunk(self, start: int, end: int) -> None:
        if self.session is None:
            return
        self.player.set_available(self.session.available)
        done_s = self.session.available / self.session.samplerate
        for i in range(1, len(self.lanes)):
            self.lanes[i].set_done(done_s if self.session.available < self.session.frames else None)
            self._request_pictures(i, self.session.available)

    def _reap_worker(self) -> None:
        """The worker's last signal arrived: let its thread end (it is in its last lines) before actions update."""
        if self.worker is not None:
            self.worker.wait(2000)

    def _on_finished(self, session: Session) -> None:
        if session is not self.session:
            return
        self._reap_worker()
        self.player.mark_complete()
        self.practice.analyse_stems(session)  # the key again, from the pitched stems (cleaner than the mix)
        for i, lane in enumerate(self.lanes):
            lane.set_done(None)
            self._request_pictures(i, session.frames)
        self._end_job()
        self.settings.add_recent(session.path)  # only songs that opened (a failed file is not "recent")
        origin = "from the cache" if session.from_cache else f"in {self.worker.elapsed:.1f} s" if self.worker else ""
        self.statusBar().showMessage(f"{session.path.name}: {len(session.stem_names)} stems ready {origin}.")
        if self.waveform_action.isChecked():
            self._request_waveforms()
        if self.time_view.zoomed:
            self._detail_timer.start()  # the sharper zoomed picture now covers the whole of every stem
        self._update_actions()
        self.separation_done.emit(True)

    def _on_failed(self, message: str) -> None:
        self._reap_worker()
        self._end_job()
        self.statusBar().showMessage(message, 15000)
        self.dialogs.error("Separation failed", message)
        self._update_actions()
        self.separation_done.emit(False)

    def _on_cancelled(self) -> None:
        self._reap_worker()
        self._end_job()
        if self.session is not None:
            done = format_time(self.session.available / self.session.samplerate)
            usable = " You can play and export the part up to there." if self.session.available > 0 else ""
            self.statusBar().showMessage(f"Separation cancelled at {done}; nothing was cached.{usable} "
                                         "Separation ▸ Separate again separates the whole song anew.", 20000)
            if self.waveform_action.isChecked():
                self._request_waveforms()
        else:
            self.statusBar().showMessage("Separation cancelled.", 10000)
        self._update_actions()
        self.separation_done.emit(False)

    # ================================================================== lanes and pictures
    def _build_next_lane(self) -> None:
        """Lanes are built one per event-loop turn, so a new song never stalls the window for long."""
        session = self.session
        if session is None or len(self.lanes) >= len(session.names):
            return
        lane = self._add_lane(session.names)
        self._setup_lane(lane)
        if len(self.lanes) < len(session.names):
            QTimer.singleShot(0, self._build_next_lane)

    def _add_lane(self, names: list[str]) -> Lane:
        i = len(self.lanes)
        lane = Lane(i, names[i], self._layout, self.mixes[i], show_time_axis=(i == len(names) - 1))
        lane.mix_changed.connect(self._on_lane_mix)
        lane.seek_requested.connect(self.seek)
        lane.loop_requested.connect(self._on_loop_drag)
        lane.activated.connect(self.focus_lane)
        lane.tab_requested.connect(lambda index, forward: self.focus_next_lane(forward, index))
        lane.zoom_requested.connect(lambda anchor, notches: self.time_view.zoom_by(1.5 ** notches, anchor))
        lane.scroll_requested.connect(lambda notches: self.time_view.scroll_by(0.1 * notches))
        lane.drag_out_requested.connect(self.drag_stem_out)
        lane.show_waveform(self.waveform_action.isChecked())
        self.lanes_layout.addWidget(lane, 1)
        self.lanes.append(lane)
        return lane

    def _prebuild_lanes(self) -> None:
        """Blank lanes for the chosen model's stems at start-up: a dropped song then only fills them in."""
        card = self.settings_panel.current_card() or {}
        names = [MIX_NAME] + list(card.get("sources") or SOURCES)
        rate = 44100
        self._layout = SpectrogramLayout(PLACEHOLDER_SECONDS * rate, rate, 400, scale=self.settings.frequency_scale)
        self.mixes = [LaneMix(mute=(n == MIX_NAME)) for n in names]
        for _ in names:
            self._add_lane(names)

    def _setup_lane(self, lane: Lane) -> None:
        """Point a (new or reused) lane at the current session."""
        session, i = self.session, lane.index
        lane.reset_image(self._layout)
        lane.set_mix(self.mixes[i])
        lane.set_done(None if i == 0 or session.complete else session.available / session.samplerate)
        lane.set_loop(self.loop_seconds, self.player.loop_enabled)
        lane.set_playhead(self.position_seconds())
        lane.set_audible(audible(self.mixes)[i])
        lane.set_focused(i == self.focused_lane)
        lane.set_x_range(self.time_view.start, self.time_view.end)
        self._request_pictures(i, session.frames if i == 0 else session.available)
        if self.waveform_action.isChecked() and (i == 0 or session.complete):
            self.spec_worker.request_waveform(self.generation, i, session.audio[i], session.samplerate,
                                              session.frames)
        if i == 1 or (i == 0 and len(session.names) == 1):
            self.focus_lane(i)
            self._focus_lanes()

    def _layout_for(self, session: Session) -> SpectrogramLayout:
        width = self.scroll.viewport().width()
        columns = int(np.clip(width - HEADER_WIDTH - AXIS_WIDTH - 40, 400, 2400))
        return SpectrogramLayout(session.frames, session.samplerate, columns, scale=self.settings.frequency_scale)

    def _request_pictures(self, lane_index: int, upto: int) -> None:
        lane = self.lanes[lane_index]
        done = lane.layout_info.columns_within(upto)
        if done > self._spec_requested[lane_index]:
            self.spec_worker.request(self.generation, lane_index, self.session.audio[lane_index], lane.layout_info,
                                     self._spec_requested[lane_index], done)
            self._spec_requested[lane_index] = done

    def _reset_pictures(self) -> None:
        self.generation += 1
        self.spec_worker.generation = self.generation
        layout = self._layout = self._layout_for(self.session)
        self._spec_requested = [0] * len(self.session.names)
        for i, lane in enumerate(self.lanes):
            lane.reset_image(layout)
            lane.set_x_range(self.time_view.start, self.time_view.end)
            self._request_pictures(i, self.session.frames if i == 0 else self.session.available)
        if self.waveform_action.isChecked():
            self._request_waveforms()

    def _on_columns(self, generation: int, lane: int, first: int, block) -> None:
        if generation != self.generation:
            return
        if lane >= DETAIL_LANE:
            token, index = divmod(lane - DETAIL_LANE, 64)
            if token == self._detail_token % 4096 and index < len(self.lanes):
                self.lanes[index].set_detail_columns(first, block)
        elif lane < len(self.lanes):
            self.lanes[lane].set_columns(first, block)

    def _on_waveform(self, generation: int, lane: int, x, y) -> None:
        if generation == self.generation and lane < len(self.lanes):
            self.lanes[lane].set_waveform(x, y)

    def _request_waveforms(self) -> None:
        session = self.session
        if session is None:
            return
        for i in range(len(self.lanes)):
            upto = session.frames if i == 0 else frames_ready(session)
            if upto > 0:
                self.spec_worker.request_waveform(self.generation, i, session.audio[i], session.samplerate, upto)

    def show_waveforms(self, on: bool) -> None:
        """View > Waveforms (W): each lane's waveform over its spectrogram, to set a loop on the beat."""
        with QSignalBlocker(self.waveform_action):
            self.waveform_action.setChecked(bool(on))
        for lane in self.lanes:
            lane.show_waveform(bool(on))
        if on and any(lane.waveform_points == 0 for lane in self.lanes):
            self._request_waveforms()

    # ---- the timeline: every lane shows the TimeView's range
    def _on_time_range(self, start: float, end: float) -> None:
        for lane in self.lanes:
            lane.set_x_range(start, end)
        self._detail_timer.start()

    def _refresh_detail(self) -> None:
        """Zoomed in: draw the visible range again at one column per pixel (the song's picture is too coarse)."""
        self._detail_token += 1
        session = self.session
        if session is None or self.time_view.zoom < DETAIL_MIN_ZOOM:
            for lane in self.lanes:
                lane.hide_detail()
            return
        rate = session.samplerate
        for i, lane in enumerate(self.lanes):
            s0 = int(self.time_view.start * rate)
            s1 = min(int(np.ceil(self.time_view.end * rate)), session.frames if i == 0 else frames_ready(session))
            if s1 - s0 < lane.layout_info.nfft:
                lane.hide_detail()
                continue
            layout = SpectrogramLayout(s1 - s0, rate, lane.plot_width(), scale=self.settings.frequency_scale)
            lane.set_detail(s0 / rate, layout)
            self.spec_worker.request(self.generation, DETAIL_LANE + (self._detail_token % 4096) * 64 + i,
                                     session.audio[i][:, s0:s1], layout, 0, layout.columns)

    def _zoom_anchor(self) -> float | None:
        """Zoom keys keep the playhead in place when it is in view, else the centre."""
        if self.session is None:
            return None
        pos = self.position_seconds()
        return pos if self.time_view.start <= pos <= self.time_view.end else None

    def zoom_to_loop(self) -> None:
        loop = self.loop_seconds
        if loop is not None:
            self.time_view.show_region(*loop)

    def _on_spec_idle(self, generation: int) -> None:
        if generation == self.generation and not self.is_busy() and self.pictures_complete():
            self.pictures_done.emit()

    # ================================================================== mixing
    def focus_lane(self, index: int) -> None:
        self.focused_lane = index
        for i, lane in enumerate(self.lanes):
            lane.set_focused(i == index)

    def focus_next_lane(self, forward: bool = True, current: int | None = None) -> None:
        """Tab / Shift+Tab: the next / previous lane takes the keyboard focus (and the ring), wrapping around."""
        if not self.lanes:
            return
        i = self.focused_lane if current is None else current
        i = (i + (1 if forward else -1)) % len(self.lanes)
        self.focus_lane(i)
        self.lanes[i].setFocus(Qt.TabFocusReason if forward else Qt.BacktabFocusReason)
        self.scroll.ensureWidgetVisible(self.lanes[i], 0, 10)

    def drag_stem_out(self, index: int):
        """A stem's name was dragged out of its lane: export it on the fly and drag the file (None if nothing)."""
        if self.session is None or not (1 <= index < len(self.session.names)):
            return None
        stem = self.session.names[index]
        path = self.drag_out.drag(self.lanes[index].title, self.session, stem)
        if path is None:
            self.statusBar().showMessage(f"{stem}: {self.drag_out.last_error}", 8000)
        else:
            self.statusBar().showMessage(f"Dragged {path.name} (in {path.parent}).", 8000)
        return path

    def _on_lane_mix(self, index: int, mix: LaneMix) -> None:
        self.mixes[index] = mix
        self._push_mixes(update_lanes=False)

    def _push_mixes(self, update_lanes: bool = True) -> None:
        if update_lanes:
            for lane, mix in zip(self.lanes, self.mixes):
                lane.set_mix(mix)
        self.player.set_lanes(self.mixes)
        for lane, on in zip(self.lanes, audible(self.mixes)):
            lane.set_audible(on)

    def set_lane_mix(self, index: int, **changes) -> None:
        self.mixes[index] = self.mixes[index].with_(**changes)
        self._push_mixes()

    def toggle_lane_flag(self, flag: str) -> None:
        """M / S keys: toggle mute or solo on the focused lane."""
        if 0 <= self.focused_lane < len(self.mixes):
            mix = self.mixes[self.focused_lane]
            self.set_lane_mix(self.focused_lane, **{flag: not getattr(mix, flag)})

    def apply_preset(self, name: str) -> None:
        if not self.mixes:
            return
        self.mixes = apply_preset(name, self.session.names, self.mixes, MIX_NAME)
        self._push_mixes()
        self.statusBar().showMessage(f"Preset {name}: {PRESETS[name]}.", 4000)

    # ================================================================== transport
    def _show_audio_problem(self) -> None:
        self.audio_label.setText(self.audio_reason)
        self.audio_label.setStyleSheet(WARNING_STYLE)
        self.play_action.setToolTip(self.audio_reason)

    def _open_audio(self) -> bool:
        """Open the output stream now (it plays silence while paused); False, with the reason shown, on failure."""
        if not self.audio_ok:
            return False
        try:
            self.player.open_stream()
        except RuntimeError as exc:
            self._on_audio_open_failed(str(exc))
            return False
        return True

    def _open_audio_soon(self) -> None:
        """Open the output stream ahead of time on a helper thread, so Play starts at once: opening blocks for
        60-130 ms with JACK (and longer with some sound servers), which would stall the event loop."""
        if not self.audio_ok or self.player.stream_open:
            return

        def work() -> None:
            try:
                self.player.open_stream()
            except RuntimeError as exc:
                self.audio_open_failed.emit(str(exc))

        threading.Thread(target=work, name="stemgui-audio-open", daemon=True).start()

    def _on_audio_open_failed(self, reason: str) -> None:
        if not self.audio_ok:  # already reported
            return
        self.audio_ok, self.audio_reason = False, reason
        self._show_audio_problem()
        self.dialogs.error("Playback", reason)
        self._update_actions()

    def toggle_play(self) -> None:
        if self.session is None:
            return
        if not self.audio_ok:
            self.statusBar().showMessage(self.audio_reason, 6000)
            return
        if self._open_audio():
            self.player.toggle()

    def go_home(self) -> None:
        loop = self.loop_seconds
        self.seek(loop[0] if loop and self.player.loop_enabled else 0.0)

    def seek(self, seconds: float) -> None:
        if self.session is None:
            return
        self.player.seek(int(round(max(0.0, seconds) * self.session.samplerate)))
        self._tick(force=True)

    def position_seconds(self) -> float:
        return self.player.position / self.session.samplerate if self.session else 0.0

    def seek_by(self, seconds: float) -> None:
        """Left / Right: move the playhead (kept in view when zoomed)."""
        if self.session is not None:
            target = min(self.session.duration, max(0.0, self.position_seconds() + seconds))
            self.seek(target)
            self.time_view.follow(target)

    def nudge_loop(self, direction: int, edge: int | None = None) -> None:
        """Shift+arrows move the loop by the zoom's nudge step; with `edge` 1 (Ctrl+Shift) only its end moves."""
        loop = self.loop_seconds
        if loop is None or self.session is None:
            self.statusBar().showMessage("No loop yet: drag across a lane, or press L.", 4000)
            return
        step = direction * self.time_view.nudge_step
        lo, hi = loop
        if edge is None:
            step = min(max(step, -lo), self.session.duration - hi)  # the loop keeps its length at the song's ends
            lo, hi = lo + step, hi + step
        else:
            hi = max(lo + 2 * MIN_LOOP_SECONDS, min(self.session.duration, hi + step))
        self.set_loop(lo, hi)
        self.statusBar().showMessage(f"Loop {format_time(lo)} – {format_time(hi)} ({hi - lo:.3f} s)", 3000)

    def set_loop_edge_here(self, edge: int) -> None:
        """[ / ]: the loop starts / ends at the playhead (the other end stays; a new loop is DEFAULT long)."""
        if self.session is None:
            return
        here = self.position_seconds()
        loop = self.loop_seconds
        if loop is None:
            lo, hi = (here, here + DEFAULT_LOOP_SECONDS) if edge == 0 else (here - DEFAULT_LOOP_SECONDS, here)
        else:
            lo, hi = (here, loop[1]) if edge == 0 else (loop[0], here)
        self.set_loop(lo, hi)

    # ---- the loop: the player holds it; the lanes and the Loop action show it
    @property
    def loop_seconds(self) -> tuple[float, float] | None:
        """The loop region in seconds (whether or not looping is on), or None."""
        loop = self.player.loop
        if loop is None or self.session is None:
            return None
        rate = self.session.samplerate
        return loop[0] / rate, loop[1] / rate

    def set_loop(self, start: float, end: float) -> None:
        """Set the loop region (seconds, either order); one shorter than MIN_LOOP_SECONDS clears it."""
        if self.session is None:
            return
        lo, hi = sorted((max(0.0, start), min(self.session.duration, end)))
        if hi - lo < MIN_LOOP_SECONDS:
            self.player.set_loop(None)
        else:
            rate = self.session.samplerate
            self.player.set_loop(int(round(lo * rate)), int(round(hi * rate)))
        self._show_loop()

    def enable_loop(self, on: bool) -> None:
        """Loop on or off; on without a region loops DEFAULT_LOOP_SECONDS from the playhead."""
        if self.session is not None:
            if on and self.player.loop is None:
                start = self.position_seconds()
                self.set_loop(start, min(self.session.duration, start + DEFAULT_LOOP_SECONDS))
            self.player.loop_enabled = bool(on)
        self._show_loop()

    def toggle_loop(self) -> None:
        """The L key."""
        if self.session is not None:
            self.enable_loop(not self.player.loop_enabled)

    def _on_loop_drag(self, start: float, now: float, finished: bool) -> None:
        self.set_loop(start, now)
        loop = self.loop_seconds
        if finished and loop is not None:
            self.enable_loop(True)
            if not self.player.playing or not (loop[0] <= self.position_seconds() <= loop[1]):
                self.seek(loop[0])

    def _show_loop(self) -> None:
        with QSignalBlocker(self.loop_action):
            self.loop_action.setChecked(self.player.loop_enabled)
        region = self.loop_seconds
        for lane in self.lanes:
            lane.set_loop(region, self.player.loop_enabled)

    def _tick(self, force: bool = False) -> None:
        """Refresh playhead, time, meters and transport labels (~30 times a second)."""
        if self.session is None:
            return
        pos = self.player.position
        if force or pos != self._last_position:
            self._last_position = pos
            seconds = pos / self.session.samplerate
            for lane in self.lanes:
                lane.set_playhead(seconds)
            self.time_label.setText(f"{format_time(seconds)} / {format_time(self.session.duration)}")
            if self.player.playing:
                self.time_view.follow(seconds)
        for lane, level in zip(self.lanes, self.player.levels):
            lane.meter.set_level(float(level))
        playing = self.player.playing
        if playing != self.play_action.property("playing"):
            self.play_action.setProperty("playing", playing)
            self.play_action.setText("Pause" if playing else "Play")
            self.play_action.setIcon(self.pause_icon if playing else self.play_icon)
        if self.player.waiting:
            self.statusBar().showMessage("Waiting for the separation to catch up…", 500)

    def _update_actions(self) -> None:
        has = self.session is not None
        self.play_action.setEnabled(has and self.audio_ok)
        self.home_action.setEnabled(has)
        self.loop_action.setEnabled(has)
        running = self.worker is not None and self.worker.isRunning()
        self.export_action.setEnabled(bool(has and not running and frames_ready(self.session) > 0))
        self.rerun_action.setEnabled(has)
        for b in self._rerun_buttons:
            b.setEnabled(has)
        for a in (self.zoom_in_action, self.zoom_out_action, self.zoom_fit_action, self.zoom_loop_action):
            a.setEnabled(has)
        for b in self.zoom_buttons.values():
            b.setEnabled(has)
        self.cancel_action.setEnabled(self.worker is not None and self.worker.isRunning())
        for b in self.preset_buttons.values():
            b.setEnabled(has)

    # ================================================================== export and cache
    def export_dialog(self) -> None:
        running = self.worker is not None and self.worker.isRunning()
        if self.session is None or running or frames_ready(self.session) == 0:
            self.dialogs.info("Export", "Export becomes available when the separation is complete "
                              "(or cancelled: then the part separated so far is exported).")
            return
        defaults = ExportOptions(folder=self.settings.output_folder, fmt=self.settings.output_format,
                                 stems=tuple(self.session.stem_names), mix=False)
        options = self.dialogs.export_options(self.session.stem_names, defaults, self.loop_seconds is not None)
        if options is not None:
            self.export(options)

    def export(self, options: ExportOptions) -> ExportWorker | None:
        """Export in a worker; asks before overwriting. Returns the worker (tests wait on it)."""
        session = self.session
        folder = Path(options.folder)
        song = session.path.stem
        targets = exporter.stem_paths(folder, song, options.stems, options.fmt) if options.stems else []
        mix_path = folder / f"{song} - {self._mix_label()}.{options.fmt}" if options.mix else None
        clash = exporter.existing(targets + ([mix_path] if mix_path else []))
        if clash:
            names = "\n".join(p.name for p in clash[:6])
            if not self.dialogs.confirm("Replace files?", f"These files already exist in {folder}:\n{names}\n"
                                        "Replace them?"):
                self.statusBar().showMessage("Export cancelled; nothing was overwritten.", 6000)
                return None
        self.settings.output_folder, self.settings.output_format = str(folder), options.fmt
        mixes = list(self.mixes)
        playback = self.player.playback  # tempo and transpose as heard
        audio = self.player.heard_audio  # the separation A/B plays now
        sr = session.samplerate
        ready = frames_ready(session)  # after a Cancel: the part separated so far
        region = self.player.loop if options.loop_only else None
        if region is not None:
            region = (min(region[0], ready), min(region[1], ready))
        elif ready < session.frames:
            region = (0, ready)
        stems = session.stems[:, :, :ready]
        parts = int(bool(options.stems)) + int(bool(mix_path))

        def job(progress, cancel):
            written = []
            if options.stems:
                written += exporter.export_stems(stems, session.stem_names, sr, folder, song, options.fmt,
                                                 options.stems, progress=lambda f, m: progress(f / parts, m),
                                                 cancel=cancel, confirm_overwrite=lambda _p: True)
            if mix_path is not None:
                written.append(exporter.export_mix(audio, mixes, sr, mix_path, region,
                                                   progress=lambda f, m: progress((parts - 1 + f) / parts, m),
                                                   cancel=cancel, confirm_overwrite=lambda _p: True,
                                                   playback=playback))
            return written

        worker = ExportWorker(job, self)
        worker.progress.connect(self._on_export_progress)
        worker.finished_ok.connect(self._on_export_done)
        worker.failed.connect(self._on_export_failed)
        worker.cancelled.connect(self._on_export_cancelled)
        self.export_worker = worker
        self._show_job(worker, "Exporting…")
        worker.start()
        return worker

    def _mix_label(self) -> str:
        names = self.session.names
        on = [n for n, a in zip(names, audible(self.mixes)) if a]
        return "mix" if on == names[1:] else "mix (" + "+".join(on) + ")"

    def _on_export_progress(self, fraction: float, message: str) -> None:
        self.job_bar.set_progress(fraction)
        self.job_bar.set_stage(message)

    def _on_export_done(self, paths) -> None:
        self._end_job()
        folder = Path(paths[0]).parent if paths else ""
        self.statusBar().showMessage(f"Exported {len(paths)} file(s) to {folder}.", 10000)
        if paths:
            self.job_bar.show_result(f"Exported {len(paths)} file(s) to {folder}", folder)

    def _on_export_failed(self, message: str) -> None:
        self._end_job()
        self.dialogs.error("Export failed", message)

    def _on_export_cancelled(self) -> None:
        self._end_job()
        self.statusBar().showMessage("Export cancelled.")

    def show_shortcuts(self) -> ShortcutsSheet:
        """Help > Keyboard shortcuts: a non-modal sheet built from the keys actually bound."""
        if self.shortcuts_sheet is None:
            self.shortcuts_sheet = ShortcutsSheet(sheet_rows(self.keys, self.actions()), self)
        self.shortcuts_sheet.show()
        self.shortcuts_sheet.raise_()
        return self.shortcuts_sheet

    def clear_cache(self) -> None:
        freed = self.cache.clear()
        self.statusBar().showMessage(f"Cache cleared ({freed / 2**20:.1f} MB freed).", 6000)

    # ================================================================== shutdown
    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.settings.geometry = self.saveGeometry()
        self.settings.sync()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop playback, every worker (each stops within a second) and a training (with a checkpoint)."""
        self.timer.stop()
        self.player.close()
        self._stop_worker()
        self._stop_comparison()
        self.batch.shutdown()
        if self.export_worker is not None:
            self.export_worker.cancel()
            self.export_worker.wait(5000)
        for w in list(self._old_workers):
            w.wait(5000)
        self.spec_worker.stop()
        if self.models_dialog is not None:
            self.models_dialog.close()  # cancels a download (resumable) and waits for its worker
        self.finetune_panel.shutdown()
