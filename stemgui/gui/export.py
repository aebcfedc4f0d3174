"""Export chosen stems as files, or the mix exactly as the listener hears it, as wav / flac / mp3.

Qt-free so that it runs in a worker thread and in tests. Files are written in blocks (for progress and a
prompt cancel) through `stemgui.audio.AudioWriter`, which writes a hidden temporary file beside the target and
renames it into place when complete (and knows MP3's sample rates and the PyAV fallback); existing files are
only replaced when `confirm_overwrite` says so; a full disk is reported in one sentence and leaves the previous
file as it was. An export killed mid-write (kill -9, power loss) leaves only its hidden temp file, which the
next export of the same file removes (`remove_stale_temps`).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil  # noqa: F401 - tests patch export.shutil.disk_usage to fake a full disk
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from stemgui.audio import AudioWriter
from stemgui.diskspace import check_free_space, is_disk_full
from stemgui.errors import AudioError, Cancelled
from stemgui.mix import LaneMix, Playback, lane_gains, mix, render_mix

log = logging.getLogger(__name__)
FORMATS = ("wav", "flac", "mp3")
BLOCK = 1 << 16
STALE_TEMP_SECONDS = 600.0  # a temp file of an export not written to for this long was left by a kill
MP3_COMPRESSION = 8  # bytes of PCM per byte of 320 kbit/s MP3, roughly: for the free-space check

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]
ConfirmFn = Callable[[list[Path]], bool]


class OverwriteDeclined(Cancelled):
    """Files to export exist and replacing them was not confirmed: nothing was written."""


def _writer_bit_depth(fmt: str, bit_depth: int | str) -> int:
    """The AudioWriter sample size for `fmt`: wav 16/24/32-bit float, flac 16/24 (never float), mp3 any."""
    if fmt not in FORMATS:
        raise AudioError(f"Unsupported export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    depth = 32 if bit_depth in ("float", 32) else int(bit_depth)
    if fmt == "flac":
        return 16 if depth == 16 else 24
    return depth if fmt == "wav" else 16


def stem_paths(folder: str | os.PathLike, song_name: str, names: Sequence[str], fmt: str) -> list[Path]:
    """Where `export_stems` writes: '<folder>/<song> - <stem>.<fmt>'."""
    return [Path(folder) / f"{song_name} - {name}.{fmt}" for name in names]


def existing(paths: Sequence[Path]) -> list[Path]:
    return [p for p in paths if p.exists()]


def _check_overwrite(paths: Sequence[Path], confirm_overwrite: ConfirmFn | None) -> None:
    clash = existing(paths)
    if clash and not (confirm_overwrite is not None and confirm_overwrite(clash)):
        raise OverwriteDeclined(f"{clash[0]}: already exists; nothing was overwritten.")


def remove_stale_temps(path: Path, older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the temp files an export of `path` killed mid-write left (`.<stem>.tmp-XXXXXXXX<suffix>`).

    Only files untouched for `older_than` seconds go: a temp being written right now (another window, another
    instance) is modified every block.
    """
    removed = []
    now = time.time()
    for tmp in path.parent.glob(f".{glob.escape(path.stem)}.tmp-{'[0-9a-f]' * 8}{glob.escape(path.suffix)}"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                removed.append(tmp)
        except OSError as exc:
            log.debug("cannot remove the leftover %s: %s", tmp, exc)
    if removed:
        log.info("removed %d leftover temp file(s) of %s", len(removed), path)
    return removed


def write_audio(path: str | os.PathLike, frames: int, channels: int, samplerate: int,
                blocks: Callable[[int, int], np.ndarray], bit_depth: int | str = 24,
                progress: Callable[[float], None] | None = None, cancel: CancelFn | None = None) -> Path:
    """Write `frames` samples produced block by block by `blocks(start, end) -> (channels, n)` atomically.

    The format comes from the suffix (wav, flac or mp3); integer formats clip to [-1, 1] as playback does.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    depth = _writer_bit_depth(fmt, bit_depth)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    needed = frames * channels * depth // 8 // (MP3_COMPRESSION if fmt == "mp3" else 1) + (1 << 16)
    check_free_space(folder, needed)
    try:
        with AudioWriter(path, samplerate, channels, bit_depth=depth) as writer:
            for start in range(0, max(frames, 1), BLOCK):
                if cancel is not None and cancel():
                    raise Cancelled(f"{path}: export cancelled; nothing was written.")
                end = min(frames, start + BLOCK)
                block = np.asarray(blocks(start, end), dtype=np.float32)
                writer.write(block if writer.float_output else np.clip(block, -1.0, 1.0))
                if progress is not None:
                    progress(end / max(frames, 1))
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - OSError, the writer's AudioError, libsndfile errors
        if is_disk_full(exc, folder, needed):
            previous = " (the previous file is unchanged)" if path.exists() else ""
            raise AudioError(f"{path}: the disk is full; nothing was written{previous}.") from exc
        if isinstance(exc, AudioError):
            raise
        if isinstance(exc, OSError):
            raise AudioError(f"{path}: could not be written ({exc.strerror or exc}).") from exc
        log.exception("writing %s failed", path)
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
                                   lambda a, b, stem=stem: stem[:, a:b], bit_depth, step, cancel))
    return written


def export_mix(audio: np.ndarray, lanes: Sequence[LaneMix], samplerate: int, path: str | os.PathLike,
               region: tuple[int, int] | None = None, bit_depth: int | str = 24,
               progress: ProgressFn | None = None, cancel: CancelFn | None = None,
               confirm_overwrite: ConfirmFn | None = None, playback: Playback | None = None) -> Path:
    """Write the mix as heard (gains, pans, mutes, solos, tempo, transpose) of audio (lanes, C, T) [region].

    The samples are `stemgui.mix.render_mix`'s, as `stemgui remix` writes them for the same settings.
    """
    path = Path(path)
    _check_overwrite([path], confirm_overwrite)
    start, end = region if region is not None else (0, audio.shape[2])
    gains = lane_gains(lanes)
    if not gains.any():
        raise AudioError(f"{path}: every lane is muted, so the mix would be silent; nothing was written.")
    playback = playback or Playback()

    def step(frac: float, label: str = f"Writing {path.name}", lo: float = 0.0, hi: float = 1.0) -> None:
        if progress is not None:
            progress(lo + (hi - lo) * frac, label)

    if playback.is_identity:  # streamed block by block: the same samples as render_mix, without holding them
        return write_audio(path, end - start, 2, samplerate,
                           lambda a, b: mix(audio[:, :, start + a:start + b], gains), bit_depth, step, cancel)
    rendered = render_mix(audio, lanes, samplerate, playback, (start, end),
                          progress=lambda f: step(f, f"Changing tempo and key for {path.name}", 0.0, 0.8),
                          cancel=cancel)
    return write_audio(path, rendered.shape[1], 2, samplerate, lambda a, b: rendered[:, a:b], bit_depth,
                       lambda f: step(f, f"Writing {path.name}", 0.8, 1.0), cancel)
