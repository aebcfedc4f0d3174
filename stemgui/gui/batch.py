"""Batch separation: a queue of songs separated one after another into the cache, beside the open song.

`BatchModel` (a Qt table model: song, status, progress) is the queue's state; `BatchQueue` runs one
`SeparationWorker` at a time off the GUI thread and writes each job's progress into the model through queued
signals; `BatchPanel` shows it (a table with a progress delegate) with Open, Cancel, Cancel all and Clear
finished. Results land in the stem cache, so opening a finished song from the queue is instant.

`BatchQueue` is also the window's one separation scheduler, so the 2 cores run one separation at a time and
no song is separated twice:
- the song opened in the window (`run_direct`) goes first: the queue starts nothing while it runs, and a
  queue song that is separating is paused for it (put back as the next one, started again afterwards; the
  engine cannot resume, so its part done so far is separated again). A song that opens from the cache
  pauses nothing.
- opening a song that is queued or separating in the queue with the same model and settings (`claim`) does not
  start it again: the window jumps to its queue entry, it becomes the next one, and it opens when it is done.
- a song done in the queue opens from the cache (the worker finds its stems there).
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from stemgui.gui.cache import StemCache
from stemgui.gui.job_bar import format_time
from stemgui.gui.workers import SeparationWorker, cache_settings
from stemgui.separate import SeparationSettings

log = logging.getLogger(__name__)
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".mp4", ".aiff",
                            ".aif"})
PROGRESS_ROLE = Qt.UserRole + 1
STATE_ROLE = Qt.UserRole + 2


class JobState(enum.Enum):
    QUEUED = "Queued"
    RUNNING = "Separating"
    DONE = "Done"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass
class BatchJob:
    path: Path
    model_path: Path
    settings: SeparationSettings
    state: JobState = JobState.QUEUED
    progress: float = 0.0
    message: str = ""
    elapsed: float = 0.0
    open_when_done: bool = False  # the window asked for this song: it runs next and opens when done
    paused: bool = False  # being stopped for the window's song: goes back to the queue, not to Cancelled

    def same_separation(self, path: Path, model_path: Path, settings: SeparationSettings) -> bool:
        """The same song with the same model and the settings that change the stems (= the same cache entry)."""
        return (_resolved(self.path) == _resolved(path) and _resolved(self.model_path) == _resolved(model_path)
                and cache_settings(self.settings) == cache_settings(settings))


def _resolved(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except OSError:
        return Path(path)


def audio_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The audio files among `paths`, folders searched recursively (sorted), without duplicates."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
                            and not f.name.startswith("."))
        elif p.is_file():
            found.append(p)
    seen, unique = set(), []
    for f in found:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


class BatchModel(QAbstractTableModel):
    """The queue: one row per song (Song, Status, Progress)."""

    COLUMNS = ("Song", "Status", "Progress")

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.jobs: list[BatchJob] = []

    # ---- Qt model API
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self.jobs)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt API
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):  # noqa: N802 - Qt API
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return self.COLUMNS[section]
        return None

    def data(self, index, role=Qt.DisplayRole):
        if not index.isValid():
            return None
        job = self.jobs[index.row()]
        col = index.column()
        if role == Qt.DisplayRole:
            if col == 0:
                return job.path.name
            if col == 1:
                if job.state is JobState.QUEUED and job.open_when_done:
                    return "Next (opens when done)"
                if job.state is JobState.RUNNING and job.open_when_done:
                    return "Separating (opens when done)"
                return job.state.value + (f" ({format_time(job.elapsed)[:-2]})" if job.state is JobState.DONE
                                          else "")
            return f"{int(round(job.progress * 100))}%"
        if role == Qt.ToolTipRole:
            return f"{job.path}\n{job.message}" if job.message else str(job.path)
        if role == PROGRESS_ROLE:
            return job.progress
        if role == STATE_ROLE:
            return job.state
        return None

    # ---- queue API
    def add(self, jobs: list[BatchJob]) -> None:
        if not jobs:
            return
        self.beginInsertRows(QModelIndex(), len(self.jobs), len(self.jobs) + len(jobs) - 1)
        self.jobs += jobs
        self.endInsertRows()

    def row_of(self, job: BatchJob) -> int:
        return next(i for i, j in enumerate(self.jobs) if j is job)

    def changed(self, job: BatchJob) -> None:
        row = self.row_of(job)
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.COLUMNS) - 1))

    def remove_finished(self) -> None:
        for row in reversed(range(len(self.jobs))):
            if self.jobs[row].state.finished:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self.jobs[row]
                self.endRemoveRows()

    def next_queued(self) -> BatchJob | None:
        """The song the window waits for first, else the first queued one."""
        queued = [j for j in self.jobs if j.state is JobState.QUEUED]
        return next((j for j in queued if j.open_when_done), queued[0] if queued else None)


class BatchQueue(QObject):
    """Runs the model's queued jobs one at a time in SeparationWorkers (stems go to the cache), and schedules the
    window's own separation with them (see the module docstring)."""

    job_finished = Signal(object)  # BatchJob (done, failed or cancelled)
    all_finished = Signal()
    claimed = Signal(object)  # BatchJob the window now waits for (the panel jumps to it)
    ready_to_open = Signal(object)  # BatchJob the window waited for is done: open it (from the cache)

    def __init__(self, cache: StemCache, parent: QObject | None = None):
        super().__init__(parent)
        self.cache = cache
        self.model = BatchModel(self)
        self.worker: SeparationWorker | None = None
        self.current: BatchJob | None = None
        self.direct: SeparationWorker | None = None  # the window's separation, while it runs

    # ---- the window's separations
    def job_for(self, path: Path, model_path: Path, settings: SeparationSettings) -> BatchJob | None:
        """The latest queue entry for the same separation that is queued, running or done (None otherwise)."""
        for job in reversed(self.model.jobs):
            if job.state in (JobState.QUEUED, JobState.RUNNING, JobState.DONE) \
                    and job.same_separation(Path(path), Path(model_path), settings):
                return job
        return None

    def claim(self, path: Path, model_path: Path, settings: SeparationSettings) -> BatchJob | None:
        """The window wants this song: when the queue has it queued or separating, the window waits for that
        entry (it runs next and `ready_to_open` fires when it is done) and gets it back; None means "open it
        yourself" (not in the queue, or done there: then it opens from the cache)."""
        job = self.job_for(path, model_path, settings)
        if job is None or job.state is JobState.DONE:
            return None
        self._forget_waiting()
        job.open_when_done = True
        self.model.changed(job)
        self.claimed.emit(job)
        return job

    def run_direct(self, worker: SeparationWorker) -> None:
        """Start the window's separation now; the queue waits for it (and pauses a song it is separating as
        soon as the window's song turns out not to be in the cache)."""
        self._forget_waiting()
        self.direct = worker
        worker.prepared.connect(lambda session, w=worker: self._on_direct_prepared(w, session))
        worker.finished.connect(lambda w=worker: self._on_direct_ended(w))
        worker.start()

    def _forget_waiting(self) -> None:
        """The window asked for another song: no earlier entry opens by itself any more."""
        for job in self.model.jobs:
            if job.open_when_done:
                job.open_when_done = False
                self.model.changed(job)

    def _on_direct_prepared(self, worker: SeparationWorker, session) -> None:
        if worker is not self.direct or session.from_cache or self.worker is None or self.current is None:
            return
        job = self.current
        job.paused = True
        job.message = f"Paused for {worker.song.name}; starts again after it."
        self.model.changed(job)
        self.worker.cancel()  # stops within a second; `_end` puts it back in the queue
        log.info("batch: %s paused while %s is separated", job.path.name, worker.song.name)

    def _on_direct_ended(self, worker: SeparationWorker) -> None:
        if worker is self.direct:
            self.direct = None
            self._start_next()

    def add(self, paths: Iterable[str | os.PathLike], model_path: Path, settings: SeparationSettings) -> list[BatchJob]:
        jobs = [BatchJob(Path(p), Path(model_path), settings) for p in paths]
        self.model.add(jobs)
        self._start_next()
        return jobs

    @property
    def running(self) -> bool:
        return self.worker is not None

    def cancel(self, job: BatchJob) -> None:
        """Cancel one song: a queued one is skipped, a running one stops within a second."""
        if job.state is JobState.QUEUED:
            job.state, job.message = JobState.CANCELLED, "Cancelled before it started."
            self.model.changed(job)
            self.job_finished.emit(job)
            self._maybe_all_finished()
        elif job is self.current and self.worker is not None:
            job.paused = False  # a user's cancel wins over a pause for the window's song
            self.worker.cancel()

    def cancel_all(self) -> None:
        for job in list(self.model.jobs):
            if job.state is JobState.QUEUED:
                job.state, job.message = JobState.CANCELLED, "Cancelled before it started."
                self.model.changed(job)
        if self.worker is not None:
            if self.current is not None:
                self.current.paused = False
            self.worker.cancel()
        else:
            self._maybe_all_finished()

    def _start_next(self) -> None:
        if self.worker is not None or self.direct is not None:  # one separation at a time
            return
        job = self.model.next_queued()
        if job is None:
            return
        self.current = job
        job.state, job.progress, job.message = JobState.RUNNING, 0.0, "Starting"
        self.model.changed(job)
        worker = SeparationWorker(job.path, job.model_path, job.settings, self.cache, self)
        worker.stage.connect(lambda text, job=job: self._on_stage(job, text))
        worker.progress.connect(lambda f, _eta, _m, job=job: self._on_progress(job, f))
        worker.notice.connect(lambda text, job=job: self._on_stage(job, text))
        worker.finished_ok.connect(lambda _s, job=job, w=worker: self._end(job, w, JobState.DONE, "Stems in the cache."))
        worker.failed.connect(lambda text, job=job, w=worker: self._end(job, w, JobState.FAILED, text))
        worker.cancelled.connect(lambda job=job, w=worker: self._end(job, w, JobState.CANCELLED, "Cancelled."))
        self.worker = worker
        worker.start()

    def _on_stage(self, job: BatchJob, text: str) -> None:
        job.message = text
        self.model.changed(job)

    def _on_progress(self, job: BatchJob, fraction: float) -> None:
        job.progress = float(fraction)
        self.model.changed(job)

    def _end(self, job: BatchJob, worker: SeparationWorker, state: JobState, message: str) -> None:
        if job.paused and state is JobState.CANCELLED:  # paused for the window's song: back in the queue
            job.state, job.progress = JobState.QUEUED, 0.0
        else:
            job.state, job.message, job.elapsed = state, message, worker.elapsed
        job.paused = False
        if state is JobState.DONE:
            job.progress = 1.0
        self.model.changed(job)
        worker.wait(5000)
        worker.session = None  # the stems are in the cache: do not keep the audio in memory
        worker.deleteLater()
        self.worker, self.current = None, None
        if job.state.finished:
            self.job_finished.emit(job)
            if job.open_when_done:
                job.open_when_done = False
                self.model.changed(job)
                if job.state is JobState.DONE:
                    self.ready_to_open.emit(job)
        self._start_next()
        self._maybe_all_finished()

    def _maybe_all_finished(self) -> None:
        if self.worker is None and self.model.next_queued() is None:
            self.all_finished.emit()

    def shutdown(self) -> None:
        self.cancel_all()
        if self.worker is not None:
            self.worker.wait(5000)


class ProgressDelegate(QStyledItemDelegate):
    """Draws the Progress column as a progress bar."""

    def paint(self, painter, option, index) -> None:
        fraction = index.data(PROGRESS_ROLE)
        if fraction is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(4, 6, -4, -6)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int(round(float(fraction) * 1000))
        bar.text = index.data(Qt.DisplayRole)
        bar.textVisible = True
        bar.state = option.state
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.CE_ProgressBar, bar, painter, option.widget)


class BatchPanel(QWidget):
    """The queue's view: the table, and Open / Cancel / Cancel all / Clear finished."""

    open_requested = Signal(object)  # BatchJob that is done

    def __init__(self, queue: BatchQueue, parent: QWidget | None = None):
        super().__init__(parent)
        self.queue = queue
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.table = QTableView()
        self.table.setObjectName("batchTable")
        self.table.setModel(queue.model)
        self.table.setItemDelegateForColumn(2, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(2, QHeaderView.Fixed)
        self.table.setColumnWidth(2, 140)
        self.table.doubleClicked.connect(lambda index: self.open_row(index.row()))
        cancel_key = QShortcut(QKeySequence.Delete, self.table, activated=self._cancel_selected)
        cancel_key.setContext(Qt.WidgetShortcut)  # Delete on the queue cancels the selected songs
        self.table.setToolTip("Double-click a finished song to open it; Delete cancels the selected songs")
        layout.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open")
        self.open_button.setToolTip("Open the selected finished song (also: double-click it)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the selected songs")
        self.cancel_all_button = QPushButton("Cancel all")
        self.clear_button = QPushButton("Clear finished")
        for b in (self.open_button, self.cancel_button, self.cancel_all_button, self.clear_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.open_button.clicked.connect(self._open_selected)
        self.cancel_button.clicked.connect(self._cancel_selected)
        self.cancel_all_button.clicked.connect(queue.cancel_all)
        self.clear_button.clicked.connect(queue.model.remove_finished)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        queue.model.dataChanged.connect(self._update_buttons)
        queue.model.rowsInserted.connect(self._update_buttons)
        queue.model.rowsRemoved.connect(self._update_buttons)
        queue.claimed.connect(self.show_job)
        self._update_buttons()

    def show_job(self, job: BatchJob) -> None:
        """Select and scroll to a job's row (the window jumps here when a queued song is opened)."""
        row = self.queue.model.row_of(job)
        self.table.selectRow(row)
        self.table.scrollTo(self.queue.model.index(row, 0))

    def selected_jobs(self) -> list[BatchJob]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        return [self.queue.model.jobs[r] for r in rows]

    def select_row(self, row: int) -> None:
        self.table.selectRow(row)

    def open_row(self, row: int) -> bool:
        job = self.queue.model.jobs[row]
        if job.state is not JobState.DONE:
            return False
        self.open_requested.emit(job)
        return True

    def _open_selected(self) -> None:
        jobs = self.selected_jobs()
        if jobs:
            self.open_row(self.queue.model.row_of(jobs[0]))

    def _cancel_selected(self) -> None:
        for job in self.selected_jobs():
            self.queue.cancel(job)

    def _update_buttons(self, *_args) -> None:
        jobs = self.selected_jobs()
        self.open_button.setEnabled(len(jobs) == 1 and jobs[0].state is JobState.DONE)
        self.cancel_button.setEnabled(any(not j.state.finished for j in jobs))
        self.cancel_all_button.setEnabled(any(not j.state.finished for j in self.queue.model.jobs))
        self.clear_button.setEnabled(any(j.state.finished for j in self.queue.model.jobs))
