"""`stemgui [SONG]` opens the desktop app; `--screenshot PATH --quit-when-done SONG` renders it and exits.

This module imports Qt only inside `run`, so the CLI can parse the app's options (and decide, without a
display, to separate on the command line instead) without loading Qt.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from stemgui import __version__
from stemgui.atomic import atomic_path

if TYPE_CHECKING:
    from stemgui.logsetup import LogSetup

log = logging.getLogger(__name__)
SCREENSHOT_POSITION = 0.36  # of the song: the playhead in the picture
SCREENSHOT_LOOP = (0.30, 0.48)  # of the song: a practice loop in the picture
POLL_MS = 100


class _SongsParser(argparse.ArgumentParser):
    """Keeps `args.song` (the song to open) and `args.more_songs` (to queue) beside the positional list."""

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed = super().parse_args(args, namespace)
        songs = list(parsed.songs or [])
        parsed.song = songs[0] if songs else None
        parsed.more_songs = songs[1:]
        return parsed


def build_parser() -> argparse.ArgumentParser:
    p = _SongsParser(prog="stemgui", description="StemGUI: split a song into stems and play with them.")
    p.add_argument("songs", nargs="*", metavar="SONG",
                   help="songs to open (the first) and queue (the rest): wav, flac, ogg, mp3, m4a, ...")
    p.add_argument("--model", help="model name or path (default: the one chosen last time, else the bundled one)")
    p.add_argument("--screenshot", metavar="PATH", help="when the song is separated and drawn, save a PNG of the window")
    p.add_argument("--quit-when-done", action="store_true", help="exit once the song is separated (and shot)")
    p.add_argument("--size", default="1400x860", help="window size WIDTHxHEIGHT (default 1400x860)")
    p.add_argument("--timeout", type=float, default=900.0, help="with --quit-when-done: give up after SECONDS")
    p.add_argument("--no-audio", action="store_true", help="do not open an audio output device")
    p.add_argument("--version", action="version", version=f"stemgui {__version__}")
    return p


def is_scripted(args: argparse.Namespace) -> bool:
    """A run that separates, maybe shoots, and exits on its own (it needs no display: Qt renders offscreen)."""
    return bool(args.quit_when_done or args.screenshot)


def printing_dialogs():
    """For scripted runs: messages go to stderr instead of blocking dialogs (still recorded)."""
    from stemgui.gui.dialogs import RecordingDialogs

    class PrintingDialogs(RecordingDialogs):
        def error(self, title: str, text: str) -> None:
            super().error(title, text)
            print(f"stemgui: error: {text}", file=sys.stderr)

        def warning(self, title: str, text: str) -> None:
            super().warning(title, text)
            print(f"stemgui: warning: {text}", file=sys.stderr)

        def info(self, title: str, text: str) -> None:
            super().info(title, text)
            print(f"stemgui: {text}", file=sys.stderr)

    return PrintingDialogs(confirm_answer=False)


def save_png_atomic(widget, path: str | os.PathLike) -> Path:
    """Grab `widget` and write it as PNG; the file appears complete or not at all."""
    with atomic_path(path, suffix=".png") as tmp:
        if not widget.grab().save(str(tmp), "PNG"):
            raise OSError(f"{path}: the screenshot could not be written")
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(list(sys.argv[1:] if argv is None else argv)))


def run(args: argparse.Namespace) -> int:
    """Open the window (and, for a scripted run, separate, shoot and quit); returns the exit code.

    The log (a rotating file in the user log folder) and faulthandler's crash trace are set up first, so a
    crash while Qt or torch loads is traced too; an exception nobody caught shows a dialog and the app goes on.
    """
    from stemgui.logsetup import install_logging

    logs = install_logging()
    try:
        return _run(args, logs)
    except Exception:
        log.exception("the app failed")
        raise
    finally:
        log.info("stemgui exits")
        logs.close()


def _run(args: argparse.Namespace, logs: LogSetup) -> int:
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"stemgui: error: --size {args.size!r} is not WIDTHxHEIGHT", file=sys.stderr)
        return 2
    scripted = is_scripted(args)
    if scripted and not args.song:
        print("stemgui: error: --screenshot and --quit-when-done need a SONG", file=sys.stderr)
        return 2

    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from stemgui.gui.crash import CrashReporter, route_qt_messages
    from stemgui.gui.main_window import MainWindow
    from stemgui.gui.theme import apply_dark_theme

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "stemgui"])
    app.setApplicationName("StemGUI")
    app.setOrganizationName("StemGUI")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("io.github.stemgui")
    apply_dark_theme(app)
    from stemgui.paths import icon_path

    icon = icon_path()
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    dialogs = printing_dialogs() if scripted else None

    def print_crash(summary: str, details: str) -> None:  # scripted runs: a line on stderr, not a dialog
        print(f"stemgui: error: unexpected {summary} (details in {logs.log_file})", file=sys.stderr)

    reporter = CrashReporter(logs.log_file, present=print_crash if scripted else None).install()
    route_qt_messages(True)
    try:
        window = MainWindow(dialogs=dialogs, model=args.model, enable_audio=not (args.no_audio or scripted))
        reporter.parent_widget = window
        return _show(app, window, dialogs, args, scripted, width, height, logs)
    finally:
        route_qt_messages(False)
        reporter.uninstall()


def _show(app, window, dialogs, args: argparse.Namespace, scripted: bool, width: int, height: int,
          logs: LogSetup) -> int:
    from PySide6.QtCore import QTimer

    if dialogs is not None:
        dialogs.parent = window
    if logs.previous_crash and not scripted:
        window.statusBar().showMessage(f"The last session of StemGUI crashed; its trace is in {logs.crash_file}",
                                       15000)
    window.resize(width, height)
    window.show()
    result = {"rc": 0, "done": False}  # done: the run is over, and a timer still pending must do nothing

    def finish(rc: int) -> None:
        if result["done"]:  # a late timer would quit whatever event loop runs next (another window's)
            return
        result["done"] = True
        result["rc"] = rc
        window.close()
        app.quit()

    def timed_out() -> None:
        if not result["done"]:
            print("stemgui: error: timed out", file=sys.stderr)
            finish(3)

    if scripted:
        def when_drawn() -> None:
            if result["done"]:
                return
            if window.is_busy() or not window.pictures_complete():
                QTimer.singleShot(POLL_MS, when_drawn)
                return
            if args.screenshot:
                duration = window.session.duration
                window.seek(duration * SCREENSHOT_POSITION)
                window.set_loop(duration * SCREENSHOT_LOOP[0], duration * SCREENSHOT_LOOP[1])
                window.enable_loop(True)
                app.processEvents()
                try:
                    saved = save_png_atomic(window, args.screenshot)
                except OSError as exc:
                    print(f"stemgui: error: {exc}", file=sys.stderr)
                    finish(1)
                    return
                print(f"stemgui: screenshot saved to {saved}", file=sys.stderr)
            finish(0)

        window.separation_done.connect(lambda ok: QTimer.singleShot(200, when_drawn) if ok else finish(1))
        QTimer.singleShot(int(args.timeout * 1000), timed_out)
    if args.song:
        def start() -> None:
            log.info("opening %s", args.song)
            if not window.open_song(args.song) and scripted:
                finish(1)
            elif window.worker is not None:  # the log says how far it got (a crash report needs that)
                worker = window.worker
                worker.stage.connect(lambda text: log.info("separation stage: %s", text))

                logged = []

                def first_chunk(begin: int, end: int) -> None:
                    if not logged:
                        logged.append(end)
                        log.info("separation: first stems ready (samples %d-%d)", begin, end)

                worker.chunk.connect(first_chunk)
            if args.more_songs:  # "Open with StemGUI" on several files (%F): the rest go to the batch queue
                window.queue_songs(args.more_songs)

        QTimer.singleShot(0, start)
    app.exec()
    result["done"] = True
    return result["rc"]
