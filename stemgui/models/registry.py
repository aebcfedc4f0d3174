"""Which models exist: the bundled default first, then the user's own (fine-tuned, imported).

A model is found by name (`default`, `my-finetune`) or by path to its `.safetensors` / `.json` file.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from stemgui.atomic import atomic_write, atomic_write_text
from stemgui.errors import ModelError
from stemgui.models.card import card_path, headline_score, read_card, weights_path
from stemgui.paths import resources_dir, user_data_dir, user_models_dir

DEFAULT_NAME = "default"


@dataclass
class ModelEntry:
    """A model the registry knows: its name, where its weights are, its card, and whether it is bundled."""

    name: str
    path: Path
    card: dict
    bundled: bool
    study: str = ""  # the study whose run this model is ("" for bundled and user models)

    @property
    def summary(self) -> str:
        score = headline_score(self.card)
        origin = f"study {self.study}" if self.study else "bundled" if self.bundled else "user"
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
    """Bundled models (the default first), then user models, then study runs, each only once by name."""
    bundled = _scan(bundled_models_dir(), True)
    bundled.sort(key=lambda e: (e.name != DEFAULT_NAME, e.name))
    seen = {e.name for e in bundled}
    users = [e for e in _scan(user_models_dir(), False) if e.name not in seen]
    seen |= {e.name for e in users}
    return bundled + users + [e for e in _study_models() if e.name not in seen]


STUDIES_FILE = "studies.json"
"""In the user data folder: the study folders whose finished runs the registry lists (`stemgui study` adds them)."""


def studies_file() -> Path:
    return user_data_dir() / STUDIES_FILE


def registered_studies() -> list[Path]:
    try:
        folders = json.loads(studies_file().read_text(encoding="utf-8")).get("studies", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [Path(f) for f in folders if isinstance(f, str)]


def register_study(folder: str | os.PathLike) -> None:
    """List a study folder's finished runs (its `models.json`) among the models, as `<study>.<run>`."""
    folder = str(Path(folder).resolve())
    known = [str(p) for p in registered_studies()]
    if folder not in known:
        atomic_write_text(studies_file(), json.dumps({"studies": [*known, folder]}, indent=1))


def _study_labels(manifests: list[tuple[Path, dict]]) -> list[str]:
    """The prefix of each study's model names: its study name, or where several registered folders ran the same
    study file (a rerun beside the first), the folder's name without `.study`, numbered if even that repeats."""
    names = [str(m.get("study", f.name)) for f, m in manifests]
    labels, used = [], set()
    for (folder, _), name in zip(manifests, names):
        label = name if names.count(name) == 1 else folder.name.removesuffix(".study")
        base, n = label, 2
        while label in used:
            label, n = f"{base}~{n}", n + 1
        used.add(label)
        labels.append(label)
    return labels


def _study_models() -> list[ModelEntry]:
    """The finished runs of every registered study as `<study>.<run>`, one name per model (see `_study_labels`)."""
    manifests = []
    for folder in registered_studies():
        try:
            manifests.append((folder, json.loads((folder / "models.json").read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            continue  # a study not started yet, or moved away
    entries: list[ModelEntry] = []
    for (folder, manifest), study in zip(manifests, _study_labels(manifests)):
        for model in manifest.get("models", []):
            wpath = Path(model.get("path", ""))
            try:
                card = read_card(wpath)
            except (ModelError, OSError):
                continue
            if wpath.is_file():
                entries.append(ModelEntry(f"{study}.{model.get('name')}", wpath, card, False, study))
    return entries


def default_model_path() -> Path:
    path = bundled_models_dir() / f"{DEFAULT_NAME}.safetensors"
    if not path.is_file() or not card_path(path).is_file():
        raise ModelError(f"{path}: the bundled default model is missing (reinstall, or pass --model)")
    return path


def names_a_file(text: str) -> bool:
    """`text` is a weights or card path (a file suffix or a folder separator), not a registry name."""
    return text.endswith((".safetensors", ".json")) or "/" in text or "\\" in text or os.sep in text


def resolve_model(name_or_path: str | os.PathLike | None) -> Path:
    """The weights path of a model given by name, by path, or None for the default."""
    if name_or_path is None or str(name_or_path) == DEFAULT_NAME:
        return default_model_path()
    candidate = Path(name_or_path)
    if names_a_file(str(name_or_path)) or candidate.exists():
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
