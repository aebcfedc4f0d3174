"""The Fine-tune form: dataset (checked as soon as it is chosen), base model, losses and training settings.

It opens in a simple mode: the dataset, the base model (a bag's member to fine-tune in a second list; the size
of a model trained from scratch), the model's name and "train for about N minutes". Everything else (loss
weights, discriminator countermeasures, segment, batch, rate, device, a fixed step count) is under Advanced.
Every edit of a model field is checked in the background (`stemgui.models.check`, the same check `stemgui train`
runs); a configuration that cannot run shows its one line under the model and keeps Start disabled. Spin boxes
and lists take the mouse wheel only once they were clicked (or tabbed to): scrolling the dock changes nothing.

It turns the controls into a `TrainRequest`, shows a saved run's request, remembers itself in QSettings and
says in one sentence what stops a training from starting. It knows nothing about processes or curves.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PySide6.QtCore import (
    QCoreApplication,
    QEvent,
    QObject,
    QProcess,
    QProcessEnvironment,
    QSettings,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractSpinBox,
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
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from stemgui import SOURCES
from stemgui.errors import StemGUIError
from stemgui.gui.device_combo import fill_device_combo, select_device
from stemgui.gui.theme import ERROR_STYLE, INFO_STYLE, OK_STYLE
from stemgui.models.architectures import ARCHITECTURES
from stemgui.models.card import read_card
from stemgui.models.registry import list_models
from stemgui.train.finetune_runs import (
    MODEL_CHECK_SERVER,
    MODEL_FIELDS,
    PRESETS,
    TrainRequest,
    check_name,
    model_check_message,
)
from stemgui.train.grouping import TWO_STEM_SOURCES
from stemgui.train.surgery import split_member
from stemgui.train.validate_dataset import DatasetCheck, check_dataset

log = logging.getLogger(__name__)
FORM_KEY = "finetune/form/"  # QSettings group of the remembered form
NOT_REMEMBERED = ("name", "extra", "gpus")
MODEL_CHECK_DELAY_MS = 250  # the model check runs this long after the last edit of a model field
DEFAULT_MINUTES = 10.0  # a new name each time; extra is not a form field; GPUs vary
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


class WheelGuard(QObject):
    """The mouse wheel reaches a spin box or list only when it has focus (it was clicked or tabbed to); otherwise
    the event goes on to the scroll area, so scrolling the dock never changes a value."""

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Wheel and isinstance(obj, QWidget) and not obj.hasFocus():
            event.ignore()  # not accepted: Qt hands it to the parent (the scroll area scrolls)
            return True
        return False


def guard_wheel(widgets, guard: WheelGuard) -> None:
    """Click or Tab focus only (no wheel focus) and the wheel filter, on every spin box and list in `widgets`."""
    for widget in widgets:
        if isinstance(widget, (QAbstractSpinBox, QComboBox)):
            widget.setFocusPolicy(Qt.StrongFocus)
            widget.installEventFilter(guard)


def _folder_row(edit: QLineEdit, chosen, browse) -> QHBoxLayout:
    """A folder field and its Browse… button; `chosen(text)` runs when the typed text is confirmed."""
    row = QHBoxLayout()
    edit.editingFinished.connect(lambda: chosen(edit.text()))
    button = QPushButton("Browse…")
    button.clicked.connect(browse)
    row.addWidget(edit, 1)
    row.addWidget(button)
    return row


def member_labels(card: dict[str, Any]) -> list[str]:
    """One line per member of a bag card: its index, what it is best at (from the weights), its architecture."""
    args = dict(card.get("args") or {})
    members = list(args.get("members") or [])
    sources = list(card.get("sources") or [])
    weights = args.get("weights")
    labels = []
    for k, member in enumerate(members):
        member = member if isinstance(member, dict) else {}
        arch = str(member.get("architecture", "?"))
        title = ARCHITECTURES[arch].title if arch in ARCHITECTURES else arch
        what = "all sources"
        row = weights[k] if isinstance(weights, list) and k < len(weights) else None
        if isinstance(row, list) and len(row) == len(sources):
            best = [s for s, w in zip(sources, row) if isinstance(w, (int, float)) and w > 0]
            top = max(row) if row else 0
            if len(best) == 1:
                what = f"{best[0]} specialist"
            elif best and len(best) < len(sources):
                what = ", ".join(best)
            elif top > 0 and sum(1 for w in row if w == top) < len(row):
                what = "mostly " + ", ".join(s for s, w in zip(sources, row) if w == top)
        labels.append(f"{k}: {what} · {title}")
    return labels


@dataclass(frozen=True)
class ModelSpec:
    """What the model check builds: the run's generator as the trainer would (or why it cannot be said)."""

    architecture: str = ""
    sources: tuple[str, ...] = ()
    args: dict[str, Any] = field(default_factory=dict)
    segment: float = 4.0
    where: str = "[model]"
    error: str = ""  # the card cannot be read: no build needed

    @property
    def key(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "sources": list(self.sources), "args": dict(self.args),
                "segment": self.segment, "where": self.where, "error": self.error}


def run_model_check(spec: ModelSpec) -> str:
    """The one-line reason `spec` cannot run, or "" when its dry run passes, computed here (blocking: seconds
    for big models; the form uses `ModelCheckService` instead, and this when no check process can run)."""
    return model_check_message(spec.to_dict())


class ModelCheckService(QObject):
    """The model-check process (`finetune_runs.serve_model_checks`), one per application, shared by every form.

    Building and dry-running a model takes up to seconds of Python and torch; in a thread of the app it would
    hold the GIL and stall the event loop on a busy machine, so it runs in a child process that imports torch
    once. Requests are queued there in order; `done(key, message)` answers each. If the process cannot start
    or dies, the waiting checks are answered with one line and the next request starts a new process."""

    done = Signal(str, str)  # (spec key, message: "" = runs)
    _shared: "ModelCheckService | None" = None

    @classmethod
    def shared(cls) -> "ModelCheckService | None":
        app = QCoreApplication.instance()
        if app is None:
            return None
        if cls._shared is None:
            cls._shared = cls(app)
            cls._shared.destroyed.connect(lambda *_: setattr(cls, "_shared", None))
            atexit.register(cls._shared.shutdown)
        return cls._shared

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._process: QProcess | None = None
        self._buffer = b""
        self._waiting: dict[str, str] = {}  # key -> where (for a message when the process dies)

    def submit(self, spec: ModelSpec) -> bool:
        """Queue a check; False when no check process can run (then check in a thread)."""
        process = self._process
        if process is None or process.state() == QProcess.NotRunning:
            process = self._start()
            if process is None:
                return False
        self._waiting[spec.key] = spec.where
        line = json.dumps({"key": spec.key, "spec": spec.to_dict()}, default=str) + "\n"
        return process.write(line.encode("utf-8")) > 0

    def _start(self) -> QProcess | None:
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ForwardedErrorChannel)  # its warnings go to our stderr
        env = QProcessEnvironment.systemEnvironment()
        env.insert("OMP_NUM_THREADS", "1")
        env.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._ended)
        process.start(sys.executable, ["-c", MODEL_CHECK_SERVER])
        if not process.waitForStarted(5000):
            log.warning("the model-check process did not start (%s); checking in a thread", process.errorString())
            process.deleteLater()
            return None
        self._process, self._buffer = process, b""
        return process

    def _read(self) -> None:
        if self._process is None:
            return
        self._buffer += bytes(self._process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for raw in lines:
            try:
                reply = json.loads(raw)
                key, message = str(reply["key"]), str(reply["message"])
            except (ValueError, KeyError, TypeError):
                continue
            self._waiting.pop(key, None)
            self.done.emit(key, message)

    def _ended(self, code: int, status: QProcess.ExitStatus) -> None:
        """The process died (a crash or the OOM killer in a dry run): the waiting checks get one line each."""
        self._read()
        process, self._process = self._process, None
        if process is not None:
            process.deleteLater()
        waiting, self._waiting = self._waiting, {}
        how = "was killed" if status == QProcess.CrashExit else f"ended with exit code {code}"
        for key, where in waiting.items():
            self.done.emit(key, f"{where} the check of this configuration {how} (too large for this machine?)")

    def shutdown(self) -> None:
        """End the process now (it also ends by itself when its input closes)."""
        try:
            process, self._process = self._process, None
            if process is None or process.state() == QProcess.NotRunning:
                return
            process.finished.disconnect(self._ended)
            process.closeWriteChannel()
            if not process.waitForFinished(2000):
                process.kill()
                process.waitForFinished(2000)
        except RuntimeError:  # at exit, after Qt deleted the objects
            pass


class _CheckRelay(QObject):
    """Carries a finished check from its worker thread to the GUI thread (a queued signal)."""

    done = Signal(str, str)  # (spec key, message)


class FineTuneForm(QWidget):
    """Simple part (Dataset, Model, Training length) and the Advanced part (Losses, Training settings);
    `changed` fires when what Start depends on changes (the model check's result included)."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.check: DatasetCheck | None = None  # the last check of the chosen dataset folder
        self._model_results: dict[str, str] = {}  # spec key -> message ("" = runs)
        self._model_key = ""  # the spec shown now
        self._checking = ""  # the key a worker thread is checking
        self._service: ModelCheckService | None = None
        self._check_on_show = False
        self._relay = _CheckRelay(self)
        self._relay.done.connect(self._model_checked)
        self._model_timer = QTimer(self)
        self._model_timer.setSingleShot(True)
        self._model_timer.setInterval(MODEL_CHECK_DELAY_MS)
        self._model_timer.timeout.connect(self._check_model_now)
        self._wheel_guard = WheelGuard(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._dataset_box())
        layout.addWidget(self._model_box())
        layout.addWidget(self._length_box())
        self.advanced_button = QToolButton()
        self.advanced_button.setText("Advanced: losses, discriminator, segment, batch, device…")
        self.advanced_button.setCheckable(True)
        self.advanced_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.advanced_button.setArrowType(Qt.RightArrow)
        self.advanced_button.setAutoRaise(True)
        self.advanced_button.toggled.connect(self.set_advanced)
        layout.addWidget(self.advanced_button)
        self.advanced = QWidget()
        adv = QVBoxLayout(self.advanced)
        adv.setContentsMargins(0, 0, 0, 0)
        adv.addWidget(self._loss_box())
        adv.addWidget(self._training_box())
        layout.addWidget(self.advanced)
        self.advanced.hide()
        for combo in (self.base_combo, self.member_combo, self.preset_combo, self.device_combo):
            # long entries (model summaries, disabled devices with reasons) must not widen the form
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(14)
        guard_wheel(self.findChildren(QWidget), self._wheel_guard)
        self.refresh_models()
        self._preset_changed()
        self._length_changed()
        self._base_changed()

    # ---------------------------------------------------------------------------------------------- building
    def _dataset_box(self) -> QGroupBox:
        box = QGroupBox("Dataset")
        layout = QVBoxLayout(box)
        self.dataset_edit = QLineEdit()
        self.dataset_edit.setPlaceholderText("folder with one sub-folder per track (MUSDB18-HQ) or MIR-1K")
        layout.addLayout(_folder_row(self.dataset_edit, self.set_dataset, self._browse))
        self.dataset_label = QLabel("Choose a folder of multitracks: each track a folder with drums, bass, other "
                                    "and vocals as .wav or .flac.")
        self.dataset_label.setWordWrap(True)
        self.dataset_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.dataset_label)
        layout.addWidget(QLabel("Vocal + instrumental pairs (optional)"))
        self.pairs_edit = QLineEdit()
        self.pairs_edit.setPlaceholderText("folders with vocals and accompaniment files, or MIR-1K")
        self.pairs_edit.setToolTip(
            "Real singing for a model with a vocals stem: each track a folder with vocals.wav (an a cappella) and "
            "accompaniment.wav (its instrumental), or a MIR-1K folder. Every second step trains on these pairs: "
            "the model's vocals against the voice, the sum of its other stems against the instrumental.")
        layout.addLayout(_folder_row(self.pairs_edit, self.set_pairs, self._browse_pairs))
        self.pairs_check: DatasetCheck | None = None
        self.pairs_label = QLabel("")
        self.pairs_label.setWordWrap(True)
        self.pairs_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.pairs_label.hide()
        layout.addWidget(self.pairs_label)
        return box

    def _model_box(self) -> QGroupBox:
        box = QGroupBox("Model")
        form = self._model_form = QFormLayout(box)
        self.base_combo = QComboBox()
        self.base_combo.currentIndexChanged.connect(self._base_changed)
        form.addRow("Start from", self.base_combo)
        self.member_combo = QComboBox()
        self.member_combo.setToolTip("A bag is several models; fine-tuning trains one of them (its own weights "
                                     "and sources) into a new single model")
        self.member_combo.currentIndexChanged.connect(lambda _i: self._model_edited())
        self.member_label = QLabel("Member")
        form.addRow(self.member_label, self.member_combo)
        # a model trained from scratch: its architecture and size
        self.arch_combo = QComboBox()
        for name, entry in ARCHITECTURES.items():
            if name != "bag":  # a bag is several trained models, not one to train
                self.arch_combo.addItem(entry.title, name)
                self.arch_combo.setItemData(self.arch_combo.count() - 1, entry.paper, Qt.ToolTipRole)
        self.arch_combo.currentIndexChanged.connect(self._arch_changed)
        self.channels_spin = _int(48, 1, 1024)
        self.channels_spin.setToolTip("Channels of the first layer (the width grows with depth)")
        self.depth_spin = _int(6, 1, 12)
        self.depth_spin.setToolTip("Encoder / decoder layers")
        self.nfft_spin = _int(4096, 16, 65536)
        self.nfft_spin.setGroupSeparatorShown(False)
        self.nfft_spin.setToolTip("STFT size of the spectrogram branch (a power of two)")
        self.extra_edit = QLineEdit()
        self.extra_edit.setPlaceholderText("other arguments, e.g. dconv_comp = 8, t_layers = 2")
        self.extra_edit.setToolTip("Further constructor arguments of the architecture as key = value, separated "
                                   "by commas (TOML values); they override the fields above")
        self.extra_edit.textChanged.connect(lambda _text: self._model_edited())
        self.scratch_rows = []
        for label, widget in (("Architecture", self.arch_combo), ("Channels", self.channels_spin),
                              ("Depth", self.depth_spin), ("STFT size", self.nfft_spin),
                              ("Other settings", self.extra_edit)):
            name = QLabel(label)
            form.addRow(name, widget)
            self.scratch_rows.append((name, widget))
        for spin in (self.channels_spin, self.depth_spin, self.nfft_spin):
            spin.valueChanged.connect(lambda _v: self._model_edited())
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.model_label.setStyleSheet(ERROR_STYLE)
        form.addRow(self.model_label)
        form.setRowVisible(self.model_label, False)
        self.name_edit = QLineEdit(time.strftime("finetune-%Y%m%d-%H%M"))
        self.name_edit.textChanged.connect(lambda _text: self.changed.emit())
        form.addRow("New model name", self.name_edit)
        return box

    def _length_box(self) -> QGroupBox:
        box = QGroupBox("Training")
        form = QFormLayout(box)
        row = QHBoxLayout()
        self.minutes_spin = _double(DEFAULT_MINUTES, 1.0, 100_000.0, 0)
        self.minutes_spin.setToolTip("The trainer measures the speed of its first steps and sets the step count "
                                     "that fits in this time")
        self.steps_spin = _int(1000, 1, 10_000_000)
        self.unit_combo = QComboBox()
        self.unit_combo.addItem("minutes (about)", "minutes")
        self.unit_combo.addItem("steps (exactly)", "steps")
        self.unit_combo.currentIndexChanged.connect(self._length_changed)
        row.addWidget(self.minutes_spin, 1)
        row.addWidget(self.steps_spin, 1)
        row.addWidget(self.unit_combo)
        form.addRow("Train for", row)
        self.length_label = QLabel("")
        self.length_label.setWordWrap(True)
        self.length_label.setStyleSheet(INFO_STYLE)
        form.addRow(self.length_label)
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
        box = QGroupBox("Training settings")
        form = QFormLayout(box)
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
        self.segment_spin.valueChanged.connect(lambda _v: self._model_edited())
        return box

    def set_advanced(self, shown: bool) -> None:
        """Show or hide the Advanced part (losses, discriminator, segment, batch, rate, device)."""
        if self.advanced_button.isChecked() != shown:
            self.advanced_button.setChecked(shown)
            return
        self.advanced_button.setArrowType(Qt.DownArrow if shown else Qt.RightArrow)
        self.advanced.setVisible(shown)

    # ------------------------------------------------------------------------------------------- length
    @property
    def timed(self) -> bool:
        """"Train for about N minutes" (rather than a fixed number of steps)."""
        return self.unit_combo.currentData() == "minutes"

    def set_minutes(self, minutes: float) -> None:
        self.unit_combo.setCurrentIndex(self.unit_combo.findData("minutes"))
        self.minutes_spin.setValue(float(minutes))

    def set_steps(self, steps: int) -> None:
        self.unit_combo.setCurrentIndex(self.unit_combo.findData("steps"))
        self.steps_spin.setValue(int(steps))

    def _length_changed(self) -> None:
        timed = self.timed
        self.minutes_spin.setVisible(timed)
        self.steps_spin.setVisible(not timed)
        self.length_label.setText("Steps follow from the speed of the first steps." if timed
                                  else "Exactly this many optimizer steps.")

    # ------------------------------------------------------------------------------------------- models
    def refresh_models(self) -> None:
        """Re-read the registry into the base-model list (keeps the current choice when it still exists).

        Every installed model is offered, whatever its architecture (HDemucs, HTDemucs, Demucs v2, bags)."""
        current = self.base_combo.currentData()
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        try:
            entries = list_models()
        except StemGUIError as exc:
            log.warning("cannot list the installed models: %s", exc)
            entries = []
        for entry in entries:
            arch = str(entry.card.get("architecture", ""))
            kind = "bundled" if entry.bundled else "yours"
            if arch == "bag":
                kind += f", bag of {len((entry.card.get('args') or {}).get('members') or [])}"
            elif arch in ARCHITECTURES and arch != "hdemucs":
                kind += f", {arch}"
            self.base_combo.addItem(f"{entry.name} ({kind})", str(entry.path))
            self.base_combo.setItemData(self.base_combo.count() - 1, entry.summary, Qt.ToolTipRole)
        self.base_combo.addItem("Nothing: train from scratch", "")
        index = self.base_combo.findData(current) if current is not None else -1
        self.base_combo.setCurrentIndex(index if index >= 0 else 0)
        self.base_combo.blockSignals(False)
        self._base_changed()

    def _base_card(self) -> tuple[dict[str, Any] | None, str]:
        """The chosen base model's card (None from scratch) and why it cannot be read ("" when it can)."""
        path = self.base_combo.currentData()
        if not path:
            return None, ""
        try:
            return read_card(path), ""
        except StemGUIError as exc:
            return None, str(exc)

    def _base_changed(self) -> None:
        scratch = not self.base_combo.currentData()
        self.lr_spin.setValue(SCRATCH_LR if scratch else FINETUNE_LR)
        card, _error = self._base_card()
        labels = member_labels(card) if card is not None and card.get("architecture") == "bag" else []
        self.member_combo.blockSignals(True)
        self.member_combo.clear()
        for k, label in enumerate(labels):
            self.member_combo.addItem(label, k)
        self.member_combo.blockSignals(False)
        self._model_form.setRowVisible(self.member_combo, bool(labels))
        self._model_form.setRowVisible(self.arch_combo, scratch)
        self._model_form.setRowVisible(self.extra_edit, scratch)
        self._arch_changed(reset=False)
        self._model_edited()

    def _arch_changed(self, _index: int = 0, reset: bool = True) -> None:
        arch = self.arch_combo.currentData() or "hdemucs"
        fields = MODEL_FIELDS.get(arch, {})
        scratch = not self.base_combo.currentData()
        for key, spin in (("channels", self.channels_spin), ("depth", self.depth_spin), ("nfft", self.nfft_spin)):
            self._model_form.setRowVisible(spin, scratch and key in fields)
            if reset and key in fields:
                spin.blockSignals(True)
                spin.setValue(fields[key])
                spin.blockSignals(False)
        if reset:
            self._model_edited()

    def select_base_model(self, name_or_path: str) -> bool:
        """Choose the base model by registry name or weights path, `NAME:K` / `path:K` for member K of a bag;
        False when it is not listed."""
        spec, member = split_member(str(name_or_path))
        for i in range(self.base_combo.count()):
            data = self.base_combo.itemData(i)
            if data and (data == spec or Path(data).stem == spec):
                self.base_combo.setCurrentIndex(i)
                if member is not None:
                    index = self.member_combo.findData(member)
                    if index < 0:
                        return False
                    self.member_combo.setCurrentIndex(index)
                return True
        return False

    def set_architecture(self, name: str) -> None:
        """Train from scratch as `name` (its size fields get their defaults)."""
        self.base_combo.setCurrentIndex(self.base_combo.findData(""))
        index = self.arch_combo.findData(name)
        if index < 0:
            known = ", ".join(self.arch_combo.itemData(i) for i in range(self.arch_combo.count()))
            raise ValueError(f"unknown architecture {name!r} (use one of {known})")
        self.arch_combo.setCurrentIndex(index)

    def base_model_spec(self) -> str:
        """The `--base-model` value: the chosen model's path, `path:K` for member K of a bag, "" from scratch."""
        path = self.base_combo.currentData() or ""
        if path and self.member_combo.count():  # a bag: the member to fine-tune
            return f"{path}:{int(self.member_combo.currentData() or 0)}"
        return path

    # ------------------------------------------------------------------------------------------- model check
    def model_spec(self) -> ModelSpec:
        """The generator this form would train, as the trainer builds it (base model with the training segment,
        sources of the dataset)."""
        segment = float(self.segment_spin.value())
        sources = tuple(self.check.sources) if self.check is not None and self.check.ok and self.check.sources \
            else ()
        path = self.base_combo.currentData()
        if not path:
            req = self.request()
            arch, args = req.scratch_model()
            return ModelSpec(arch, sources or tuple(SOURCES), args, segment, "[model]")
        card, error = self._base_card()
        name = Path(path).stem
        if card is None:
            return ModelSpec(where=f"base model {name}:", error=error or f"base model {name}: cannot be read")
        arch, args, base_sources = str(card["architecture"]), dict(card.get("args") or {}), card.get("sources")
        if arch == "bag":
            k = int(self.member_combo.currentData() or 0)
            members = list(args.get("members") or [])
            if not 0 <= k < len(members) or not isinstance(members[k], dict):
                return ModelSpec(where=f"base model {name}:", error=f"base model {name}: the bag lists no member {k}")
            name = f"{name}:{k}"
            arch = str(members[k].get("architecture"))
            base_sources = members[k].get("sources") or base_sources
            args = dict(members[k].get("args") or {})
        args = {key: value for key, value in args.items() if key != "sources"}
        args["segment"] = segment
        return ModelSpec(arch, sources or tuple(base_sources or SOURCES), args, segment, f"base model {name}:")

    def _model_edited(self) -> None:
        """A model field changed: the check runs once the edits pause (debounced), off the GUI thread."""
        self._model_key = ""  # unknown until checked: Start waits
        self._model_timer.start()
        self.changed.emit()

    def _check_model_now(self) -> None:
        window = self.window()
        if not self.isVisible() and window is not self and window.isVisible():
            self._check_on_show = True  # a hidden dock of a shown window: no check process until it opens
            return
        try:
            spec = self.model_spec()
        except StemGUIError as exc:  # e.g. a model field the config refuses
            spec = ModelSpec(error=f"[model] {exc}")
        self._model_key = spec.key
        if spec.key in self._model_results:  # checked before: the answer at once
            self._show_model_result()
            self.changed.emit()
            return
        if not self._checking:
            self._start_worker(spec)
        self._show_model_result()

    def _start_worker(self, spec: ModelSpec) -> None:
        self._checking = spec.key
        service = ModelCheckService.shared()
        if service is not None:
            if self._service is not service:
                self._service = service
                service.done.connect(self._service_done)
            if service.submit(spec):
                return
        relay = self._relay  # no check process: a thread (its GIL use may stall the loop on a busy machine)

        def work() -> None:
            message = run_model_check(spec)
            try:
                relay.done.emit(spec.key, message)
            except RuntimeError:  # the form was deleted meanwhile
                pass

        # not a daemon: the interpreter waits for it at exit (a torch op killed mid-way aborts the process)
        threading.Thread(target=work, name="model-check", daemon=False).start()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._check_on_show:
            self._check_on_show = False
            self._model_timer.start()

    def _service_done(self, key: str, message: str) -> None:
        if key == self._checking:  # the service answers every form; this one waits for its own
            self._model_checked(key, message)
        elif key:
            self._model_results.setdefault(key, message)

    def _model_checked(self, key: str, message: str) -> None:
        self._model_results[key] = message
        self._checking = ""
        if self._model_key and self._model_key not in self._model_results:  # edited meanwhile: check the newest
            self._check_model_now()
            return
        self._show_model_result()
        self.changed.emit()

    def _show_model_result(self) -> None:
        message = self._model_results.get(self._model_key)
        if message is None:
            self.model_label.setStyleSheet(INFO_STYLE)
            self.model_label.setText("Checking that this model can run…")
        else:
            self.model_label.setStyleSheet(ERROR_STYLE)
            self.model_label.setText(message)
        self._model_form.setRowVisible(self.model_label, message != "")

    @property
    def model_checking(self) -> bool:
        """The model check of the current fields has not finished yet."""
        return self._model_key not in self._model_results

    @property
    def model_problem(self) -> str | None:
        """The check's one line when the model cannot run; None when it runs or is still being checked."""
        return self._model_results.get(self._model_key) or None

    @property
    def model_ok(self) -> bool:
        return not self.model_checking and self.model_problem is None

    def check_model_now(self) -> str | None:
        """Check the current fields here and now (blocking; cached) and return the problem, None when it runs."""
        self._model_timer.stop()
        try:
            spec = self.model_spec()
        except StemGUIError as exc:
            spec = ModelSpec(error=f"[model] {exc}")
        self._model_key = spec.key
        if spec.key not in self._model_results:
            self._model_results[spec.key] = run_model_check(spec)
        self._show_model_result()
        return self.model_problem

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
            base_model=self.base_model_spec(), architecture=self.arch_combo.currentData() or "hdemucs",
            channels=self.channels_spin.value(), depth=self.depth_spin.value(), nfft=self.nfft_spin.value(),
            model_extra=self.extra_edit.text().strip(), preset=self.preset_combo.currentData(),
            l1=self.w_l1.value(), stft=self.w_stft.value(), adversarial=self.w_adv.value(),
            feature_matching=self.w_fm.value(), steps=self.steps_spin.value(),
            minutes=self.minutes_spin.value() if self.timed else 0.0, segment=self.segment_spin.value(),
            batch_size=self.batch_spin.value(), lr=self.lr_spin.value(),
            device=self.device_combo.currentData() or "auto",
            gpus=self.gpu_spin.value(),  # its range is 1..1 unless there are several GPUs
            checkpoint_every=self.checkpoint_spin.value(), valid_every=self.valid_spin.value(),
            d_warmup_steps=self.d_warmup_spin.value(), d_every=self.d_every_spin.value(),
            d_channels=self.d_channels_spin.value(), spectral_norm=self.spectral_norm_check.isChecked(),
            two_stem_dataset=self.pairs_edit.text().strip(),
        )

    def apply_request(self, req: dict) -> None:
        """Show a saved run's settings (a TrainRequest as a dict) in the form."""
        if req.get("dataset"):
            self.dataset_edit.setText(str(req["dataset"]))
        if req.get("name"):
            self.name_edit.setText(str(req["name"]))
        if req.get("base_model"):
            self.select_base_model(str(req["base_model"]))
        elif "base_model" in req:  # from scratch: the architecture and its size
            if self.arch_combo.findData(req.get("architecture")) >= 0:
                self.set_architecture(str(req["architecture"]))
            else:
                self.base_combo.setCurrentIndex(self.base_combo.findData(""))
            for box, key in ((self.channels_spin, "channels"), (self.depth_spin, "depth"), (self.nfft_spin, "nfft")):
                if isinstance(req.get(key), int) and not isinstance(req.get(key), bool):
                    box.setValue(int(req[key]))
            self.extra_edit.setText(str(req.get("model_extra") or ""))
        minutes = req.get("minutes")
        if isinstance(minutes, (int, float)) and not isinstance(minutes, bool) and minutes > 0:
            self.set_minutes(float(minutes))
        elif isinstance(req.get("steps"), int) and not isinstance(req.get("steps"), bool):
            self.set_steps(int(req["steps"]))
        if req.get("preset") in PRESETS:
            self.set_preset(req["preset"])
        pairs = ((self.w_l1, "l1"), (self.w_stft, "stft"), (self.w_adv, "adversarial"),
                 (self.w_fm, "feature_matching"), (self.segment_spin, "segment"), (self.lr_spin, "lr"))
        for box, key in pairs:
            if isinstance(req.get(key), (int, float)):
                box.setValue(float(req[key]))
        for box, key in ((self.batch_spin, "batch_size"),
                         (self.checkpoint_spin, "checkpoint_every"), (self.valid_spin, "valid_every"),
                         (self.d_warmup_spin, "d_warmup_steps"), (self.d_every_spin, "d_every"),
                         (self.d_channels_spin, "d_channels")):
            if isinstance(req.get(key), int) and not isinstance(req.get(key), bool):
                box.setValue(int(req[key]))
        if req.get("device"):
            select_device(self.device_combo, str(req["device"]))
        if isinstance(req.get("spectral_norm"), bool):
            self.spectral_norm_check.setChecked(req["spectral_norm"])
        if "two_stem_dataset" in req:
            self.pairs_edit.setText(str(req.get("two_stem_dataset") or ""))

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
            if saved.get("two_stem_dataset"):
                self.set_pairs(saved["two_stem_dataset"])

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
        self._model_edited()  # the dataset's sources are the model's
        return self.check

    def _browse_pairs(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of vocal + instrumental pairs",
                                                  self.pairs_edit.text())
        if folder:
            self.set_pairs(folder)

    def set_pairs(self, folder: str | os.PathLike) -> DatasetCheck | None:
        """Choose the optional (vocals, accompaniment) folder and check it at once; empty removes it."""
        text = str(folder).strip()
        self.pairs_edit.setText(text)
        self.pairs_check = check_dataset(text, sources=list(TWO_STEM_SOURCES)) if text else None
        check = self.pairs_check
        self.pairs_label.setVisible(check is not None)
        if check is not None:
            lines = [check.summary()] if check.tracks else []
            lines += [f"✗ {p}" for p in check.problems[:4]]
            lines += [f"• {n}" for n in check.notes[:2]]
            self.pairs_label.setText("\n".join(lines))
            self.pairs_label.setStyleSheet(OK_STYLE if check.ok else ERROR_STYLE)
        self.changed.emit()
        return check

    def _pairs_problem(self, req: TrainRequest) -> str | None:
        """Why the pairs folder cannot be used (checked again: files may have changed), or None."""
        if not req.two_stem_dataset:
            return None
        check = self.set_pairs(req.two_stem_dataset)
        if check is None or not check.ok:
            first = check.problems[0] if check and check.problems else "no usable pairs"
            return f"The vocal + instrumental pairs cannot be used: {first}"
        sources = self.check.sources if self.check is not None else []
        if "vocals" not in sources or len(sources) < 2:
            return "Vocal + instrumental pairs need a model with a vocals stem and at least one other stem."
        return None

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
    def pairs_ok(self) -> bool:
        """No pairs folder, or one that passed its check."""
        return not self.pairs_edit.text().strip() or (self.pairs_check is not None and self.pairs_check.ok)

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
        problem = self._pairs_problem(req)
        if problem:
            return problem
        if req.gpus > 1 and req.batch_size % req.gpus:
            return f"The batch size {req.batch_size} must be divisible by the {req.gpus} GPUs."
        problem = self.check_model_now()  # cached: instant unless Start was pressed before the check ended
        if problem:
            return f"The model cannot run: {problem}"
        return None

    def set_locked(self, locked: bool) -> None:
        """While a training runs, what names and feeds the run cannot change (Steps can: Resume raises them)."""
        for widget in (self.dataset_edit, self.pairs_edit, self.base_combo, self.member_combo, self.name_edit, self.preset_combo,
                       self.arch_combo, self.channels_spin, self.depth_spin, self.nfft_spin, self.extra_edit,
                       self.unit_combo):
            widget.setEnabled(not locked)
