"""Peak envelopes for the optional waveform view of a lane (pure numpy, computed in the picture worker).

A lane's waveform is drawn as a vertical stroke per block of BLOCK samples from the block's lowest to its
highest (mono) sample: 689 strokes per second at 44.1 kHz, enough to see every beat at the deepest zoom, and
pyqtgraph's peak downsampling keeps drawing a whole 5-minute song cheap.
"""

from __future__ import annotations

import numpy as np

BLOCK = 64


def peak_envelope(audio: np.ndarray, samplerate: int, upto: int | None = None,
                  block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """(x seconds, y) of the min/max strokes of audio (channels, samples) up to sample `upto`.

    x and y are interleaved (x0, x0, x1, x1, ...), (min0, max0, min1, max1, ...), ready for a connected line.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    end = audio.shape[-1] if upto is None else max(0, min(int(upto), audio.shape[-1]))
    n = end // block
    if n == 0:
        return np.zeros(0, np.float64), np.zeros(0, np.float32)
    mono = audio[:, : n * block].mean(axis=0).reshape(n, block)
    lo, hi = mono.min(axis=1), mono.max(axis=1)
    y = np.empty(2 * n, dtype=np.float32)
    y[0::2], y[1::2] = lo, hi
    x = np.repeat((np.arange(n) + 0.5) * (block / samplerate), 2)
    return x, y
