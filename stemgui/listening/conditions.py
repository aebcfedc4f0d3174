"""Signal processing of listening-test conditions: excerpts, low-pass anchors, BS.1770 loudness matching.

Conditions must differ only in what the systems did: every one is cut at the same samples, faded in and out
the same way (so a loop never clicks), and matched to one integrated loudness (ITU-R BS.1770-4: K-weighting,
400 ms blocks with 75 % overlap, absolute gate -70 LUFS, relative gate -10 LU), since listeners prefer louder
versions. Anchors are the reference low-passed (ITU-R BS.1534-3: 3.5 kHz, optional 7 kHz) with a linear-phase
Kaiser FIR whose stop band starts at the cutoff (>= 100 dB down), applied before cutting so the excerpt's
edges see no filter transient.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0
BLOCK_SECONDS = 0.4
STEP_SECONDS = 0.1  # 75 % overlap
ANCHOR_ATTENUATION_DB = 100.0
ANCHOR_TRANSITION_HZ = 300.0
PEAK_CEILING = 0.98
"""After matching, a trial whose loudest condition would peak above this is turned down as a whole."""


def k_weighting(samplerate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two BS.1770 pre-filter biquads (high shelf, then RLB high-pass) as (b, a) pairs at `samplerate`.

    Coefficients from the filters' analog parameters (as libebur128 derives them), which reproduce the
    standard's 48 kHz table exactly and give the same response at any other rate.
    """
    fs = float(samplerate)
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / fs)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh ** 0.4996667741545416
    a0 = 1.0 + k / q + k * k
    shelf_b = np.array([(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0])
    shelf_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / fs)
    a0 = 1.0 + k / q + k * k
    hp_b = np.array([1.0, -2.0, 1.0])
    hp_a = np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0])
    return [(shelf_b, shelf_a), (hp_b, hp_a)]


def integrated_loudness(audio: np.ndarray, samplerate: int) -> float:
    """Integrated loudness in LUFS of (channels, samples) audio (1 or 2 channels, weights 1); -inf if silent.

    A full-scale 997 Hz sine in one channel reads -3.01 LUFS, as BS.1770-4 specifies.
    """
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    if x.shape[0] > 2:
        raise ValueError(f"expected 1 or 2 channels, got {x.shape[0]}")
    for b, a in k_weighting(samplerate):
        x = scipy.signal.lfilter(b, a, x, axis=1)
    block = int(round(BLOCK_SECONDS * samplerate))
    step = int(round(STEP_SECONDS * samplerate))
    if x.shape[1] < block:
        raise ValueError(f"{x.shape[1] / samplerate:.3f} s is shorter than one {BLOCK_SECONDS:g} s gating block")
    starts = np.arange(0, x.shape[1] - block + 1, step)
    csum = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x * x, axis=1)], axis=1)
    power = (csum[:, starts + block] - csum[:, starts]) / block  # (channels, blocks): mean square
    total = power.sum(axis=0)
    with np.errstate(divide="ignore"):
        loud = -0.691 + 10.0 * np.log10(total)
    gated = loud > ABSOLUTE_GATE
    if not gated.any():
        return -math.inf
    relative = -0.691 + 10.0 * math.log10(total[gated].mean()) + RELATIVE_GATE
    gated &= loud > relative
    return -0.691 + 10.0 * math.log10(total[gated].mean())


def match_loudness(audio: np.ndarray, samplerate: int, target: float) -> tuple[np.ndarray, float]:
    """`audio` scaled to `target` LUFS and the gain in dB applied (0 dB for silence, which stays silent)."""
    loudness = integrated_loudness(audio, samplerate)
    if not math.isfinite(loudness):
        return np.asarray(audio, dtype=np.float32).copy(), 0.0
    gain_db = target - loudness
    return (np.asarray(audio, dtype=np.float64) * 10.0 ** (gain_db / 20.0)).astype(np.float32), gain_db


def lowpass_filter(cutoff: float, samplerate: int, attenuation_db: float = ANCHOR_ATTENUATION_DB,
                   transition_hz: float = ANCHOR_TRANSITION_HZ) -> np.ndarray:
    """Taps of a linear-phase Kaiser low-pass: pass band up to cutoff - transition, stop band from cutoff."""
    nyquist = samplerate / 2.0
    numtaps, beta = scipy.signal.kaiserord(attenuation_db, transition_hz / nyquist)
    numtaps |= 1  # odd: a whole-sample delay, so the output lines up with the input exactly
    edge = cutoff - transition_hz / 2.0
    return scipy.signal.firwin(numtaps, edge, window=("kaiser", beta), fs=samplerate)


def lowpass(audio: np.ndarray, cutoff: float, samplerate: int) -> np.ndarray:
    """Zero-delay low-pass of (channels, samples) audio: nothing above `cutoff` survives (>= 100 dB down)."""
    taps = lowpass_filter(cutoff, samplerate)
    x = np.asarray(audio, dtype=np.float64)
    y = scipy.signal.oaconvolve(x, taps[None, :], mode="full", axes=1)
    delay = (len(taps) - 1) // 2
    return y[:, delay:delay + x.shape[1]].astype(np.float32)


def anchor_padding(samplerate: int) -> int:
    """Samples of context each side of an excerpt the anchor filter needs (half its length)."""
    return (len(lowpass_filter(3500.0, samplerate)) - 1) // 2


def fade(audio: np.ndarray, samplerate: int, seconds: float) -> np.ndarray:
    """Raised-cosine fade in and out of `seconds` (so a looped excerpt starts and ends in silence)."""
    out = np.array(audio, dtype=np.float32, copy=True)
    n = min(int(round(seconds * samplerate)), out.shape[-1] // 2)
    if n > 0:
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)
        out[..., :n] *= ramp
        out[..., out.shape[-1] - n:] *= ramp[::-1]
    return out


def cut(audio: np.ndarray, start: int, end: int) -> np.ndarray:
    """Samples [start, end) of (channels, samples) audio, zero-padded where the song is shorter."""
    out = np.zeros((audio.shape[0], end - start), dtype=np.float32)
    lo, hi = max(0, start), min(audio.shape[1], end)
    if hi > lo:
        out[:, lo - start:hi - start] = audio[:, lo:hi]
    return out


def anchor(stem: np.ndarray, start: int, end: int, cutoff: float, samplerate: int) -> np.ndarray:
    """The low-pass anchor of `stem`'s excerpt [start, end): filtered with the song around it, then cut."""
    pad = anchor_padding(samplerate)
    context = cut(stem, start - pad, end + pad)
    return lowpass(context, cutoff, samplerate)[:, pad:pad + end - start]


def match_trial(conditions: dict[str, np.ndarray], samplerate: int, target: float
                ) -> tuple[dict[str, np.ndarray], float]:
    """Every condition of one trial at the same loudness: `target`, or lower when a peak would exceed
    PEAK_CEILING (then all of them are turned down together). Returns them and the loudness reached."""
    matched = {key: match_loudness(audio, samplerate, target)[0] for key, audio in conditions.items()}
    peak = max((float(np.abs(a).max()) for a in matched.values() if a.size), default=0.0)
    if peak <= PEAK_CEILING:
        return matched, target
    drop_db = 20.0 * math.log10(PEAK_CEILING / peak)
    scale = np.float32(10.0 ** (drop_db / 20.0))
    return {key: a * scale for key, a in matched.items()}, target + drop_db
