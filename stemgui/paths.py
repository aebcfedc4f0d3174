"""Where StemGUI keeps bundled resources, user models, caches and settings (platformdirs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "StemGUI"
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


def resources_dir() -> Path:
    """The folder with bundled models, examples and icons (overridable for packaged builds)."""
    return Path(os.environ.get("STEMGUI_RESOURCES", RESOURCES))


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
