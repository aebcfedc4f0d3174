"""`stemgui [SONG]` opens the desktop app; `--screenshot PATH --quit-when-done SONG` renders it and exits."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from stemgui import __version__

ICON = Path(__file__).resolve().parents[2] / "resources" / "icons" / "stemgui.svg"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stemgui", description="StemGUI: split a song into stems and play with them.")
    p.add_argument("song", nargs="?", help="a song to open and separate (wav, flac, ogg, mp3, m4a, ...)")
    p.add_argument("--model", help="model name or path (default: the one chosen last time, else the bundled one)")
    p.add_argument("--screenshot", metavar="PATH", help="when the song is separated and drawn, save a PNG of the window")
    p.add_argument("--quit-when-done", action="store_true", help="exit once the song is separated (and shot)")
    p.add_argument("--size", default="1400x860", help="window size WIDTHxHEIGHT (default 1400x860)")
    p.add_argument("--timeout", type=float, default=900.0, help="with --quit-when-done: give up after SECONDS")
    p.add_argument("--no-audio", action="store_true", help="do not open an audio output device")
    p.add_argument("--version", action="version", version=f"stemgui {__version__}")
    return p


class _PrintingDialogs:
    """For scripted runs: messages go to stderr instead of blocking dialogs."""

    @staticmethod
    def make(parent):
        from stemgui.gui.dialogs import RecordingDialogs

        class Printing(RecordingDialogs):
            def error(self, title, text):
                super().error(title, text)
                print(f"stemgui: error: {text}", file=sys.stderr)

            def warning(self, title, text):
                super().warning(title, text)
                print(f"stemgui: warning: {text}", file=sys.stderr)

            def info(self, title, text):
                super().info(title, text)
                print(f"stemgui: {text}", file=sys.stderr)

        return Printing(parent, confirm_answer=False)


def save_png_atomic(widget, path: str | os.PathLike) -> Path:
    """Grab `widget` and write it as PNG via a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        if not widget.grab().save(tmp, "PNG"):
            raise OSError(f"{path}: the screenshot could not be written")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def has_display() -> bool:
    """False on a Linux machine with no X11/Wayland display and no Qt platform chosen (a server, CI, SSH)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _headless_fallback(args: argparse.Namespace) -> int:
    """Without a screen the window cannot open: do the main job on the command line instead of crashing."""
    if not args.song:
        print("stemgui: error: no display found to open the app; run `stemgui separate SONG` instead",
              file=sys.stderr)
        return 2
    print(f"stemgui: no display found, so the app cannot open; separating {args.song} on the command line "
          "into ./separated instead", file=sys.stderr)
    from stemgui.cli import main as cli_main

    extra = ["--model", args.model] if args.model else []
    return cli_main(["separate", args.song, "-o", "separated", *extra])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"stemgui: error: --size {args.size!r} is not WIDTHxHEIGHT", file=sys.stderr)
        return 2
    scripted = bool(args.quit_when_done or args.screenshot)
    if scripted and not args.song:
        print("stemgui: error: --screenshot and --quit-when-done need a SONG", file=sys.stderr)
        return 2

    if not scripted and not has_display():
        return _headless_fallback(args)

    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from stemgui.gui.main_window import MainWindow
    from stemgui.gui.theme import apply_dark_theme

    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "stemgui"])
    app.setApplicationName("StemGUI")
    app.setOrganizationName("StemGUI")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("io.github.stemgui")
    apply_dark_theme(app)
    if ICON.is_file():
        app.setWindowIcon(QIcon(str(ICON)))
    window = MainWindow(dialogs=None, model=args.model, enable_audio=not (args.no_audio or scripted))
    if scripted:
        window.dialogs = _PrintingDialogs.make(window)
    window.resize(width, height)
    window.show()
    result = {"rc": 0}

    def finish(rc: int) -> None:
        result["rc"] = rc
        window.close()
        app.quit()

    if scripted:
        def when_drawn() -> None:
            if window.is_busy() or any(l.columns_done < l.layout_info.columns for l in window.lanes):
                QTimer.singleShot(100, when_drawn)
                return
            if args.screenshot:
                session = window.session
                window.seek(session.duration * 0.36)  # show the playhead and a practice loop in the picture
                window.set_loop(session.duration * 0.30, session.duration * 0.48)
                window.player.loop_enabled = True
                window.loop_action.setChecked(True)
                window._show_loop()
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
        QTimer.singleShot(int(args.timeout * 1000), lambda: (print("stemgui: error: timed out", file=sys.stderr),
                                                              finish(3)))
    if args.song:
        def start() -> None:
            if not window.open_song(args.song) and scripted:
                finish(1)

        QTimer.singleShot(0, start)
    app.exec()
    return result["rc"]
