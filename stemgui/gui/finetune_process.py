"""The Fine-tune panel's training process: start it, follow its log, stop it, and say how it ended.

Training runs as `python -m stemgui train ...` (under torchrun for several GPUs) through QProcess, so a crash or
out-of-memory there never takes the window down. A run left going by an app that died is watched by pid, its
log still growing. However a run ends (finished, stopped, killed, failed, failed to start, a watched process
gone), it goes through `_finish` once, with one `RunEnd` that `describe_end` made from the log and exit status.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

from stemgui.train.finetune_log import LogTail, TrainingHistory, summarize_failure
from stemgui.train.finetune_runs import RunLock, pid_alive

log = logging.getLogger(__name__)
OUTPUT_KEEP = 64 * 1024  # the child's last output, for the one-line failure message
POLL_MS = 400


@dataclass(frozen=True)
class RunEnd:
    """How a run ended: `status` as RunState records it (finished, stopped, failed) and a sentence for the user."""

    status: str
    message: str
    error: bool = False


def describe_end(history: TrainingHistory, name: str, exit_code: int | None, crashed: bool,
                 stop_requested: bool, output: str) -> RunEnd:
    """The outcome of a run from its log and exit; `exit_code` None: a watched process of which only the log is
    known. `crashed`: killed by a signal; `output`: the child's last stderr/stdout (for its error line)."""
    step, ckpt = history.step, history.checkpoint_step
    watched = exit_code is None
    if history.status == "finished" and (watched or (exit_code == 0 and not crashed)):
        return RunEnd("finished", f"Training '{name}' finished after {step:,} steps.")
    if history.status == "stopped" and not crashed:
        if watched:
            return RunEnd("stopped", f"'{name}' stopped at step {step:,}; Resume continues it.")
        return RunEnd("stopped", f"Stopped at step {step:,}: checkpoint saved. Resume continues the run; "
                                 "'Use latest checkpoint' registers the model as it is now.")
    if watched:
        return RunEnd("failed", f"The training process of '{name}' ended without finishing"
                      + (f"; Resume continues from the checkpoint at step {ckpt:,}." if ckpt else "."), error=True)
    resume_hint = (f" Resume continues from the checkpoint at step {ckpt:,}." if ckpt
                   else " No checkpoint was written yet, so Resume starts it again.")
    if crashed and stop_requested:
        return RunEnd("stopped", f"Training stopped at step {step:,} without a new checkpoint.{resume_hint}")
    return RunEnd("failed", summarize_failure(output, exit_code, crashed) + resume_hint, error=True)


class TrainingProcess(QObject):
    """One training at a time: its child process (or a watched pid), the run lock, and the log's history."""

    log_updated = Signal()  # new records are in `history`
    ended = Signal(object)  # RunEnd

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.history = TrainingHistory()
        self.stop_requested = False
        self._name = ""
        self._tail: LogTail | None = None
        self._process: QProcess | None = None
        self._lock: RunLock | None = None
        self._watched_pid: int | None = None
        self._output = bytearray()
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)

    # ---------------------------------------------------------------------------------------------- the log
    def follow(self, log_path: Path) -> None:
        """Show the run whose JSON-lines log is `log_path`: its history so far, then whatever it appends."""
        self._tail = LogTail(log_path)
        self.history = TrainingHistory()
        self.history.extend(self._tail.read())

    def forget(self) -> None:
        """No run is shown: an empty history (a new run starts)."""
        self._tail = None
        self.history = TrainingHistory()

    # ---------------------------------------------------------------------------------------------- state
    def is_running(self) -> bool:
        """A training of this window, or one it watches, is running."""
        own = self._process is not None and self._process.state() != QProcess.NotRunning
        return own or self._watched_pid is not None

    @property
    def watching(self) -> bool:
        """The running training belongs to another process (only its log and pid are known)."""
        return self._watched_pid is not None

    @property
    def process_id(self) -> int | None:
        if self._process is not None and self._process.state() != QProcess.NotRunning:
            return int(self._process.processId())
        return self._watched_pid

    # ---------------------------------------------------------------------------------------------- start
    def launch(self, name: str, root: Path, log_path: Path, lock: RunLock, program: str, args: list[str]) -> None:
        """Run `program args` in `root`, holding `lock` (already acquired) until the run ends."""
        if self._tail is None or self._tail.path != log_path:
            self.follow(log_path)
        self._name, self._lock = name, lock
        self._output.clear()
        self.stop_requested = False
        process = QProcess(self)
        env = QProcessEnvironment()
        for key, value in os.environ.items():
            env.insert(key, value)
        env.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(env)
        process.setWorkingDirectory(str(root))
        process.readyReadStandardError.connect(self._read_output)
        process.readyReadStandardOutput.connect(self._read_output)
        process.started.connect(self._started)
        process.errorOccurred.connect(self._process_error)
        process.finished.connect(self._process_finished)
        self._process = process
        process.start(program, args)
        self._timer.start()

    def watch(self, name: str, pid: int) -> None:
        """Follow a training another process runs (the app that started it died): live log, Stop by signal."""
        self._name = name
        self._watched_pid = pid
        self.stop_requested = False
        self._timer.start()

    # ---------------------------------------------------------------------------------------------- stop
    def stop(self) -> tuple[str, bool]:
        """Ask the trainer to stop (SIGTERM: it finishes the step, writes a checkpoint and the model); a second
        request while it is stopping kills it at once (the previous checkpoint stays). Returns (message, error)."""
        if self._process is not None and self._process.state() != QProcess.NotRunning:
            if self.stop_requested:
                self._process.kill()
                return "Force-stopping: the training is killed; Resume continues from the last checkpoint.", False
            self.stop_requested = True
            self._process.terminate()
            return "Stopping: the trainer finishes its step and writes a checkpoint and the model…", False
        if self._watched_pid is not None:
            self.stop_requested = True
            try:
                os.kill(self._watched_pid, signal.SIGTERM)
            except OSError as exc:
                return f"Cannot stop process {self._watched_pid}: {exc}", True
            return "Asked the training in the other process to stop; it writes a checkpoint first…", False
        return "", False

    def shutdown(self, wait_ms: int = 30000) -> None:
        """Stop our own training with a checkpoint before the window closes (killed after `wait_ms`)."""
        self._timer.stop()
        process = self._process
        if process is None or process.state() == QProcess.NotRunning:
            return
        self.stop_requested = True
        process.terminate()
        if not process.waitForFinished(wait_ms):
            log.warning("the training process did not stop within %d ms; killing it", wait_ms)
            process.kill()
            process.waitForFinished(5000)

    # ---------------------------------------------------------------------------------------------- events
    def _poll(self) -> None:
        if self._tail is not None:
            records = self._tail.read()
            if records:
                self.history.extend(records)
                self.log_updated.emit()
        if self._watched_pid is not None and not pid_alive(self._watched_pid):
            self._exited(None, crashed=False)

    def _started(self) -> None:
        if self._process is not None and self._lock is not None:
            self._lock.set_child(int(self._process.processId()))

    def _read_output(self) -> None:
        if self._process is None:
            return
        self._output += bytes(self._process.readAllStandardError()) + bytes(self._process.readAllStandardOutput())
        if len(self._output) > OUTPUT_KEEP:
            del self._output[:-OUTPUT_KEEP]

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error != QProcess.FailedToStart or self._process is None:
            return  # crashes arrive in _process_finished as well
        self._finish(RunEnd("failed", f"Could not start the training process ({self._process.errorString()}).",
                            error=True))

    def _process_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._read_output()
        self._exited(exit_code, crashed=exit_status == QProcess.CrashExit)

    def _exited(self, exit_code: int | None, crashed: bool) -> None:
        """The process is gone (`exit_code` None: a watched one): read the rest of its log and say how it ended."""
        if self._tail is not None:
            self.history.extend(self._tail.read())
        output = bytes(self._output).decode("utf-8", "replace")
        self._finish(describe_end(self.history, self._name or "training", exit_code, crashed, self.stop_requested,
                                  output))

    def _finish(self, end: RunEnd) -> None:
        """The one end of every run: stop polling, free the lock and the process, then report `end`."""
        self._timer.stop()
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        process, self._process = self._process, None
        if process is not None:
            process.deleteLater()
        self._watched_pid = None
        self.stop_requested = False
        self.ended.emit(end)
