"""Read a training run's JSON-lines log as it grows, fold it into plottable curves, and explain failures.

Qt-free so it is tested on its own: the fine-tune panel polls `LogTail.read()` from a timer and feeds the records
to `TrainingHistory`, whose series the plots show. Record keys are the trainer's (stemgui.train.trainer):
events `start` (steps, minutes when a time budget is set), `train` (step, l1, stft, adv, fm, loss, d_loss,
steps_per_s, samples_per_s, eta_s; logged from the first step on), `budget` (the step count a time budget was
turned into, from the speed of the first steps), `valid` (valid_sdr per source, valid_sdr_mean), `checkpoint`,
`stopped`, `end`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# generator loss terms as logged, with the names the plot legend shows
G_TERMS = {"loss": "total (weighted)", "l1": "L1", "stft": "MR-STFT", "adv": "adversarial", "fm": "feature matching"}
D_TERMS = {"d_loss": "D (least squares)"}
MEAN_KEY = "mean"


class LogTail:
    """The complete lines appended to a JSON-lines file since the last read.

    A line still being written (no newline yet) waits for the next read; a file that shrank or was replaced
    is read again from the start; lines that are not JSON objects are counted in `bad_lines` and skipped.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self._inode: int | None = None
        self.bad_lines = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            stat = self.path.stat()
        except OSError:
            return []
        if stat.st_size < self._offset or (self._inode is not None and stat.st_ino != self._inode):
            self._offset, self._partial = 0, b""
        self._inode = stat.st_ino
        if stat.st_size == self._offset:
            return []
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return []
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        records = []
        for raw in lines:
            raw = raw.strip()
            if not raw:
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                self.bad_lines += 1
        return records


@dataclass
class Series:
    """One curve: steps and values, in step order."""

    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def append(self, step: int, value: float) -> None:
        self.steps.append(step)
        self.values.append(value)

    def truncate_after(self, step: int) -> None:
        """Drop points past `step` (a resumed run replays them from its checkpoint)."""
        keep = 0
        while keep < len(self.steps) and self.steps[keep] <= step:
            keep += 1
        del self.steps[keep:], self.values[keep:]

    def __len__(self) -> int:
        return len(self.steps)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class TrainingHistory:
    """Everything the panel shows about a run, folded from its log records in order."""

    def __init__(self) -> None:
        self.generator: dict[str, Series] = {key: Series() for key in G_TERMS}
        self.discriminator: dict[str, Series] = {key: Series() for key in D_TERMS}
        self.validation: dict[str, Series] = {}
        self.step = 0
        self.total_steps: int | None = None
        self.steps_per_s: float | None = None
        self.samples_per_s: float | None = None
        self.eta_s: float | None = None
        self.checkpoint_step: int | None = None
        self.budget_minutes: float | None = None  # "train for about N minutes": set while the steps are not known
        self.status = "idle"  # idle, running, stopped, finished
        self.sources: list[str] = []
        self.device = ""
        self.out: str | None = None
        self.records = 0

    def extend(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        step = record.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            return
        self.records += 1
        if event == "start":
            for series in self._all_series():
                series.truncate_after(step)
            self.step = step
            total = record.get("steps")
            self.total_steps = int(total) if isinstance(total, int) else self.total_steps
            self.sources = list(record.get("sources") or self.sources)
            self.device = str(record.get("device") or "")
            self.status = "running"
            self.eta_s = None
            self.budget_minutes = _number(record.get("minutes")) or None
        elif event == "budget":
            total = record.get("steps")
            if isinstance(total, int) and not isinstance(total, bool):
                self.total_steps = total
            self.budget_minutes = None
        elif event == "train":
            self.step = step
            for key, series in [*self.generator.items(), *self.discriminator.items()]:
                value = _number(record.get(key))
                if value is not None:
                    series.append(step, value)
            self.steps_per_s = _number(record.get("steps_per_s"))
            self.samples_per_s = _number(record.get("samples_per_s"))
            self.eta_s = _number(record.get("eta_s"))
            if self.status == "idle":
                self.status = "running"
        elif event == "valid":
            per_source = record.get("valid_sdr")
            if isinstance(per_source, dict):
                for name, value in per_source.items():
                    number = _number(value)
                    if number is not None:
                        self.validation.setdefault(str(name), Series()).append(step, number)
            mean = _number(record.get("valid_sdr_mean"))
            if mean is not None:
                self.validation.setdefault(MEAN_KEY, Series()).append(step, mean)
        elif event == "checkpoint":
            self.checkpoint_step = step
        elif event in ("stopped", "end"):
            self.step = step
            self.status = "stopped" if event == "stopped" else "finished"
            self.eta_s = None
            self.out = record.get("out") or self.out

    def _all_series(self):
        yield from self.generator.values()
        yield from self.discriminator.values()
        yield from self.validation.values()

    @property
    def steps_known(self) -> bool:
        """Whether `total_steps` is the run's real end (a time budget turns into steps after the first steps)."""
        return bool(self.total_steps) and self.budget_minutes is None

    @property
    def latest_sdr(self) -> float | None:
        series = self.validation.get(MEAN_KEY)
        return series.values[-1] if series else None

    def status_line(self) -> str:
        """Step counter, throughput and ETA in one line, e.g. 'Step 120 / 1,000 · 2.3 steps/s · ETA 6 min'."""
        parts = [f"Step {self.step:,}" + (f" / {self.total_steps:,}" if self.steps_known else "")]
        if self.steps_per_s:
            rate = f"{self.steps_per_s:.2f} steps/s" if self.steps_per_s < 10 else f"{self.steps_per_s:.0f} steps/s"
            if self.samples_per_s:
                rate += f" ({self.samples_per_s:.1f} segments/s)"
            parts.append(rate)
        if self.budget_minutes is not None and self.status == "running":
            parts.append(f"measuring the speed for a {self.budget_minutes:g}-minute run")
        if self.status == "running" and self.eta_s is not None:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        if self.latest_sdr is not None:
            parts.append(f"validation SDR {self.latest_sdr:.2f} dB")
        return " · ".join(parts)


def format_duration(seconds: float) -> str:
    """45 s, 3 min 20 s, 2 h 05 min: an ETA a person reads at a glance."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# --------------------------------------------------------------------------------------------- failure text
_PROGRESS = re.compile(r"\d+%\||it/s\]|step/s\]|s/step\]|s/it\]")
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b:?\s*(.*)$")
MAX_MESSAGE = 400


def _meaningful_lines(stderr: str) -> list[str]:
    lines = []
    for raw in stderr.replace("\r", "\n").splitlines():
        line = raw.strip()
        if not line or _PROGRESS.search(line):
            continue
        lines.append(line)
    return lines


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1].rstrip() + "…"


def summarize_failure(stderr: str, exit_code: int | None, killed: bool = False) -> str:
    """One readable message from a failed training process: its own error line, else the exception, else how
    it ended. `killed` means it died from a signal (QProcess.CrashExit), e.g. kill -9 or the OOM killer."""
    lines = _meaningful_lines(stderr or "")
    for line in reversed(lines):
        if line.startswith("stemgui: error:"):
            return _clip("Training failed: " + line[len("stemgui: error:"):].strip())
    for line in reversed(lines):
        match = _EXCEPTION.match(line)
        if match:
            if "out of memory" in line.lower() or "OutOfMemoryError" in line:
                return _clip("Training ran out of memory on the device; lower the batch size or the segment "
                             f"length, or pick another device. ({line})")
            return _clip(f"Training crashed: {line}")
    if killed:
        tail = f" Last output: {lines[-1]}" if lines else ""
        return _clip("The training process was killed before it finished (for example by the system when memory "
                     f"ran out, or by another program).{tail}")
    if lines:
        return _clip(f"Training stopped with exit code {exit_code}: {lines[-1]}")
    return f"Training stopped with exit code {exit_code} and printed nothing."
