"""The main window: drop a song, watch it separate into lanes, play / mute / solo / loop, export.

The window owns the state (the session's audio, one LaneMix per lane, the loop region) and pushes it to
the lanes and the player; heavy work goes to the workers in `workers.py`, so the event loop never stalls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QShortcut, QStandardItemModel
from PySide6.QtWidgets import (QComboBox, QDockWidget, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QMainWindow, QProgressBar, QPushButton, QScrollArea, QSizePolicy,
                               QSpinBox, QStyle, QToolButton, QVBoxLayout, QWidget)

from stemgui.errors import StemGUIError
from stemgui.gui import export as exporter
from stemgui.gui.cache import StemCache
from stemgui.gui.devices import device_choices
from stemgui.gui.dialogs import Dialogs, ExportOptions, card_html
from stemgui.gui.lanes import AXIS_WIDTH, HEADER_WIDTH, Lane
from stemgui.gui.mixer import PRESETS, LaneMix, apply_preset, audible
from stemgui.gui.player import Player, audio_output_status
from stemgui.gui.settings import EXPORT_FORMATS, AppSettings
from stemgui.gui.spectrogram import SpectrogramLayout
from stemgui.gui.workers import MIX_NAME, ExportWorker, SeparationWorker, Session, SpectrogramWorker

UI_REFRESH_MS = 33


def format_time(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


class MainWindow(QMainWindow):
    separation_done = Signal(bool)  # True: stems complete; False: failed or cancelled
    pictures_done = Signal()  # every lane's spectrogram is drawn

    def __init__(self, settings: AppSettings | None = None, dialogs: Dialogs | None = None,
                 cache: StemCache | None = None, model: str | None = None, enable_audio: bool = True):
        super().__init__()
        self.settings = settings or AppSettings()
        self.dialogs = dialogs or Dialogs(self)
        self.cache = cache or StemCache()
        self.model_override = model
        self.setWindowTitle("StemGUI")
        self.setAcceptDrops(True)
        self.resize(1360, 860)
        self.audio_ok, self.audio_reason = audio_output_status() if enable_audio else (False, "Playback is off for this run.")
        self.player = Player()
        self.session: Session | None = None
        self.lanes: list[Lane] = []
        self.mixes: list[LaneMix] = []
        self.focused_lane = 0
        self.loop_seconds: tuple[float, float] | None = None
        self.worker: SeparationWorker | None = None
        self.export_worker: ExportWorker | None = None
        self._old_workers: list = []
        self.generation = 0
        self._spec_requested: list[int] = []
        self._last_position = -1
        self.spec_worker = SpectrogramWorker(self)
        self.spec_worker.columns_ready.connect(self._on_columns)
        self.spec_worker.idle.connect(self._on_spec_idle)
        self.spec_worker.start()
        self._build_actions()
        self._build_ui()
        self._build_settings_dock()
        self._install_panels()
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
        self.loop_action = action("Loop", self.toggle_loop, None,
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
        self.rerun_action = action("Separate again", self.separate_again, "Ctrl+R",
                                   "Separate the current song again with the current settings")
        # Single-key shortcuts are QShortcuts on the window, so they work wherever focus is in the lanes.
        for key, slot in (("Space", self.toggle_play), ("Home", self.go_home), ("L", self.toggle_loop),
                          ("M", lambda: self.toggle_lane_flag("mute")), ("S", lambda: self.toggle_lane_flag("solo"))):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.WindowShortcut)
            sc.activated.connect(slot)
        self.scale_group = QActionGroup(self)
        self.scale_actions = {}
        for scale, label in (("log", "Log-frequency axis"), ("mel", "Mel axis")):
            a = QAction(label, self, checkable=True)
            a.setChecked(self.settings.frequency_scale == scale)
            a.triggered.connect(lambda _=False, s=scale: self.set_frequency_scale(s))
            self.scale_group.addAction(a)
            self.scale_actions[scale] = a

    def _build_ui(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
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
        sep_menu = menu.addMenu("&Separation")
        sep_menu.addAction(self.rerun_action)
        sep_menu.addAction(self.cancel_action)
        view_menu = menu.addMenu("&View")
        for a in self.scale_actions.values():
            view_menu.addAction(a)
        self.view_menu = view_menu

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
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        bar.addWidget(spacer)
        self.song_label = QLabel("")
        self.song_label.setObjectName("songLabel")
        bar.addWidget(self.song_label)
        bar.addAction(self.export_action)

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
        # Empty state: the (blank) lanes are already there, with a hint floating over them.
        self.drop_hint = QLabel("Drop a song here\nor use File ▸ Open (Ctrl+O)", self.scroll)
        self.drop_hint.setObjectName("dropHint")
        self.drop_hint.setAlignment(Qt.AlignCenter)
        self.drop_hint.setAttribute(Qt.WA_TransparentForMouseEvents)
        self.scroll.installEventFilter(self)

        self.job_bar = QWidget()
        self.job_bar.setObjectName("jobBar")
        self.job_bar.setAttribute(Qt.WA_StyledBackground, True)
        jl = QHBoxLayout(self.job_bar)
        jl.setContentsMargins(12, 6, 12, 6)
        self.stage_label = QLabel("")
        self.stage_label.setMinimumWidth(260)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setFixedHeight(10)
        self.eta_label = QLabel("")
        self.eta_label.setMinimumWidth(120)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel_separation)
        jl.addWidget(self.stage_label)
        jl.addWidget(self.progress_bar, 1)
        jl.addWidget(self.eta_label)
        jl.addWidget(self.cancel_button)
        self.job_bar.setFixedHeight(34)  # always there: showing a job never re-lays out (and repaints) the lanes
        self._show_job(False)
        cl.addWidget(self.job_bar)
        self.setCentralWidget(central)

        self.audio_label = QLabel("")
        self.statusBar().addPermanentWidget(self.audio_label)
        if not self.audio_ok:
            self.audio_label.setText(self.audio_reason)
            self.audio_label.setStyleSheet("color: #f2c94c;")
            self.play_action.setToolTip(self.audio_reason)
        self.statusBar().showMessage("Drop a song to split it into drums, bass, other and vocals.")

    def _build_settings_dock(self) -> None:
        panel = QWidget()
        form = QFormLayout(panel)
        form.setContentsMargins(10, 10, 10, 10)
        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self._fill_models()
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        form.addRow("Model", self.model_combo)
        self.card_label = QLabel("")
        self.card_label.setWordWrap(True)
        self.card_label.setObjectName("small")
        form.addRow("", self.card_label)
        self.device_combo = QComboBox()
        model = QStandardItemModel(self.device_combo)
        self.device_combo.setModel(model)
        for choice in device_choices():
            self.device_combo.addItem(choice.label if choice.enabled else f"{choice.label} — {choice.reason}",
                                      choice.id)
            item = model.item(self.device_combo.count() - 1)
            item.setEnabled(choice.enabled)
            item.setToolTip(choice.reason or choice.label)
        idx = self.device_combo.findData(self.settings.device)
        self.device_combo.setCurrentIndex(idx if idx >= 0 and model.item(idx).isEnabled() else 0)
        self.device_combo.currentIndexChanged.connect(
            lambda _i: setattr(self.settings, "device", self.device_combo.currentData()))
        form.addRow("Device", self.device_combo)
        self.shifts_spin = QSpinBox()
        self.shifts_spin.setRange(0, 10)
        self.shifts_spin.setValue(self.settings.shifts)
        self.shifts_spin.setToolTip("Random time shifts averaged: better quality, N+1 times slower")
        self.shifts_spin.valueChanged.connect(lambda v: setattr(self.settings, "shifts", v))
        form.addRow("Shifts", self.shifts_spin)
        self.overlap_spin = QDoubleSpinBox()
        self.overlap_spin.setRange(0.0, 0.9)
        self.overlap_spin.setSingleStep(0.05)
        self.overlap_spin.setValue(self.settings.overlap)
        self.overlap_spin.valueChanged.connect(lambda v: setattr(self.settings, "overlap", v))
        form.addRow("Overlap", self.overlap_spin)
        self.segment_spin = QDoubleSpinBox()
        self.segment_spin.setRange(0.0, 60.0)
        self.segment_spin.setSingleStep(0.5)
        self.segment_spin.setSpecialValueText("model default")
        self.segment_spin.setSuffix(" s")
        self.segment_spin.setValue(self.settings.segment)
        self.segment_spin.valueChanged.connect(lambda v: setattr(self.settings, "segment", v))
        form.addRow("Segment", self.segment_spin)
        self.format_combo = QComboBox()
        self.format_combo.addItems(list(EXPORT_FORMATS))
        self.format_combo.setCurrentText(self.settings.output_format)
        self.format_combo.currentTextChanged.connect(lambda v: setattr(self.settings, "output_format", v))
        form.addRow("Export format", self.format_combo)
        folder_row = QHBoxLayout()
        self.folder_edit = QLineEdit(self.settings.output_folder)
        self.folder_edit.editingFinished.connect(
            lambda: setattr(self.settings, "output_folder", self.folder_edit.text()))
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._choose_folder)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        form.addRow("Export folder", folder_row)
        rerun = QPushButton("Separate again")
        rerun.clicked.connect(self.separate_again)
        form.addRow("", rerun)
        self.settings_dock = self.add_panel(panel, "Separation settings", Qt.RightDockWidgetArea)
        self.settings_dock.setObjectName("settingsDock")
        self.settings_dock.setMinimumWidth(250)
        self.settings_dock.setMaximumWidth(340)  # the lanes get the room

        self._on_model_changed()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if not getattr(self, "_docks_sized", False):  # docks can only be sized once the window is laid out
            self._docks_sized = True
            self.resizeDocks([self.settings_dock], [300], Qt.Horizontal)

    def add_panel(self, widget: QWidget, title: str, area=Qt.RightDockWidgetArea) -> QDockWidget:
        """Dock a tool panel (the settings, and later the fine-tuning panel) and list it under View."""
        dock = QDockWidget(title, self)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetClosable | QDockWidget.DockWidgetMovable)
        self.addDockWidget(area, dock)
        self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def _install_panels(self) -> None:
        """Hook for optional panels: `stemgui.gui.finetune.install(window)` adds the fine-tuning dock if present."""
        try:
            from stemgui.gui import finetune
        except ImportError:
            return
        install = getattr(finetune, "install", None)
        if callable(install):
            try:
                install(self)
            except Exception as exc:  # noqa: BLE001 - an optional panel must not stop the app
                self.statusBar().showMessage(f"The fine-tuning panel could not be loaded: {exc}", 10000)

    # ================================================================== models and settings
    def _fill_models(self) -> None:
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        try:
            from stemgui.models.registry import list_models

            entries = list_models()
        except Exception:  # noqa: BLE001 - an unreadable models folder leaves the list empty
            entries = []
        self.model_cards = {}
        for e in entries:
            self.model_combo.addItem(f"{e.name}{'' if e.bundled else ' (yours)'}", str(e.path))
            self.model_cards[str(e.path)] = e.card
        if self.model_override:
            self.model_combo.addItem(Path(self.model_override).stem, self.model_override)
        wanted = self.model_override or self.settings.model
        idx = self.model_combo.findData(wanted) if wanted else 0
        if idx < 0:
            idx = next((i for i in range(self.model_combo.count())
                        if self.model_combo.itemText(i).split(" ")[0] == wanted), 0)
        self.model_combo.setCurrentIndex(max(0, idx))
        self.model_combo.blockSignals(False)

    def _on_model_changed(self, _index: int = 0) -> None:
        data = self.model_combo.currentData()
        if data and data != self.model_override:
            self.settings.model = data
        card = self.model_cards.get(data) if data else None
        if card is None and data:
            try:
                from stemgui.models.card import read_card
                from stemgui.models.registry import resolve_model

                card = read_card(resolve_model(data))
            except Exception:  # noqa: BLE001
                card = None
        self.card_label.setText(card_html(card) if card else "<i>No model found: install one or pass --model.</i>")

    def current_model_path(self) -> Path:
        """The chosen model's weights; raises ModelError with one sentence when it is missing."""
        from stemgui.models.registry import resolve_model

        choice = self.model_override or self.model_combo.currentData() or self.settings.model or None
        return resolve_model(choice)

    def separation_settings(self):
        from stemgui.separate import SeparationSettings

        return SeparationSettings(segment=self.settings.segment or None, overlap=self.settings.overlap,
                                  shifts=self.settings.shifts, device=self.settings.device, batch_size=1)

    def _choose_folder(self) -> None:
        folder = self.dialogs.choose_folder(self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self.settings.output_folder = folder

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
            self.open_song(files[0])

    def open_song(self, path: str | Path) -> bool:
        """Open and separate a song; errors become a dialog. Returns False when nothing was started."""
        path = Path(path)
        if not path.is_file():
            self.dialogs.error("Cannot open the song", f"{path}: no such file.")
            return False
        try:
            model_path = self.current_model_path()
            settings = self.separation_settings()
        except StemGUIError as exc:
            self.dialogs.error("Model missing", str(exc))
            return False
        self._stop_worker()
        self.settings.add_recent(path)
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
        self.progress_bar.setValue(0)
        self.eta_label.setText("")
        self._show_job(True)
        self.cancel_button.setEnabled(True)
        self.stage_label.setText(f"Opening {path.name}")
        self.statusBar().showMessage(f"Opening {path}")
        worker.start()
        self._update_actions()
        return True

    def _show_job(self, busy: bool) -> None:
        for w in (self.progress_bar, self.eta_label, self.cancel_button):
            w.setVisible(busy)
        if not busy:
            self.stage_label.setText("Ready" if self.session is not None else "")

    def separate_again(self) -> None:
        if self.session is not None:
            self.open_song(self.session.path)

    def cancel_separation(self) -> None:
        if self.worker is not None and self.worker.isRunning():
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.stage_label.setText("Cancelling…")

    def _stop_worker(self) -> None:
        """Cancel a running separation before another starts (it stops within a second)."""
        worker, self.worker = self.worker, None
        if worker is not None:
            for sig in (worker.stage, worker.progress, worker.prepared, worker.chunk, worker.notice,
                        worker.finished_ok, worker.failed, worker.cancelled):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError):
                    pass
            worker.cancel()
            if worker.isRunning():
                self._old_workers.append(worker)
                worker.finished.connect(lambda w=worker: self._old_workers.remove(w) if w in self._old_workers else None)

    def is_busy(self) -> bool:
        building = self.session is not None and len(self.lanes) < len(self.session.names)
        return building or (self.worker is not None and self.worker.isRunning()) or self.spec_worker.pending > 0

    def _on_stage(self, text: str) -> None:
        self.stage_label.setText(text)

    def _on_progress(self, fraction: float, eta, message: str) -> None:
        self.progress_bar.setValue(int(round(fraction * 1000)))
        if eta is not None and fraction < 1.0:
            self.eta_label.setText(f"{int(round(fraction * 100))}% · {format_time(float(eta))[:-2]} left")
        else:
            self.eta_label.setText(f"{int(round(fraction * 100))}%")

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
        self.loop_seconds = None
        self.loop_action.setChecked(False)
        self.player.loop_enabled = False
        complete = [True] + [session.complete] * (len(session.names) - 1)
        self.player.load(session.audio, self.mixes, complete, session.available)
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
        self._open_audio()
        self.song_label.setText(f"{session.path.name} · {format_time(session.duration)[:-2]}")
        self.setWindowTitle(f"{session.path.name} — StemGUI")
        self._update_actions()

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
        self.lanes_layout.addWidget(lane, 1)
        self.lanes.append(lane)
        return lane

    def _prebuild_lanes(self) -> None:
        """Blank lanes for the chosen model's stems at start-up: a dropped song then only fills them in."""
        from stemgui import SOURCES

        sources = list(SOURCES)
        try:
            from stemgui.models.card import read_card

            sources = list(read_card(self.current_model_path()).get("sources") or sources)
        except Exception:  # noqa: BLE001 - no model yet: the default stems
            pass
        names = [MIX_NAME] + sources
        self._layout = SpectrogramLayout(10 * 44100, 44100, 400, scale=self.settings.frequency_scale)
        self.mixes = [LaneMix(mute=(n == MIX_NAME)) for n in names]
        for _ in names:
            self._add_lane(names)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if obj is self.scroll and event.type() == QEvent.Resize:
            self.drop_hint.setGeometry(self.scroll.rect())
        return super().eventFilter(obj, event)

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
        self._request_pictures(i, session.frames if i == 0 else session.available)
        if i == 1 or (i == 0 and len(session.names) == 1):
            self.focus_lane(i)

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
            self._request_pictures(i, self.session.frames if i == 0 else self.session.available)

    def _on_chunk(self, start: int, end: int) -> None:
        if self.session is None:
            return
        self.player.set_available(self.session.available)
        done_s = self.session.available / self.session.samplerate
        for i in range(1, len(self.lanes)):
            self.lanes[i].set_done(done_s if self.session.available < self.session.frames else None)
            self._request_pictures(i, self.session.available)

    def _on_columns(self, generation: int, lane: int, first: int, block) -> None:
        if generation == self.generation and lane < len(self.lanes):
            self.lanes[lane].set_columns(first, block)

    def _on_spec_idle(self, generation: int) -> None:
        if generation == self.generation and not self.is_busy() and all(
                lane.columns_done >= lane.layout_info.columns for lane in self.lanes):
            self.pictures_done.emit()

    def _on_finished(self, session: Session) -> None:
        if session is not self.session:
            return
        self.player.mark_complete()
        for i, lane in enumerate(self.lanes):
            lane.set_done(None)
            self._request_pictures(i, session.frames)
        self._show_job(False)
        origin = "from the cache" if session.from_cache else f"in {self.worker.elapsed:.1f} s" if self.worker else ""
        self.statusBar().showMessage(f"{session.path.name}: {len(session.stem_names)} stems ready {origin}.")
        self._update_actions()
        self.separation_done.emit(True)

    def _on_failed(self, message: str) -> None:
        self._show_job(False)
        self.statusBar().showMessage(message, 15000)
        self.dialogs.error("Separation failed", message)
        self._update_actions()
        self.separation_done.emit(False)

    def _on_cancelled(self) -> None:
        self._show_job(False)
        if self.session is not None:
            done = format_time(self.session.available / self.session.samplerate)
            self.statusBar().showMessage(f"Separation cancelled at {done}; nothing was cached. "
                                         "Separation ▸ Separate again resumes from the start.", 15000)
        else:
            self.statusBar().showMessage("Separation cancelled.", 10000)
        self._update_actions()
        self.separation_done.emit(False)

    # ================================================================== lanes and mixing
    def focus_lane(self, index: int) -> None:
        self.focused_lane = index
        for i, lane in enumerate(self.lanes):
            lane.set_focused(i == index)

    def _on_lane_mix(self, index: int, mix: LaneMix) -> None:
        self.mixes[index] = mix
        self._push_mixes(update_lanes=False)

    def _push_mixes(self, update_lanes: bool = True) -> None:
        if update_lanes:
            for lane, mix in zip(self.lanes, self.mixes):
                lane.set_mix(mix)
        self.player.set_lanes(self.mixes)
        self._update_audible()

    def _update_audible(self) -> None:
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
    def _open_audio(self) -> bool:
        """Open the output stream ahead of time (it plays silence while paused) so Play starts at once."""
        if not self.audio_ok:
            return False
        try:
            self.player.open_stream()
        except RuntimeError as exc:
            self.audio_ok, self.audio_reason = False, str(exc)
            self.audio_label.setText(self.audio_reason)
            self.audio_label.setStyleSheet("color: #f2c94c;")
            self.dialogs.error("Playback", str(exc))
            self._update_actions()
            return False
        return True

    def toggle_play(self) -> None:
        if self.session is None:
            return
        if not self.audio_ok:
            self.statusBar().showMessage(self.audio_reason, 6000)
            return
        if self._open_audio():
            self.player.toggle()

    def go_home(self) -> None:
        self.seek(self.loop_seconds[0] if (self.loop_seconds and self.loop_action.isChecked()) else 0.0)

    def seek(self, seconds: float) -> None:
        if self.session is None:
            return
        self.player.seek(int(round(max(0.0, seconds) * self.session.samplerate)))
        self._tick(force=True)

    def toggle_loop(self, checked: bool | None = None) -> None:
        if self.session is None:
            return
        on = (not self.player.loop_enabled) if checked is None or not isinstance(checked, bool) else checked
        if self.sender() is not self.loop_action:
            self.loop_action.setChecked(on)
        self.player.loop_enabled = on
        if on and self.loop_seconds is None:  # no region yet: loop the visible song from the playhead, 8 s
            start = self.player.position / self.session.samplerate
            self.set_loop(start, min(self.session.duration, start + 8.0))
        self._show_loop()

    def set_loop(self, start: float, end: float) -> None:
        if self.session is None:
            return
        lo, hi = sorted((max(0.0, start), min(self.session.duration, end)))
        if hi - lo < 0.05:
            self.loop_seconds = None
            self.player.set_loop(None)
        else:
            self.loop_seconds = (lo, hi)
            sr = self.session.samplerate
            self.player.set_loop(int(round(lo * sr)), int(round(hi * sr)))
        self._show_loop()

    def _on_loop_drag(self, start: float, now: float, finished: bool) -> None:
        self.set_loop(start, now)
        if finished and self.loop_seconds is not None:
            if not self.player.loop_enabled:
                self.player.loop_enabled = True
                self.loop_action.setChecked(True)
            self._show_loop()
            if not self.player.playing or not (self.loop_seconds[0] <= self.position_seconds() <= self.loop_seconds[1]):
                self.seek(self.loop_seconds[0])

    def _show_loop(self) -> None:
        for lane in self.lanes:
            lane.set_loop(self.loop_seconds, self.player.loop_enabled)

    def position_seconds(self) -> float:
        return self.player.position / self.session.samplerate if self.session else 0.0

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
        levels = self.player.levels
        for lane, level in zip(self.lanes, levels):
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
        done = has and self.session.complete
        self.play_action.setEnabled(has and self.audio_ok)
        self.home_action.setEnabled(has)
        self.loop_action.setEnabled(has)
        self.export_action.setEnabled(bool(done))
        self.rerun_action.setEnabled(has)
        self.cancel_action.setEnabled(self.worker is not None and self.worker.isRunning())
        for b in self.preset_buttons.values():
            b.setEnabled(has)

    # ================================================================== export and cache
    def export_dialog(self) -> None:
        if self.session is None or not self.session.complete:
            self.dialogs.info("Export", "Export becomes available when the separation is complete.")
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
        sr = session.samplerate
        region = None
        if options.loop_only and self.loop_seconds is not None:
            region = (int(round(self.loop_seconds[0] * sr)), int(round(self.loop_seconds[1] * sr)))
        parts = int(bool(options.stems)) + int(bool(mix_path))

        def job(progress, cancel):
            written = []
            if options.stems:
                written += exporter.export_stems(session.stems, session.stem_names, sr, folder, song, options.fmt,
                                                 options.stems, progress=lambda f, m: progress(f / parts, m),
                                                 cancel=cancel, confirm_overwrite=lambda _p: True)
            if mix_path is not None:
                written.append(exporter.export_mix(session.audio, mixes, sr, mix_path, region,
                                                   progress=lambda f, m: progress((parts - 1 + f) / parts, m),
                                                   cancel=cancel, confirm_overwrite=lambda _p: True))
            return written

        worker = ExportWorker(job, self)
        worker.progress.connect(lambda f, m: (self.progress_bar.setValue(int(f * 1000)), self.stage_label.setText(m)))
        worker.finished_ok.connect(self._on_export_done)
        worker.failed.connect(self._on_export_failed)
        worker.cancelled.connect(lambda: (self._show_job(False), self.statusBar().showMessage("Export cancelled.")))
        self.cancel_button.clicked.disconnect()
        self.cancel_button.clicked.connect(worker.cancel)
        self.cancel_button.setEnabled(True)
        self._show_job(True)
        self.stage_label.setText("Exporting…")
        self.export_worker = worker
        worker.start()
        return worker

    def _mix_label(self) -> str:
        names = self.session.names
        on = [n for n, a in zip(names, audible(self.mixes)) if a]
        return "mix" if on == names[1:] else "mix (" + "+".join(on) + ")"

    def _restore_cancel(self) -> None:
        self.cancel_button.clicked.disconnect()
        self.cancel_button.clicked.connect(self.cancel_separation)

    def _on_export_done(self, paths) -> None:
        self._restore_cancel()
        self._show_job(False)
        folder = Path(paths[0]).parent if paths else ""
        self.statusBar().showMessage(f"Exported {len(paths)} file(s) to {folder}.", 10000)

    def _on_export_failed(self, message: str) -> None:
        self._restore_cancel()
        self._show_job(False)
        self.dialogs.error("Export failed", message)

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
        """Stop playback and every worker (each stops within a second)."""
        self.timer.stop()
        self.player.close()
        self._stop_worker()
        if self.export_worker is not None:
            self.export_worker.cancel()
            self.export_worker.wait(5000)
        for w in list(self._old_workers):
            w.wait(5000)
        self.spec_worker.stop()
