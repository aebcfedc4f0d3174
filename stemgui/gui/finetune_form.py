"""The Fine-tune form: dataset (checked as soon as it is chosen), base model, losses and training settings.

It turns the controls into a `TrainRequest`, shows a saved run's request, remembers itself in QSettings and
says in one sentence what stops a training from starting. It knows nothing about processes or curves.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from stemgui.errors import StemGUIError
from stemgui.gui.device_combo import fill_device_combo, select_device
from stemgui.gui.theme import ERROR_STYLE, INFO_STYLE, OK_STYLE
from stemgui.models.registry import list_models
from stemgui.train.finetune_runs import PRESETS, TrainRequest, check_name
from stemgui.train.validate_dataset import DatasetCheck, check_dataset

log = logging.getLogger(__name__)
FORM_KEY = "finetune/form/"  # QSettings group of the remembered form
NOT_REMEMBERED = ("name", "extra", "gpus")  # a new name each time; extra is not a form field; GPUs vary
FINETUNE_LR, SCRATCH_LR = 5e-5, 3e-4  # fine-tuning wants a small rate, training from scratch the trainer's own


def _double(value: float, low: float, high: float, decimals: int, suffix: str = "") -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(low, high)
    box.setValue(value)
    box.setSingleStep(10 ** -min(decimals, 2) if decimals else 1)
    if suffix:
        box.setSuffix(suffix)
    return box


def _int(value: int, low: int, high: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setGroupSeparatorShown(True)
    return box


def cuda_device_count() -> int:
    """GPUs torch can use here (0 when CUDA is missing or broken: the form must still open)."""
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except RuntimeError as exc:
        log.warning("cannot count the CUDA devices: %s", exc)
        return 0


class FineTuneForm(QWidget):
    """Group boxes Dataset, Model, Losses and Training; `changed` fires when what Start depends on changes."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.check: DatasetCheck | None = None  # the last check of the chosen dataset folder
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._dataset_box())
        layout.addWidget(self._model_box())
        layout.addWidget(self._loss_box())
        layout.addWidget(self._training_box())
        for combo in (self.base_combo, self.preset_combo, self.device_combo):
            # long entries (model summaries, disabled devices with reasons) must not widen the form
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(14)
        self.refresh_models()
        self._preset_changed()

    # ---------------------------------------------------------------------------------------------- building
    def _dataset_box(self) -> QGroupBox:
        box = QGroupBox("Dataset")
        layout = QVBoxLayout(box)
        row = QHBoxLayout()
        self.dataset_edit = QLineEdit()
        self.dataset_edit.setPlaceholderText("folder with one sub-folder per track (MUSDB18-HQ) or MIR-1K")
        self.dataset_edit.editingFinished.connect(lambda: self.set_dataset(self.dataset_edit.text()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.dataset_edit, 1)
        row.addWidget(browse)
        layout.addLayout(row)
        self.dataset_label = QLabel("Choose a folder of multitracks: each track a folder with drums, bass, other "
                                    "and vocals as .wav or .flac.")
        self.dataset_label.setWordWrap(True)
        self.dataset_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.dataset_label)
        return box

    def _model_box(self) -> QGroupBox:
        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.base_combo = QComboBox()
        self.base_combo.currentIndexChanged.connect(self._base_changed)
        form.addRow("Start from", self.base_combo)
        self.name_edit = QLineEdit(time.strftime("finetune-%Y%m%d-%H%M"))
        self.name_edit.textChanged.connect(lambda _text: self.changed.emit())
        form.addRow("New model name", self.name_edit)
        return box

    def _loss_box(self) -> QGroupBox:
        box = QGroupBox("Losses")
        form = QFormLayout(box)
        self.preset_combo = QComboBox()
        for key, label in PRESETS.items():
            self.preset_combo.addItem(label, key)
        self.preset_combo.setCurrentIndex(2)
        self.preset_combo.currentIndexChanged.connect(self._preset_changed)
        form.addRow("Preset", self.preset_combo)
        self.w_l1 = _double(1.0, 0.0, 100.0, 3)
        self.w_stft = _double(0.01, 0.0, 100.0, 4)
        self.w_adv = _double(0.01, 0.0, 100.0, 4)
        self.w_fm = _double(0.02, 0.0, 100.0, 4)
        form.addRow("L1 weight", self.w_l1)
        form.addRow("MR-STFT weight", self.w_stft)
        form.addRow("Adversarial weight", self.w_adv)
        form.addRow("Feature-matching weight", self.w_fm)
        # countermeasures against an over-fitting discriminator (design.md): later start, fewer updates, lighter
        self.d_warmup_spin = _int(-1, -1, 10_000_000)
        self.d_warmup_spin.setSpecialValueText("auto (a fifth of the steps)")
        self.d_warmup_spin.setToolTip("Generator-only steps before the discriminator starts")
        self.d_every_spin = _int(1, 1, 100)
        self.d_every_spin.setToolTip("Update the discriminator every N steps (fewer updates = weaker D)")
        self.d_channels_spin = _int(16, 2, 512)
        self.d_channels_spin.setToolTip("Discriminator width: smaller is a lighter D that over-fits less")
        self.spectral_norm_check = QCheckBox("spectral norm")
        self.spectral_norm_check.setToolTip("Spectral normalisation in D instead of weight norm")
        form.addRow("D starts after", self.d_warmup_spin)
        form.addRow("D update every", self.d_every_spin)
        form.addRow("D width", self.d_channels_spin)
        form.addRow("", self.spectral_norm_check)
        return box

    def _training_box(self) -> QGroupBox:
        box = QGroupBox("Training")
        form = QFormLayout(box)
        self.steps_spin = _int(1000, 1, 10_000_000)
        self.segment_spin = _double(4.0, 0.1, 60.0, 1, suffix=" s")
        self.batch_spin = _int(4, 1, 4096)
        self.lr_spin = _double(FINETUNE_LR, 1e-7, 1.0, 6)
        self.lr_spin.setSingleStep(1e-5)
        self.checkpoint_spin = _int(0, 0, 1_000_000)
        self.checkpoint_spin.setSpecialValueText("auto")
        self.valid_spin = _int(0, 0, 1_000_000)
        self.valid_spin.setSpecialValueText("auto")
        self.device_combo = QComboBox()
        fill_device_combo(self.device_combo)
        gpus = cuda_device_count()
        self.gpu_spin = _int(1, 1, max(1, gpus))
        self.gpu_spin.setToolTip("Data-parallel training over this many GPUs (torchrun); the batch is split "
                                 "between them")
        form.addRow("Steps", self.steps_spin)
        form.addRow("Segment length", self.segment_spin)
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Checkpoint every", self.checkpoint_spin)
        form.addRow("Validate every", self.valid_spin)
        form.addRow("Device", self.device_combo)
        self.gpu_label = QLabel("GPUs")
        form.addRow(self.gpu_label, self.gpu_spin)
        self.gpu_label.setVisible(gpus > 1)  # a GPU count only when there are several
        self.gpu_spin.setVisible(gpus > 1)
        self.segment_spin.valueChanged.connect(lambda _v: self._recheck())
        return box

    # ------------------------------------------------------------------------------------------- models
    def refresh_models(self) -> None:
        """Re-read the registry into the base-model list (keeps the current choice when it still exists)."""
        current = self.base_combo.currentData()
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        try:
            entries = list_models()
        except StemGUIError as exc:
            log.warning("cannot list the installed models: %s", exc)
            entries = []
        for entry in entries:
            self.base_combo.addItem(f"{entry.name} ({'bundled' if entry.bundled else 'yours'})", str(entry.path))
            self.base_combo.setItemData(self.base_combo.count() - 1, entry.summary, Qt.ToolTipRole)
        self.base_combo.addItem("Nothing: train from scratch (default size)", "")
        index = self.base_combo.findData(current) if current is not None else -1
        self.base_combo.setCurrentIndex(index if index >= 0 else 0)
        self.base_combo.blockSignals(False)

    def _base_changed(self) -> None:
        self.lr_spin.setValue(FINETUNE_LR if self.base_combo.currentData() else SCRATCH_LR)

    def select_base_model(self, name_or_path: str) -> bool:
        """Choose the base model by registry name or weights path; False when it is not listed."""
        for i in range(self.base_combo.count()):
            data = self.base_combo.itemData(i)
            if data and (data == str(name_or_path) or Path(data).stem == str(name_or_path)):
                self.base_combo.setCurrentIndex(i)
                return True
        return False

    # ------------------------------------------------------------------------------------------- losses
    def _preset_changed(self) -> None:
        preset = self.preset_combo.currentData()
        self.w_stft.setEnabled(preset != "l1")
        for box in (self.w_adv, self.w_fm, self.d_warmup_spin, self.d_every_spin, self.d_channels_spin,
                    self.spectral_norm_check):
            box.setEnabled(preset == "l1+stft+gan")

    def set_preset(self, preset: str) -> None:
        index = self.preset_combo.findData(preset)
        if index < 0:
            raise ValueError(f"unknown preset {preset!r} (use one of {', '.join(PRESETS)})")
        self.preset_combo.setCurrentIndex(index)

    # ------------------------------------------------------------------------------------------- requests
    def request(self) -> TrainRequest:
        """The form as a TrainRequest."""
        return TrainRequest(
            dataset=self.dataset_edit.text().strip(), name=self.name_edit.text().strip(),
            base_model=self.base_combo.currentData() or "", preset=self.preset_combo.currentData(),
            l1=self.w_l1.value(), stft=self.w_stft.value(), adversarial=self.w_adv.value(),
            feature_matching=self.w_fm.value(), steps=self.steps_spin.value(), segment=self.segment_spin.value(),
            batch_size=self.batch_spin.value(), lr=self.lr_spin.value(),
            device=self.device_combo.currentData() or "auto",
            gpus=self.gpu_spin.value(),  # its range is 1..1 unless there are several GPUs
            checkpoint_every=self.checkpoint_spin.value(), valid_every=self.valid_spin.value(),
            d_warmup_steps=self.d_warmup_spin.value(), d_every=self.d_every_spin.value(),
            d_channels=self.d_channels_spin.value(), spectral_norm=self.spectral_norm_check.isChecked(),
        )

    def apply_request(self, req: dict) -> None:
        """Show a saved run's settings (a TrainRequest as a dict) in the form."""
        if req.get("dataset"):
            self.dataset_edit.setText(str(req["dataset"]))
        if req.get("name"):
            self.name_edit.setText(str(req["name"]))
        if req.get("base_model"):
            self.select_base_model(str(req["base_model"]))
        if req.get("preset") in PRESETS:
            self.set_preset(req["preset"])
        pairs = ((self.w_l1, "l1"), (self.w_stft, "stft"), (self.w_adv, "adversarial"),
                 (self.w_fm, "feature_matching"), (self.segment_spin, "segment"), (self.lr_spin, "lr"))
        for box, key in pairs:
            if isinstance(req.get(key), (int, float)):
                box.setValue(float(req[key]))
        for box, key in ((self.steps_spin, "steps"), (self.batch_spin, "batch_size"),
                         (self.checkpoint_spin, "checkpoint_every"), (self.valid_spin, "valid_every"),
                         (self.d_warmup_spin, "d_warmup_steps"), (self.d_every_spin, "d_every"),
                         (self.d_channels_spin, "d_channels")):
            if isinstance(req.get(key), int) and not isinstance(req.get(key), bool):
                box.setValue(int(req[key]))
        if req.get("device"):
            select_device(self.device_combo, str(req["device"]))
        if isinstance(req.get("spectral_norm"), bool):
            self.spectral_norm_check.setChecked(req["spectral_norm"])

    def save(self, store: QSettings) -> None:
        """Remember the form (but not the model name) for the next session."""
        for key, value in asdict(self.request()).items():
            if key != "extra":
                store.setValue(FORM_KEY + key, value)

    def restore(self, store: QSettings) -> None:
        """The form as `save` left it; the remembered dataset is checked again."""
        defaults = TrainRequest(dataset="", name="")
        saved = {}
        for key in TrainRequest.__dataclass_fields__:
            value = store.value(FORM_KEY + key)
            if value is None or key in NOT_REMEMBERED:
                continue
            default = getattr(defaults, key)
            try:
                if isinstance(default, bool):
                    saved[key] = str(value).lower() in ("true", "1")
                else:
                    saved[key] = type(default)(value) if not isinstance(default, str) else str(value)
            except (TypeError, ValueError):
                log.info("ignoring the remembered fine-tune setting %s=%r", key, value)
        if saved:
            self.apply_request(saved)
            if saved.get("dataset"):
                self.set_dataset(saved["dataset"])

    # ------------------------------------------------------------------------------------------- dataset
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a dataset folder", self.dataset_edit.text())
        if folder:
            self.set_dataset(folder)

    def set_dataset(self, folder: str | os.PathLike) -> DatasetCheck | None:
        """Choose the dataset folder and check it at once (headers only); the result shows under the field."""
        text = str(folder).strip()
        self.dataset_edit.setText(text)
        if not text:
            self.check = None
            self.dataset_label.setText("Choose a folder of multitracks.")
            self.dataset_label.setStyleSheet(INFO_STYLE)
        else:
            self._show_check(check_dataset(text, segment=self.segment_spin.value()))
        self.changed.emit()
        return self.check

    def _recheck(self) -> None:
        if self.check is not None:
            self.set_dataset(self.dataset_edit.text())

    def _show_check(self, check: DatasetCheck) -> None:
        self.check = check
        lines = []
        if check.tracks:
            lines.append(check.summary())
        shown = check.problems[:8]
        lines += [f"✗ {p}" for p in shown]
        if len(check.problems) > len(shown):
            lines.append(f"✗ … and {len(check.problems) - len(shown)} more problems")
        lines += [f"• {n}" for n in check.notes[:4]]
        self.dataset_label.setText("\n".join(lines))
        self.dataset_label.setStyleSheet(OK_STYLE if check.ok else ERROR_STYLE)

    @property
    def dataset_ok(self) -> bool:
        return self.check is not None and self.check.ok

    @property
    def name_ok(self) -> bool:
        return check_name(self.name_edit.text().strip()) is None

    def problem(self, req: TrainRequest) -> str | None:
        """Why `req` cannot start, in one sentence (the dataset is checked again: files may have changed)."""
        if not req.dataset:
            return "Choose a dataset folder first."
        check = check_dataset(req.dataset, segment=req.segment)
        self._show_check(check)
        if not check.ok:
            first = check.problems[0] if check.problems else "no usable tracks"
            return f"The dataset cannot be used: {first}"
        problem = check_name(req.name)
        if problem:
            return problem[0].upper() + problem[1:] + "."
        if req.gpus > 1 and req.batch_size % req.gpus:
            return f"The batch size {req.batch_size} must be divisible by the {req.gpus} GPUs."
        return None

    def set_locked(self, locked: bool) -> None:
        """While a training runs, what names and feeds the run cannot change (Steps can: Resume raises them)."""
        for widget in (self.dataset_edit, self.base_combo, self.name_edit, self.preset_combo):
            widget.setEnabled(not locked)
