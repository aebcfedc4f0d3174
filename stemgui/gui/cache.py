"""Cache of separated stems, keyed by (song content hash, model weights hash, separation settings).

Reopening a song with the same model and settings shows its lanes at once, however long the song. An entry is a
folder holding `lanes.f32`, the raw float32 lanes (mix first, then the stems) as one (lanes, channels, frames)
array that the app memory-maps instead of loading (`stemgui.gui.lane_file`), and `manifest.json` with its
shape and a CRC-32 per lane.

Safe with several app instances at once:
- an entry is written in a private hidden staging folder (`.<key>.partial-XXXX`) and renamed into place only
  when complete, under an exclusive lock on `<key>.lock`; readers take the lock shared. Two instances writing
  the same key leave one whole entry (the later one), never a mix of both;
- `get` checks every lane's checksum: a damaged entry (a flipped byte, a truncated file) is logged, removed,
  and is a miss, so the song is separated again;
- a failed write (disk full, cancel, crash) removes its staging folder and leaves the previous entry intact; a
  staging folder whose writer died (kill -9) is removed by the next `get` or writer (its owner lock is free).
Qt-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from stemgui.atomic import atomic_write_text
from stemgui.errors import Cancelled
from stemgui.gui import lane_file
from stemgui.paths import user_cache_dir

try:
    import fcntl
except ImportError:  # Windows: entries are still written aside and renamed, only without the lock
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)
CACHE_FORMAT = 2
MANIFEST = "manifest.json"
LANES = "lanes.f32"
OWNER = "owner.lock"
MIX_NAME = "mix"
ABANDONED_SECONDS = 60.0  # a `.init-` folder (before its owner lock is taken) this old was left by a kill
CHECK_BLOCK = 8 << 20  # bytes read at a time to check a checksum (read into one buffer: no RSS growth)
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


class DamagedEntry(ValueError):
    """A cache entry whose files do not match its manifest."""


class _Stale(Exception):
    """An entry in an older format."""


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """flock `path` (created if missing); yields False when `blocking=False` and someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        got = True
        if fcntl is not None:
            mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, mode)
            except BlockingIOError:
                got = False
        yield got
    finally:
        os.close(fd)  # closing drops the lock


def lane_checksums(path: Path, lanes: int, lane_bytes: int) -> list[int]:
    """CRC-32 of each lane's bytes in a lanes file, read block by block into one reused buffer."""
    buf = bytearray(min(CHECK_BLOCK, max(lane_bytes, 1)))
    view = memoryview(buf)
    sums = []
    with open(path, "rb", buffering=0) as f:
        for _ in range(lanes):
            crc, left = 0, lane_bytes
            while left > 0:
                n = f.readinto(view[:min(len(buf), left)])
                if not n:
                    raise DamagedEntry(f"{path}: shorter than its manifest says")
                crc = zlib.crc32(view[:n], crc)
                left -= n
            sums.append(crc)
    return sums


@dataclass
class CachedStems:
    """A cache hit: the lanes mapped read-only (mix first), at the model's rate."""

    audio: np.ndarray  # (lanes, channels, samples) float32, lane 0 the mix
    samplerate: int
    sources: tuple[str, ...]
    manifest: dict

    @property
    def stems(self) -> np.ndarray:
        return self.audio[1:]


class CacheWriter:
    """An entry being written: its lanes file mapped writable in a private staging folder until `commit`."""

    def __init__(self, cache: "StemCache", key: str, shape: tuple[int, int, int], samplerate: int,
                 sources: Sequence[str]) -> None:
        self.cache, self.key = cache, key
        self.samplerate, self.sources = int(samplerate), list(sources)
        cache.root.mkdir(parents=True, exist_ok=True)
        cache.remove_abandoned()
        # set up under another name, so every `.partial-` folder has its owner lock held while its writer lives
        init = Path(tempfile.mkdtemp(prefix=f".{key}.init-", dir=cache.root))
        self._owner = os.open(init / OWNER, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            fcntl.flock(self._owner, fcntl.LOCK_EX)  # held while alive: a dead writer's folder is removable
        self.staging = init.with_name(init.name.replace(".init-", ".partial-", 1))
        os.rename(init, self.staging)
        try:
            self.audio = lane_file.create_lanes(self.staging / LANES, tuple(int(v) for v in shape))
        except BaseException:
            self.abort()
            raise
        self.done = False

    def commit(self, meta: Mapping[str, object] | None = None) -> Path:
        """Checksum, manifest, then rename into place under the key's lock; returns the entry's folder."""
        try:
            lane_file.flush(self.audio)
            lanes, channels, frames = self.audio.shape
            path = self.staging / LANES
            sums = lane_checksums(path, lanes, channels * frames * lane_file.DTYPE.itemsize)
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            manifest = {"format": CACHE_FORMAT, "id": uuid.uuid4().hex, "lanes_file": LANES,
                        "names": [MIX_NAME] + self.sources, "sources": self.sources, "samplerate": self.samplerate,
                        "shape": [lanes, channels, frames], "frames": frames, "channels": channels,
                        "dtype": lane_file.DTYPE.str, "crc32": sums,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **dict(meta or {})}
            atomic_write_text(self.staging / MANIFEST, json.dumps(manifest, indent=1, default=str))
            final = self.cache.entry_dir(self.key)
            with file_lock(self.cache.lock_path(self.key)):
                old = None
                if final.exists():
                    old = final.with_name(f".{self.key}.old-{uuid.uuid4().hex[:8]}")
                    os.replace(final, old)
                os.replace(self.staging, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            self.abort()
            raise
        self.done = True
        self._release_owner()
        return final

    def abort(self) -> None:
        """Remove the staging folder (a mapping of its lanes stays readable until dropped)."""
        self._release_owner()
        if not getattr(self, "done", False):
            shutil.rmtree(self.staging, ignore_errors=True)

    def _release_owner(self) -> None:
        if self._owner is not None:
            os.close(self._owner)
            self._owner = None


class StemCache:
    """Entries under `root` (default: the user cache dir's `stems/`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else user_cache_dir() / "stems"

    def entry_dir(self, key: str) -> Path:
        return self.root / key

    def lock_path(self, key: str) -> Path:
        return self.root / f"{key}.lock"

    def __contains__(self, key: str) -> bool:
        return (self.entry_dir(key) / MANIFEST).is_file()

    def get(self, key: str) -> CachedStems | None:
        """The cached lanes, mapped; None when absent or damaged (a damaged entry is logged and removed)."""
        folder = self.entry_dir(key)
        self.remove_abandoned()  # what killed writers left, also when this open is a hit
        if not (folder / MANIFEST).is_file():
            return None
        manifest: dict = {}
        with file_lock(self.lock_path(key), shared=True):
            try:
                manifest = json.loads((folder / MANIFEST).read_text())
                if manifest.get("format") != CACHE_FORMAT:  # an older app's entry: not damaged, just stale
                    log.info("cache entry %s has format %s, not %s: removed", folder, manifest.get("format"),
                             CACHE_FORMAT)
                    raise _Stale()
                shape = tuple(int(v) for v in manifest["shape"])
                lanes_path = folder / manifest["lanes_file"]
                size = lane_file.nbytes(shape)
                if lanes_path.stat().st_size != size:
                    raise DamagedEntry(f"{lanes_path.name} holds {lanes_path.stat().st_size} bytes, {size} expected")
                sums = lane_checksums(lanes_path, shape[0], size // shape[0])
                bad = [manifest["names"][i] for i, (a, b) in enumerate(zip(sums, manifest["crc32"])) if a != b]
                if bad:
                    raise DamagedEntry(f"checksum mismatch in lane(s) {', '.join(bad)}")
                audio = lane_file.open_lanes(lanes_path, shape)
                return CachedStems(audio, int(manifest["samplerate"]), tuple(manifest["sources"]), manifest)
            except FileNotFoundError:
                return None  # replaced or cleared while we looked
            except _Stale:
                pass
            except (DamagedEntry, ValueError, KeyError, TypeError, OSError) as exc:
                log.warning("cache entry %s is damaged (%s): removed, the song will be separated again", folder, exc)
        self._remove_if_same(key, manifest.get("id"))
        return None

    def _remove_if_same(self, key: str, entry_id: str | None) -> None:
        """Remove the damaged entry unless another instance replaced it meanwhile (a new id)."""
        folder = self.entry_dir(key)
        with file_lock(self.lock_path(key)):
            try:
                now = json.loads((folder / MANIFEST).read_text()).get("id")
            except (OSError, ValueError):
                now = None
            if now is None or now == entry_id:
                trash = folder.with_name(f".{key}.damaged-{uuid.uuid4().hex[:8]}")
                with contextlib.suppress(OSError):
                    os.replace(folder, trash)
                shutil.rmtree(trash, ignore_errors=True)

    def writer(self, key: str, shape: tuple[int, int, int], samplerate: int, sources: Sequence[str]) -> CacheWriter:
        """Start an entry of `shape` (lanes = 1 + stems); raises OSError (e.g. ENOSPC) if its file cannot fit."""
        return CacheWriter(self, key, shape, samplerate, sources)

    def put(self, key: str, stems: np.ndarray, samplerate: int, sources: Sequence[str],
            meta: Mapping[str, object] | None = None, cancel: Callable[[], bool] | None = None,
            mix: np.ndarray | None = None) -> Path:
        """Store stems (S, C, T) (and the mix (C, T), else their sum) in blocks; `cancel()` aborts, leaving nothing."""
        stems = np.asarray(stems)
        s, c, t = stems.shape
        w = self.writer(key, (s + 1, c, t), samplerate, sources)
        try:
            block = 1 << 18
            for k in range(s):
                if cancel is not None and cancel():
                    raise Cancelled("Caching the stems was cancelled.")
                for a in range(0, t, block):
                    w.audio[k + 1, :, a:a + block] = stems[k, :, a:a + block]
            for a in range(0, t, block):
                w.audio[0, :, a:a + block] = stems[:, :, a:a + block].sum(axis=0) if mix is None else mix[:, a:a + block]
            return w.commit(meta)
        except BaseException:
            w.abort()
            raise

    def remove_abandoned(self) -> list[Path]:
        """Staging folders whose writer is gone (killed mid-write): nobody holds their owner lock."""
        removed = []
        if fcntl is None or not self.root.is_dir():
            return removed
        for folder in self.root.glob(".*.partial-*"):
            with contextlib.suppress(OSError):
                with file_lock(folder / OWNER, blocking=False) as free:
                    if free:
                        shutil.rmtree(folder, ignore_errors=True)
                        removed.append(folder)
        for folder in self.root.glob(".*.init-*"):  # killed in the instant between mkdtemp and its rename
            with contextlib.suppress(OSError):
                if time.time() - folder.stat().st_mtime > ABANDONED_SECONDS:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
        for folder in list(self.root.glob(".*.old-*")) + list(self.root.glob(".*.damaged-*")):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        return removed

    def size_bytes(self) -> int:
        if not self.root.exists():
            return 0
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file() and not f.name.endswith(".lock"))

    def clear(self) -> int:
        """Remove every entry; returns the bytes freed (mapped lanes of an open song stay readable)."""
        freed = self.size_bytes()
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        return freed
