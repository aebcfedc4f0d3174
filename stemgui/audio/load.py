"""Decode any audio file into float32 (channels, samples) at the rate and channel count a caller needs.

soundfile (libsndfile) reads wav/flac/ogg/mp3; PyAV (its own FFmpeg) reads m4a/aac/mp4/opus/webm and anything
libsndfile cannot open. Both are wrapped as a stream of native (channels, n) blocks so that `load_audio` and
`iter_blocks` share every check: NaN/inf samples, empty audio, truncated files, downmix, resampling.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

from stemgui.audio.info import check_container, check_input, check_stream, prefers_pyav
from stemgui.audio.quiet import quiet_av_logging, quiet_stderr
from stemgui.audio.resample import StreamResampler, resampled_length
from stemgui.errors import AudioError

_READ_BLOCK = 1 << 16  # frames per soundfile read: big enough to be fast, small enough to be cheap to copy

# Channel order of WAV (WAVE_FORMAT_EXTENSIBLE default masks) / SMPTE, used when a file names no layout.
_DEFAULT_LAYOUTS = {
    1: ("FC",),
    2: ("FL", "FR"),
    3: ("FL", "FR", "FC"),
    4: ("FL", "FR", "BL", "BR"),
    5: ("FL", "FR", "FC", "BL", "BR"),
    6: ("FL", "FR", "FC", "LFE", "BL", "BR"),
    7: ("FL", "FR", "FC", "LFE", "BC", "SL", "SR"),
    8: ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}
_CENTER = {"FC", "BC", "TC", "TFC", "TBC", "BFC", "TSC"}
_LFE = {"LFE", "LFE2", "LFE1"}
_LEFT = {"FL", "FLC", "BL", "SL", "TFL", "TBL", "WL", "SDL", "TSL", "BFL", "DL"}
_RIGHT = {"FR", "FRC", "BR", "SR", "TFR", "TBR", "WR", "SDR", "TSR", "BFR", "DR"}
_FRONT = {"FL", "FR", "FLC", "FRC", "DL", "DR", "WL", "WR"}
_SURROUND_GAIN = 0.7071  # -3 dB: the usual ITU weight for centre and surround channels in a stereo downmix


def _downmix_weights(names: tuple[str, ...] | None, n: int) -> np.ndarray:
    """(2, n) weights: each output side is a weighted average of the input channels that belong to it."""
    if names is None or len(names) != n or not set(names) <= (_CENTER | _LFE | _LEFT | _RIGHT):
        names = _DEFAULT_LAYOUTS.get(n)
    w = np.zeros((2, n), dtype=np.float64)
    if names is None:  # unknown layout: alternate L/R, like interleaved pairs
        w[0, 0::2] = 1.0
        w[1, 1::2] = 1.0
    else:
        for i, name in enumerate(names):
            gain = 1.0 if name in _FRONT else _SURROUND_GAIN
            if name in _LEFT:
                w[0, i] = gain
            elif name in _RIGHT:
                w[1, i] = gain
            elif name in _CENTER:
                w[:, i] = _SURROUND_GAIN
    for side in range(2):
        total = w[side].sum()
        w[side] = w[side] / total if total > 0 else 1.0 / n
    return w


def convert_channels(wav: np.ndarray, channels: int | None, names: tuple[str, ...] | None = None) -> np.ndarray:
    """Mono -> duplicated, >2 -> weighted L/R average (LFE dropped), any -> mono by averaging."""
    n = wav.shape[0]
    if channels is None or channels == n:
        return wav
    if channels == 1:
        src = wav if n <= 2 else (_downmix_weights(names, n).astype(np.float32) @ wav)
        return src.mean(axis=0, keepdims=True, dtype=np.float32)
    if channels == 2:
        if n == 1:
            return np.repeat(wav, 2, axis=0)
        return (_downmix_weights(names, n).astype(np.float32) @ wav).astype(np.float32, copy=False)
    raise ValueError(f"cannot convert {n} channels to {channels}; ask for 1, 2 or None (keep)")


class _Decoded:
    """An opened file: native rate, channel count/names, declared length, and a generator of native blocks."""

    def __init__(self, path: Path, rate: int, channels: int, names, declared: int | None, blocks, tolerance: float,
                 trim: bool = False):
        self.path, self.rate, self.channels, self.names = path, rate, channels, names
        self.declared, self._blocks, self.tolerance = declared, blocks, tolerance
        self.trim = trim and bool(declared)  # cut codec padding past an indexed length (mp4 edit lists)
        self.frames = 0

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield native (channels, n) float32 blocks, validating samples and total length as they come."""
        p = self.path
        try:
            for block in self._blocks:
                if block.shape[1] == 0:
                    continue
                if self.trim and self.frames + block.shape[1] > self.declared:
                    block = block[:, : max(self.declared - self.frames, 0)]
                    if block.shape[1] == 0:
                        continue
                if not np.isfinite(block).all():
                    raise AudioError(f"{p}: contains NaN or infinite samples.")
                self.frames += block.shape[1]
                yield block
        finally:
            self._blocks.close()
        if self.frames == 0:
            raise AudioError(f"{p}: contains no audio (0 samples).")
        if self.declared and self.frames < self.declared * (1.0 - self.tolerance) - 4096:
            raise AudioError(
                f"{p}: file is truncated (decoded {self.frames / self.rate:.2f} s of "
                f"{self.declared / self.rate:.2f} s)."
            )


class _Buffer:
    """Growable (rows, n) float32 store that ends as one C-contiguous array without a second full copy."""

    def __init__(self, rows: int, capacity: int):
        self.rows, self.cap, self.n = rows, max(int(capacity), 1), 0
        self.flat = np.empty(rows * self.cap, dtype=np.float32)

    def append(self, block: np.ndarray) -> None:
        k = block.shape[1]
        if self.n + k > self.cap:
            cap = max(self.n + k, int(self.cap * 1.5))
            flat = np.empty(self.rows * cap, dtype=np.float32)
            flat.reshape(self.rows, cap)[:, : self.n] = self.flat.reshape(self.rows, self.cap)[:, : self.n]
            self.flat, self.cap = flat, cap
        self.flat.reshape(self.rows, self.cap)[:, self.n:self.n + k] = block
        self.n += k

    def finish(self) -> np.ndarray:
        flat, rows, cap, n = self.flat, self.rows, self.cap, self.n
        self.flat = None
        if n < cap:  # slide rows 1.. left in place (forward chunks never overwrite unread data), then shrink
            step = 1 << 20
            for r in range(1, rows):
                for i in range(0, n, step):
                    k = min(step, n - i)
                    flat[r * n + i:r * n + i + k] = flat[r * cap + i:r * cap + i + k]
            flat.resize(rows * n, refcheck=False)
        return flat.reshape(rows, n)


def _corrupt(p: Path, done: int, rate: int, exc: BaseException) -> AudioError:
    where = f" after {done / rate:.2f} s" if done and rate else ""
    err = AudioError(f"{p}: file is corrupt or truncated (decoding failed{where}).")
    err.__cause__ = exc
    return err


def _wav_declared_frames(f: soundfile.SoundFile) -> int | None:
    """Frames a RIFF/AIFF header promises when libsndfile found fewer bytes than that (its log says so)."""
    m = re.search(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", f.extra_info, re.MULTILINE)
    if not m:
        return None
    declared, actual = int(m.group(1)), int(m.group(2))
    if declared in (0, 0xFFFFFFFF) or declared <= actual:  # 0/-1: streamed writer never patched the header
        return None
    width = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
             "ULAW": 1, "ALAW": 1}.get(f.subtype)
    if width is None:
        return None
    return declared // (width * f.channels)


def _open_soundfile(p: Path) -> _Decoded | None:
    """Open with libsndfile; None if it does not recognise the file (so PyAV gets a try)."""
    try:
        with quiet_stderr():
            f = soundfile.SoundFile(str(p))
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        return None
    if f.samplerate <= 0 or f.channels <= 0:
        f.close()
        return None
    try:
        check_stream(p, int(f.samplerate), int(f.channels))
    except AudioError:
        f.close()
        raise
    declared = _wav_declared_frames(f) or (f.frames if f.frames > 0 else None)
    tolerance = 0.05 if f.format == "MP3" else 0.01  # VBR mp3 without a Xing header has an estimated length

    def gen() -> Iterator[np.ndarray]:
        buf = np.empty((_READ_BLOCK, f.channels), dtype=np.float32)
        done = 0
        try:
            while True:
                try:
                    with quiet_stderr():
                        got = f.read(_READ_BLOCK, dtype="float32", always_2d=True, out=buf)
                except (soundfile.LibsndfileError, RuntimeError) as exc:
                    raise _corrupt(p, done, f.samplerate, exc) from exc
                if len(got) == 0:
                    return
                done += len(got)
                yield np.ascontiguousarray(got.T)
                if len(got) < _READ_BLOCK:
                    return
        finally:
            f.close()

    return _Decoded(p, int(f.samplerate), int(f.channels), None, declared, gen(), tolerance)


def _open_pyav(p: Path) -> _Decoded:
    import av

    unreadable = f"{p}: not a readable audio file (unknown, unsupported or corrupt format)."
    quiet_av_logging()
    try:
        with quiet_stderr():
            container = av.open(str(p))
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise AudioError(unreadable) from exc
    try:
        if not container.streams.audio:
            raise AudioError(f"{p}: contains no audio stream.")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None:
            raise AudioError(f"{p}: no decoder for its audio codec (unsupported or corrupt file).")
        rate = int(getattr(ctx, "sample_rate", 0) or getattr(stream, "rate", 0) or 0)
        channels = int(getattr(ctx, "channels", 0) or 0)
        check_stream(p, rate, channels)
        names = tuple(c.name for c in ctx.layout.channels) if ctx.layout is not None else None
        # Only trust a length the container indexes (mp4/mkv); ADTS/mp3 durations are bitrate estimates.
        declared = None
        indexed = container.format.name not in ("aac", "mp3")
        if indexed and stream.duration is not None and stream.time_base is not None:
            declared = int(float(stream.duration * stream.time_base) * rate)
    except BaseException:
        container.close()
        raise

    def gen() -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="fltp", layout=ctx.layout, rate=rate)
        done = 0
        try:
            try:
                frames = container.decode(stream)
                while True:
                    with quiet_stderr():
                        frame = next(frames, None)
                        outs = resampler.resample(frame)
                    for out in outs:
                        block = out.to_ndarray().astype(np.float32, copy=False)
                        done += block.shape[1]
                        yield block
                    if frame is None:
                        break
            except (av.FFmpegError, ValueError) as exc:
                raise _corrupt(p, done, rate, exc) from exc
        finally:
            container.close()

    return _Decoded(p, rate, channels, names, declared, gen(), 0.02, trim=True)


def _open(path: str | os.PathLike) -> _Decoded:
    p = check_input(path)
    check_container(p)
    if not prefers_pyav(p):
        dec = _open_soundfile(p)
        if dec is not None:
            return dec
    return _open_pyav(p)


def _warn_downmix(dec: _Decoded, channels: int | None) -> None:
    if channels is not None and dec.channels > 2 and dec.channels != channels:
        warnings.warn(f"{dec.path}: {dec.channels} channels downmixed to {channels}.", UserWarning, stacklevel=3)


def load_audio(path: str | os.PathLike, samplerate: int | None = None, channels: int | None = 2
               ) -> tuple[np.ndarray, int]:
    """Whole file as float32 (channels, samples) and its rate (`samplerate` if given, resampled with soxr HQ).

    Raises AudioError with one sentence naming the file for anything unusable.
    """
    if channels is not None and channels not in (1, 2):
        raise ValueError(f"channels must be 1, 2 or None, got {channels!r}")
    dec = _open(path)
    _warn_downmix(dec, channels)
    rate = int(samplerate) if samplerate else dec.rate
    # Down-mix before resampling (fewer rows to resample), duplicate mono after it. Resampling as a stream
    # (bit-identical to one-shot soxr) means the native-rate song is never held whole next to the output.
    early = channels if (channels is not None and channels < dec.channels) else None
    rows = early or dec.channels
    rs = StreamResampler(dec.rate, rate, rows)
    buf = _Buffer(rows, int(np.ceil(dec.declared * rate / dec.rate)) + 64 if dec.declared else _READ_BLOCK)
    for block in dec.blocks():
        buf.append(rs.process(convert_channels(block, early, dec.names)))
    buf.append(rs.process(np.zeros((rows, 0), dtype=np.float32), last=True))
    wav = buf.finish()
    return convert_channels(wav, channels, dec.names), rate


def iter_blocks(path: str | os.PathLike, blocksize: int, samplerate: int | None = None,
                channels: int | None = 2) -> Iterator[np.ndarray]:
    """Yield float32 (channels, blocksize) blocks (the last one shorter) without loading the whole file.

    Resamples as a continuous stream when `samplerate` is given; the same checks as `load_audio` apply, raised
    when the offending block is reached.
    """
    blocksize = int(blocksize)
    if blocksize <= 0:
        raise ValueError(f"blocksize must be positive, got {blocksize}")
    if channels is not None and channels not in (1, 2):
        raise ValueError(f"channels must be 1, 2 or None, got {channels!r}")
    dec = _open(path)
    _warn_downmix(dec, channels)
    rows = dec.channels if channels is None else channels
    rs = StreamResampler(dec.rate, int(samplerate) if samplerate else dec.rate, rows)
    pending: list[np.ndarray] = []
    have = 0

    def drain(final: bool) -> Iterator[np.ndarray]:
        nonlocal pending, have
        while have >= blocksize or (final and have > 0):
            buf = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
            take = min(blocksize, buf.shape[1])
            yield np.ascontiguousarray(buf[:, :take])
            rest = buf[:, take:]
            pending, have = ([rest] if rest.shape[1] else []), rest.shape[1]

    for block in dec.blocks():
        out = rs.process(convert_channels(block, channels, dec.names))
        if out.shape[1]:
            pending.append(out)
            have += out.shape[1]
        yield from drain(False)
    tail = rs.process(np.zeros((rows, 0), dtype=np.float32), last=True)
    if tail.shape[1]:
        pending.append(tail)
        have += tail.shape[1]
    yield from drain(True)


def count_frames(path: str | os.PathLike, samplerate: int | None = None) -> int:
    """The exact number of samples `iter_blocks(path, ..., samplerate)` and `load_audio` will give.

    Decodes the file once without keeping or resampling anything (headers can lie, and mp3/aac lengths are
    estimates), so it also raises AudioError for a corrupt or truncated file before any real work starts.
    """
    dec = _open(path)
    frames = sum(block.shape[1] for block in dec.blocks())
    return resampled_length(frames, dec.rate, int(samplerate) if samplerate else dec.rate)
