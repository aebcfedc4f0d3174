"""Install (or remove) StemGUI's desktop integration for the current user.

    python packaging/install_desktop.py [--exec COMMAND] [--data-home DIR] [--uninstall]

Writes, under $XDG_DATA_HOME (default ~/.local/share):
  applications/io.github.stemgui.desktop            the launcher; Exec=COMMAND %F, audio MIME types, so
                                                    "Open with StemGUI" and dropping files on it work
  icons/hicolor/SIZExSIZE/apps/io.github.stemgui.png  the icon at the freedesktop sizes, rendered from the SVG
  icons/hicolor/scalable/apps/io.github.stemgui.svg
  metainfo/io.github.stemgui.metainfo.xml           AppStream metadata (software centres)
then refreshes the desktop, MIME and icon caches when their tools are installed.

COMMAND defaults to the `stemgui` program beside this Python (a venv or pipx install), else `stemgui` on
PATH; pass the bundle's program (`--exec dist/stemgui/stemgui`) to launch the PyInstaller app.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from render_icons import APP_ID, SIZES, SVG, render_theme  # noqa: E402

DESKTOP = HERE / f"{APP_ID}.desktop"
METAINFO = HERE / f"{APP_ID}.metainfo.xml"


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def default_exec() -> str:
    beside = Path(sys.executable).with_name("stemgui")
    return str(beside) if beside.is_file() else (shutil.which("stemgui") or "stemgui")


def quote_exec(program: str) -> str:
    """The program as the Desktop Entry spec wants it in Exec (quoted when it has reserved characters)."""
    if not any(c in program for c in ' \t\n"\'\\><~|&;$*?#()`'):
        return program
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in program)
    return f'"{escaped}"'


def desktop_entry(program: str) -> str:
    """The launcher's text with Exec pointing at `program` (the file manager appends the files for %F)."""
    lines = []
    for line in DESKTOP.read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = f"Exec={quote_exec(program)} %F"
        lines.append(line)
    return "\n".join(lines) + "\n"


def installed_files(home: Path) -> list[Path]:
    icons = home / "icons" / "hicolor"
    return [home / "applications" / DESKTOP.name, home / "metainfo" / METAINFO.name,
            *(icons / f"{n}x{n}" / "apps" / f"{APP_ID}.png" for n in SIZES),
            icons / "scalable" / "apps" / f"{APP_ID}.svg"]


def refresh_caches(home: Path) -> None:
    """Best effort: tell the desktop about the new entry (each tool is optional)."""
    for cmd in (["update-desktop-database", "-q", str(home / "applications")],
                ["update-mime-database", str(home / "mime")] if (home / "mime" / "packages").is_dir() else [],
                ["gtk-update-icon-cache", "-q", "-t", "-f", str(home / "icons" / "hicolor")]):
        if cmd and shutil.which(cmd[0]):
            subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def install(home: Path, program: str) -> list[Path]:
    apps = home / "applications"
    apps.mkdir(parents=True, exist_ok=True)
    entry = apps / DESKTOP.name
    entry.write_text(desktop_entry(program), encoding="utf-8")
    meta = home / "metainfo" / METAINFO.name
    meta.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(METAINFO, meta)
    icons = render_theme(home / "icons", SVG, SIZES)
    refresh_caches(home)
    return [entry, meta, *icons]


def uninstall(home: Path) -> list[Path]:
    removed = [p for p in installed_files(home) if p.is_file()]
    for p in removed:
        p.unlink()
    refresh_caches(home)
    return removed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Install StemGUI's launcher, icons and AppStream metainfo for this user.")
    p.add_argument("--exec", dest="program", help="the program the launcher runs (default: %(default)s)",
                   default=default_exec())
    p.add_argument("--data-home", type=Path, default=None, help="instead of $XDG_DATA_HOME or ~/.local/share")
    p.add_argument("--uninstall", action="store_true", help="remove what an install wrote")
    args = p.parse_args(argv)
    home = args.data_home or data_home()
    if args.uninstall:
        for path in uninstall(home):
            print(f"removed {path}")
        return 0
    program = args.program
    if os.sep in program:
        program = str(Path(program).resolve())
        if not os.access(program, os.X_OK):
            print(f"install-desktop: warning: {program} is not an executable program (yet)", file=sys.stderr)
    for path in install(home, program):
        print(f"installed {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
