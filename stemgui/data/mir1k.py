"""MIR-1K singers: who is held out, and reading a clip as a two-stem (vocals, accompaniment) example.

Why here: the synthetic generator draws its voices from MIR-1K and the real-voice check scores models on
MIR-1K's own karaoke mixes; both must agree on which singers are held out, so the split lives in one place.
HELD_OUT_SINGERS are named explicitly: they are the singers the bundled model never heard (the generator's
old CRC split picked exactly these two from the shared subset), so its real-voice figures are honest.
A clip's file layout (left = accompaniment, right = voice, 16 kHz) follows stemgui.data.layout.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from stemgui.data.layout import MIR1K_SOURCES, audio_files
from stemgui.errors import DatasetError

HELD_OUT_SINGERS = ("bobon", "jmzen")
"""Never in any synthetic train/valid song; the real-voice validation set."""
MIR1K_DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "mir-1k-subset"


def default_mir1k_dir() -> Path:
    """MIR-1K location: $STEMGUI_MIR1K, else the shared folder next to the repository."""
    return Path(os.environ.get("STEMGUI_MIR1K") or MIR1K_DEFAULT)


def singer_of(path: Path | str) -> str:
    """MIR-1K names clips `<singer>_<song>_<clip>`."""
    return Path(path).stem.split("_")[0]


def is_held_out_singer(singer: str) -> bool:
    """A singer of the real-voice check: never used to build training material."""
    return singer.lower() in HELD_OUT_SINGERS


def is_test_singer(singer: str) -> bool:
    """Singers kept out of training: the named real-voice singers, plus about 1 in 6 of the others by a stable
    hash (the full MIR-1K has singers the shared subset lacks)."""
    return is_held_out_singer(singer) or zlib.crc32(singer.lower().encode()) % 6 == 0


def clip_folder(root: str | os.PathLike | None) -> Path:
    """The folder holding the clips: `root/Wavfile` when present (the original layout), else `root`."""
    base = Path(root) if root else default_mir1k_dir()
    folder = base / "Wavfile" if (base / "Wavfile").is_dir() else base
    if not folder.is_dir():
        raise DatasetError(f"{base}: MIR-1K folder not found (expected Wavfile/*.wav or *.flac).")
    return folder


def all_clips(root: str | os.PathLike | None) -> list[Path]:
    """Every `<singer>_<song>_<clip>` wav/flac clip, sorted by name."""
    folder = clip_folder(root)
    clips = [p for p in audio_files(folder) if "_" in p.stem]
    if not clips:
        raise DatasetError(f"{folder}: no MIR-1K clips (<singer>_<song>_<clip>.wav/.flac) in this folder.")
    return clips


def real_voice_clips(root: str | os.PathLike | None, limit: int = 0) -> list[Path]:
    """The held-out singers' clips; `limit` > 0 keeps that many, evenly spread over the sorted list."""
    clips = [p for p in all_clips(root) if is_held_out_singer(singer_of(p))]
    if not clips:
        raise DatasetError(f"{clip_folder(root)}: no clips of the held-out singers ({', '.join(HELD_OUT_SINGERS)}).")
    if 0 < limit < len(clips):
        picks = np.linspace(0, len(clips) - 1, limit).round().astype(int)
        clips = [clips[i] for i in sorted(set(picks.tolist()))]
    return clips


def read_two_stem(path: Path, samplerate: int = 44100, channels: int = 2) -> np.ndarray:
    """A clip as (2, channels, samples) float32 in (vocals, accompaniment) order at `samplerate`.

    The mono tracks are copied to every channel (what a model expecting stereo sees); the mixture of the
    check is their sum, as MIR-1K's own mixes are.
    """
    import soundfile as sf

    from stemgui.audio import resample

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for broken files
        raise DatasetError(f"{path}: cannot read this MIR-1K clip ({exc}).") from exc
    if data.shape[1] != 2:
        raise DatasetError(f"{path}: MIR-1K clips are stereo (left accompaniment, right voice), "
                           f"this one has {data.shape[1]} channel(s).")
    order = [MIR1K_SOURCES.index("vocals"), MIR1K_SOURCES.index("accompaniment")]
    mono = np.ascontiguousarray(data.T[order])  # (2 sources, samples)
    if rate != samplerate:
        mono = resample(mono, rate, samplerate)
    return np.repeat(mono[:, None, :], channels, axis=1).astype(np.float32)
