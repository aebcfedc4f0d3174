"""Which models exist: the bundled default first, then the user's own (fine-tuned, imported).

A model is found by name (`default`, `my-finetune`) or by path to its `.safetensors` / `.json` file.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from stemgui.atomic import atomic_write
from stemgui.errors import ModelError
from stemgui.models.card import card_path, headline_score, read_card, weights_path
from stemgui.paths import resources_dir, user_models_dir

DEFAULT_NAME = "default"


@dataclass
class ModelEntry:
    """A model the registry knows: its name, where its weights are, its card, and whether it is bundled."""

    name: str
    path: Path
    card: dict
    bundled: bool

    @property
    def summary(self) -> str:
        score = headline_score(self.card)
        origin = "bundled" if self.bundled else "user"
        parts = [f"{self.name} ({origin})", ", ".join(self.card.get("sources", []))]
        if self.card.get("parameters"):
            parts.append(f"{self.card['parameters'] / 1e6:.1f} M params")
        if score:
            parts.append(score)
        return " | ".join(parts)


def bundled_models_dir() -> Path:
    return resources_dir() / "models"


def _scan(folder: Path, bundled: bool) -> list[ModelEntry]:
    entries: list[ModelEntry] = []
    if not folder.is_dir():
        return entries
    for card_file in sorted(folder.glob("*.json")):
        wpath = weights_path(card_file)
        if not wpath.is_file():
            continue
        try:
            card = read_card(card_file)
        except ModelError:
            continue
        entries.append(ModelEntry(card_file.stem, wpath, card, bundled))
    return entries


def list_models() -> list[ModelEntry]:
    """Bundled models (the default first), then user models, each only once by name."""
    bundled = _scan(bundled_models_dir(), True)
    bundled.sort(key=lambda e: (e.name != DEFAULT_NAME, e.name))
    seen = {e.name for e in bundled}
    users = [e for e in _scan(user_models_dir(), False) if e.name not in seen]
    return bundled + users


def default_model_path() -> Path:
    path = bundled_models_dir() / f"{DEFAULT_NAME}.safetensors"
    if not path.is_file() or not card_path(path).is_file():
        raise ModelError(f"{path}: the bundled default model is missing (reinstall, or pass --model)")
    return path


def resolve_model(name_or_path: str | os.PathLike | None) -> Path:
    """The weights path of a model given by name, by path, or None for the default."""
    if name_or_path is None or str(name_or_path) == DEFAULT_NAME:
        return default_model_path()
    candidate = Path(name_or_path)
    if candidate.suffix in (".safetensors", ".json") or candidate.exists() or os.sep in str(name_or_path):
        wpath = weights_path(candidate)
        if not card_path(wpath).is_file():
            raise ModelError(f"{candidate}: model not found (expected {wpath.name} and {card_path(wpath).name})")
        return wpath
    for entry in list_models():
        if entry.name == str(name_or_path):
            return entry.path
    names = ", ".join(e.name for e in list_models()) or "none"
    raise ModelError(f"model '{name_or_path}' not found (available: {names})")


def register_user_model(src: str | os.PathLike, name: str | None = None) -> Path:
    """Copy a model (weights, then card) into the user models folder so the app lists it."""
    wsrc = weights_path(src)
    card = read_card(wsrc)
    name = name or card.get("name") or wsrc.stem
    dest = user_models_dir() / f"{name}.safetensors"
    if dest.resolve() == wsrc.resolve():
        return dest
    atomic_write(dest, lambda tmp: shutil.copyfile(wsrc, tmp))
    atomic_write(card_path(dest), lambda tmp: shutil.copyfile(card_path(wsrc), tmp))
    return dest
