"""Export chosen stems as files, or the mix exactly as the listener hears it, as wav / flac / mp3.

Qt-free so that it runs in a worker thread and in tests. Files are written in blocks (for progress and a
prompt cancel) to a hidden temporary file in the destination folder and renamed into place when complete;
existing files are only replaced when `confirm_overwrite` says so; a full disk is reported in one sentence.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from stemgui.errors import AudioError, Cancelled
from stemgui.gui.mixer import LaneMix, lane_gains, mix

FORMATS = ("wav", "flac", "mp3")
BLOCK = 1 << 16

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]
ConfirmFn = Callable[[list[Path]], bool]


def _subtype(fmt: str, bit_depth: int | str) -> tuple[str, str]:
    if fmt == "mp3":
        return "MP3", "MPEG_LAYER_III"
    if fmt == "flac":
        return "FLAC", "PCM_16" if bit_depth == 16 else "PCM_24"
    if fmt == "wav":
        return "WAV", {16: "PCM_16", 24: "PCM_24", 32: "FLOAT", "float": "FLOAT"}[bit_depth]
    raise AudioError(f"Unsupported export format {fmt!r}; choose one of {', '.join(FORMATS)}.")


def stem_paths(folder: str | os.PathLike, song_name: str, names: Sequence[str], fmt: str) -> list[Path]:
    """Where `export_stems` writes: '<folder>/<song> - <stem>.<fmt>'."""
    return [Path(folder) / f"{song_name} - {name}.{fmt}" for name in names]


def existing(paths: Sequence[Path]) -> list[Path]:
    return [p for p in paths if p.exists()]


def _check_overwrite(paths: Sequence[Path], confirm_overwrite: ConfirmFn | None) -> None:
    clash = existing(paths)
    if clash and not (confirm_overwrite is not None and confirm_overwrite(clash)):
        raise Cancelled(f"{clash[0]}: already exists; nothing was overwritten.")


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise AudioError(f"{folder}: the disk is full ({free // 2**20} MB free, about {needed // 2**20 + 1} MB "
                         "needed); nothing was written.")


def write_audio(path: str | os.PathLike, frames: int, channels: int, samplerate: int,
                blocks: Callable[[int, int], np.ndarray], fmt: str | None = None, bit_depth: int | str = 24,
                progress: Callable[[float], None] | None = None, cancel: CancelFn | None = None) -> Path:
    """Write `frames` samples produced block by block by `blocks(start, end) -> (channels, n)` atomically."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    major, subtype = _subtype(fmt, bit_depth)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    bytes_per = 4 if subtype == "FLOAT" else 3 if subtype == "PCM_24" else 2
    _check_space(folder, frames * channels * bytes_per // (8 if fmt == "mp3" else 1) + (1 << 16))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part.{fmt}", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    clip = subtype != "FLOAT"
    try:
        with sf.SoundFile(tmp, "w", samplerate=samplerate, channels=channels, format=major, subtype=subtype) as f:
            for start in range(0, max(frames, 1), BLOCK):
                if cancel is not None and cancel():
                    raise Cancelled(f"{path}: export cancelled; nothing was written.")
                end = min(frames, start + BLOCK)
                block = np.asarray(blocks(start, end), dtype=np.float32)
                if clip:
                    block = np.clip(block, -1.0, 1.0)
                f.write(np.ascontiguousarray(block.T))
                if progress is not None:
                    progress(end / max(frames, 1))
        os.replace(tmp, path)
    except (Cancelled, AudioError):
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise AudioError(f"{path}: the disk is full; nothing was written.") from exc
        raise AudioError(f"{path}: could not be written ({exc.strerror or exc}).") from exc
    except Exception as exc:  # noqa: BLE001 - libsndfile errors (a full disk shows up as a short write)
        tmp.unlink(missing_ok=True)
        if shutil.disk_usage(folder).free < (1 << 20):
            raise AudioError(f"{path}: the disk is full; nothing was written.") from exc
        raise AudioError(f"{path}: could not be written ({exc}).") from exc
    return path


def export_stems(stems: np.ndarray, names: Sequence[str], samplerate: int, folder: str | os.PathLike,
                 song_name: str, fmt: str = "wav", selected: Sequence[str] | None = None,
                 bit_depth: int | str = 24, progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                 confirm_overwrite: ConfirmFn | None = None) -> list[Path]:
    """Write each selected stem (stems: (S, C, T)) to '<folder>/<song> - <name>.<fmt>'; returns the paths."""
    chosen = [n for n in names if selected is None or n in selected]
    if not chosen:
        raise AudioError("No stems were selected for export.")
    paths = stem_paths(folder, song_name, chosen, fmt)
    _check_overwrite(paths, confirm_overwrite)
    written: list[Path] = []
    for k, (name, path) in enumerate(zip(chosen, paths)):
        stem = stems[list(names).index(name)]

        def step(frac: float, k=k, name=name) -> None:
            if progress is not None:
                progress((k + frac) / len(chosen), f"Writing {name} ({k + 1}/{len(chosen)})")

        written.append(write_audio(path, stem.shape[1], stem.shape[0], samplerate,
                                   lambda a, b, stem=stem: stem[:, a:b], fmt, bit_depth, step, cancel))
    return written


def export_mix(audio: np.ndarray, lanes: Sequence[LaneMix], samplerate: int, path: str | os.PathLike,
               region: tuple[int, int] | None = None, bit_depth: int | str = 24,
               progress: ProgressFn | None = None, cancel: CancelFn | None = None,
               confirm_overwrite: ConfirmFn | None = None) -> Path:
    """Write the mix as heard (gains, pans, mutes, solos) of audio (lanes, C, T), optionally only `region`."""
    path = Path(path)
    _check_overwrite([path], confirm_overwrite)
    start, end = region if region is not None else (0, audio.shape[2])
    gains = lane_gains(lanes)
    if not gains.any():
        raise AudioError(f"{path}: every lane is muted, so the mix would be silent; nothing was written.")

    def step(frac: float) -> None:
        if progress is not None:
            progress(frac, f"Writing {path.name}")

    return write_audio(path, end - start, 2, samplerate,
                       lambda a, b: mix(audio[:, :, start + a:start + b], gains), None, bit_depth, step, cancel)
