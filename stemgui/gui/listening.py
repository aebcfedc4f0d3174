"""The listening-test window (Tools > Listening test…): a named listener rates a prepared MUSHRA or MOS test.

Playback reuses the app's `Player`: every condition of a trial (and the open reference) is one lane of the
same (lanes, 2, samples) array and exactly one lane is soloed, so switching is a gain change that glides over
SWITCH_RAMP_SECONDS at the next audio block: the same playhead, sample-accurate, no click, no second engine.
A trial cannot be submitted before every condition was heard while playing; each submitted trial is one
transaction in the results database, and a listener who comes back with the same name resumes where they
stopped (the trial on screen at a crash or quit starts again).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSlider,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from stemgui.audio.load import load_audio
from stemgui.errors import StemGUIError
from stemgui.gui.dialogs import Dialogs
from stemgui.gui.player import Player, audio_output_status
from stemgui.listening import design
from stemgui.listening.manifest import Manifest, Trial, read_manifest
from stemgui.listening.store import ResultStore, TrialResult
from stemgui.mix import LaneMix

log = logging.getLogger(__name__)
SWITCH_RAMP_SECONDS = 0.01
"""Switching conditions crossfades over 10 ms: inaudible as a fade, long enough that no switch clicks."""
TICK_MS = 50
SLIDER_HEIGHT = 240
MUSHRA_LABELS = ((100, "Excellent"), (80, "Good"), (60, "Fair"), (40, "Poor"), (20, "Bad"))
ACR_LABELS = ((5, "Excellent"), (4, "Good"), (3, "Fair"), (2, "Poor"), (1, "Bad"))
REFERENCE = -1
"""The lane index the window uses for the open reference (it is lane 0 of the player's array)."""


class ListeningWindow(QWidget):
    """One test, one listener at a time. `enable_audio=False` runs without an audio device (tests, scripts):
    Play then moves the player's playhead only when something calls `player.render`."""

    trial_submitted = Signal(str)
    test_finished = Signal()

    def __init__(self, test: str | Path | Manifest, parent: QWidget | None = None, dialogs: Dialogs | None = None,
                 enable_audio: bool = True, database: str | Path | None = None):
        super().__init__(parent, Qt.Window)
        self.manifest = test if isinstance(test, Manifest) else read_manifest(test)
        self.dialogs = dialogs or Dialogs(self)
        self.store = ResultStore(database or self.manifest.results_path, self.manifest)
        self.enable_audio = enable_audio
        self.audio_ok, self.audio_reason = audio_output_status() if enable_audio else (True, "")
        self.player = Player(self.manifest.samplerate, ramp_seconds=SWITCH_RAMP_SECONDS)
        self.mushra = self.manifest.mode == "mushra"
        self.listener = ""
        self.order: list[str] = []
        self.trial: Trial | None = None
        self.conditions: list[str] = []  # condition ids behind the buttons A, B, C... of this trial
        self.labels: list[str] = []
        self.selected = 0  # index into conditions, or REFERENCE
        self.plays: dict[str, int] = {}
        self.heard: dict[str, float] = {}
        self.reference_plays = 0
        self.has_reference = False
        self._counted_since_play = False  # the condition on now was counted since playback started
        self._trial_started = 0.0
        self._last_tick = time.monotonic()
        self.setWindowTitle(f"Listening test — {self.manifest.name}")
        self.resize(900, 560)
        self.pages = QStackedWidget(self)
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages)
        self._build_start_page()
        self.trial_page = QWidget()
        self.pages.addWidget(self.trial_page)
        self.done_label = QLabel()
        self.done_label.setAlignment(Qt.AlignCenter)
        self.done_label.setWordWrap(True)
        self.pages.addWidget(self.done_label)
        self.timer = QTimer(self)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        QShortcut(QKeySequence("Space"), self, activated=self.toggle_play)
        QShortcut(QKeySequence("R"), self, activated=lambda: self.select(REFERENCE) if self._on_trial() else None)
        for i in range(9):
            QShortcut(QKeySequence(str(i + 1)), self,
                      activated=lambda i=i: self.select(i) if self._on_trial() and i < len(self.conditions) else None)

    # ---- start page ------------------------------------------------------------------------------------
    def _build_start_page(self) -> None:
        page = QWidget()
        v = QVBoxLayout(page)
        m = self.manifest
        mode = "MUSHRA (ITU-R BS.1534-3), 0–100" if self.mushra else "MOS / ACR (ITU-T P.800), 1–5"
        if self.mushra:
            how = ("Each trial plays one stem in several versions behind the letters A, B, C…; switch between them "
                   "while it plays (keys 1–9, R for the reference, Space to play/pause) and rate each against the "
                   "reference. One of them is the reference itself: rate it 100.")
        else:
            how = ("Each sample is one stem as a separator left it. Play it (Space) as often as you like and rate "
                   "its quality from 1 (bad) to 5 (excellent).")
        intro = QLabel(f"<h2>{m.name}</h2><p>{len(m.trials)} {'trials' if self.mushra else 'samples'} · {mode}</p>"
                       f"<p>{how}</p>")
        intro.setWordWrap(True)
        v.addWidget(intro)
        row = QHBoxLayout()
        row.addWidget(QLabel("Your name:"))
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("listener name (the same name resumes a test)")
        self.name_edit.returnPressed.connect(self._start_clicked)
        row.addWidget(self.name_edit, 1)
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self._start_clicked)
        row.addWidget(self.start_button)
        v.addLayout(row)
        self.progress_label = QLabel(self._progress_text())
        self.progress_label.setWordWrap(True)
        v.addWidget(self.progress_label)
        v.addStretch(1)
        self.pages.addWidget(page)

    def _progress_text(self) -> str:
        names = self.store.listeners()
        if not names:
            return "No listener has started yet."
        total = len(self.manifest.trials)
        return "Listeners so far: " + ", ".join(f"{n} ({len(self.store.submitted(n))}/{total})" for n in names)

    def _start_clicked(self) -> None:
        name = self.name_edit.text().strip()
        if not name:
            self.dialogs.warning("Listening test", "Type your name first: it keeps your results apart and lets "
                                 "you resume later.")
            return
        self.start(name)

    def start(self, listener: str) -> None:
        """Begin (or resume) the test for `listener` at their first trial not yet submitted."""
        self.listener = listener.strip()
        self.store.add_listener(self.listener)
        self.order = design.trial_order([t.id for t in self.manifest.trials], self.manifest.seed, self.listener)
        self._next_trial()

    def remaining(self) -> list[str]:
        done = self.store.submitted(self.listener)
        return [t for t in self.order if t not in done]

    def _next_trial(self) -> None:
        remaining = self.remaining()
        if not remaining:
            self.player.pause()
            self.trial = None
            self.done_label.setText(f"<h2>Thank you, {self.listener}!</h2><p>All {len(self.order)} trials are "
                                    "saved. You can close this window.</p>")
            self.pages.setCurrentWidget(self.done_label)
            self.test_finished.emit()
            return
        self.show_trial(self.manifest.trial(remaining[0]))

    # ---- trial page ------------------------------------------------------------------------------------
    def _on_trial(self) -> bool:
        return self.trial is not None and self.pages.currentWidget() is self.trial_page

    def show_trial(self, trial: Trial) -> None:
        """Load `trial`'s conditions into the player and build its page."""
        self.player.pause()
        self.trial = trial
        ids = [c.id for c in trial.conditions]
        self.conditions = design.condition_order(ids, self.manifest.seed, self.listener, trial.id)
        self.labels = design.labels(len(self.conditions))
        lanes = []
        if trial.reference:
            lanes.append(self._load(trial.reference))
        lanes += [self._load(trial.condition(cid).file) for cid in self.conditions]
        length = max(a.shape[1] for a in lanes)
        audio = np.zeros((len(lanes), 2, length), dtype=np.float32)
        for i, a in enumerate(lanes):
            audio[i, :, :a.shape[1]] = a
        self.has_reference = bool(trial.reference)
        self.selected = 0
        self.plays = {cid: 0 for cid in self.conditions}
        self.heard = {cid: 0.0 for cid in self.conditions}
        self.reference_plays = 0
        self.player.load(audio, self._lane_mix())
        self.player.set_loop(0, length)
        self.player.loop_enabled = True
        self._build_trial_page(length)
        self._trial_started = time.monotonic()
        self.pages.setCurrentWidget(self.trial_page)

    def _load(self, relative: str) -> np.ndarray:
        audio, _ = load_audio(self.manifest.path(relative), self.manifest.samplerate)
        return audio

    def _lane(self, index: int) -> int:
        """The player lane of button `index` (REFERENCE = the open reference)."""
        offset = 1 if self.has_reference else 0
        return 0 if index == REFERENCE else index + offset

    def _lane_mix(self) -> list[LaneMix]:
        count = len(self.conditions) + (1 if self.has_reference else 0)
        chosen = self._lane(self.selected)
        return [LaneMix(solo=(i == chosen)) for i in range(count)]

    def _build_trial_page(self, length: int) -> None:
        old = self.trial_page.layout()
        if old is not None:
            QWidget().setLayout(old)  # reparent the old layout and its widgets away, to be deleted
        trial = self.trial
        position = self.order.index(trial.id) + 1
        v = QVBoxLayout(self.trial_page)
        title = QLabel(f"<h3>{'Trial' if self.mushra else 'Sample'} {position} of {len(self.order)}: {trial.stem}</h3>")
        v.addWidget(title)
        self.title_label = title
        transport = QHBoxLayout()
        self.play_button = QPushButton("Play")
        self.play_button.clicked.connect(self.toggle_play)
        transport.addWidget(self.play_button)
        self.seek_slider = QSlider(Qt.Horizontal)
        self.seek_slider.setRange(0, length)
        self.seek_slider.sliderMoved.connect(self.player.seek)
        transport.addWidget(self.seek_slider, 1)
        self.time_label = QLabel("0.0 s")
        transport.addWidget(self.time_label)
        v.addLayout(transport)
        loop_row = QHBoxLayout()
        self.loop_check = QCheckBox("Loop from")
        self.loop_check.setChecked(True)
        self.loop_check.toggled.connect(self._loop_changed)
        seconds = length / self.manifest.samplerate
        self.loop_start = QDoubleSpinBox()
        self.loop_end = QDoubleSpinBox()
        for box, value in ((self.loop_start, 0.0), (self.loop_end, seconds)):
            box.setRange(0.0, seconds)
            box.setDecimals(2)
            box.setSingleStep(0.25)
            box.setSuffix(" s")
            box.setValue(value)
            box.valueChanged.connect(self._loop_changed)
        loop_row.addWidget(self.loop_check)
        loop_row.addWidget(self.loop_start)
        loop_row.addWidget(QLabel("to"))
        loop_row.addWidget(self.loop_end)
        loop_row.addStretch(1)
        v.addLayout(loop_row)

        grid = QGridLayout()
        self.button_group = QButtonGroup(self)
        self.button_group.setExclusive(True)
        self.reference_button = None
        column = 0
        if self.has_reference:
            self.reference_button = QPushButton("Reference")
            self.reference_button.setCheckable(True)
            self.reference_button.setToolTip("The original stem (R)")
            self.reference_button.clicked.connect(lambda: self.select(REFERENCE))
            self.button_group.addButton(self.reference_button)
            grid.addWidget(self.reference_button, 0, column)
            if self.mushra:  # the BS.1534 scale beside the sliders, one band per fifth of their height
                scale = QWidget()
                scale.setFixedHeight(SLIDER_HEIGHT)
                sv = QVBoxLayout(scale)
                sv.setContentsMargins(0, 0, 0, 0)
                for value, label in MUSHRA_LABELS:
                    sv.addWidget(QLabel(f"{label} ({value - 20}–{value})"), 1)
                grid.addWidget(scale, 1, column, Qt.AlignTop)
            column += 1
        self.condition_buttons: list[QPushButton] = []
        self.sliders: list[QSlider] = []
        self.value_labels: list[QLabel] = []
        self.acr_groups: list[QButtonGroup] = []
        for i, label in enumerate(self.labels):
            button = QPushButton(label)
            button.setCheckable(True)
            button.setToolTip(f"Condition {label} (key {i + 1})" if i < 9 else f"Condition {label}")
            button.clicked.connect(lambda _=False, i=i: self.select(i))
            self.button_group.addButton(button)
            self.condition_buttons.append(button)
            grid.addWidget(button, 0, column + i)
            button.setVisible(len(self.labels) > 1)  # a single stimulus (ACR) needs no switch: Play plays it
            if self.mushra:
                slider = QSlider(Qt.Vertical)
                slider.setRange(0, 100)
                slider.setValue(0)
                slider.setTickPosition(QSlider.TicksBothSides)
                slider.setTickInterval(20)
                slider.setFixedHeight(SLIDER_HEIGHT)
                value = QLabel("0")
                value.setAlignment(Qt.AlignCenter)
                slider.valueChanged.connect(lambda v, lab=value: lab.setText(str(v)))
                slider.sliderPressed.connect(lambda i=i: self.select(i))
                self.sliders.append(slider)
                self.value_labels.append(value)
                grid.addWidget(slider, 1, column + i, Qt.AlignHCenter)
                grid.addWidget(value, 2, column + i)
            else:
                box = QWidget()
                bv = QVBoxLayout(box)
                group = QButtonGroup(box)
                for score, text in ACR_LABELS:
                    radio = QRadioButton(f"{score} {text}")
                    group.addButton(radio, score)
                    bv.addWidget(radio)
                group.idClicked.connect(lambda _id: self._update_submit())
                self.acr_groups.append(group)
                grid.addWidget(box, 1, column + i, Qt.AlignTop)
        v.addLayout(grid)
        bottom = QHBoxLayout()
        self.hint_label = QLabel()
        bottom.addWidget(self.hint_label, 1)
        self.submit_button = QPushButton("Submit and next")
        self.submit_button.clicked.connect(self.submit)
        bottom.addWidget(self.submit_button)
        v.addLayout(bottom)
        v.addStretch(1)
        self._mark_selected()
        self._update_submit()

    # ---- interaction -----------------------------------------------------------------------------------
    def select(self, index: int) -> None:
        """Switch to button `index` (REFERENCE for the open reference) at the current playhead."""
        if self.trial is None:
            return
        if index == REFERENCE and not self.has_reference:
            return
        changed = index != self.selected
        self.selected = index
        self.player.set_lanes(self._lane_mix())
        if changed or not self._counted_since_play:
            self._count_play()
        self._mark_selected()
        self._update_submit()

    def _count_play(self) -> None:
        """A play is counted when a condition is switched to while playing, or playing starts on it."""
        if not self.player.playing:
            self._counted_since_play = False
            return
        self._counted_since_play = True
        if self.selected == REFERENCE:
            self.reference_plays += 1
        else:
            self.plays[self.conditions[self.selected]] += 1

    def _mark_selected(self) -> None:
        button = self.reference_button if self.selected == REFERENCE else self.condition_buttons[self.selected]
        if button is not None:
            button.setChecked(True)

    def toggle_play(self) -> None:
        if not self._on_trial():
            return
        if self.player.playing:
            self.player.pause()
            self.play_button.setText("Play")
            return
        if self.enable_audio:
            if not self.audio_ok:
                self.dialogs.error("Listening test", self.audio_reason)
                return
            try:
                self.player.open_stream()
            except RuntimeError as exc:
                self.audio_ok, self.audio_reason = False, str(exc)
                self.dialogs.error("Listening test", str(exc))
                return
        self.player.play()
        self.play_button.setText("Pause")
        self._count_play()
        self._update_submit()

    def _loop_changed(self, *_args) -> None:
        rate = self.manifest.samplerate
        start, end = int(self.loop_start.value() * rate), int(self.loop_end.value() * rate)
        if end - start < rate // 10:  # under 0.1 s: not a usable loop
            self.player.loop_enabled = False
            return
        self.player.set_loop(start, end)
        self.player.loop_enabled = self.loop_check.isChecked()
        if self.player.loop_enabled and not start <= self.player.position < end:
            self.player.seek(start)

    def set_loop(self, start_seconds: float, end_seconds: float) -> None:
        """Loop [start, end) seconds of the excerpt (what the loop fields do)."""
        self.loop_end.setValue(end_seconds)
        self.loop_start.setValue(start_seconds)
        self.loop_check.setChecked(True)
        self._loop_changed()

    def missing(self) -> list[str]:
        """Blind labels of the conditions not yet heard (and, in MOS, not yet rated)."""
        out = []
        for i, cid in enumerate(self.conditions):
            if self.plays.get(cid, 0) == 0 or (not self.mushra and self.acr_groups[i].checkedId() < 0):
                out.append(self.labels[i])
        return out

    def _update_submit(self) -> None:
        if self.trial is None or not hasattr(self, "submit_button"):
            return
        missing = self.missing()
        self.submit_button.setEnabled(not missing)
        what = "play" if self.mushra else "play and rate"
        self.hint_label.setText(f"Still to {what}: {', '.join(missing)}" if missing else "Ready to submit.")

    def rating(self, index: int) -> float | None:
        if self.mushra:
            return float(self.sliders[index].value())
        checked = self.acr_groups[index].checkedId()
        return None if checked < 0 else float(checked)

    def submit(self) -> bool:
        """Save the trial on screen (one transaction) and move on; False if it cannot be submitted yet."""
        if self.trial is None or self.missing():
            return False
        self.player.pause()
        self._tick()
        result = TrialResult(
            listener=self.listener, trial=self.trial.id, position=self.order.index(self.trial.id),
            order=list(self.conditions), ratings={cid: self.rating(i) for i, cid in enumerate(self.conditions)},
            labels=dict(zip(self.conditions, self.labels)), plays=dict(self.plays), heard=dict(self.heard),
            reference_plays=self.reference_plays, seconds=time.monotonic() - self._trial_started)
        try:
            self.store.submit(result)
        except StemGUIError as exc:
            self.dialogs.error("Listening test", str(exc))
            return False
        log.info("%s: trial %s saved", self.listener, self.trial.id)
        self.trial_submitted.emit(self.trial.id)
        self._next_trial()
        return True

    def _tick(self) -> None:
        now = time.monotonic()
        dt, self._last_tick = now - self._last_tick, now
        if not self._on_trial():
            return
        if self.player.playing and self.selected != REFERENCE:
            self.heard[self.conditions[self.selected]] += dt
        position = self.player.position
        if not self.seek_slider.isSliderDown():
            self.seek_slider.setValue(position)
        self.time_label.setText(f"{position / self.manifest.samplerate:.1f} s")
        if not self.player.playing and self.play_button.text() != "Play":
            self.play_button.setText("Play")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.timer.stop()
        self.player.close()
        self.store.close()
        super().closeEvent(event)


def open_listening_test(window, path: str | Path | None = None) -> ListeningWindow | None:
    """Tools > Listening test…: ask for a prepared test's manifest.json and open its window beside the app."""
    if path is None:
        path, _ = QFileDialog.getOpenFileName(window, "Open a listening test", "",
                                              "Listening test (manifest.json);;All files (*)")
        if not path:
            return None
    dialogs = getattr(window, "dialogs", None) or Dialogs(window)
    player = getattr(window, "player", None)
    if player is not None:
        player.pause()  # one thing plays at a time
    try:
        test = ListeningWindow(path, window, dialogs=dialogs)
    except StemGUIError as exc:
        dialogs.error("Listening test", str(exc))
        return None
    window.listening_window = test
    test.show()
    return test
