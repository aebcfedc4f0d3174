"""The catalog of published models a user can fetch: what they are, where their files live, and `get_model`.

The catalog is a data file (`resources/catalog.json`, or the file `STEMGUI_CATALOG` names) listing each
official model's member files relative to one root URL (`STEMGUI_MODEL_ROOT` replaces it: mirrors, labs,
tests), its sources, reported quality, training data and licence. `get_model` downloads every member through
`download()` (resumable, progress, cancel), checks each file against the sha256 prefix in its name (the Demucs
convention `SIG-HASH.th`), converts the member(s) to one safetensors + card model with the full sha256 of every
file recorded, removes the `.th` files and registers the model under the catalog name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stemgui.errors import Cancelled, ModelError
from stemgui.paths import resources_dir, user_data_dir, user_models_dir

__all__ = ["CATALOG_FORMAT", "Catalog", "CatalogEntry", "DownloadProgress", "get_model", "load_catalog"]

log = logging.getLogger(__name__)
CATALOG_FORMAT = "stemgui-catalog/1"


@dataclass(frozen=True)
class CatalogEntry:
    """One published model: its member files (relative URLs), bag weights and what its authors say of it."""

    name: str
    title: str
    description: str
    architecture: str
    sources: list[str]
    files: list[str]
    weights: list[list[float]] | None = None
    segment: float | None = None
    size_mb: float | None = None
    reported_sdr: float | None = None
    reported_sdr_note: str = ""
    trained_on: str = ""
    musdb_test_in_training: bool = False

    @property
    def is_bag(self) -> bool:
        return len(self.files) > 1 or self.weights is not None

    @property
    def quality(self) -> str:
        """Reported quality in words, for lists and dialogs."""
        if self.reported_sdr is not None:
            return f"{self.reported_sdr:.1f} dB SDR (MUSDB18-HQ test, reported by its authors)"
        return self.reported_sdr_note or "not reported"


@dataclass(frozen=True)
class Catalog:
    root: str
    licence: str
    publisher: str
    entries: list[CatalogEntry] = field(default_factory=list)
    path: Path | None = None

    def find(self, name: str) -> CatalogEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        names = ", ".join(e.name for e in self.entries)
        raise ModelError(f"'{name}' is not in the model catalog (available: {names})")

    def url(self, relative: str) -> str:
        root = os.environ.get("STEMGUI_MODEL_ROOT") or self.root
        return root.rstrip("/") + "/" + relative.lstrip("/")


def catalog_path() -> Path:
    override = os.environ.get("STEMGUI_CATALOG")
    return Path(override) if override else resources_dir() / "catalog.json"


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    """Read and check the catalog; one ModelError line naming the file for any problem."""
    path = Path(path) if path else catalog_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: model catalog not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: model catalog is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != CATALOG_FORMAT:
        raise ModelError(f"{path}: not a StemGUI model catalog (format {data.get('format') if isinstance(data, dict) else None!r})")
    entries = []
    known = set(CatalogEntry.__dataclass_fields__)
    for index, raw in enumerate(data.get("models") or []):
        if not isinstance(raw, dict) or not raw.get("name") or not raw.get("files"):
            raise ModelError(f"{path}: catalog entry {index} needs at least 'name' and 'files'")
        values = {k: v for k, v in raw.items() if k in known}
        values.setdefault("title", raw["name"])
        values.setdefault("description", "")
        values.setdefault("architecture", "")
        values.setdefault("sources", [])
        try:
            entries.append(CatalogEntry(**values))
        except TypeError as exc:
            raise ModelError(f"{path}: catalog entry '{raw['name']}' is malformed ({exc})") from None
    return Catalog(str(data.get("root", "")), str(data.get("licence", "")), str(data.get("publisher", "")),
                   entries, path)


def installed_names() -> set[str]:
    from stemgui.models.registry import list_models

    return {e.name for e in list_models()}


@dataclass
class DownloadProgress:
    """Where a multi-file download stands: bytes over all files so far, the file being fetched, ETA."""

    done: int
    total: int | None
    file_index: int
    file_count: int
    file_name: str
    eta: float | None = None
    stage: str = "download"  # download | convert


ProgressFn = Callable[[DownloadProgress], None]


def downloads_dir() -> Path:
    return user_data_dir() / "downloads"


def get_model(name: str, *, catalog: Catalog | None = None, progress: ProgressFn | None = None,
              cancel: Any = None, dest_dir: str | os.PathLike | None = None, timeout: float = 30.0) -> Path:
    """Download, verify, convert and register the catalog model `name`; returns its `.safetensors` path.

    Interrupted downloads resume on the next call (the partial files stay in the downloads folder). A file
    whose sha256 does not start with the hash in its name is deleted and nothing is registered.
    """
    from stemgui.models.download import download
    from stemgui.models.legacy import import_bag_to_card, import_to_card, verify_signature_name

    catalog = catalog or load_catalog()
    entry = catalog.find(name)
    dest_dir = Path(dest_dir) if dest_dir else user_models_dir()
    staging = downloads_dir() / entry.name
    staging.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    done_before = 0
    started = time.monotonic()
    total_known = entry.size_mb * 1e6 if entry.size_mb else None
    for index, relative in enumerate(entry.files):
        filename = Path(relative).name
        sig_hash = filename.rsplit(".", 1)[0].split("-")[-1] if "-" in filename else None
        target = staging / filename

        def on_bytes(done: int, total: int | None, _index: int = index, _name: str = filename) -> None:
            if progress is None:
                return
            so_far = done_before + done
            elapsed = time.monotonic() - started
            expected = total_known or ((done_before + total) if total else None)
            eta = None
            if expected and so_far > 0 and elapsed > 0.5:
                eta = elapsed * max(expected - so_far, 0) / so_far
            progress(DownloadProgress(so_far, expected, _index, len(entry.files), _name, eta))

        url = catalog.url(relative)
        log.info("downloading %s", url)
        download(url, target, sha256=sig_hash, progress=on_bytes, cancel=cancel, timeout=timeout)
        try:
            verify_signature_name(target)
        except ModelError:
            target.unlink(missing_ok=True)
            raise
        done_before += target.stat().st_size
        files.append(target)
    if cancel is not None and (cancel() if callable(cancel) else getattr(cancel, "is_cancelled", False)):
        raise Cancelled(f"{entry.name}: cancelled before conversion (downloads kept to resume)")
    if progress:
        progress(DownloadProgress(done_before, done_before, len(files) - 1, len(files), files[-1].name, 0.0,
                                  "convert"))
    card = {
        "description": entry.description,
        "title": entry.title,
        "licence": catalog.licence,
        "catalog": {"name": entry.name, "publisher": catalog.publisher, "files": list(entry.files),
                    "reported_sdr": entry.reported_sdr, "reported_sdr_note": entry.reported_sdr_note,
                    "trained_on": entry.trained_on, "musdb_test_in_training": entry.musdb_test_in_training},
    }
    if entry.is_bag:
        bag_yaml = staging / f"{entry.name}.yaml"
        lines = [f"models: {[f.name.split('-')[0] for f in files]!r}"]
        if entry.weights is not None:
            lines.append(f"weights: {entry.weights!r}")
        if entry.segment is not None:
            lines.append(f"segment: {entry.segment}")
        bag_yaml.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path = import_bag_to_card(bag_yaml, dest_dir, entry.name, member_files=files, card=card)
    else:
        kwargs = {"segment": float(entry.segment)} if entry.segment is not None else None
        path = import_to_card(files[0], dest_dir, entry.name, kwargs=kwargs, card=card)
    shutil.rmtree(staging, ignore_errors=True)
    log.info("installed %s as %s", entry.name, path)
    return path

