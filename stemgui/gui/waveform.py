"""Peak envelopes for the optional waveform view of a lane (pure numpy, computed in the picture worker).

A lane's waveform is drawn as a vertical stroke per block of samples from the block's lowest to its highest
(mono) sample: BLOCK samples (689 strokes per second at 44.1 kHz, enough to see every beat at the deepest zoom)
up to MAX_STROKES strokes, wider blocks beyond (a 1-hour DJ mix: 3.4 k samples, still 13 strokes a second).
The lane is read READ_FRAMES at a time, so a long song's mapped lanes are never converted whole, and pyqtgraph's
peak downsampling keeps drawing cheap.
"""

from __future__ import annotations

import numpy as np

BLOCK = 64
MAX_STROKES = 1 << 19
READ_FRAMES = 1 << 20


def stroke_block(frames: int, block: int = BLOCK) -> int:
    """Samples per stroke for a lane of `frames` samples: `block`, or wider to stay within MAX_STROKES."""
    return max(int(block), -(-int(frames) // MAX_STROKES))


def peak_envelope(audio: np.ndarray, samplerate: int, upto: int | None = None,
                  block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """(x seconds, y) of the min/max strokes of audio (channels, samples) up to sample `upto`.

    x and y are interleaved (x0, x0, x1, x1, ...), (min0, max0, min1, max1, ...), ready for a connected line.
    """
    if audio.ndim == 1:
        audio = audio[None]
    end = audio.shape[-1] if upto is None else max(0, min(int(upto), audio.shape[-1]))
    block = stroke_block(audio.shape[-1], block)
    n = end // block
    if n == 0:
        return np.zeros(0, np.float64), np.zeros(0, np.float32)
    y = np.empty(2 * n, dtype=np.float32)
    step = max(1, READ_FRAMES // block)  # strokes per read
    for s0 in range(0, n, step):
        s1 = min(n, s0 + step)
        piece = np.asarray(audio[:, s0 * block:s1 * block], dtype=np.float32)
        mono = piece.mean(axis=0).reshape(s1 - s0, block)
        y[2 * s0:2 * s1:2], y[2 * s0 + 1:2 * s1:2] = mono.min(axis=1), mono.max(axis=1)
    x = np.repeat((np.arange(n) + 0.5) * (block / samplerate), 2)
    return x, y
