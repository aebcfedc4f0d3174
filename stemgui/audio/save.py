"""Write audio atomically: a temp file in the destination folder, renamed into place only when complete.

A crash, a full disk or a cancelled job therefore never leaves a half-written stem where the user looks.
`AudioWriter` streams blocks (the separation engine writes long stems without holding them in memory);
`save_audio` is the one-shot form. Formats by suffix: .wav (16/24-bit PCM or 32-bit float), .flac (16/24),
.mp3 (320 kbit/s CBR; libsndfile's LAME, or PyAV's when libsndfile has no MP3 support) and .ogg (Vorbis).
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path

import numpy as np
import soundfile

from stemgui.atomic import fsync_path
from stemgui.audio.resample import StreamResampler
from stemgui.errors import AudioError

FORMATS = {".wav": "WAV", ".flac": "FLAC", ".mp3": "MP3", ".ogg": "OGG"}
_WAV_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}
_FLAC_SUBTYPES = {16: "PCM_16", 24: "PCM_24"}
_SAVE_CHUNK = 1 << 18
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def _bit_depth(value: int | str, path: Path) -> int:
    if value in ("float", "FLOAT", "float32"):
        return 32
    if value in (16, 24, 32, "16", "24", "32"):
        return int(value)
    raise AudioError(f"{path}: unsupported bit depth {value!r} (use 16, 24 or 32 for float).")


def _mp3_compression(kbps: int, samplerate: int) -> float:
    """libsndfile maps compression level c to a CBR bitrate of top - c*(top - bottom) for each MPEG version."""
    top, bottom = (320, 32) if samplerate >= 32000 else (160, 8) if samplerate >= 16000 else (64, 8)
    kbps = min(max(kbps, bottom), top)
    return (top - kbps) / (top - bottom)


class _PyAVMp3:
    """Minimal MP3 encoder over PyAV's libmp3lame, for builds of libsndfile without MP3."""

    def __init__(self, path: Path, samplerate: int, channels: int, kbps: int):
        import av

        self._av = av
        self._container = av.open(str(path), mode="w", format="mp3")
        self._stream = self._container.add_stream("libmp3lame", rate=samplerate)
        self._stream.layout = "mono" if channels == 1 else "stereo"
        self._stream.bit_rate = kbps * 1000
        self._pts = 0

    def write(self, block: np.ndarray) -> None:
        frame = self._av.AudioFrame.from_ndarray(np.ascontiguousarray(block, dtype=np.float32), format="fltp",
                                                 layout=self._stream.layout.name)
        frame.sample_rate = self._stream.rate
        frame.pts = self._pts
        self._pts += block.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()

    def abort(self) -> None:
        self._container.close()


class AudioWriter:
    """Stream (channels, n) float blocks to `path`; the file appears only on a successful `close()`.

    Use as a context manager: leaving the block normally renames the temp file into place, an exception
    deletes it. Integer formats clip |x| > 1 (one warning per file); NaN/inf samples raise AudioError.
    """

    def __init__(self, path: str | os.PathLike, samplerate: int, channels: int = 2, *,
                 bit_depth: int | str = 16, mp3_bitrate: int = 320):
        self.path = Path(path)
        self.channels = int(channels)
        self.frames = 0
        self._closed = False
        self._clip_warned = False
        self._tmp: Path | None = None
        self._sink = None
        self._resampler: StreamResampler | None = None
        p = self.path
        fmt = FORMATS.get(p.suffix.lower())
        if fmt is None:
            raise AudioError(f"{p}: unsupported output format '{p.suffix}' (use .wav, .flac, .mp3 or .ogg).")
        if self.channels < 1:
            raise AudioError(f"{p}: cannot write {channels} channels.")
        depth = _bit_depth(bit_depth, p)
        if p.is_dir():
            raise AudioError(f"{p}: is a folder, cannot write audio there.")
        rate = int(samplerate)
        if rate <= 0:
            raise AudioError(f"{p}: invalid sample rate {samplerate!r}.")
        self.samplerate = rate
        subtype = None
        if fmt == "WAV":
            subtype = _WAV_SUBTYPES[depth]
        elif fmt == "FLAC":
            if depth not in _FLAC_SUBTYPES:
                raise AudioError(f"{p}: FLAC stores 16 or 24-bit samples, not {depth}-bit float; use .wav.")
            subtype = _FLAC_SUBTYPES[depth]
        elif fmt == "MP3":
            if rate not in MP3_RATES:  # LAME only encodes these; convert rather than refuse an export
                if rate > 48000:
                    target = 44100 if rate % 11025 == 0 else 48000
                else:
                    target = min(r for r in MP3_RATES if r >= rate)
                warnings.warn(f"{p}: MP3 cannot store {rate} Hz; writing {target} Hz.", UserWarning, stacklevel=2)
                self._resampler = StreamResampler(rate, target, self.channels)
                rate = target
            if self.channels > 2:
                raise AudioError(f"{p}: MP3 stores mono or stereo only, not {self.channels} channels.")
            subtype = "MPEG_LAYER_III"
        elif fmt == "OGG":
            subtype = "VORBIS"
        self.float_output = subtype in ("FLOAT", "DOUBLE")
        self._fmt, self._subtype = fmt, subtype
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = self._make_temp()
            if fmt == "MP3" and not soundfile.check_format("MP3", "MPEG_LAYER_III"):
                self._sink = _PyAVMp3(self._tmp, rate, self.channels, mp3_bitrate)
            else:
                extra = {}
                if fmt == "MP3":
                    extra = {"compression_level": _mp3_compression(mp3_bitrate, rate), "bitrate_mode": "CONSTANT"}
                self._sink = soundfile.SoundFile(str(self._tmp), mode="w", samplerate=rate, channels=self.channels,
                                                 format=fmt, subtype=subtype, **extra)
        except AudioError:
            self._discard()
            raise
        except Exception as exc:
            self._discard()
            raise AudioError(f"{p}: cannot be written ({_reason(exc)}).") from exc

    def _make_temp(self) -> Path:
        """A fresh `.name.tmp-XXXX.suffix` beside the target (suffix kept so tools recognise the format)."""
        for _ in range(100):
            tmp = self.path.with_name(f".{self.path.stem}.tmp-{secrets.token_hex(4)}{self.path.suffix}")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies, unlike mkstemp
            except FileExistsError:
                continue
            os.close(fd)
            return tmp
        raise OSError("could not create a temporary file")

    def write(self, block: np.ndarray) -> None:
        """Append (channels, n) samples (a 1-D array counts as mono)."""
        if self._closed:
            raise AudioError(f"{self.path}: writer is already closed.")
        x = _as_array(block)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[0] != self.channels:
            self.abort()
            raise AudioError(f"{self.path}: expected ({self.channels}, samples) audio, got shape {x.shape}.")
        if x.shape[1] == 0:
            return
        if not np.isfinite(x).all():
            self.abort()
            raise AudioError(f"{self.path}: refusing to write NaN or infinite samples.")
        if not self.float_output:
            peak = float(np.max(np.abs(x)))
            if peak > 1.0:
                if not self._clip_warned:
                    warnings.warn(f"{self.path}: samples up to {peak:.3f} clipped to [-1, 1].", UserWarning,
                                  stacklevel=2)
                    self._clip_warned = True
                x = np.clip(x, -1.0, 1.0)
        try:
            self._push(x)
        except Exception as exc:
            self.abort()
            raise AudioError(f"{self.path}: writing failed ({_reason(exc)}).") from exc
        self.frames += x.shape[1]

    def _push(self, x: np.ndarray, last: bool = False) -> None:
        if self._resampler is not None:
            x = self._resampler.process(x, last=last)
            if not self.float_output:
                x = np.clip(x, -1.0, 1.0)
        if x.shape[1] == 0:
            return
        if isinstance(self._sink, soundfile.SoundFile):
            self._sink.write(np.ascontiguousarray(x.T))
        else:
            self._sink.write(x)

    def close(self) -> Path:
        """Finish the file and rename it into place; returns the final path."""
        if self._closed:
            return self.path
        try:
            if self._resampler is not None:
                self._push(np.zeros((self.channels, 0), dtype=np.float32), last=True)
            sink, self._sink = self._sink, None
            sink.close()
            fsync_path(self._tmp)
            os.replace(self._tmp, self.path)
        except Exception as exc:
            self.abort()
            raise AudioError(f"{self.path}: writing failed ({_reason(exc)}).") from exc
        self._closed = True
        self._tmp = None
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the destination is left untouched."""
        self._closed = True
        sink, self._sink = self._sink, None
        if sink is not None:
            try:
                if isinstance(sink, _PyAVMp3):
                    sink.abort()
                else:
                    sink.close()
            except Exception:  # noqa: BLE001 - the temp file is deleted anyway
                pass
        self._discard()

    def _discard(self) -> None:
        if self._tmp is not None:
            try:
                self._tmp.unlink(missing_ok=True)
            except OSError:
                pass
            self._tmp = None

    def __enter__(self) -> AudioWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:  # a writer dropped without close() must not leave its temp file behind
        if getattr(self, "_tmp", None) is not None and not getattr(self, "_closed", True):
            self.abort()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _as_array(wav) -> np.ndarray:
    if hasattr(wav, "detach"):  # torch tensor, without importing torch here
        wav = wav.detach().cpu().numpy()
    return np.asarray(wav, dtype=np.float32)


def save_audio(path: str | os.PathLike, wav, samplerate: int, *, bit_depth: int | str = 16,
               mp3_bitrate: int = 320) -> Path:
    """Write (channels, samples) audio (numpy or torch; 1-D = mono) to `path` atomically; format by suffix."""
    x = _as_array(wav)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise AudioError(f"{path}: expected (channels, samples) audio, got shape {x.shape}.")
    if x.shape[0] > 64 and x.shape[1] <= 64:
        raise AudioError(f"{path}: audio looks transposed (shape {x.shape}); expected (channels, samples).")
    with AudioWriter(path, samplerate, x.shape[0], bit_depth=bit_depth, mp3_bitrate=mp3_bitrate) as w:
        for start in range(0, x.shape[1], _SAVE_CHUNK):  # chunks keep the interleaving copy small
            w.write(x[:, start:start + _SAVE_CHUNK])
    return w.path
