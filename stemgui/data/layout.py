"""Dataset layouts: MUSDB18-HQ folders (`root/<subset>/<track>/{mixture,drums,bass,other,vocals}.wav`), MUSDB18
`.stem.mp4` files, MIR-1K clips and folders of multitracks named by a `stem_map`.

Training, the dataset check of the Fine-tune panel, evaluation, the synthetic generator and `separate --reference`
all read these layouts, so what a layout is (file suffixes, stem file names, how a format is recognised, which
sources it holds) lives here once: a folder that passes the check is read the same way by the trainer.
Reading is whole-track (evaluation); training reads lazy segments itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from stemgui import SOURCES
from stemgui.errors import DatasetError

AUDIO_SUFFIXES = (".wav", ".flac")
ACCOMPANIMENT = "accompaniment"  # a two-stem source; on a four-stem dataset the sum of ACCOMPANIMENT_PARTS
ACCOMPANIMENT_PARTS = tuple(s for s in SOURCES if s != "vocals")
MIR1K_SOURCES = ("accompaniment", "vocals")  # a MIR-1K clip: left channel accompaniment, right channel voice
STEM_MP4_STREAMS = {name: index + 1 for index, name in enumerate(SOURCES)}  # stream 0 is the mixture


def detect_format(root: Path, requested: str = "auto", stem_map: dict[str, str] | None = None) -> str:
    """The layout of the dataset at `root`: `requested` unless it is "auto", else recognised from its files."""
    if requested != "auto":
        return requested
    if stem_map:
        return "folder"
    if next(root.rglob("*.stem.mp4"), None) is not None:
        return "stem-mp4"
    if (root / "Wavfile").is_dir():
        return "mir1k"
    return "musdb"


def dataset_sources(fmt: str, requested: list[str] | tuple[str, ...] | None) -> list[str]:
    """The sources to train on: MIR-1K holds two, so the default four stand for its own two."""
    if fmt == "mir1k" and (not requested or list(requested) == list(SOURCES)):
        return list(MIR1K_SOURCES)
    return list(requested or SOURCES)


def audio_files(folder: Path) -> list[Path]:
    """The wav/flac files directly in `folder`, sorted by name (none when it cannot be listed)."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    except OSError:
        return []


def stem_file(track_dir: Path, name: str) -> Path | None:
    """The file of stem `name` in a track folder (wav or flac), or None."""
    for suffix in AUDIO_SUFFIXES:
        candidate = track_dir / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _is_track(folder: Path, sources: tuple[str, ...] | list[str]) -> bool:
    """A folder holding a mixture or a stem; hidden folders never are (a half-written song waits in
    `.<name>.*.tmp` until it is renamed, and a tool's `.cache` is no song)."""
    return not folder.name.startswith(".") and any(stem_file(folder, name) for name in ("mixture", *sources))


def find_tracks(root: str | Path, subset: str | None = None, sources=SOURCES) -> list[Path]:
    """Track folders under `root` (or `root/subset`), sorted by name.

    Accepts `root/<subset>/<track>/`, `root/<track>/` and `root` itself being one track.
    """
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found")
    if subset is not None and (base / subset).is_dir():
        base = base / subset
    if _is_track(base, sources):
        return [base]
    tracks = sorted(p for p in base.iterdir() if p.is_dir() and _is_track(p, sources))
    if not tracks and subset is None:
        tracks = sorted(p for s in base.iterdir() if s.is_dir() for p in s.iterdir()
                        if p.is_dir() and _is_track(p, sources))
    if not tracks:
        where = f"{base}" + (f" (subset '{subset}')" if subset else "")
        raise DatasetError(f"{where}: no tracks found (expected <track>/mixture.wav and stem files)")
    return tracks


def read_stems(track_dir: str | Path, sources=SOURCES) -> tuple[np.ndarray, int]:
    """All stems of a track as float32 (sources, channels, samples) and their common sample rate."""
    track = Path(track_dir)
    stems: list[np.ndarray] = []
    rate: int | None = None
    length: int | None = None
    for name in sources:
        path = stem_file(track, name)
        if path is None:
            raise DatasetError(f"{track}: missing stem '{name}' ({name}.wav or {name}.flac)")
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise DatasetError(f"{path}: cannot read stem ({exc})") from None
        if rate is not None and sr != rate:
            raise DatasetError(f"{path}: sample rate {sr} Hz differs from the other stems ({rate} Hz)")
        if length is not None and len(data) != length:
            raise DatasetError(f"{path}: {len(data)} samples, the other stems have {length}")
        rate, length = sr, len(data)
        wav = data.T
        if wav.shape[0] == 1:
            wav = np.repeat(wav, 2, axis=0)
        stems.append(wav)
    return np.stack(stems), int(rate)


def read_mixture(track_dir: str | Path, sources=SOURCES) -> tuple[np.ndarray, int]:
    """The track's mixture file, or the sum of its stems when there is none."""
    track = Path(track_dir)
    path = stem_file(track, "mixture")
    if path is None:
        stems, sr = read_stems(track, sources)
        return stems.sum(axis=0), sr
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wav = data.T
    if wav.shape[0] == 1:
        wav = np.repeat(wav, 2, axis=0)
    return wav, int(sr)
