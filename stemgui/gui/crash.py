"""An exception nobody caught (in a slot, a paint event, a QThread or a Python thread) must not end the app.

`CrashReporter.install()` sets `sys.excepthook` (PySide6 calls it for an exception in any slot, virtual
override or `QThread.run`, in the thread that raised) and `threading.excepthook`. Each exception is logged
with its traceback (to the rotating log of `stemgui.logsetup`) and passed, through a queued signal, to the GUI
thread, which shows one non-blocking dialog: a short message, the log file's path, the details to copy. While
that dialog is open further exceptions are only counted on it, so a storm (a failing paint event) shows one
dialog, not hundreds. Qt's own warnings go to the log as well.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType
from typing import Callable

from PySide6.QtCore import QObject, Qt, QtMsgType, QUrl, Signal, Slot, qInstallMessageHandler
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from stemgui import __version__

log = logging.getLogger(__name__)
SUMMARY_CHARS = 240
PresentFn = Callable[[str, str], None]


def summarize(exc_type: type[BaseException], exc: BaseException | None) -> str:
    """'ValueError: bad thing' on one line, cut to a length a dialog can show."""
    text = " ".join(str(exc).split()) if exc is not None else ""
    line = f"{exc_type.__name__}: {text}" if text else exc_type.__name__
    return line if len(line) <= SUMMARY_CHARS else line[: SUMMARY_CHARS - 1] + "…"


def describe(exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None,
             thread: str) -> str:
    """The details a bug report needs: version, thread and the full traceback."""
    trace = "".join(traceback.format_exception(exc_type, exc, tb))
    return f"StemGUI {__version__}, Python {sys.version.split()[0]}, thread {thread}\n\n{trace}"


class CrashDialog(QDialog):
    """'Something went wrong': what, where the log is, the details (copyable); it never blocks the window."""

    def __init__(self, summary: str, details: str, log_file: Path | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("StemGUI: something went wrong")
        self.setModal(False)
        self.setAttribute(Qt.WA_DeleteOnClose, False)
        self.details = details
        self.more = 0
        layout = QVBoxLayout(self)
        self.message = QLabel(f"<b>{_escape(summary)}</b><br>The app keeps running, but what you just did may "
                              "not have finished.")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.message)
        where = f"The details are in the log: {log_file}" if log_file else "The details are below."
        self.log_label = QLabel(_escape(where))
        self.log_label.setWordWrap(True)
        self.log_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.log_label)
        self.more_label = QLabel("")
        self.more_label.setVisible(False)
        layout.addWidget(self.more_label)
        self.details_box = QPlainTextEdit(details)
        self.details_box.setReadOnly(True)
        self.details_box.setVisible(False)
        self.details_box.setMinimumHeight(220)
        layout.addWidget(self.details_box)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.show_button = QPushButton("Show details")
        self.show_button.clicked.connect(self.toggle_details)
        self.copy_button = QPushButton("Copy details")
        self.copy_button.clicked.connect(self.copy_details)
        buttons.addButton(self.show_button, QDialogButtonBox.ActionRole)
        buttons.addButton(self.copy_button, QDialogButtonBox.ActionRole)
        self.log_folder = Path(log_file).parent if log_file else None
        if self.log_folder is not None:
            folder_button = QPushButton("Open log folder")
            folder_button.clicked.connect(
                lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_folder))))
            buttons.addButton(folder_button, QDialogButtonBox.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.setMinimumWidth(520)

    def toggle_details(self) -> None:
        visible = not self.details_box.isVisible()
        self.details_box.setVisible(visible)
        self.show_button.setText("Hide details" if visible else "Show details")
        self.adjustSize()

    def copy_details(self) -> None:
        QGuiApplication.clipboard().setText(self.details)

    def count_another(self) -> None:
        """One more exception happened while this dialog was open: say so instead of opening another."""
        self.more += 1
        self.more_label.setText(f"{self.more} more error(s) happened since; they are in the log too.")
        self.more_label.setVisible(True)


def _escape(text: str) -> str:
    from html import escape

    return escape(text)


class CrashReporter(QObject):
    """Logs every uncaught exception and shows them in one dialog at a time; see the module docstring.

    `present(summary, details)` replaces the dialog (scripted runs print a line instead). Create it in the
    GUI thread: exceptions from other threads reach it by a queued signal.
    """

    _reported = Signal(str, str)

    def __init__(self, log_file: Path | None = None, parent: QWidget | None = None,
                 present: PresentFn | None = None):
        super().__init__(None)
        self.log_file = Path(log_file) if log_file else None
        self.parent_widget = parent
        self.present = present
        self.dialog: CrashDialog | None = None
        self.total = 0  # exceptions seen
        self.shown = 0  # dialogs (or presentations) shown
        self.suppressed = 0  # exceptions counted on an open dialog instead of a new one
        self._lock = threading.Lock()
        self._presenting = False
        self._previous: tuple | None = None
        self._reported.connect(self._show, Qt.QueuedConnection)

    # ------------------------------------------------------------------ hooks
    def install(self) -> CrashReporter:
        if self._previous is None:
            self._previous = (sys.excepthook, threading.excepthook)
            sys.excepthook = self.handle
            threading.excepthook = self._thread_hook
        return self

    def uninstall(self) -> None:
        if self._previous is not None:
            if sys.excepthook == self.handle:
                sys.excepthook = self._previous[0]
            if threading.excepthook == self._thread_hook:
                threading.excepthook = self._previous[1]
            self._previous = None

    def _thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else threading.current_thread().name
        self.handle(args.exc_type, args.exc_value, args.exc_traceback, thread=name)

    def handle(self, exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None,
               thread: str | None = None) -> None:
        """The hook itself: safe to call from any thread; never raises."""
        thread = thread or threading.current_thread().name
        if issubclass(exc_type, KeyboardInterrupt):  # Ctrl-C in the terminal that started the app
            log.info("interrupted (Ctrl-C): quitting")
            app = QApplication.instance()
            if app is not None:
                app.quit()
            return
        with self._lock:
            self.total += 1
        try:
            log.error("unhandled exception in thread %s", thread, exc_info=(exc_type, exc, tb))
            self._reported.emit(summarize(exc_type, exc), describe(exc_type, exc, tb, thread))
        except Exception:  # noqa: BLE001 - a hook that raises would hide the original error
            if sys.__stderr__ is not None:
                traceback.print_exception(exc_type, exc, tb, file=sys.__stderr__)

    # ------------------------------------------------------------------ GUI thread
    @Slot(str, str)
    def _show(self, summary: str, details: str) -> None:
        if self._presenting:  # an exception while presenting one: it is logged, that is enough
            self.suppressed += 1
            return
        if self.dialog is not None and self.dialog.isVisible():
            self.suppressed += 1
            self.dialog.count_another()
            return
        self._presenting = True
        try:
            self.shown += 1
            if self.present is not None:
                self.present(summary, details)
                return
            self.dialog = CrashDialog(summary, details, self.log_file, self.parent_widget)
            self.dialog.show()  # not exec(): the event loop, the window and playback carry on
            self.dialog.raise_()
        except Exception:  # noqa: BLE001 - re-raised, it would come back here through the hook, forever
            log.exception("the error dialog could not be shown")
        finally:
            self._presenting = False


_QT_LEVELS = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
              QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
              QtMsgType.QtFatalMsg: logging.CRITICAL}
_qt_log = logging.getLogger("qt")


def _qt_message(kind: QtMsgType, context, message: str) -> None:
    _qt_log.log(_QT_LEVELS.get(kind, logging.WARNING), "%s", message)


def route_qt_messages(enable: bool = True) -> None:
    """Send Qt's own warnings ('QPainter::begin: ...') to the log instead of the terminal (or back)."""
    qInstallMessageHandler(_qt_message if enable else None)
