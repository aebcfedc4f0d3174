"""The practice controls of the transport bar: tempo, transpose (semitones + cents), the song's BPM and key, A/B.

A widget of its own so the window only places it. Every control talks to the `Player` directly (the tempo and
key take effect at the next audio block). The song's tempo and key are estimated (`stemgui.audio.analysis`) in a
background thread when a song is opened, and the label shows them as heard after the tempo and transposition;
once the stems are complete the key is estimated again from the pitched stems (cleaner than the mix). A key
with a nearly-as-likely runner-up reads "A minor (or C major)".
A/B switches between the original song and the mix as set or, once a second model's separation of the same song
is loaded, between the two separations (same lane settings): at the next block, crossfaded over 5 ms.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QToolButton, QWidget

from stemgui.audio.analysis import analyse, analyse_key, stems_mono_sum
from stemgui.gui.player import Player
from stemgui.gui.workers import lower_thread_priority

log = logging.getLogger(__name__)
AB_SONG = "song"
AB_MODELS = "models"
NON_PITCHED_STEMS = frozenset({"drums", "percussion"})  # left out when the key is estimated from the stems


class NoWheelSpinBox(QSpinBox):
    """A spin box the mouse wheel only changes once it has been clicked (focused).

    While it has the focus it keeps the window's single keys (Space, arrows: see gui.shortcuts); Enter or Esc
    hands them back to the window, so a singer can type a tempo and press Space to play.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setFocusPolicy(Qt.StrongFocus)

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt API
        super().keyPressEvent(event)
        if event.key() in (Qt.Key_Return, Qt.Key_Enter, Qt.Key_Escape):
            self.interpretText()
            self.clearFocus()  # the window's shortcuts act again


class PracticeControls(QWidget):
    analysis_ready = Signal(int, object)  # generation, Analysis (from the analysis thread, queued)
    key_ready = Signal(int, object)  # generation, Key from the separated stems (queued)
    ab_changed = Signal(bool)  # True: the B side (the mix / the second model) is heard

    def __init__(self, player: Player, parent: QWidget | None = None):
        super().__init__(parent)
        self.player = player
        self.analysis = None
        self._generation = 0
        self._names: tuple[str, str] = ("", "")
        self.analysis_ready.connect(self._on_analysis, Qt.QueuedConnection)
        self.key_ready.connect(self._on_stems_key, Qt.QueuedConnection)
        self._stems_key = None  # (generation, Key) once the stems' key is known
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.setSpacing(4)
        layout.addWidget(QLabel("Tempo"))
        self.tempo_spin = NoWheelSpinBox()
        self.tempo_spin.setObjectName("tempoSpin")
        self.tempo_spin.setRange(50, 150)
        self.tempo_spin.setSingleStep(5)
        self.tempo_spin.setValue(100)
        self.tempo_spin.setSuffix(" %")
        self.tempo_spin.setToolTip("Playback speed without changing the pitch (50-150 %); export follows it")
        self.tempo_spin.valueChanged.connect(self._on_tempo)
        layout.addWidget(self.tempo_spin)
        layout.addWidget(QLabel("Transpose"))
        self.semitones_spin = NoWheelSpinBox()
        self.semitones_spin.setObjectName("transposeSpin")
        self.semitones_spin.setRange(-12, 12)
        self.semitones_spin.setSuffix(" st")
        self.semitones_spin.setToolTip("Transpose in semitones without changing the tempo; export follows it")
        self.semitones_spin.valueChanged.connect(self._on_transpose)
        layout.addWidget(self.semitones_spin)
        self.cents_spin = NoWheelSpinBox()
        self.cents_spin.setObjectName("centsSpin")
        self.cents_spin.setRange(-50, 50)
        self.cents_spin.setSingleStep(5)
        self.cents_spin.setSuffix(" ¢")
        self.cents_spin.setToolTip("Fine tuning in cents (to match an instrument that is not at A = 440 Hz)")
        self.cents_spin.valueChanged.connect(self._on_transpose)
        layout.addWidget(self.cents_spin)
        self.key_label = QLabel("")
        self.key_label.setObjectName("songKeyLabel")
        self.key_label.setToolTip("The song's estimated tempo and key, as heard after the tempo and transpose")
        self.key_label.setMinimumWidth(self.key_label.fontMetrics().horizontalAdvance("≈ 188 BPM · Eb minor") + 6)
        layout.addWidget(self.key_label)
        self.ab_button = QToolButton()
        self.ab_button.setObjectName("abButton")
        self.ab_button.setCheckable(True)
        self.ab_button.setFocusPolicy(Qt.NoFocus)
        self.ab_button.toggled.connect(self._on_ab)
        self.ab_button.setText("A/B: song")
        self.ab_button.setMinimumWidth(self.ab_button.sizeHint().width() + 4)  # the text changes: the bar never shifts
        layout.addWidget(self.ab_button)
        self.ab_mode = QComboBox()
        self.ab_mode.setObjectName("abMode")
        self.ab_mode.setFocusPolicy(Qt.TabFocus)  # a click does not take the keys (Space, A) from the window
        self.ab_mode.addItem("song vs mix", AB_SONG)
        self.ab_mode.setToolTip("What A/B compares: the original song with your mix, or two models' separations")
        self.ab_mode.currentIndexChanged.connect(lambda _i: self._apply_ab())
        self.ab_mode.setVisible(False)
        layout.addWidget(self.ab_mode)
        self._apply_ab()

    # ---- tempo and key -----------------------------------------------------------------------------------
    @property
    def semitones(self) -> float:
        return self.semitones_spin.value() + self.cents_spin.value() / 100.0

    def _on_tempo(self, value: int) -> None:
        self.player.set_tempo(value / 100.0)
        self._show_analysis()

    def _on_transpose(self, _value: int = 0) -> None:
        self.player.set_transpose(self.semitones)
        self._show_analysis()

    def reset(self) -> None:
        """A new song: 100 %, no transpose, A/B on the mix, no comparison (the estimate follows)."""
        for spin, value in ((self.tempo_spin, 100), (self.semitones_spin, 0), (self.cents_spin, 0)):
            spin.setValue(value)
        self.set_comparison(None)
        self.ab_button.setChecked(False)

    @staticmethod
    def _deliver(signal, *args) -> None:
        """Emit from an estimate's thread; the controls may have been deleted meanwhile (the window closed)."""
        try:
            signal.emit(*args)
        except RuntimeError as exc:  # "Signal source has been deleted": nobody is left to show the estimate
            log.debug("an estimate finished after its controls were deleted: %s", exc)

    def analyse(self, audio: np.ndarray, samplerate: int) -> int:
        """Estimate the tempo and key of `audio` (channels, samples) in a thread; returns its generation."""
        self._generation += 1
        self._stems_key = None
        generation = self._generation
        self.analysis = None
        self.key_label.setText("analysing…")

        def work() -> None:
            lower_thread_priority()  # an estimate waits; the GUI and audio threads do not
            try:
                result = analyse(audio, samplerate)
            except Exception:  # noqa: BLE001 - an estimate failing must never take the app down
                log.exception("estimating tempo and key failed")
                result = None
            self._deliver(self.analysis_ready, generation, result)

        threading.Thread(target=work, name="stemgui-analysis", daemon=True).start()
        return generation

    def analyse_stems(self, session) -> bool:
        """The song's stems are complete: estimate the key again from the pitched stems (all but drums), which
        are cleaner than the mix; the tempo stays the mix's. False when there is nothing to use."""
        pitched = [i for i, name in enumerate(session.names) if i > 0 and name not in NON_PITCHED_STEMS]
        if not pitched:
            return False
        generation, audio, samplerate = self._generation, session.audio, session.samplerate

        def work() -> None:
            lower_thread_priority()
            try:
                key = analyse_key(stems_mono_sum(audio, pitched, samplerate), samplerate)
            except Exception:  # noqa: BLE001 - an estimate failing must never take the app down
                log.exception("estimating the key from the stems failed")
                return
            self._deliver(self.key_ready, generation, key)

        threading.Thread(target=work, name="stemgui-key-from-stems", daemon=True).start()
        return True

    def _on_analysis(self, generation: int, result) -> None:
        if generation == self._generation:
            if result is not None and self._stems_key is not None and self._stems_key[0] == generation:
                result = result.with_key(self._stems_key[1], "stems")  # the stems' key arrived first
            self.analysis = result
            self._show_analysis()

    def _on_stems_key(self, generation: int, key) -> None:
        if generation != self._generation:
            return
        self._stems_key = (generation, key)
        if self.analysis is not None:
            self.analysis = self.analysis.with_key(key, "stems")
            self._show_analysis()

    def _show_analysis(self) -> None:
        a = self.analysis
        if a is None:
            if self.key_label.text() != "analysing…":
                self.key_label.setText("")
            return
        tempo, semis = self.tempo_spin.value() / 100.0, self.semitones
        self.key_label.setText(a.describe(tempo, semis))
        source = "the separated stems without drums" if a.key_source == "stems" else "the mix"
        alt = a.key.alternative
        runner_up = (f"; nearly as likely: {alt.name} ({alt.confidence:.0%}), often the relative key, which uses the "
                     "same notes") if alt is not None else ""
        self.key_label.setToolTip(f"Estimated from the song: {a.describe()} (tempo confidence {a.bpm_confidence:.0%}; key from "
                                  f"{source}, {a.key.name} {a.key.confidence:.0%}{runner_up}); shown as heard "
                                  "after the tempo and transpose, so a singer knows where a transposition lands")

    # ---- A/B ---------------------------------------------------------------------------------------------
    def set_comparison(self, names: tuple[str, str] | None) -> None:
        """A second separation is loaded in the player (`names`: the two models), or None when it is gone."""
        combo = self.ab_mode
        combo.blockSignals(True)
        while combo.count() > 1:
            combo.removeItem(1)
        if names is not None:
            self._names = names
            combo.addItem(f"{names[0]} vs {names[1]}", AB_MODELS)
            combo.setCurrentIndex(1)
        combo.blockSignals(False)
        combo.setVisible(names is not None)
        self._apply_ab()

    def toggle_ab(self) -> None:
        """The A key."""
        self.ab_button.toggle()

    def _on_ab(self, _on: bool) -> None:
        self._apply_ab()
        self.ab_changed.emit(self.ab_button.isChecked())

    def _apply_ab(self) -> None:
        models = self.ab_mode.currentData() == AB_MODELS and self.player.alternate_loaded
        on = self.ab_button.isChecked()
        if models:
            self.player.set_original(False)
            self.player.use_alternate(on)
            side = self._names[1] if on else self._names[0]
            self.ab_button.setText(f"A/B: {'B' if on else 'A'}")
            self.ab_button.setToolTip(f"Hearing {side}'s stems. Switch between the two separations (A)")
        else:
            self.player.use_alternate(False)
            self.player.set_original(on)
            self.ab_button.setText("A/B: song" if on else "A/B: mix")
            self.ab_button.setToolTip(("Hearing the original song" if on else "Hearing your mix")
                                      + ". Switch between the original song and the mix (A)")


def choose_comparison_model(parent: QWidget, current: str) -> str | None:
    """Ask which installed model to compare with (a list of the registry's models); None when cancelled."""
    from PySide6.QtWidgets import QInputDialog

    from stemgui.models.registry import list_models

    entries = [e for e in list_models() if str(e.path) != current]
    if not entries:
        return None
    labels = [e.name for e in entries]
    label, ok = QInputDialog.getItem(parent, "Compare with another model",
                                     "Separate this song with a second model and switch between the two (A):",
                                     labels, 0, False)
    return str(entries[labels.index(label)].path) if ok else None
