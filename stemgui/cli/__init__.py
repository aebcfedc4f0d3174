"""The `stemgui` command: subcommands for batch work, or the desktop app when none is given.

Each subcommand lives in its own module `stemgui/cli/<name>.py` exposing `register(subparsers)`, which adds
a parser whose `func(args) -> int` runs it. Heavy imports (torch, Qt) happen inside `func`, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from stemgui import __version__
from stemgui.errors import Cancelled, StemGUIError

COMMAND_MODULES = ("separate", "info", "models", "train", "evaluate", "synth")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stemgui",
        description="Split songs into drums, bass, other and vocals. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"stemgui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        modname = f"stemgui.cli.{name}"
        if importlib.util.find_spec(modname) is not None:
            importlib.import_module(modname).register(sub)
    return parser


def _wants_gui(argv: list[str]) -> bool:
    if not argv:
        return True
    first = argv[0]
    if first in ("-h", "--help", "--version"):
        return False
    return first.startswith("--") or first not in _command_names()


def _command_names() -> set[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if _wants_gui(argv):
            from stemgui.gui.app import main as gui_main

            return gui_main(argv)
        args = build_parser().parse_args(argv)
        if not getattr(args, "func", None):
            build_parser().print_help()
            return 2
        return int(args.func(args) or 0)
    except Cancelled as exc:
        print(f"stemgui: cancelled: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("stemgui: cancelled", file=sys.stderr)
        return 130
    except StemGUIError as exc:
        print(f"stemgui: error: {exc}", file=sys.stderr)
        return 1
