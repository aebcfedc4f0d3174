"""Evaluation tracks: whole songs of a MUSDB18-HQ-layout folder or of MUSDB18 `.stem.mp4` files, as references.

Why a reader of its own: evaluation reads whole songs and must score exactly what a model was trained against,
so it reads through the trainer's track discovery and file reader (stemgui.train.data). A two-stem model
(`vocals, accompaniment`) is scored on an ordinary four-stem dataset: its `accompaniment` reference is the
trainer's ACCOMPANIMENT, the sum of every stem but the vocals (in a MUSDB folder the trainer builds it itself;
a `.stem.mp4` holds the four streams, summed here the same way). The mixture is the dataset's own
(`mixture.wav` or stream 0 of a `.stem.mp4`), else the sum of the four stems, else the sum of the references.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from stemgui import SOURCES
from stemgui.data.layout import ACCOMPANIMENT, ACCOMPANIMENT_PARTS, audio_files, detect_format, find_tracks, stem_file
from stemgui.errors import DatasetError
from stemgui.train.data import StemRef, Track, discover_tracks, read_ref

log = logging.getLogger(__name__)

STEM_MP4 = ".stem.mp4"


@dataclass(frozen=True)
class EvalTrack:
    """One song to score: a MUSDB track folder or a `.stem.mp4` file (`path`), in format "musdb" or "stem-mp4"."""

    name: str
    path: Path
    format: str
    stems: tuple[str, ...]
    """The stems the song holds, ACCOMPANIMENT included when it can be built from the others."""


def _mp4_name(path: Path) -> str:
    return path.name[: -len(STEM_MP4)]


def _musdb_stems(folder: Path) -> tuple[str, ...]:
    names = [p.stem for p in audio_files(folder) if p.stem != "mixture"]
    if ACCOMPANIMENT not in names and all(stem_file(folder, s) for s in ACCOMPANIMENT_PARTS):
        names.append(ACCOMPANIMENT)
    return tuple(names)


def _mp4_files(root: Path, subset: str | None) -> list[Path]:
    """`.stem.mp4` files of `root/subset` (searched below it), or directly in `root` when it has no such folder."""
    if root.is_file():
        return [root]
    if subset and (root / subset).is_dir():
        return sorted((root / subset).rglob(f"*{STEM_MP4}"))
    files = sorted(root.glob(f"*{STEM_MP4}"))
    if not files and not subset:
        files = sorted(root.rglob(f"*{STEM_MP4}"))
    return files


def find_eval_tracks(dataset: str | Path, subset: str | None, names: list[str] | None = None) -> list[EvalTrack]:
    """The songs of `dataset` (or of its `subset` folder), only `names` when given; raises DatasetError."""
    root = Path(dataset)
    if root.is_file() and root.name.endswith(STEM_MP4):
        fmt = "stem-mp4"
    elif not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    else:
        fmt = detect_format(root)
    if fmt == "musdb":
        tracks = [EvalTrack(p.name, p, fmt, _musdb_stems(p)) for p in find_tracks(root, subset)]
    elif fmt == "stem-mp4":
        files = _mp4_files(root, subset)
        if not files:
            where = f"{root}" + (f" (subset '{subset}')" if subset else "")
            raise DatasetError(f"{where}: no {STEM_MP4} files found")
        tracks = [EvalTrack(_mp4_name(p), p, fmt, (*SOURCES, ACCOMPANIMENT)) for p in files]
    else:
        raise DatasetError(f"{root}: evaluate reads MUSDB18-HQ folders and {STEM_MP4} files, not {fmt} "
                           "(MIR-1K is scored by --real-voice)")
    if names:
        by_name = {t.name: t for t in tracks}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DatasetError(f"{dataset}: no track named {', '.join(missing)} (have: {', '.join(by_name)})")
        tracks = [by_name[n] for n in names]
    return tracks


def check_sources(dataset: str | Path, tracks: list[EvalTrack], sources: list[str], wanted_by: str) -> None:
    """One clear line when a source to score is in no track of the dataset (a stem missing from only some
    tracks is reported by the track that lacks it, when it is read)."""
    held: list[str] = []
    for track in tracks:
        held += [s for s in track.stems if s not in held]
    absent = [s for s in sources if s not in held]
    if absent:
        what = ", ".join(f"'{s}'" for s in absent)
        present = [s for s in sources if s in held]
        hint = f"; --sources {','.join(present)} scores the rest" if present and wanted_by != "--sources" else ""
        raise DatasetError(f"{dataset}: missing stem {what} in every track, which {wanted_by} needs (the dataset "
                           f"holds {', '.join(held) or 'no stems'}; {ACCOMPANIMENT} = every stem but vocals){hint}")


def _config(fmt: str, sources: list[str]):
    from stemgui.train.config import Config

    cfg = Config()
    cfg.data.format = fmt
    cfg.data.sources = list(sources)
    return cfg


def _trainer_track(track: EvalTrack, sources: list[str]) -> Track:
    """The trainer's view of one song with `sources` (a .stem.mp4 as its four streams: the trainer reads no
    ACCOMPANIMENT stream there)."""
    if track.format == "musdb":
        return discover_tracks(track.path, _config("musdb", sources), None)[0]
    wanted = [s for s in SOURCES if s in sources or (s in ACCOMPANIMENT_PARTS and ACCOMPANIMENT in sources)]
    for found in _mp4_folder(track.path.parent, tuple(wanted or SOURCES)):
        if found.name == track.name:
            return found
    raise DatasetError(f"{track.path}: {STEM_MP4} file not found")  # pragma: no cover - listed a moment ago


@lru_cache(maxsize=8)
def _mp4_folder(folder: Path, sources: tuple[str, ...]) -> list[Track]:
    """The trainer's tracks of one folder of .stem.mp4 files, probed once per process, not once per song."""
    return discover_tracks(folder, _config("stem-mp4", list(sources)), None)


def _stereo(wav: np.ndarray) -> np.ndarray:
    """Mono as two equal channels, as stemgui.data.layout reads stems."""
    return np.repeat(wav, 2, axis=0) if wav.shape[0] == 1 else wav


def read_references(track: EvalTrack, sources: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """(references (sources, channels, samples), mixture (channels, samples), sample rate) of one song, float32."""
    song = _trainer_track(track, sources)
    frames = song.frames
    stems = []
    for source in sources:
        if source in song.stems:
            stems.append(_stereo(read_ref(song.stems[source], 0, frames)))
        elif source == ACCOMPANIMENT:  # a .stem.mp4: the trainer's accompaniment from its four streams
            stems.append(sum(_stereo(read_ref(song.stems[s], 0, frames)) for s in ACCOMPANIMENT_PARTS))
        else:  # pragma: no cover - discovery raises first
            raise DatasetError(f"{track.path}: missing stem '{source}'")
    references = np.stack(stems).astype(np.float32)
    if track.format == "stem-mp4":
        mixture = _stereo(read_ref(StemRef(track.path, stream=0), 0, frames))
    elif stem_file(track.path, "mixture") or all(stem_file(track.path, s) for s in SOURCES):
        from stemgui.data.layout import read_mixture

        mixture, rate = read_mixture(track.path)  # mixture.wav, else the four stems' sum (not just those scored)
        if rate != song.samplerate:
            raise DatasetError(f"{track.path}: the mixture's sample rate {rate} Hz differs from the stems' "
                               f"({song.samplerate} Hz)")
    else:
        mixture = references.sum(axis=0)
    log.debug("%s: %d sources, %d samples at %d Hz", track.path, len(sources), frames, song.samplerate)
    return references, np.ascontiguousarray(mixture, dtype=np.float32), song.samplerate
