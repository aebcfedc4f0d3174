"""Crash safety in the app: an exception in a slot or a worker thread shows one dialog and the app goes on;
the log file gets the traceback; faulthandler traces a segfault into the log folder."""

from __future__ import annotations

import faulthandler
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings, Qt, QThread  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QPushButton  # noqa: E402
from test_gui_app import separate, write_song  # noqa: E402

from stemgui.gui.cache import StemCache  # noqa: E402
from stemgui.gui.crash import CrashReporter  # noqa: E402
from stemgui.gui.dialogs import RecordingDialogs  # noqa: E402
from stemgui.gui.main_window import MainWindow  # noqa: E402
from stemgui.gui.settings import AppSettings  # noqa: E402
from stemgui.logsetup import CRASH_NAME, LOG_NAME, install_logging, previous_crash  # noqa: E402

pytestmark = pytest.mark.qt_no_exception_capture  # our hook replaces pytest-qt's while a test runs


@pytest.fixture
def logs(tmp_path):
    setup = install_logging(tmp_path / "logs")
    yield setup
    setup.close()


@pytest.fixture
def window(qtbot, tmp_path, tiny_model_path):
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    dialogs = RecordingDialogs()
    win = MainWindow(settings, dialogs, StemCache(tmp_path / "cache"), model=str(tiny_model_path),
                     enable_audio=False)
    dialogs.parent = win
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    yield win


@pytest.fixture
def reporter(window, logs):
    crash = CrashReporter(logs.log_file, window).install()
    yield crash
    crash.uninstall()
    if crash.dialog is not None:
        crash.dialog.close()


def dialog_shown(reporter: CrashReporter) -> bool:
    return reporter.dialog is not None and reporter.dialog.isVisible()


class Raising(QThread):
    def run(self) -> None:  # noqa: D401 - QThread entry point
        raise RuntimeError("boom in a worker thread")


def test_exception_in_a_slot_shows_a_dialog_and_the_window_keeps_working(qtbot, window, reporter, logs,
                                                                          tmp_path):
    def boom() -> None:
        raise ValueError("boom in a slot")

    button = QPushButton("Boom", window)
    button.clicked.connect(boom)
    button.show()
    qtbot.mouseClick(button, Qt.LeftButton)
    qtbot.waitUntil(lambda: dialog_shown(reporter), timeout=5000)
    dialog = reporter.dialog
    assert "ValueError: boom in a slot" in dialog.message.text()
    assert str(logs.log_file) in dialog.log_label.text()
    assert not dialog.isModal()
    dialog.copy_details()
    copied = QGuiApplication.clipboard().text()
    assert "Traceback (most recent call last)" in copied and "boom in a slot" in copied and "MainThread" in copied
    text = logs.log_file.read_text()
    assert "unhandled exception in thread MainThread" in text and 'raise ValueError("boom in a slot")' in text
    # the window still works while the dialog is open: a song opens and separates
    separate(qtbot, window, write_song(tmp_path / "after.wav", 2.0))
    assert window.session.complete and not window.dialogs.of_kind("error")


def test_exception_in_a_worker_thread_shows_a_dialog(qtbot, window, reporter, logs, tmp_path):
    worker = Raising()
    worker.start()
    qtbot.waitUntil(worker.isFinished, timeout=5000)
    qtbot.waitUntil(lambda: dialog_shown(reporter), timeout=5000)
    assert "RuntimeError: boom in a worker thread" in reporter.dialog.message.text()
    assert "Traceback" in reporter.dialog.details and "MainThread" not in reporter.dialog.details.splitlines()[0]
    reporter.dialog.close()
    # a plain Python thread goes through threading.excepthook
    thread = threading.Thread(target=lambda: 1 / 0, name="helper")
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: dialog_shown(reporter), timeout=5000)
    assert "ZeroDivisionError" in reporter.dialog.message.text() and reporter.shown == 2
    text = logs.log_file.read_text()
    assert "boom in a worker thread" in text and "unhandled exception in thread helper" in text
    separate(qtbot, window, write_song(tmp_path / "after.wav", 2.0))
    assert window.session.complete


def test_a_storm_of_exceptions_shows_one_dialog_and_counts_the_rest(qtbot, window, reporter):
    calls = []

    def boom() -> None:
        calls.append(1)
        raise KeyError(len(calls))

    button = QPushButton("Boom", window)
    button.clicked.connect(boom)
    for _ in range(20):
        button.click()
    qtbot.waitUntil(lambda: reporter.total == 20 and reporter.shown + reporter.suppressed == 20, timeout=5000)
    assert reporter.shown == 1 and reporter.suppressed == 19
    assert "19 more error(s)" in reporter.dialog.more_label.text()
    reporter.dialog.close()
    button.click()  # once closed, the next error gets a dialog of its own
    qtbot.waitUntil(lambda: dialog_shown(reporter), timeout=5000)
    assert reporter.shown == 2 and reporter.dialog.more == 0


def test_a_dialog_that_cannot_be_shown_does_not_loop(qtbot, logs):
    def broken(summary: str, details: str) -> None:
        raise RuntimeError("no screen to show it on")

    crash = CrashReporter(logs.log_file, present=broken).install()
    try:
        crash.handle(ValueError, ValueError("first"), None)
        qtbot.wait(300)
        assert (crash.total, crash.shown) == (1, 1)  # the failure to show is logged, not reported again
        assert "the error dialog could not be shown" in logs.log_file.read_text()
    finally:
        crash.uninstall()


def test_hooks_and_logging_are_put_back(qtbot, tmp_path):
    before = (sys.excepthook, threading.excepthook, list(logging.getLogger().handlers),
              logging.getLogger().level)
    logs = install_logging(tmp_path / "logs")
    crash = CrashReporter(logs.log_file).install()
    assert sys.excepthook == crash.handle and faulthandler.is_enabled()
    assert logs.log_file == tmp_path / "logs" / LOG_NAME and logs.crash_file == tmp_path / "logs" / CRASH_NAME
    assert any(getattr(h, "baseFilename", None) == str(logs.log_file) for h in logging.getLogger().handlers)
    assert logs.handler.maxBytes == 2 * 2**20 and logs.handler.backupCount == 5
    crash.uninstall()
    logs.close()
    assert (sys.excepthook, threading.excepthook, list(logging.getLogger().handlers),
            logging.getLogger().level) == before


CRASHING_CHILD = """
import sys
from stemgui.logsetup import install_logging
setup = install_logging(sys.argv[1])
print(setup.crash_file, flush=True)
import faulthandler
faulthandler._sigsegv()
"""


def test_a_segfault_leaves_its_trace_in_the_log_folder(tmp_path):
    folder = tmp_path / "logs"
    child = subprocess.run([sys.executable, "-c", CRASHING_CHILD, str(folder)], capture_output=True, text=True,
                           timeout=60)
    assert child.returncode != 0
    assert Path(child.stdout.strip()) == folder / CRASH_NAME
    trace = (folder / CRASH_NAME).read_text()
    assert "Fatal Python error: Segmentation fault" in trace and "<string>" in trace
    assert "Fatal Python error" not in child.stderr  # it went to the file, not the terminal
    # the next session knows the last one crashed, and says so in its log
    logs = install_logging(folder)
    try:
        assert logs.previous_crash and "Segmentation fault" in logs.previous_crash
    finally:
        logs.close()
    assert "previous session ended in a fatal error" in (folder / LOG_NAME).read_text()
    assert previous_crash(folder / CRASH_NAME) is None  # the session that just ended cleanly did not crash


APP_WITH_A_FAILING_SLOT = r"""
import sys
from stemgui.gui.app import main
from stemgui.gui.main_window import MainWindow

seen = []

def failing_stage(self, text):
    seen.append(text)
    raise RuntimeError(f"stage slot failed on {text!r}")

MainWindow._on_stage = failing_stage
hook = sys.excepthook
rc = main(["--quit-when-done", "--model", sys.argv[1], sys.argv[2]])
print(f"rc={rc} seen={len(seen)} hook_restored={sys.excepthook is hook}")
"""


def test_the_app_logs_and_survives_an_exception_in_a_slot(tiny_model_path, tmp_path):
    """The whole app (its own process: an in-process app run leaves Qt's event loops of later tests broken)."""
    import os

    song = write_song(tmp_path / "song.wav", 2.0)
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), STEMGUI_LOG_DIR=str(tmp_path / "logs"),
               QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", APP_WITH_A_FAILING_SLOT, str(tiny_model_path), str(song)],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=str(Path(__file__).resolve().parents[1]))
    assert "rc=0" in done.stdout and "hook_restored=True" in done.stdout, (done.stdout, done.stderr[-2000:])
    assert "seen=0" not in done.stdout
    assert "stemgui: error: unexpected RuntimeError: stage slot failed" in done.stderr
    assert str(tmp_path / "logs" / LOG_NAME) in done.stderr
    text = (tmp_path / "logs" / LOG_NAME).read_text()
    assert "opening" in text and "Traceback" in text and "stage slot failed" in text and "stemgui exits" in text
