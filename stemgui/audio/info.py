"""Describe an audio file (rate, channels, length, codec) from its headers, without decoding it.

Also holds the input checks every reader shares, so that a missing path, a folder or an empty file gets the
same one-sentence error whether the caller asked for info, a whole file or a stream of blocks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import soundfile

from stemgui.audio.quiet import quiet_av_logging, quiet_stderr
from stemgui.errors import AudioError

# Containers/codecs libsndfile cannot read (or that PyAV reads better): go straight to PyAV for these.
PYAV_SUFFIXES = frozenset(
    {".m4a", ".m4b", ".aac", ".mp4", ".m4v", ".mov", ".3gp", ".opus", ".webm", ".mka", ".mkv", ".wma", ".ac3",
     ".alac", ".amr"}
)

_SOUNDFILE_CODECS = {
    "PCM_S8": "pcm_s8", "PCM_U8": "pcm_u8", "PCM_16": "pcm_s16", "PCM_24": "pcm_s24", "PCM_32": "pcm_s32",
    "FLOAT": "pcm_f32", "DOUBLE": "pcm_f64", "ULAW": "pcm_mulaw", "ALAW": "pcm_alaw",
    "VORBIS": "vorbis", "OPUS": "opus", "MPEG_LAYER_I": "mp1", "MPEG_LAYER_II": "mp2", "MPEG_LAYER_III": "mp3",
    "ALAC_16": "alac", "ALAC_20": "alac", "ALAC_24": "alac", "ALAC_32": "alac",
}
_PYAV_CODECS = {"mp3float": "mp3", "mp2float": "mp2", "aac_fixed": "aac", "libopus": "opus"}
_PYAV_FORMATS = {"mov,mp4,m4a,3gp,3g2,mj2": "mp4", "matroska,webm": "matroska"}


MIN_RATE, MAX_RATE = 4000, 768_000  # outside this a header is lying (1 Hz would turn 1 s of data into 12 h)
MAX_CHANNELS = 64  # beyond this a header is lying, or decoding one block would need gigabytes


def check_stream(p: Path, rate: int, channels: int) -> None:
    """Raise AudioError for a sample rate or channel count no real song has (a damaged or lying header)."""
    if rate <= 0 or channels <= 0:
        raise AudioError(f"{p}: audio stream has no valid sample rate or channel count.")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{p}: unusable sample rate {rate} Hz (the header is damaged, or the rate is outside "
                         f"{MIN_RATE}-{MAX_RATE} Hz).")
    if channels > MAX_CHANNELS:
        raise AudioError(f"{p}: {channels} channels is more than a song has (the header is damaged, or the "
                         f"file has over {MAX_CHANNELS}).")


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds: enough to show the user and to plan a separation before decoding anything."""

    path: Path
    samplerate: int
    channels: int
    frames: int
    duration: float
    codec: str
    format: str


def check_input(path: str | os.PathLike) -> Path:
    """Return `path` as a Path, or raise AudioError if it cannot possibly be an audio file."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: file not found.")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file.")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise AudioError(f"{p}: cannot be read ({exc.strerror or exc}).") from exc
    if size == 0:
        raise AudioError(f"{p}: file is empty (0 bytes).")
    if not os.access(p, os.R_OK):
        raise AudioError(f"{p}: cannot be read (permission denied).")
    return p


def _ogg_is_truncated(p: Path) -> bool:
    """True when an Ogg file does not end with a complete end-of-stream page (a cut download or copy).

    libsndfile and FFmpeg both decode such a file silently, and libsndfile then even misreports its length.
    """
    with open(p, "rb") as f:
        if f.read(4) != b"OggS":
            return False
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - 70_000)  # the largest possible Ogg page is 65,307 bytes
        f.seek(start)
        tail = f.read()
    pos = tail.rfind(b"OggS\x00")
    while pos >= 0:
        header = tail[pos:pos + 27]
        if len(header) == 27:
            nseg = header[26]
            table = tail[pos + 27:pos + 27 + nseg]
            end = pos + 27 + nseg + sum(table)
            if len(table) == nseg and end == len(tail):
                return not header[5] & 0x04  # the last page must carry the end-of-stream flag
        pos = tail.rfind(b"OggS\x00", 0, pos)
    return True  # no complete page reaches the end of the file


def check_container(p: Path) -> None:
    """Raise AudioError for damage the decoders would not report themselves (currently: cut Ogg files)."""
    try:
        truncated = _ogg_is_truncated(p)
    except OSError as exc:
        raise AudioError(f"{p}: cannot be read ({exc.strerror or exc}).") from exc
    if truncated:
        raise AudioError(f"{p}: file is truncated (the Ogg stream ends without its final page).")


def prefers_pyav(path: Path) -> bool:
    """True for containers libsndfile does not handle (m4a, aac, mp4, opus, webm, ...)."""
    return path.suffix.lower() in PYAV_SUFFIXES


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the headers of `path` (soundfile first, PyAV for what libsndfile cannot open)."""
    p = check_input(path)
    check_container(p)
    if not prefers_pyav(p):
        try:
            with quiet_stderr():
                inf = soundfile.info(str(p))
        except (soundfile.LibsndfileError, RuntimeError):
            pass
        else:
            check_stream(p, int(inf.samplerate), int(inf.channels))
            frames = int(inf.frames)
            return AudioInfo(
                path=p,
                samplerate=int(inf.samplerate),
                channels=int(inf.channels),
                frames=frames,
                duration=frames / inf.samplerate if inf.samplerate else 0.0,
                codec=_SOUNDFILE_CODECS.get(inf.subtype, inf.subtype.lower()),
                format=inf.format.lower(),
            )
    return _pyav_info(p)


def _pyav_info(p: Path) -> AudioInfo:
    import av

    quiet_av_logging()
    try:
        with quiet_stderr():
            container = av.open(str(p))
        with container:
            if not container.streams.audio:
                raise AudioError(f"{p}: contains no audio stream.")
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            if ctx is None:
                raise AudioError(f"{p}: no decoder for its audio codec (unsupported or corrupt file).")
            rate = int(getattr(ctx, "sample_rate", 0) or getattr(stream, "rate", 0) or 0)
            channels = int(getattr(ctx, "channels", 0) or getattr(stream, "channels", 0) or 0)
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = 0.0
            codec = ctx.name
            fmt = container.format.name
    except AudioError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"{p}: not a readable audio file (unknown, unsupported or corrupt format).") from exc
    check_stream(p, rate, channels)
    frames = int(round(duration * rate))
    return AudioInfo(
        path=p,
        samplerate=rate,
        channels=channels,
        frames=frames,
        duration=frames / rate,
        codec=_PYAV_CODECS.get(codec, codec),
        format=_PYAV_FORMATS.get(fmt, fmt.split(",")[0]),
    )
