"""The "Get models…" dialog: the catalog of published models, with a Download that runs in a worker thread.

The table (a Qt model over `stemgui.models.catalog`) shows each model's sources, size, reported quality, training
data and whether it is installed; the panel under it says what the selected model is good for and its licence,
which the user confirms before anything is fetched. Downloads run in `ModelDownloadWorker` (resumable: a
cancelled or dropped download continues where it stopped next time); when one finishes the dialog emits
`installed(name)` and the main window selects the new model.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QThread, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from stemgui.errors import Cancelled, StemGUIError
from stemgui.gui.dialogs import Dialogs
from stemgui.models.catalog import Catalog, CatalogEntry, DownloadProgress, get_model, installed_names, load_catalog
from stemgui.separate import CancelToken

__all__ = ["CatalogTableModel", "ModelDownloadWorker", "ModelsDialog"]

log = logging.getLogger(__name__)


def _size_text(entry: CatalogEntry) -> str:
    return f"{entry.size_mb:.0f} MB" if entry.size_mb else "?"


def _eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f", {seconds // 60}:{seconds % 60:02d} left"


class CatalogTableModel(QAbstractTableModel):
    """Rows: catalog entries. Columns: name, sources, size, quality, trained on, state."""

    HEADERS = ("Model", "Sources", "Size", "Quality", "Trained on", "State")

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.installed: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        self.beginResetModel()
        try:
            self.installed = installed_names()
        except StemGUIError:
            log.warning("could not list installed models", exc_info=True)
            self.installed = set()
        self.endResetModel()

    def entry(self, row: int) -> CatalogEntry:
        return self.catalog.entries[row]

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.catalog.entries)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802 (Qt API)
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.DisplayRole) -> Any:  # noqa: N802
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole) -> Any:
        if not index.isValid():
            return None
        e = self.entry(index.row())
        if role == Qt.DisplayRole:
            members = f" (bag of {len(e.files)})" if len(e.files) > 1 else ""
            return [f"{e.name}{members}", ", ".join(e.sources), _size_text(e),
                    f"{e.reported_sdr:.1f} dB SDR" if e.reported_sdr is not None else "not reported",
                    e.trained_on + (" (includes the MUSDB18 test set)" if e.musdb_test_in_training else ""),
                    "Installed" if e.name in self.installed else "Available"][index.column()]
        if role == Qt.ToolTipRole:
            return f"{e.title}\n{e.description}\nQuality: {e.quality}"
        return None


class ModelDownloadWorker(QThread):
    """Runs `get_model(name)` off the GUI thread; Cancel keeps the partial files for a later resume."""

    progress = Signal(object)  # DownloadProgress
    finished_ok = Signal(str, str)  # name, path of the installed model
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, name: str, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.catalog = catalog
        self.token = CancelToken()

    def cancel(self) -> None:
        self.token.cancel()

    def run(self) -> None:
        try:
            path = get_model(self.name, catalog=self.catalog, progress=self.progress.emit, cancel=self.token)
        except Cancelled:
            self.cancelled.emit()
        except StemGUIError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - never let a worker die silently; the dialog shows it
            log.exception("model download failed")
            self.failed.emit(f"{self.name}: {type(exc).__name__}: {exc}")
        else:
            self.finished_ok.emit(self.name, str(path))


class ModelsDialog(QDialog):
    """Lists the catalog; Download (after the licence is confirmed) with progress and Cancel."""

    installed = Signal(str)  # name of a newly installed model

    def __init__(self, dialogs: Dialogs | None = None, catalog: Catalog | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Get models")
        self.resize(960, 480)
        self.dialogs = dialogs or Dialogs(self)
        self.catalog = catalog or load_catalog()
        self.worker: ModelDownloadWorker | None = None
        self.table_model = CatalogTableModel(self.catalog, self)
        self.table = QTableView(self)
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.PlainText)
        self.licence = QLabel(f"Licence: {self.catalog.licence}", self)
        self.licence.setWordWrap(True)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setVisible(False)
        self.status = QLabel("", self)
        self.download_button = QPushButton("Download", self)
        self.cancel_button = QPushButton("Cancel download", self)
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close", self)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Published separation models. StemGUI converts each download to its own safe "
                                "format (no pickles) and checks every file's checksum.", self))
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        layout.addWidget(self.licence)
        layout.addWidget(self.progress_bar)
        layout.addLayout(buttons)
        self.table.selectionModel().selectionChanged.connect(self._update)
        self.download_button.clicked.connect(self.download_selected)
        self.cancel_button.clicked.connect(self.cancel_download)
        self.close_button.clicked.connect(self.close)
        if self.catalog.entries:
            self.table.selectRow(0)
        self._update()

    # -- state -----------------------------------------------------------------------------------------
    def selected_entry(self) -> CatalogEntry | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.entry(rows[0].row()) if rows else None

    def select(self, name: str) -> None:
        for row, entry in enumerate(self.catalog.entries):
            if entry.name == name:
                self.table.selectRow(row)
                return
        raise KeyError(name)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _update(self, *_: Any) -> None:
        entry = self.selected_entry()
        if entry is None:
            self.details.setText("")
        else:
            note = " Its training data includes the MUSDB18 test set." if entry.musdb_test_in_training else ""
            self.details.setText(f"{entry.title}: {entry.description}{note}\nQuality: {entry.quality}.")
        have = entry is not None and entry.name in self.table_model.installed
        self.download_button.setEnabled(entry is not None and not have and not self.busy)
        self.download_button.setText("Installed" if have else "Download")
        self.cancel_button.setEnabled(self.busy)
        self.table.setEnabled(not self.busy)

    # -- actions ---------------------------------------------------------------------------------------
    def download_selected(self) -> None:
        entry = self.selected_entry()
        if entry is None or self.busy:
            return
        size = f" ({_size_text(entry)})" if entry.size_mb else ""
        text = (f"Download {entry.name}{size} from {self.catalog.publisher}?\n\n{self.catalog.licence}")
        if not self.dialogs.confirm("Download model", text):
            return
        self.worker = ModelDownloadWorker(entry.name, self.catalog, self)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished_ok.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self.worker.finished.connect(self._on_thread_done)
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setVisible(True)
        self.status.setText(f"Connecting for {entry.name}…")
        self.worker.start()
        self._update()

    def cancel_download(self) -> None:
        if self.worker is not None:
            self.status.setText("Cancelling…")
            self.worker.cancel()

    def _on_progress(self, p: DownloadProgress) -> None:
        if p.stage == "convert":
            self.progress_bar.setRange(0, 0)
            self.status.setText("Converting to safetensors…")
            return
        if p.total:
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * min(p.done / p.total, 1.0)))
            amount = f"{p.done / 1e6:.1f} of {p.total / 1e6:.1f} MB"
        else:
            self.progress_bar.setRange(0, 0)
            amount = f"{p.done / 1e6:.1f} MB"
        self.status.setText(f"File {p.file_index + 1} of {p.file_count}: {amount}{_eta_text(p.eta)}")

    def _on_finished(self, name: str, path: str) -> None:
        self.status.setText(f"Installed {name}.")
        self.table_model.refresh()
        self.select(name)
        self.installed.emit(name)

    def _on_failed(self, message: str) -> None:
        self.status.setText("Download failed.")
        self.dialogs.error("Download failed", message)

    def _on_cancelled(self) -> None:
        self.status.setText("Cancelled; the download resumes where it stopped next time.")

    def _on_thread_done(self) -> None:
        self.worker = None
        self.progress_bar.setVisible(False)
        self._update()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        if self.worker is not None:
            self.worker.cancel()
            self.worker.wait(10_000)
        super().closeEvent(event)
