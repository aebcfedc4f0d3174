"""Where StemGUI keeps bundled resources, user models, caches and settings (platformdirs).

This module is the one owner of where the bundled resources (default model, catalog, example song, icons)
are. They are found, in this order:

1. `STEMGUI_RESOURCES`, when set (a packaged build or a test pointing elsewhere);
2. `stemgui/_resources` inside the installed package, read through `importlib.resources`: an installed wheel
   (`pip install stemgui-*.whl`, `pipx install`) or the PyInstaller bundle carries them there;
3. `resources/` at the top of the source tree, for a checkout and its editable install (`pip install -e .`).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

import platformdirs

APP_NAME = "StemGUI"
APP_ID = "io.github.stemgui"
"""The reverse-DNS id of the desktop entry, the icons and the AppStream metainfo."""
RESOURCES_ENV = "STEMGUI_RESOURCES"
PACKAGE_RESOURCES = "_resources"
"""The folder inside the `stemgui` package that wheels and bundles carry resources/ as (see setup.py)."""
SOURCE_RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def packaged_resources_dir() -> Path | None:
    """`stemgui/_resources` of an installed wheel or a bundle, or None in a source checkout."""
    try:
        root = importlib.resources.files("stemgui").joinpath(PACKAGE_RESOURCES)
    except (ModuleNotFoundError, TypeError):  # not importable as a package (cannot happen when installed)
        root = None
    # Models are memory-mapped and songs decoded by C libraries, so only a real folder will do (not a zip).
    if isinstance(root, Path) and root.is_dir():
        return root
    fallback = Path(__file__).resolve().parent / PACKAGE_RESOURCES  # frozen importers without files()
    return fallback if fallback.is_dir() else None


def resources_dir() -> Path:
    """The folder with the bundled models, catalog, examples and icons."""
    override = os.environ.get(RESOURCES_ENV)
    if override:
        return Path(override)
    return packaged_resources_dir() or SOURCE_RESOURCES


def resource(*parts: str) -> Path:
    """A path inside the resources folder, e.g. `resource("icons", "stemgui.svg")`."""
    return resources_dir().joinpath(*parts)


def icon_path() -> Path:
    """The app's scalable icon."""
    return resource("icons", f"{APP_ID}.svg")


def example_song() -> Path:
    """The bundled example song (a synthetic 30 s mix whose true stems lie in `examples/example_stems/`)."""
    return resource("examples", "example.wav")


# Kept for code that imported the constant: where the resources are at import time.
RESOURCES = resources_dir()


def user_data_dir() -> Path:
    """User models (fine-tuned, imported) live here; STEMGUI_DATA_DIR overrides it (tests)."""
    override = os.environ.get("STEMGUI_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def user_models_dir() -> Path:
    return user_data_dir() / "models"


def user_cache_dir() -> Path:
    """Separated stems are cached here; STEMGUI_CACHE_DIR overrides it (tests)."""
    override = os.environ.get("STEMGUI_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def user_log_dir() -> Path:
    """The app's log and crash-trace files live here; STEMGUI_LOG_DIR overrides it (tests)."""
    override = os.environ.get("STEMGUI_LOG_DIR")
    return Path(override) if override else Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))
