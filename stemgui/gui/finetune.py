"""The Fine-tune panel: train the separator on your own multitracks from the window and use the result.

Training runs in a child process (`python -m stemgui train ...` through QProcess, under torchrun for several
GPUs) so a crash or out-of-memory there never takes the window down. The panel only writes the command, reads
the trainer's JSON-lines log from a timer to draw the curves, and registers the model the trainer writes.

API for the main window (`install(window)` below does all of this; MainWindow._install_panels calls it):
    panel = FineTunePanel(parent, settings=None)   # settings: a QSettings (default: the app's own)
    panel.modelRegistered -> Path                   # a new model is in the registry: refresh the picker, select it
    panel.trainingStateChanged -> bool              # a training started (True) / ended (False)
    panel.is_training() -> bool
    panel.shutdown(wait_ms=30000)                   # call from closeEvent: stops the training with a checkpoint
    panel.refresh_models()                          # re-read the registry into the base-model list
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QProcess, QProcessEnvironment, QSettings, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox,
                               QHBoxLayout,
                               QLabel, QLineEdit, QProgressBar, QPushButton, QScrollArea, QSpinBox,
                               QSplitter, QVBoxLayout, QWidget)

from stemgui.errors import StemGUIError
from stemgui.gui.finetune_log import D_TERMS, G_TERMS, MEAN_KEY, LogTail, TrainingHistory, summarize_failure
from stemgui.gui.finetune_runs import (PRESETS, RunLock, RunPaths, RunState, TrainingBusyError, TrainRequest,
                                       active_training, busy_message, card_summary, check_name,
                                       export_latest_checkpoint, launch_command, pid_alive, resume_arguments)
from stemgui.train.validate_dataset import DatasetCheck, check_dataset

SETTINGS_PREFIX = "finetune/"
STDERR_KEEP = 64 * 1024
G_COLOURS = {"loss": "#e4e6eb", "l1": "#5aa9ff", "stft": "#ffb347", "adv": "#ff6b6b", "fm": "#7ee081"}
D_COLOURS = {"d_loss": "#ff6b6b"}
SOURCE_COLOURS = {"drums": "#ff6b6b", "bass": "#ffb347", "other": "#4fc3f7", "vocals": "#c792ea",
                  "accompaniment": "#7ee081", MEAN_KEY: "#e4e6eb"}
EXTRA_COLOURS = ("#7ee081", "#f78fb3", "#ffd866", "#78dce8")
ERROR_STYLE = "color: #ff8a80;"
OK_STYLE = "color: #9be39b;"
INFO_STYLE = "color: #c9cdd6;"


class _ExportThread(QThread):
    """Writes a model from the newest checkpoint off the GUI thread (loading a checkpoint takes a moment)."""

    done = Signal(object, str)  # (path or None, error message)

    def __init__(self, paths: RunPaths, parent=None) -> None:
        super().__init__(parent)
        self.paths = paths

    def run(self) -> None:
        try:
            self.done.emit(export_latest_checkpoint(self.paths), "")
        except StemGUIError as exc:
            self.done.emit(None, str(exc))
        except Exception as exc:  # a broken checkpoint must not take the window down
            self.done.emit(None, f"{self.paths.checkpoints}: cannot export the checkpoint ({exc})")


class FineTunePanel(QWidget):
    """Dataset, base model, losses and training settings on the left; live curves and status on the right."""

    modelRegistered = Signal(Path)
    trainingStateChanged = Signal(bool)
    POLL_MS = 400

    def __init__(self, parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("fineTunePanel")
        self._settings = settings if settings is not None else QSettings("StemGUI", "StemGUI")
        self._process: QProcess | None = None
        self._paths: RunPaths | None = None
        self._state: RunState | None = None
        self._lock: RunLock | None = None
        self._tail: LogTail | None = None
        self.history = TrainingHistory()
        self._stderr = bytearray()
        self._stop_requested = False
        self._external_pid: int | None = None
        self._export: _ExportThread | None = None
        self._check: DatasetCheck | None = None
        self._curves: dict[tuple[str, str], pg.PlotDataItem] = {}
        self.extra_train_args: list[str] = []  # further `stemgui train` options (advanced use, tests)
        self._timer = QTimer(self)
        self._timer.setInterval(self.POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._build()
        self.refresh_models()
        self._restore_form()
        last = str(self._settings.value(SETTINGS_PREFIX + "last_run", "") or "")
        if last:
            self.load_run(Path(last))
        self._update_buttons()

    # ---------------------------------------------------------------------------------------------------- UI
    def _build(self) -> None:
        form_host = QWidget()
        form = QVBoxLayout(form_host)
        form.setContentsMargins(6, 6, 6, 6)

        data_box = QGroupBox("Dataset")
        data_layout = QVBoxLayout(data_box)
        row = QHBoxLayout()
        self.dataset_edit = QLineEdit()
        self.dataset_edit.setPlaceholderText("folder with one sub-folder per track (MUSDB18-HQ) or MIR-1K")
        self.dataset_edit.editingFinished.connect(lambda: self.set_dataset(self.dataset_edit.text()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.dataset_edit, 1)
        row.addWidget(browse)
        data_layout.addLayout(row)
        self.dataset_label = QLabel("Choose a folder of multitracks: each track a folder with drums, bass, other "
                                    "and vocals as .wav or .flac.")
        self.dataset_label.setWordWrap(True)
        self.dataset_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        data_layout.addWidget(self.dataset_label)
        form.addWidget(data_box)

        model_box = QGroupBox("Model")
        model_form = QFormLayout(model_box)
        self.base_combo = QComboBox()
        self.base_combo.currentIndexChanged.connect(self._base_changed)
        model_form.addRow("Start from", self.base_combo)
        self.name_edit = QLineEdit(time.strftime("finetune-%Y%m%d-%H%M"))
        self.name_edit.textChanged.connect(lambda _text: self._update_buttons())
        model_form.addRow("New model name", self.name_edit)
        form.addWidget(model_box)

        loss_box = QGroupBox("Losses")
        loss_form = QFormLayout(loss_box)
        self.preset_combo = QComboBox()
        for key, label in PRESETS.items():
            self.preset_combo.addItem(label, key)
        self.preset_combo.setCurrentIndex(2)
        self.preset_combo.currentIndexChanged.connect(self._preset_changed)
        loss_form.addRow("Preset", self.preset_combo)
        self.w_l1 = self._double(1.0, 0.0, 100.0, 3)
        self.w_stft = self._double(0.01, 0.0, 100.0, 4)
        self.w_adv = self._double(0.01, 0.0, 100.0, 4)
        self.w_fm = self._double(0.02, 0.0, 100.0, 4)
        loss_form.addRow("L1 weight", self.w_l1)
        loss_form.addRow("MR-STFT weight", self.w_stft)
        loss_form.addRow("Adversarial weight", self.w_adv)
        loss_form.addRow("Feature-matching weight", self.w_fm)
        # countermeasures against an over-fitting discriminator (design.md): later start, fewer updates, lighter
        self.d_warmup_spin = self._int(-1, -1, 10_000_000)
        self.d_warmup_spin.setSpecialValueText("auto (a fifth of the steps)")
        self.d_warmup_spin.setToolTip("Generator-only steps before the discriminator starts")
        self.d_every_spin = self._int(1, 1, 100)
        self.d_every_spin.setToolTip("Update the discriminator every N steps (fewer updates = weaker D)")
        self.d_channels_spin = self._int(16, 2, 512)
        self.d_channels_spin.setToolTip("Discriminator width: smaller is a lighter D that over-fits less")
        self.spectral_norm_check = QCheckBox("spectral norm")
        self.spectral_norm_check.setToolTip("Spectral normalisation in D instead of weight norm")
        loss_form.addRow("D starts after", self.d_warmup_spin)
        loss_form.addRow("D update every", self.d_every_spin)
        loss_form.addRow("D width", self.d_channels_spin)
        loss_form.addRow("", self.spectral_norm_check)
        form.addWidget(loss_box)

        train_box = QGroupBox("Training")
        train_form = QFormLayout(train_box)
        self.steps_spin = self._int(1000, 1, 10_000_000)
        self.segment_spin = self._double(4.0, 0.1, 60.0, 1, suffix=" s")
        self.batch_spin = self._int(4, 1, 4096)
        self.lr_spin = self._double(5e-5, 1e-7, 1.0, 6)
        self.lr_spin.setSingleStep(1e-5)
        self.checkpoint_spin = self._int(0, 0, 1_000_000)
        self.checkpoint_spin.setSpecialValueText("auto")
        self.valid_spin = self._int(0, 0, 1_000_000)
        self.valid_spin.setSpecialValueText("auto")
        self.device_combo = QComboBox()
        self.gpu_spin = self._int(1, 1, 1)
        train_form.addRow("Steps", self.steps_spin)
        train_form.addRow("Segment length", self.segment_spin)
        train_form.addRow("Batch size", self.batch_spin)
        train_form.addRow("Learning rate", self.lr_spin)
        train_form.addRow("Checkpoint every", self.checkpoint_spin)
        train_form.addRow("Validate every", self.valid_spin)
        train_form.addRow("Device", self.device_combo)
        self.gpu_label = QLabel("GPUs")
        train_form.addRow(self.gpu_label, self.gpu_spin)
        self.segment_spin.valueChanged.connect(lambda _v: self._revalidate())
        form.addWidget(train_box)
        self._fill_devices()

        buttons = QGridLayout()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.use_button = QPushButton("Use latest checkpoint")
        self.start_button.setToolTip("Start a new training run in a separate process")
        self.stop_button.setToolTip("Finish the current step, write a checkpoint and the model, then stop")
        self.resume_button.setToolTip("Continue the last run from its newest checkpoint, up to the Steps above")
        self.use_button.setToolTip("Register the model as it is now, so it can separate songs")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.use_button.clicked.connect(self.use_latest_checkpoint)
        for i, b in enumerate((self.start_button, self.stop_button, self.resume_button, self.use_button)):
            buttons.addWidget(b, i // 2, i % 2)
        form.addLayout(buttons)
        form.addStretch(1)

        for combo in (self.base_combo, self.preset_combo, self.device_combo):
            # long entries (model summaries, disabled devices with reasons) must not widen the form
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(14)
        scroll = QScrollArea()
        scroll.setWidget(form_host)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(380)

        monitor = QWidget()
        mon = QVBoxLayout(monitor)
        mon.setContentsMargins(6, 6, 6, 6)
        self.status_label = QLabel("No training yet.")
        self.status_label.setStyleSheet("font-weight: 600;")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.card_label = QLabel("")
        self.card_label.setWordWrap(True)
        self.card_label.setStyleSheet(INFO_STYLE)
        self.message_label.hide()
        self.card_label.hide()
        mon.addWidget(self.status_label)
        mon.addWidget(self.progress)
        mon.addWidget(self.message_label)
        mon.addWidget(self.card_label)

        self.plots = pg.GraphicsLayoutWidget()
        self.plots.setMinimumHeight(300)
        self.g_plot = self._plot("Generator losses (log scale)", log_y=True)
        self.d_plot = self._plot("Discriminator loss")
        self.sdr_plot = self._plot("Validation SDR per source (dB)")
        self.plots.addItem(self.g_plot, row=0, col=0, colspan=2)
        self.plots.addItem(self.d_plot, row=1, col=0)
        self.plots.addItem(self.sdr_plot, row=1, col=1)
        mon.addWidget(self.plots, 1)

        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(monitor)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([400, 880])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self._preset_changed()

    @staticmethod
    def _double(value: float, low: float, high: float, decimals: int, suffix: str = "") -> QDoubleSpinBox:
        box = QDoubleSpinBox()
        box.setDecimals(decimals)
        box.setRange(low, high)
        box.setValue(value)
        box.setSingleStep(10 ** -min(decimals, 2) if decimals else 1)
        if suffix:
            box.setSuffix(suffix)
        return box

    @staticmethod
    def _int(value: int, low: int, high: int) -> QSpinBox:
        box = QSpinBox()
        box.setRange(low, high)
        box.setValue(value)
        box.setGroupSeparatorShown(True)
        return box

    def _plot(self, title: str, log_y: bool = False) -> pg.PlotItem:
        plot = pg.PlotItem(title=title)
        plot.showGrid(x=True, y=True, alpha=0.25)
        plot.setLabel("bottom", "step")
        plot.setDownsampling(auto=True, mode="peak")  # long runs: tens of thousands of points stay fluid
        plot.setClipToView(True)
        plot.addLegend(offset=(-8, 8), labelTextSize="8pt", brush=pg.mkBrush(31, 34, 42, 215),
                       pen=pg.mkPen("#3a3f4b"))
        if log_y:
            plot.setLogMode(False, True)
        return plot

    def _fill_devices(self) -> None:
        """Auto, each CUDA GPU, MPS and CPU (unusable ones disabled with the reason); a GPU count when several."""
        from stemgui.gui.devices import device_choices

        self.device_combo.clear()
        model = self.device_combo.model()
        for choice in device_choices():
            self.device_combo.addItem(choice.label if choice.enabled else f"{choice.label} — {choice.reason}",
                                      choice.id)
            if not choice.enabled and isinstance(model, QStandardItemModel):
                item = model.item(self.device_combo.count() - 1)
                item.setEnabled(False)
                item.setToolTip(choice.reason)
        try:
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception:  # a broken CUDA install must not break the panel
            gpus = 0
        self.gpu_spin.setRange(1, max(1, gpus))
        several = gpus > 1
        self.gpu_label.setVisible(several)
        self.gpu_spin.setVisible(several)
        self.gpu_spin.setToolTip("Data-parallel training over this many GPUs (torchrun); the batch is split "
                                 "between them")

    # ------------------------------------------------------------------------------------------- form state
    def refresh_models(self) -> None:
        """Re-read the registry into the base-model list (keeps the current choice when it still exists)."""
        from stemgui.models.registry import list_models

        current = self.base_combo.currentData()
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        try:
            entries = list_models()
        except StemGUIError:
            entries = []
        for entry in entries:
            self.base_combo.addItem(f"{entry.name} ({'bundled' if entry.bundled else 'yours'})", str(entry.path))
            self.base_combo.setItemData(self.base_combo.count() - 1, entry.summary, Qt.ToolTipRole)
        self.base_combo.addItem("Nothing: train from scratch (default size)", "")
        index = self.base_combo.findData(current) if current is not None else -1
        self.base_combo.setCurrentIndex(index if index >= 0 else 0)
        self.base_combo.blockSignals(False)

    def _base_changed(self) -> None:
        # fine-tuning wants a small LR, training from scratch the trainer's default
        self.lr_spin.setValue(5e-5 if self.base_combo.currentData() else 3e-4)

    def _preset_changed(self) -> None:
        preset = self.preset_combo.currentData()
        self.w_stft.setEnabled(preset != "l1")
        self.w_adv.setEnabled(preset == "l1+stft+gan")
        for box in (self.w_adv, self.w_fm, self.d_warmup_spin, self.d_every_spin, self.d_channels_spin,
                    self.spectral_norm_check):
            box.setEnabled(preset == "l1+stft+gan")

    def select_base_model(self, name_or_path: str) -> bool:
        """Choose the base model by registry name or weights path; False when it is not listed."""
        for i in range(self.base_combo.count()):
            data = self.base_combo.itemData(i)
            if data and (data == str(name_or_path) or Path(data).stem == str(name_or_path)):
                self.base_combo.setCurrentIndex(i)
                return True
        return False

    def set_preset(self, preset: str) -> None:
        index = self.preset_combo.findData(preset)
        if index < 0:
            raise ValueError(f"unknown preset {preset!r} (use one of {', '.join(PRESETS)})")
        self.preset_combo.setCurrentIndex(index)

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
            extra=list(self.extra_train_args),
        )

    def _apply_request(self, req: dict) -> None:
        """Show a saved run's settings in the form."""
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
            index = self.device_combo.findData(str(req["device"]))
            if index >= 0:
                self.device_combo.setCurrentIndex(index)
        if isinstance(req.get("spectral_norm"), bool):
            self.spectral_norm_check.setChecked(req["spectral_norm"])

    def _save_form(self) -> None:
        req = asdict(self.request())
        req.pop("extra", None)
        for key, value in req.items():
            self._settings.setValue(SETTINGS_PREFIX + "form/" + key, value)

    def _restore_form(self) -> None:
        saved = {}
        for key in TrainRequest.__dataclass_fields__:
            value = self._settings.value(SETTINGS_PREFIX + "form/" + key)
            if value is None or key in ("name", "extra", "gpus"):
                continue
            default = getattr(TrainRequest(dataset="", name=""), key)
            try:
                if isinstance(default, bool):
                    saved[key] = str(value).lower() in ("true", "1")
                else:
                    saved[key] = type(default)(value) if not isinstance(default, str) else str(value)
            except (TypeError, ValueError):
                continue
        if saved:
            self._apply_request(saved)
            if saved.get("dataset"):
                self.set_dataset(saved["dataset"])

    # ----------------------------------------------------------------------------------------------- dataset
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a dataset folder", self.dataset_edit.text())
        if folder:
            self.set_dataset(folder)

    def set_dataset(self, folder: str | os.PathLike) -> DatasetCheck | None:
        """Choose the dataset folder and check it at once (headers only); the result shows under the field."""
        text = str(folder).strip()
        self.dataset_edit.setText(text)
        if not text:
            self._check = None
            self.dataset_label.setText("Choose a folder of multitracks.")
            self.dataset_label.setStyleSheet(INFO_STYLE)
            self._update_buttons()
            return None
        self._check = check_dataset(text, segment=self.segment_spin.value())
        self._show_check(self._check)
        self._update_buttons()
        return self._check

    def _revalidate(self) -> None:
        if self._check is not None:
            self.set_dataset(self.dataset_edit.text())

    @property
    def dataset_check(self) -> DatasetCheck | None:
        return self._check

    def _show_check(self, check: DatasetCheck) -> None:
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

    # ----------------------------------------------------------------------------------------------- actions
    def is_training(self) -> bool:
        """A training of this window (or one it watches) is running."""
        running = self._process is not None and self._process.state() != QProcess.NotRunning
        return running or self._external_pid is not None

    @property
    def run_paths(self) -> RunPaths | None:
        return self._paths

    @property
    def process_id(self) -> int | None:
        if self._process is not None and self._process.state() != QProcess.NotRunning:
            return int(self._process.processId())
        return self._external_pid

    def _form_problem(self, req: TrainRequest) -> str | None:
        if not req.dataset:
            return "Choose a dataset folder first."
        check = check_dataset(req.dataset, segment=req.segment)  # again: files may have changed since
        self._check = check
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

    def start(self) -> bool:
        """Start a new training run as the form says; False (with a message) when it cannot start."""
        if self.is_training():
            self._error("A training is already running; only one training runs at a time — stop it first.")
            return False
        req = self.request()
        problem = self._form_problem(req)
        if problem:
            self._error(problem)
            return False
        paths = RunPaths.for_name(req.name)
        old = RunState.load(paths)
        if paths.has_checkpoint():
            self._error(f"A run named '{req.name}' already exists in {paths.root}; press Resume to continue it or "
                        "choose another name for the new model.")
            if old is not None:
                self._attach_run(paths, old)
            return False
        busy = active_training()
        if busy is not None:
            self._error(busy_message(busy[0].name, busy[1]))
            return False
        self._save_form()
        try:
            args = req.arguments(paths)
        except ValueError as exc:
            self._error(str(exc))
            return False
        paths.log.unlink(missing_ok=True)  # the log of an earlier attempt that never reached a checkpoint
        state = RunState(req.name, program="", arguments=args, gpus=req.gpus, request=asdict(req))
        self.history = TrainingHistory()
        self._tail = None
        self._clear_curves()
        self._show_card("")
        return self._launch(paths, state, args, resume=False)

    def resume(self) -> bool:
        """Continue the current (or last) run from its newest checkpoint; steps may be raised in the form."""
        if self.is_training():
            self._error("A training is already running; only one training runs at a time — stop it first.")
            return False
        paths = self._paths
        state = RunState.load(paths) if paths is not None else None
        if paths is None or state is None:
            self._error("There is no earlier run to resume; press Start for a new one.")
            return False
        busy = active_training()
        if busy is not None:
            self._error(busy_message(busy[0].name, busy[1]))
            return False
        steps = self.steps_spin.value()
        args = resume_arguments(state.arguments, steps=steps)
        state.arguments = [a for a in args if a != "--resume"]
        state.request["steps"] = steps
        return self._launch(paths, state, args, resume=True)

    def _launch(self, paths: RunPaths, state: RunState, args: list[str], resume: bool) -> bool:
        lock = RunLock(paths.lock)
        try:
            lock.acquire(state.name)
        except TrainingBusyError as exc:
            self._error(str(exc))
            return False
        program, pargs = launch_command(args, state.gpus)
        state.program = program
        state.status = "running"
        state.message = ""
        state.save(paths)
        self._settings.setValue(SETTINGS_PREFIX + "last_run", str(paths.root))
        if self._tail is None or self._tail.path != paths.log:
            self._tail = LogTail(paths.log)
        self._paths, self._state, self._lock = paths, state, lock
        self._stderr.clear()
        self._stop_requested = False

        process = QProcess(self)
        env = QProcessEnvironment()
        for key, value in os.environ.items():
            env.insert(key, value)
        env.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(env)
        process.setWorkingDirectory(str(paths.root))
        process.readyReadStandardError.connect(self._read_output)
        process.readyReadStandardOutput.connect(self._read_output)
        process.started.connect(self._started)
        process.errorOccurred.connect(self._process_error)
        process.finished.connect(self._finished)
        self._process = process
        verb = "Resuming" if resume else "Starting"
        self._info(f"{verb} '{state.name}' in a separate process…")
        self.stop_button.setText("Stop")
        process.start(program, pargs)
        self._timer.start()
        self._update_buttons()
        self.trainingStateChanged.emit(True)
        return True

    def stop(self) -> None:
        """Ask the trainer to stop (SIGTERM: it finishes the step, writes a checkpoint and the model).
        A second press while it is stopping kills it at once (the previous checkpoint stays)."""
        if self._process is not None and self._process.state() != QProcess.NotRunning:
            if self._stop_requested:
                self._info("Force-stopping: the training is killed; Resume continues from the last checkpoint.")
                self._process.kill()
                return
            self._stop_requested = True
            self._info("Stopping: the trainer finishes its step and writes a checkpoint and the model…")
            self.stop_button.setText("Force stop")
            self._process.terminate()
        elif self._external_pid is not None:
            self._stop_requested = True
            try:
                os.kill(self._external_pid, signal.SIGTERM)
                self._info("Asked the training in the other process to stop; it writes a checkpoint first…")
            except OSError as exc:
                self._error(f"Cannot stop process {self._external_pid}: {exc}")

    def use_latest_checkpoint(self) -> None:
        """Register the run's model as it is now: the trainer's own file when current, else from the checkpoint."""
        paths = self._paths
        if paths is None:
            self._error("There is no run yet; start a training first.")
            return
        if self._export is not None:
            return
        if not self.is_training() and paths.model.is_file() and self._model_is_current(paths.model):
            self._register(paths.model)
            return
        if not paths.has_checkpoint():
            self._error("No checkpoint yet: the trainer writes one every few steps (see 'Checkpoint every').")
            return
        self._info("Writing the model from the newest checkpoint…")
        self._export = _ExportThread(paths, self)
        self._export.done.connect(self._export_done)
        self._export.start()
        self._update_buttons()

    def _model_is_current(self, model: Path) -> bool:
        from stemgui.models.card import read_card

        try:
            steps = read_card(model).get("training", {}).get("steps")
        except StemGUIError:
            return False
        return isinstance(steps, int) and steps >= self.history.step

    def _export_done(self, path, error: str) -> None:
        thread, self._export = self._export, None
        if thread is not None:
            thread.wait()
            thread.deleteLater()
        if error:
            self._error(error)
        elif path is not None:
            self._register(Path(path))
        self._update_buttons()

    def shutdown(self, wait_ms: int = 30000) -> None:
        """Stop a running training with a checkpoint before the window closes (killed after `wait_ms`)."""
        self._timer.stop()
        if self._export is not None:
            self._export.wait()
        process = self._process
        if process is None or process.state() == QProcess.NotRunning:
            return
        self._stop_requested = True
        process.terminate()
        if not process.waitForFinished(wait_ms):
            process.kill()
            process.waitForFinished(5000)

    # -------------------------------------------------------------------------------------------- process
    def _started(self) -> None:
        if self._process is not None and self._lock is not None:
            self._lock.set_child(int(self._process.processId()))

    def _read_output(self) -> None:
        if self._process is None:
            return
        self._stderr += bytes(self._process.readAllStandardError()) + bytes(self._process.readAllStandardOutput())
        if len(self._stderr) > STDERR_KEEP:
            del self._stderr[:-STDERR_KEEP]

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error != QProcess.FailedToStart or self._process is None:
            return  # crashes arrive in _finished as well
        message = f"Could not start the training process ({self._process.errorString()})."
        self._end_run("failed", message, error=True)

    def _finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._read_output()
        self._poll()
        killed = exit_status == QProcess.CrashExit
        name = self._state.name if self._state else "training"
        step = self.history.step
        ckpt = self.history.checkpoint_step
        if not killed and exit_code == 0 and self.history.status == "finished":
            self._end_run("finished", f"Training '{name}' finished after {step:,} steps.")
            if self._paths is not None and self._paths.model.is_file():
                self._register(self._paths.model)
            return
        if self.history.status == "stopped" and not killed:
            self._end_run("stopped", f"Stopped at step {step:,}: checkpoint saved. Resume continues the run; "
                                     "'Use latest checkpoint' registers the model as it is now.")
            return
        resume_hint = (f" Resume continues from the checkpoint at step {ckpt:,}." if ckpt
                       else " No checkpoint was written yet, so Resume starts it again.")
        if killed and self._stop_requested:
            self._end_run("stopped", f"Training stopped at step {step:,} without a new checkpoint.{resume_hint}")
            return
        text = bytes(self._stderr).decode("utf-8", "replace")
        self._end_run("failed", summarize_failure(text, exit_code, killed) + resume_hint, error=True)

    def _end_run(self, status: str, message: str, error: bool = False) -> None:
        self._timer.stop()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if self._state is not None and self._paths is not None:
            self._state.status = status
            self._state.message = message
            self._state.save(self._paths)
        process, self._process = self._process, None
        if process is not None:
            process.deleteLater()
        self._stop_requested = False
        self._external_pid = None
        self.stop_button.setText("Stop")
        (self._error if error else self._info)(message)
        self._refresh_status()
        self._update_buttons()
        self.trainingStateChanged.emit(False)

    def _register(self, model: Path) -> Path | None:
        from stemgui.models.card import read_card
        from stemgui.models.registry import register_user_model

        name = self._paths.name if self._paths is not None else None
        try:
            dest = register_user_model(model, name)
            card = read_card(dest)
        except (StemGUIError, OSError) as exc:
            self._error(f"The model could not be registered: {exc}")
            return None
        steps = (card.get("training") or {}).get("steps")
        if self._state is not None and self._paths is not None:
            self._state.registered = str(dest)
            self._state.registered_step = int(steps) if isinstance(steps, int) else -1
            self._state.save(self._paths)
        self._show_card(f"Registered model: {card_summary(card)}")
        self._info((self.message_label.text() + " " if self.message_label.text() else "")
                   + f"Model '{dest.stem}' is in the model list.")
        self.refresh_models()
        self.modelRegistered.emit(dest)
        return dest

    # -------------------------------------------------------------------------------------------- earlier runs
    def load_run(self, root: Path) -> bool:
        """Show an earlier run (curves, settings, state); resumable when it was stopped or interrupted, and
        watched live when a training of it still runs in another process (e.g. the app was killed)."""
        root = Path(root)
        state = RunState.load(RunPaths(root, root.name))
        if state is None and not (root / "log.jsonl").is_file():
            return False
        paths = RunPaths(root, state.name if state else root.name)
        self._attach_run(paths, state)
        return True

    def _attach_run(self, paths: RunPaths, state: RunState | None) -> None:
        self._paths, self._state = paths, state
        self._tail = LogTail(paths.log)
        self.history = TrainingHistory()
        self._clear_curves()
        self.history.extend(self._tail.read())
        if state is not None:
            self._apply_request(state.request)
        holder = RunLock(paths.lock).holder()
        name = paths.name
        if holder is not None and holder.get("app_pid") != os.getpid():
            self._external_pid = int(holder.get("child_pid") or holder.get("app_pid"))
            self._info(f"'{name}' is training in another process (pid {self._external_pid}); its curves are "
                       "shown live and Stop asks it to stop.")
            self._timer.start()
            self.trainingStateChanged.emit(True)
        elif state is not None:
            self._describe_idle_run(paths, state)
        self._refresh_status()
        self._update_buttons()

    def _describe_idle_run(self, paths: RunPaths, state: RunState) -> None:
        name, step, ckpt = paths.name, self.history.step, self.history.checkpoint_step
        if self.history.status == "finished" and paths.model.is_file():
            if state.registered_step != step:
                self._info(f"'{name}' finished after {step:,} steps.")
                self._register(paths.model)
            else:
                self._info(f"'{name}' finished after {step:,} steps; its model is in the model list.")
                self._show_card(f"Registered model: {self._card_text(Path(state.registered))}")
        elif state.status in ("running", "stopped", "failed") or self.history.status in ("running", "stopped"):
            what = "was interrupted" if state.status == "running" else state.status
            where = f" (checkpoint at step {ckpt:,})" if ckpt else ""
            if state.status == "failed" and state.message:
                self._error(state.message)
            else:
                self._info(f"'{name}' {what} at step {step:,}{where}; Resume continues it.")
            if state.registered:
                self._show_card(f"Registered model: {self._card_text(Path(state.registered))}")

    def _show_card(self, text: str) -> None:
        self.card_label.setText(text)
        self.card_label.setVisible(bool(text))

    @staticmethod
    def _card_text(model: Path) -> str:
        from stemgui.models.card import read_card

        try:
            return card_summary(read_card(model))
        except StemGUIError:
            return model.stem

    # -------------------------------------------------------------------------------------------- polling
    def _poll(self) -> None:
        if self._tail is not None:
            records = self._tail.read()
            if records:
                self.history.extend(records)
                self._refresh_status()
        if self._external_pid is not None and not pid_alive(self._external_pid):
            self._external_ended()

    def _external_ended(self) -> None:
        if self._tail is not None:
            self.history.extend(self._tail.read())
        name = self._paths.name if self._paths else "training"
        self._external_pid = None
        if self.history.status == "finished":
            self._end_run("finished", f"Training '{name}' finished after {self.history.step:,} steps.")
            if self._paths is not None and self._paths.model.is_file():
                self._register(self._paths.model)
        elif self.history.status == "stopped":
            self._end_run("stopped", f"'{name}' stopped at step {self.history.step:,}; Resume continues it.")
        else:
            ckpt = self.history.checkpoint_step
            self._end_run("failed", f"The training process of '{name}' ended without finishing"
                          + (f"; Resume continues from the checkpoint at step {ckpt:,}." if ckpt else "."),
                          error=True)

    def _refresh_status(self) -> None:
        h = self.history
        if h.records == 0 and not self.is_training():
            return
        self.status_label.setText(h.status_line() if h.records else "Starting (loading PyTorch and the data)…")
        if h.total_steps:
            self.progress.setRange(0, h.total_steps)
            self.progress.setValue(min(h.step, h.total_steps))
        self._update_curves()
        self._update_buttons()

    def _clear_curves(self) -> None:
        for plot in (self.g_plot, self.d_plot, self.sdr_plot):
            for item in list(plot.listDataItems()):
                plot.removeItem(item)
            if plot.legend is not None:
                plot.legend.clear()
        self._curves.clear()

    def _curve(self, plot: pg.PlotItem, group: str, key: str, label: str, colour: str) -> pg.PlotDataItem:
        curve = self._curves.get((group, key))
        if curve is None:
            width = 2.5 if key in ("loss", MEAN_KEY) else 1.6
            style = Qt.DashLine if key == MEAN_KEY else Qt.SolidLine
            symbol = "o" if group == "valid" else None
            curve = plot.plot([], [], name=label, pen=pg.mkPen(colour, width=width, style=style),
                              symbol=symbol, symbolSize=5, symbolBrush=colour, symbolPen=None)
            self._curves[(group, key)] = curve
        return curve

    def _update_curves(self) -> None:
        h = self.history
        for key, series in h.generator.items():
            if series:
                values = [max(v, 1e-8) for v in series.values]  # log axis
                self._curve(self.g_plot, "g", key, G_TERMS[key], G_COLOURS[key]).setData(series.steps, values)
        for key, series in h.discriminator.items():
            if series:
                self._curve(self.d_plot, "d", key, D_TERMS[key], D_COLOURS[key]).setData(series.steps, series.values)
        for i, (key, series) in enumerate(h.validation.items()):
            if series:
                colour = SOURCE_COLOURS.get(key, EXTRA_COLOURS[i % len(EXTRA_COLOURS)])
                self._curve(self.sdr_plot, "valid", key, key, colour).setData(series.steps, series.values)

    # -------------------------------------------------------------------------------------------- messages
    def _error(self, text: str) -> None:
        self.message_label.setStyleSheet(ERROR_STYLE)
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))

    def _info(self, text: str) -> None:
        self.message_label.setStyleSheet(INFO_STYLE)
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))

    @property
    def message(self) -> str:
        """The message line under the status (errors included), as shown."""
        return self.message_label.text()

    def _update_buttons(self) -> None:
        training = self.is_training()
        dataset_ok = self._check is not None and self._check.ok
        name_ok = check_name(self.name_edit.text().strip()) is None
        self.start_button.setEnabled(not training and dataset_ok and name_ok)
        reason = ("" if not training else "a training is running") or \
                 ("" if dataset_ok else "choose a usable dataset folder") or ("" if name_ok else "enter a model name")
        self.start_button.setToolTip("Start a new training run in a separate process" if not reason
                                     else f"Cannot start: {reason}")
        self.stop_button.setEnabled(training)
        can_resume = (not training and self._paths is not None and self._paths.state.is_file()
                      and self.history.status != "finished")
        self.resume_button.setEnabled(can_resume or (not training and self._paths is not None
                                                    and self._paths.has_checkpoint()))
        self.use_button.setEnabled(self._export is None and self._paths is not None
                                   and (self._paths.has_checkpoint() or self._paths.model.is_file()))
        for box in (self.dataset_edit, self.base_combo, self.name_edit, self.preset_combo):
            box.setEnabled(not training)


# ------------------------------------------------------------------------------------------------ main window
class _StopTrainingOnClose(QObject):
    """Stops the panel's training (with a checkpoint) when the main window closes, so Resume can continue."""

    def __init__(self, panel: FineTunePanel) -> None:
        super().__init__(panel)
        self.panel = panel

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.Close:
            self.panel.shutdown()
        return False


def install(window) -> FineTunePanel:
    """Add the panel to the main window as a bottom dock listed under View ("Fine-tune"), hidden until opened
    (shown at once when a training of an earlier session is still running). A registered model is put in the
    window's model picker and selected; closing the window stops the training with a checkpoint."""
    store = getattr(getattr(window, "settings", None), "store", None)
    panel = FineTunePanel(window, settings=store if isinstance(store, QSettings) else None)
    dock = window.add_panel(panel, "Fine-tune", Qt.BottomDockWidgetArea)
    dock.setObjectName("fineTuneDock")
    if not panel.is_training():
        dock.hide()
    window.finetune_panel = panel
    window.finetune_dock = dock

    def on_registered(path: Path) -> None:
        fill = getattr(window, "_fill_models", None)
        if callable(fill):
            fill()
        combo = getattr(window, "model_combo", None)
        if combo is not None:
            index = combo.findData(str(path))
            if index >= 0:
                combo.setCurrentIndex(index)
        window.statusBar().showMessage(f"Model '{path.stem}' is ready and selected: separate a song with it.",
                                       10000)

    panel.modelRegistered.connect(on_registered)
    window.installEventFilter(_StopTrainingOnClose(panel))
    return panel
