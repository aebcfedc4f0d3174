"""The Fine-tune panel: train the separator on your own multitracks from the window and use the result.

The panel puts together the form (`finetune_form`), the training process (`finetune_process`) and the curves
(`finetune_plots`), and owns what a run is between sessions: its folder and `RunState`, resuming it, and
registering the model the trainer writes so the window can separate with it.

API for the main window (it docks the panel under View ▸ Fine-tune):
    panel = FineTunePanel(parent, settings=None)   # settings: a QSettings (default: the app's own)
    panel.modelRegistered -> Path                   # a new model is in the registry: refresh the picker, select it
    panel.trainingStateChanged -> bool              # a training started (True) / ended (False)
    panel.is_training() -> bool
    panel.shutdown(wait_ms=30000)                   # call when the window closes: stops the training with a checkpoint
    panel.refresh_models()                          # re-read the registry into the base-model list
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, replace
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QThread, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from stemgui.errors import StemGUIError
from stemgui.gui.finetune_form import FineTuneForm
from stemgui.gui.finetune_plots import TrainingPlots
from stemgui.gui.finetune_process import RunEnd, TrainingProcess
from stemgui.gui.theme import ERROR_STYLE, INFO_STYLE
from stemgui.models.card import read_card
from stemgui.models.registry import register_user_model
from stemgui.train.finetune_log import TrainingHistory
from stemgui.train.finetune_runs import (
    RunLock,
    RunPaths,
    RunState,
    TrainingBusyError,
    TrainRequest,
    active_training,
    busy_message,
    card_summary,
    export_latest_checkpoint,
    launch_command,
    resume_arguments,
)

log = logging.getLogger(__name__)
LAST_RUN_KEY = "finetune/last_run"
ALREADY_TRAINING = "A training is already running; only one training runs at a time — stop it first."


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
        except Exception as exc:  # noqa: BLE001 - a broken checkpoint must not take the window down
            log.exception("exporting the newest checkpoint of %s failed", self.paths.root)
            self.done.emit(None, f"{self.paths.checkpoints}: cannot export the checkpoint ({exc})")


class FineTunePanel(QWidget):
    """The form and Start / Stop / Resume / Use on the left; status, messages and live curves on the right."""

    modelRegistered = Signal(Path)  # noqa: N815 - Qt's signal naming, the panel's public API
    trainingStateChanged = Signal(bool)  # noqa: N815

    def __init__(self, parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("fineTunePanel")
        self._settings = settings if settings is not None else QSettings("StemGUI", "StemGUI")
        self._paths: RunPaths | None = None
        self._state: RunState | None = None
        self._export: _ExportThread | None = None
        self.extra_train_args: list[str] = []  # further `stemgui train` options (advanced use, tests)
        self.form = FineTuneForm()
        self.form.changed.connect(self._update_buttons)
        self.plots = TrainingPlots()
        self.process = TrainingProcess(self)
        self.process.log_updated.connect(self._refresh_status)
        self.process.ended.connect(self._on_ended)
        self._build()
        self.form.restore(self._settings)
        last = str(self._settings.value(LAST_RUN_KEY, "") or "")
        if last:
            self.load_run(Path(last))
        self._update_buttons()

    def _build(self) -> None:
        inner = QWidget()
        column = QVBoxLayout(inner)
        column.setContentsMargins(6, 6, 6, 6)
        column.addWidget(self.form)
        column.addStretch(1)
        buttons = QGridLayout()
        buttons.setContentsMargins(6, 0, 6, 6)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.resume_button = QPushButton("Resume")
        self.use_button = QPushButton("Use latest checkpoint")
        self.start_button.setToolTip("Start a new training run in a separate process")
        self.stop_button.setToolTip("Finish the current step, write a checkpoint and the model, then stop")
        self.resume_button.setToolTip("Continue the last run from its newest checkpoint: for about the minutes "
                                      "above (a timed run), or up to the steps above")
        self.use_button.setToolTip("Register the model as it is now, so it can separate songs")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.use_button.clicked.connect(self.use_latest_checkpoint)
        for i, b in enumerate((self.start_button, self.stop_button, self.resume_button, self.use_button)):
            buttons.addWidget(b, i // 2, i % 2)
        self.start_button.setDefault(True)
        self.start_button.setStyleSheet("QPushButton:enabled { font-weight: 600; }")
        self.scroll = scroll = QScrollArea()
        scroll.setWidget(inner)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setFrameShape(QScrollArea.NoFrame)
        left = QWidget()  # the form scrolls; Start / Stop / Resume / Use stay below it, always visible
        left_column = QVBoxLayout(left)
        left_column.setContentsMargins(0, 0, 0, 0)
        left_column.addWidget(scroll, 1)
        left_column.addLayout(buttons)
        left.setMinimumWidth(380)

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
        for widget in (self.status_label, self.progress, self.message_label, self.card_label):
            mon.addWidget(widget)
        mon.addWidget(self.plots, 1)

        splitter = QSplitter(Qt.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(monitor)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([400, 880])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    # ------------------------------------------------------------------------------------------------ state
    @property
    def history(self) -> TrainingHistory:
        """The shown run's log so far (live while it trains)."""
        return self.process.history

    def is_training(self) -> bool:
        """A training of this window (or one it watches) is running."""
        return self.process.is_running()

    @property
    def run_paths(self) -> RunPaths | None:
        return self._paths

    @property
    def process_id(self) -> int | None:
        return self.process.process_id

    @property
    def message(self) -> str:
        """The message line under the status (errors included), as shown."""
        return self.message_label.text()

    def refresh_models(self) -> None:
        """Re-read the registry into the base-model list."""
        self.form.refresh_models()

    def request(self) -> TrainRequest:
        """The form, plus `extra_train_args`, as a TrainRequest."""
        return replace(self.form.request(), extra=list(self.extra_train_args))

    # ---------------------------------------------------------------------------------------------- actions
    def start(self) -> bool:
        """Start a new training run as the form says; False (with a message) when it cannot start."""
        if self.is_training():
            self._error(ALREADY_TRAINING)
            return False
        req = self.request()
        problem = self.form.problem(req)
        if problem:
            self._error(problem)
            self._update_buttons()
            return False
        paths = RunPaths.for_name(req.name)
        old = RunState.load(paths)
        if paths.has_checkpoint():
            self._error(f"A run named '{req.name}' already exists in {paths.root}; press Resume to continue it or "
                        "choose another name for the new model.")
            if old is not None:
                self._attach_run(paths, old)
            return False
        if not self._no_other_training():
            return False
        self.form.save(self._settings)
        try:
            args = req.arguments(paths)
        except ValueError as exc:
            self._error(str(exc))
            return False
        paths.log.unlink(missing_ok=True)  # the log of an earlier attempt that never reached a checkpoint
        state = RunState(req.name, program="", arguments=args, gpus=req.gpus, request=asdict(req))
        self.process.forget()
        self.plots.clear_curves()
        self._show_card("")
        return self._launch(paths, state, args, resume=False)

    def resume(self) -> bool:
        """Continue the current (or last) run from its newest checkpoint; steps may be raised in the form."""
        if self.is_training():
            self._error(ALREADY_TRAINING)
            return False
        paths = self._paths
        state = RunState.load(paths) if paths is not None else None
        if paths is None or state is None:
            self._error("There is no earlier run to resume; press Start for a new one.")
            return False
        if not self._no_other_training():
            return False
        steps = self.form.steps_spin.value()
        minutes = self.form.minutes_spin.value()
        args = resume_arguments(state.arguments, steps=steps, minutes=minutes)
        state.arguments = [a for a in args if a != "--resume"]
        if "--minutes" in args:  # a timed run trains about the form's minutes more
            state.request["minutes"] = minutes
        else:
            state.request["steps"] = steps
        return self._launch(paths, state, args, resume=True)

    def _no_other_training(self) -> bool:
        busy = active_training()
        if busy is not None:
            self._error(busy_message(busy[0].name, busy[1]))
        return busy is None

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
        self._settings.setValue(LAST_RUN_KEY, str(paths.root))
        self._paths, self._state = paths, state
        self._info(f"{'Resuming' if resume else 'Starting'} '{state.name}' in a separate process…")
        self.stop_button.setText("Stop")
        self.process.launch(state.name, paths.root, paths.log, lock, program, pargs)
        self._refresh_status()  # "Starting…" and a busy bar until the first step's record (with its ETA)
        self._update_buttons()
        self.trainingStateChanged.emit(True)
        return True

    def stop(self) -> None:
        """Ask the trainer to stop with a checkpoint; a second press while it is stopping kills it at once."""
        message, error = self.process.stop()
        if message:
            (self._error if error else self._info)(message)
        if self.process.stop_requested and not self.process.watching:
            self.stop_button.setText("Force stop")  # pressed again, our own child is killed at once

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
        if self._export is not None:
            self._export.wait()
        self.process.shutdown(wait_ms)

    # ------------------------------------------------------------------------------------------- run ended
    def _on_ended(self, end: RunEnd) -> None:
        if self._state is not None and self._paths is not None:
            self._state.status = end.status
            self._state.message = end.message
            self._state.save(self._paths)
        self.stop_button.setText("Stop")
        (self._error if end.error else self._info)(end.message)
        self._refresh_status()
        self._update_buttons()
        self.trainingStateChanged.emit(False)
        if end.status == "finished" and self._paths is not None and self._paths.model.is_file():
            self._register(self._paths.model)

    def _register(self, model: Path) -> Path | None:
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
        self._info((self.message + " " if self.message else "") + f"Model '{dest.stem}' is in the model list.")
        self.refresh_models()
        self.modelRegistered.emit(dest)
        return dest

    # ---------------------------------------------------------------------------------------- earlier runs
    def load_run(self, root: Path) -> bool:
        """Show an earlier run (curves, settings, state); resumable when it was stopped or interrupted, and
        watched live when a training of it still runs in another process (e.g. the app was killed)."""
        root = Path(root)
        state = RunState.load(RunPaths(root, root.name))
        if state is None and not (root / "log.jsonl").is_file():
            return False
        self._attach_run(RunPaths(root, state.name if state else root.name), state)
        return True

    def _attach_run(self, paths: RunPaths, state: RunState | None) -> None:
        self._paths, self._state = paths, state
        self.process.follow(paths.log)
        self.plots.clear_curves()
        if state is not None:
            self.form.apply_request(state.request)
        holder = RunLock(paths.lock).holder()
        if holder is not None and holder.get("app_pid") != os.getpid():
            pid = int(holder.get("child_pid") or holder.get("app_pid"))
            self.process.watch(paths.name, pid)
            self._info(f"'{paths.name}' is training in another process (pid {pid}); its curves are "
                       "shown live and Stop asks it to stop.")
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

    @staticmethod
    def _card_text(model: Path) -> str:
        try:
            return card_summary(read_card(model))
        except StemGUIError:
            return model.stem

    # ---------------------------------------------------------------------------------------------- display
    def _refresh_status(self) -> None:
        h = self.history
        if h.records == 0 and not self.is_training():
            return
        self.status_label.setText(h.status_line() if h.records else "Starting (loading PyTorch and the data)…")
        if h.steps_known:
            self.progress.setRange(0, h.total_steps)
            self.progress.setValue(min(h.step, h.total_steps))
        elif self.is_training():
            self.progress.setRange(0, 0)  # busy until the step count is known
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        self.plots.show_history(h)
        self._update_buttons()

    def _show_card(self, text: str) -> None:
        self.card_label.setText(text)
        self.card_label.setVisible(bool(text))

    def _error(self, text: str) -> None:
        self._show_message(text, ERROR_STYLE)

    def _info(self, text: str) -> None:
        self._show_message(text, INFO_STYLE)

    def _show_message(self, text: str, style: str) -> None:
        self.message_label.setStyleSheet(style)
        self.message_label.setText(text)
        self.message_label.setVisible(bool(text))

    def _update_buttons(self) -> None:
        training = self.is_training()
        dataset_ok, name_ok, model_ok = self.form.dataset_ok, self.form.name_ok, self.form.model_ok
        pairs_ok = self.form.pairs_ok
        self.start_button.setEnabled(not training and dataset_ok and pairs_ok and name_ok and model_ok)
        if training:
            reason = "a training is running"
        elif not dataset_ok:
            reason = "choose a usable dataset folder"
        elif not pairs_ok:
            reason = "the vocal + instrumental pairs folder cannot be used (see under Dataset)"
        elif not model_ok:
            reason = ("checking that the model can run" if self.form.model_checking
                      else "this model configuration cannot run (see under Model)")
        else:
            reason = "" if name_ok else "enter a model name"
        self.start_button.setToolTip("Start a new training run in a separate process" if not reason
                                     else f"Cannot start: {reason}")
        self.stop_button.setEnabled(training)
        paths = self._paths
        can_resume = (not training and paths is not None and paths.state.is_file()
                      and self.history.status != "finished")
        self.resume_button.setEnabled(can_resume or (not training and paths is not None and paths.has_checkpoint()))
        self.use_button.setEnabled(self._export is None and paths is not None
                                   and (paths.has_checkpoint() or paths.model.is_file()))
        self.form.set_locked(training)
