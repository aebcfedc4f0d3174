"""Render the app icon (resources/icons/io.github.stemgui.svg) as PNGs at the freedesktop sizes.

    python packaging/render_icons.py OUT_DIR [--sizes 16,32,...]

writes OUT_DIR/hicolor/SIZExSIZE/apps/io.github.stemgui.png for each size (the layout of an icon theme) and
OUT_DIR/hicolor/scalable/apps/io.github.stemgui.svg. Uses PySide6's QSvgRenderer on the offscreen platform, so
it needs no display and nothing beyond the app's own dependencies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

APP_ID = "io.github.stemgui"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
SVG = Path(__file__).resolve().parent.parent / "resources" / "icons" / f"{APP_ID}.svg"


def render_png(svg: Path, size: int, out: Path) -> Path:
    """One square PNG of `svg` at `size` pixels (transparent background)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841 - QPainter needs one
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg}: not a valid SVG image")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise OSError(f"{out}: could not write the PNG")
    return out


def render_theme(out_dir: Path, svg: Path = SVG, sizes=SIZES) -> list[Path]:
    """The icon in the hicolor theme layout under `out_dir`; returns the files written."""
    written = [render_png(svg, n, out_dir / "hicolor" / f"{n}x{n}" / "apps" / f"{APP_ID}.png") for n in sizes]
    scalable = out_dir / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    return [*written, scalable]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--svg", type=Path, default=SVG)
    p.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = p.parse_args(argv)
    for path in render_theme(args.out_dir, args.svg, [int(s) for s in args.sizes.split(",")]):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
