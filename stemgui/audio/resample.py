"""Sample-rate conversion with soxr (HQ): ~111 dB SNR and faster than real time by orders of magnitude here.

Works channel by channel on (channels, samples) rows so a long song is never transposed/copied whole.
`StreamResampler` does the same for a stream of blocks (for files too long to hold twice in memory).
"""

from __future__ import annotations

import numpy as np
import soxr

QUALITY = "HQ"


def _check_rate(rate: int, name: str) -> int:
    r = int(rate)
    if r != rate or r <= 0:
        raise ValueError(f"{name} must be a positive integer sample rate, got {rate!r}")
    return r


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Return `wav` (..., samples) at `sr_out` as float32, leading axes kept: (C, T), (T,) or stems (S, C, T).

    Identity (no copy for float32 input) when the rates are equal.
    """
    sr_in, sr_out = _check_rate(sr_in, "sr_in"), _check_rate(sr_out, "sr_out")
    x = np.asarray(wav)
    if x.ndim == 0:
        raise ValueError("expected an array shaped (..., samples), got a scalar")
    x = x.astype(np.float32, copy=False)
    if sr_in == sr_out:
        return x
    lead, length = x.shape[:-1], x.shape[-1]
    if x.size == 0:
        return np.zeros((*lead, int(round(length * sr_out / sr_in))), dtype=np.float32)
    rows = x.reshape(-1, length)
    out = None
    for c in range(rows.shape[0]):  # one row at a time: peak memory is input + output + one channel
        row = soxr.resample(np.ascontiguousarray(rows[c]), sr_in, sr_out, quality=QUALITY)
        if out is None:
            out = np.empty((rows.shape[0], len(row)), dtype=np.float32)
        out[c] = row
    return out.reshape(*lead, out.shape[1])


def resampled_length(frames: int, sr_in: int, sr_out: int) -> int:
    """Samples soxr gives for `frames` input samples, one-shot or streamed: round(frames / (sr_in / sr_out)),
    in double precision and with halves rounded up exactly as libsoxr computes it (so a stream's length is known
    before it is resampled)."""
    sr_in, sr_out = _check_rate(sr_in, "sr_in"), _check_rate(sr_out, "sr_out")
    if sr_in == sr_out:
        return int(frames)
    return int(int(frames) / (sr_in / sr_out) + 0.5)


class StreamResampler:
    """Resample consecutive (channels, n) blocks as one continuous signal (no seams at block edges)."""

    def __init__(self, sr_in: int, sr_out: int, channels: int):
        self.sr_in, self.sr_out = _check_rate(sr_in, "sr_in"), _check_rate(sr_out, "sr_out")
        self.channels = int(channels)
        self._stream = (
            None
            if self.sr_in == self.sr_out
            else soxr.ResampleStream(self.sr_in, self.sr_out, self.channels, dtype="float32", quality=QUALITY)
        )

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """Feed one (channels, n) block; returns whatever output is ready (flushes the tail when `last`)."""
        block = np.asarray(block, dtype=np.float32)
        if self._stream is None:
            return block
        out = self._stream.resample_chunk(np.ascontiguousarray(block.T), last=last)
        return np.ascontiguousarray(out.T)
