"""Cache of separated stems, keyed by (song content hash, model weights hash, separation settings).

Reopening a song with the same model and settings shows its stems at once. Each entry is a folder with one
24-bit FLAC per stem (scaled down when a stem peaks over full scale) and a `manifest.json`. Every file is written
atomically (`stemgui.atomic`) and the manifest last: an entry without one is incomplete, a miss, and a cancelled
or failed write removes the entry, so nothing half-written is ever read back. Qt-free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import soundfile as sf

from stemgui.atomic import atomic_path, atomic_write_text
from stemgui.errors import Cancelled
from stemgui.paths import user_cache_dir

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
MANIFEST = "manifest.json"
_digest_memo: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (memoised by path, size and mtime: model files are hashed once per session)."""
    path = Path(path)
    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key in _digest_memo:
        return _digest_memo[memo_key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    _digest_memo[memo_key] = h.hexdigest()
    return _digest_memo[memo_key]


def cache_key(song_digest: str, model_digest: str, settings: Mapping[str, object]) -> str:
    """One key per (song content, model weights, settings that change the output)."""
    blob = json.dumps({"v": CACHE_FORMAT, "song": song_digest, "model": model_digest, "settings": dict(settings)},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass
class CachedStems:
    stems: np.ndarray  # (sources, channels, samples) float32
    samplerate: int
    sources: tuple[str, ...]
    manifest: dict


class StemCache:
    """Folders of stems under `root` (default: the user cache dir's `stems/`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else user_cache_dir() / "stems"

    def entry_dir(self, key: str) -> Path:
        return self.root / key

    def __contains__(self, key: str) -> bool:
        return (self.entry_dir(key) / MANIFEST).is_file()

    def get(self, key: str) -> CachedStems | None:
        """The cached stems, or None when absent or unreadable (a damaged entry is removed)."""
        folder = self.entry_dir(key)
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
            if manifest.get("format") != CACHE_FORMAT:
                raise ValueError("old cache format")
            stems = []
            for name, scale in zip(manifest["sources"], manifest["scales"]):
                data, sr = sf.read(folder / f"{name}.flac", dtype="float32", always_2d=True)
                if sr != manifest["samplerate"]:
                    raise ValueError("sample rate mismatch")
                stems.append(data.T * np.float32(scale))
            stack = np.stack(stems).astype(np.float32, copy=False)
            return CachedStems(stack, int(manifest["samplerate"]), tuple(manifest["sources"]), manifest)
        except FileNotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001 - a damaged entry is a miss, not an error
            log.warning("cache entry %s is damaged and removed: %s", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def put(self, key: str, stems: np.ndarray, samplerate: int, sources: Sequence[str],
            meta: Mapping[str, object] | None = None, cancel: Callable[[], bool] | None = None) -> Path:
        """Store stems (S, C, T); `cancel()` returning True aborts and leaves nothing behind."""
        folder = self.entry_dir(key)
        (folder / MANIFEST).unlink(missing_ok=True)  # an entry being replaced is a miss until it is complete
        folder.mkdir(parents=True, exist_ok=True)
        try:
            scales = []
            for name, stem in zip(sources, stems):
                if cancel is not None and cancel():
                    raise Cancelled("Caching the stems was cancelled.")
                peak = float(np.abs(stem).max()) if stem.size else 0.0
                scale = peak / 0.999 if peak > 0.999 else 1.0
                with atomic_path(folder / f"{name}.flac", suffix=".flac") as tmp:
                    sf.write(tmp, (stem / scale).T, samplerate, subtype="PCM_24", format="FLAC")
                scales.append(scale)
            manifest = {"format": CACHE_FORMAT, "sources": list(sources), "samplerate": int(samplerate),
                        "frames": int(stems.shape[2]), "channels": int(stems.shape[1]), "scales": scales,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **dict(meta or {})}
            atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=1, default=str))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return folder

    def size_bytes(self) -> int:
        if not self.root.exists():
            return 0
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())

    def clear(self) -> int:
        """Remove every entry; returns the bytes freed."""
        freed = self.size_bytes()
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        return freed
