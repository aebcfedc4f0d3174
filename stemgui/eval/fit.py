"""A model's estimates fitted to a reference: the one place evaluation converts rate, channels and length.

Models run at their own rate and channel count; references are at the dataset's. `separate_like` runs the model
on the mixture converted to its format and returns every model stem at the reference's rate, channel count and
length, so metrics compare like with like (`stemgui evaluate` and `stemgui study` both score through it).
"""

from __future__ import annotations

import numpy as np


def fit_estimate(out: np.ndarray, model_rate: int, samplerate: int, channels: int, length: int) -> np.ndarray:
    """(sources, model channels, n) at `model_rate` -> (sources, `channels`, `length`) at `samplerate`.

    Channels are folded by averaging and repeating (a mono model on stereo references, or the other way);
    the tail is trimmed or padded with zeros.
    """
    from stemgui.audio import resample

    if samplerate != model_rate:
        out = resample(out, model_rate, samplerate)
    if out.shape[1] != channels:
        out = out.mean(axis=1, keepdims=True).repeat(channels, axis=1)
    out = out[..., :length]
    if out.shape[-1] < length:
        out = np.pad(out, [(0, 0), (0, 0), (0, length - out.shape[-1])])
    return out


def separate_like(separator, mixture: np.ndarray, samplerate: int, channels: int, length: int) -> np.ndarray:
    """Every stem of `separator` (its source order) for `mixture` (channels, n) at `samplerate`, fitted to
    references of `channels` x `length` at that rate."""
    from stemgui.audio import convert_channels, resample

    wav = mixture if samplerate == separator.samplerate else resample(mixture, samplerate, separator.samplerate)
    if wav.shape[0] != separator.audio_channels:
        wav = convert_channels(wav, separator.audio_channels)
    out = np.asarray(separator.separate(wav))
    return fit_estimate(out, separator.samplerate, samplerate, channels, length)
