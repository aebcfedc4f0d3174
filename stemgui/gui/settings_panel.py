"""The Separation settings dock: model (with its card), device, separation knobs and export defaults.

Every control writes straight through to `AppSettings`, so the app starts next time as it was left; the
window asks this panel which model to run and with which `SeparationSettings`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from stemgui.errors import StemGUIError
from stemgui.gui.device_combo import fill_device_combo
from stemgui.gui.dialogs import Dialogs, card_html
from stemgui.gui.settings import EXPORT_FORMATS, AppSettings
from stemgui.models.card import read_card
from stemgui.models.registry import list_models, resolve_model
from stemgui.separate import SeparationSettings

log = logging.getLogger(__name__)

REFINE_LABELS = {"auto": "Model's choice", "off": "Off (raw model stems)", "vocals": "Cleaner vocals",
                 "vocals-strict": "Cleanest vocals (strict)", "wiener": "Wiener (all stems)",
                 "ratio": "Magnitude shares"}
"""The Clean-up choices (stemgui.refine modes) as the panel names them."""
NO_MODEL_HTML = "<i>No model found: install one or pass --model.</i>"


class SeparationSettingsPanel(QWidget):
    """The settings form; `model_override` (the `--model` option) is listed and used instead of the choice."""

    separate_again_requested = Signal()
    get_models_requested = Signal()

    def __init__(self, settings: AppSettings, dialogs: Dialogs, model_override: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.dialogs = dialogs
        self.model_override = model_override
        self._cards: dict[str, dict] = {}
        form = QFormLayout(self)
        form.setContentsMargins(10, 10, 10, 10)

        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.refresh_models()
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        self.get_models_button = QPushButton("Get models…")
        self.get_models_button.setToolTip("Download published models (HTDemucs and others) from the catalog")
        self.get_models_button.clicked.connect(self.get_models_requested)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.get_models_button)
        form.addRow("Model", model_row)
        self.card_label = QLabel("")
        self.card_label.setWordWrap(True)
        self.card_label.setObjectName("small")
        form.addRow("", self.card_label)

        self.device_combo = QComboBox()
        fill_device_combo(self.device_combo, settings.device)
        self.device_combo.currentIndexChanged.connect(
            lambda _i: setattr(settings, "device", self.device_combo.currentData()))
        self.device_combo.currentIndexChanged.connect(self._on_model_changed)  # the engine line follows the device
        form.addRow("Device", self.device_combo)

        self.shifts_spin = QSpinBox()
        self.shifts_spin.setRange(0, 10)
        self.shifts_spin.setValue(settings.shifts)
        self.shifts_spin.setToolTip("Random time shifts averaged: better quality, N+1 times slower")
        self.shifts_spin.valueChanged.connect(lambda v: setattr(settings, "shifts", v))
        form.addRow("Shifts", self.shifts_spin)
        self.overlap_spin = QDoubleSpinBox()
        self.overlap_spin.setRange(0.0, 0.9)
        self.overlap_spin.setSingleStep(0.05)
        self.overlap_spin.setValue(settings.overlap)
        self.overlap_spin.valueChanged.connect(lambda v: setattr(settings, "overlap", v))
        form.addRow("Overlap", self.overlap_spin)
        self.segment_spin = QDoubleSpinBox()
        self.segment_spin.setRange(0.0, 60.0)
        self.segment_spin.setSingleStep(0.5)
        self.segment_spin.setSpecialValueText("model default")
        self.segment_spin.setSuffix(" s")
        self.segment_spin.setValue(settings.segment)
        self.segment_spin.valueChanged.connect(lambda v: setattr(settings, "segment", v))
        form.addRow("Segment", self.segment_spin)
        self.exact_sum_check = QCheckBox("Stems add up to the song")
        self.exact_sum_check.setChecked(settings.exact_sum)
        self.exact_sum_check.setToolTip("The part of the song no stem holds goes into 'other', so All sounds exactly "
                                        "like the original. Off: the model's raw stems.")
        self.exact_sum_check.toggled.connect(self._on_exact_sum)
        form.addRow("", self.exact_sum_check)
        self.refine_combo = QComboBox()
        for mode, label in REFINE_LABELS.items():
            self.refine_combo.addItem(label, mode)
        self.refine_combo.setCurrentIndex(max(0, self.refine_combo.findData(settings.refine)))
        self.refine_combo.setToolTip(
            "Share the song's own spectrogram out by the stems after separating (a Wiener-style post-filter).\n"
            "Cleaner vocals: the voice against everything else, so drum hits and other traces between the\n"
            "phrases drop out of the vocals lane. Cleanest vocals: the voice keeps only what the model gave it,\n"
            "so the lane is quieter and duller but holds no drums. Stems sum to the song with any clean-up on.\n"
            "Model's choice: what the model card recommends (measured per model).")
        self.refine_combo.currentIndexChanged.connect(self._on_refine)
        form.addRow("Clean-up", self.refine_combo)

        self.format_combo = QComboBox()
        self.format_combo.addItems(list(EXPORT_FORMATS))
        self.format_combo.setCurrentText(settings.output_format)
        self.format_combo.currentTextChanged.connect(lambda v: setattr(settings, "output_format", v))
        form.addRow("Export format", self.format_combo)
        folder_row = QHBoxLayout()
        self.folder_edit = QLineEdit(settings.output_folder)
        self.folder_edit.editingFinished.connect(lambda: setattr(settings, "output_folder", self.folder_edit.text()))
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._choose_folder)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        form.addRow("Export folder", folder_row)

        rerun = QPushButton("Separate again")
        rerun.clicked.connect(self.separate_again_requested)
        form.addRow("", rerun)
        self._on_model_changed()

    # ------------------------------------------------------------------------------------------------ models
    def refresh_models(self) -> None:
        """Re-read the model registry into the picker, keeping the chosen (or overriding) model selected."""
        combo = self.model_combo
        combo.blockSignals(True)
        combo.clear()
        try:
            entries = list_models()
        except (StemGUIError, OSError) as exc:  # an unreadable models folder leaves the list empty
            log.warning("cannot list the installed models: %s", exc)
            entries = []
        self._cards = {}
        for entry in entries:
            combo.addItem(f"{entry.name}{'' if entry.bundled else ' (yours)'}", str(entry.path))
            self._cards[str(entry.path)] = entry.card
        if self.model_override:
            combo.addItem(Path(self.model_override).stem, self.model_override)
        wanted = self.model_override or self.settings.model
        index = combo.findData(wanted) if wanted else 0
        if index < 0:
            index = next((i for i in range(combo.count()) if combo.itemText(i).split(" ")[0] == wanted), 0)
        combo.setCurrentIndex(max(0, index))
        combo.blockSignals(False)

    def select_model(self, path: str | Path) -> bool:
        """Choose the model whose weights are at `path`; False when the picker does not list it."""
        index = self.model_combo.findData(str(path))
        if index >= 0:
            self.model_combo.setCurrentIndex(index)
        return index >= 0

    def current_model_path(self) -> Path:
        """The chosen model's weights; raises ModelError with one sentence when it is missing."""
        choice = self.model_override or self.model_combo.currentData() or self.settings.model or None
        return resolve_model(choice)

    def current_card(self) -> dict | None:
        """The chosen model's card, or None when there is no readable model."""
        data = self.model_combo.currentData()
        card = self._cards.get(data) if data else None
        if card is None and data:
            try:
                card = read_card(resolve_model(data))
            except StemGUIError as exc:
                log.info("no card for the chosen model %s: %s", data, exc)
        return card

    def _on_model_changed(self, _index: int = 0) -> None:
        data = self.model_combo.currentData()
        if data and data != self.model_override:
            self.settings.model = data
        card = self.current_card()
        self.card_label.setText((card_html(card) if card else NO_MODEL_HTML) + self._exact_sum_html()
                                + self._refine_html(card) + self._engine_html(card))

    def _engine_html(self, card: dict | None) -> str:
        """How the separation will run (stemgui/backends.py); separation.json records what actually ran."""
        if not card:
            return ""
        from html import escape

        from stemgui.backends import auto_summary

        return "<br>Engine: " + escape(auto_summary(str(card.get("architecture", "")), self.settings.device))

    def _exact_sum_html(self) -> str:
        on = self.settings.exact_sum
        return ("<br><i>Stems add up to the song (residual in 'other').</i>" if on
                else "<br><i>Raw model stems: they may not add up to the song.</i>")

    def _refine_choice(self, card: dict | None) -> str:
        """The Clean-up setting for this model: a vocals clean-up on a model without a vocals stem is off (the
        choice stays saved for the next model that has one)."""
        choice = self.settings.refine
        sources = list((card or {}).get("sources") or [])
        if choice.startswith("vocals") and card and "vocals" not in sources:
            return "off"
        return choice

    def _refine_html(self, card: dict | None) -> str:
        from stemgui.refine import resolve_mode

        if not card:
            return ""
        sources = list(card.get("sources") or [])
        mode = resolve_mode(self._refine_choice(card), card, sources)
        if mode == "off" and self.settings.refine.startswith("vocals"):
            return "<br><i>Clean-up: off (this model has no vocals stem).</i>"
        return "" if mode == "off" else f"<br><i>Clean-up: {REFINE_LABELS[mode].lower()}.</i>"

    def _on_refine(self, _index: int) -> None:
        self.settings.refine = self.refine_combo.currentData()
        self._on_model_changed()

    def _on_exact_sum(self, on: bool) -> None:
        self.settings.exact_sum = bool(on)
        self._on_model_changed()

    # ---------------------------------------------------------------------------------------------- settings
    def separation_settings(self) -> SeparationSettings:
        return SeparationSettings(segment=self.settings.segment or None, overlap=self.settings.overlap,
                                  shifts=self.settings.shifts, device=self.settings.device, batch_size=1,
                                  exact_sum=self.settings.exact_sum, refine=self._refine_choice(self.current_card()))

    def _choose_folder(self) -> None:
        folder = self.dialogs.choose_folder(self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)
            self.settings.output_folder = folder
