"""The `stemgui` command: subcommands for batch work, or the desktop app when none is given.

Each subcommand lives in its own module `stemgui/cli/<module>.py` exposing `register(subparsers)`, which adds
a parser whose `func(args) -> int` runs it. `COMMANDS` maps each command name to its module, so running one
command imports only that module; heavy imports (torch, Qt) happen inside `func`, so `--help` is fast.

Without a command the app opens, unless there is no display to open it on: then the CLI separates the song
given (if any) into ./separated instead of letting Qt abort. That decision is made here, so the GUI never
imports the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Iterator

from stemgui import __version__
from stemgui.errors import Cancelled, StemGUIError

# command name -> module under stemgui.cli, in the order `stemgui --help` lists them
COMMANDS: dict[str, str] = {
    "separate": "separate",
    "remix": "remix",
    "info": "info",
    "models": "models",
    "train": "train",
    "study": "study",
    "evaluate": "evaluate",
    "synth-dataset": "synth",
    "listening-test": "listening",
}
HEADLESS_OUTPUT = "separated"


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser of `commands` (default: all of them, as `--help` shows them)."""
    parser = argparse.ArgumentParser(
        prog="stemgui",
        description="Split songs into drums, bass, other and vocals. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"stemgui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if commands is None else commands:
        importlib.import_module(f"stemgui.cli.{COMMANDS[name]}").register(sub)
    return parser


def has_display() -> bool:
    """False on a Linux machine with no X11/Wayland display and no Qt platform chosen (a server, CI, SSH)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_app(argv: list[str]) -> int:
    """`stemgui [SONG] [options]`: the desktop app, or its main job on the command line when there is no screen."""
    from stemgui.gui import app

    args = app.build_parser().parse_args(argv)
    if app.is_scripted(args) or has_display():
        return app.run(args)
    if not args.song:
        print("stemgui: error: no display found to open the app; run `stemgui separate SONG` instead",
              file=sys.stderr)
        return 2
    print(f"stemgui: no display found, so the app cannot open; separating {args.song} on the command line "
          f"into ./{HEADLESS_OUTPUT} instead", file=sys.stderr)
    extra = ["--model", args.model] if args.model else []
    return run_command(["separate", args.song, "-o", HEADLESS_OUTPUT, *extra])


def run_command(argv: list[str]) -> int:
    """Run the subcommand `argv[0]` (a key of COMMANDS) with its arguments."""
    args = build_parser([argv[0]]).parse_args(argv)
    return int(args.func(args) or 0)


class _OneLineHandler(logging.Handler):
    """Log records of WARNING and above as `stemgui: warning: ...` lines on the current sys.stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = " ".join(record.getMessage().split())
            print(f"stemgui: {record.levelname.lower()}: {text}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While a command runs: every warning (ours name the file first) and log record is one line,
    `stemgui: warning: FILE: ...`, with no Python source line or category. Restored afterwards."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"stemgui: warning: {' '.join(str(message).split())}", file=sys.stderr)

    handler = _OneLineHandler(logging.WARNING)
    root = logging.getLogger()
    with warnings.catch_warnings():
        warnings.showwarning = show
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS:
            with one_line_warnings():
                return run_command(argv)
        if argv and argv[0] in ("-h", "--help", "--version"):
            build_parser().parse_args(argv)  # prints and exits
            return 0
        return open_app(argv)
    except Cancelled as exc:
        print(f"stemgui: cancelled: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("stemgui: cancelled", file=sys.stderr)
        return 130
    except StemGUIError as exc:
        print(f"stemgui: error: {exc}", file=sys.stderr)
        return 1
