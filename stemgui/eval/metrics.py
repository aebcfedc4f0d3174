"""Whole-track separation scores: uSDR (MDX), cSDR (SiSEC/museval), SI-SDR, NSDR and GNSDR.

Arrays follow the project convention, stems shaped (sources, channels, samples); each function returns one
value per source. BSSEval's framewise metrics live in `stemgui.eval.bsseval`.
"""

from __future__ import annotations

import numpy as np

from stemgui.eval import bsseval

MDX_DELTA = 1e-7
"""The MDX challenge's stabiliser in uSDR, so a silent source estimated as silence scores 0 dB, not NaN."""


def _check(references: np.ndarray, estimates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    refs = np.asarray(references, dtype=np.float64)
    ests = np.asarray(estimates, dtype=np.float64)
    if refs.shape != ests.shape:
        raise ValueError(f"references {refs.shape} and estimates {ests.shape} must have the same shape")
    if refs.ndim < 2:
        raise ValueError(f"expected (sources, channels, samples) or (sources, samples), got shape {refs.shape}")
    return refs.reshape(refs.shape[0], -1), ests.reshape(ests.shape[0], -1)


def usdr(references: np.ndarray, estimates: np.ndarray, delta: float = MDX_DELTA) -> np.ndarray:
    """The MDX challenge "SDR": 10·log10((δ + Σs²) / (δ + Σ(s−ŝ)²)) over the whole track, per source.

    Unlike BSSEval it neither frames nor filters: one number per source, cheap and never NaN.
    """
    refs, ests = _check(references, estimates)
    num = delta + np.einsum("st,st->s", refs, refs)
    err = refs - ests
    den = delta + np.einsum("st,st->s", err, err)
    return 10.0 * np.log10(num / den)


def csdr(references: np.ndarray, estimates: np.ndarray, samplerate: int = 44100, chunk: float = 1.0) -> np.ndarray:
    """Chunk SDR: median over `chunk`-second frames of each frame's SDR, i.e. museval's SDR for one track.

    Frames where any stem (reference or estimate) is silent are skipped, as museval does; a source with no
    usable frame gets NaN.
    """
    refs = np.asarray(references)
    ests = np.asarray(estimates)
    if refs.shape != ests.shape or refs.ndim != 3:
        raise ValueError(f"expected equal (sources, channels, samples) arrays, got {refs.shape} and {ests.shape}")
    size = int(round(chunk * samplerate))
    sdr = bsseval.framewise_sdr(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), win=size, hop=size)
    return nanmedian_rows(sdr)


def si_sdr(references: np.ndarray, estimates: np.ndarray, zero_mean: bool = True) -> np.ndarray:
    """Scale-invariant SDR (Le Roux et al. 2019) per source, channels concatenated.

    The reference is rescaled to best fit the estimate, so a gain error is not counted as distortion.
    NaN for a silent reference (no scale can be fitted).
    """
    refs, ests = _check(references, estimates)
    if zero_mean:
        refs = refs - refs.mean(axis=1, keepdims=True)
        ests = ests - ests.mean(axis=1, keepdims=True)
    ref_energy = np.einsum("st,st->s", refs, refs)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.einsum("st,st->s", ests, refs) / ref_energy
        target = scale[:, None] * refs
        noise = ests - target
        out = 10.0 * np.log10(np.einsum("st,st->s", target, target) / np.einsum("st,st->s", noise, noise))
    return np.where(ref_energy > 0, out, np.nan)


def nsdr(references: np.ndarray, estimates: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """Normalised SDR: uSDR of the estimate minus uSDR of the mixture used as the estimate of every source,
    i.e. how much the separation improved on doing nothing."""
    refs = np.asarray(references)
    mix = np.broadcast_to(np.asarray(mixture), refs.shape)
    return usdr(refs, estimates) - usdr(refs, mix)


def gnsdr(nsdrs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Global NSDR: mean over tracks of NSDR weighted by track length, per source.

    `nsdrs` (tracks, sources), `lengths` (tracks,) in samples or seconds; NaN entries are left out.
    """
    values = np.asarray(nsdrs, dtype=np.float64)
    weights = np.broadcast_to(np.asarray(lengths, dtype=np.float64)[:, None], values.shape)
    ok = np.isfinite(values)
    total = np.where(ok, weights, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.where(ok, values * weights, 0.0).sum(axis=0) / total, np.nan)


def nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN; NaN (without a warning) for a row that is all NaN."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(values.shape[0], np.nan)
    for i, row in enumerate(values):
        row = row[~np.isnan(row)]
        if row.size:
            out[i] = np.median(row)
    return out
