"""Oracle baselines: what a separator could reach with knowledge of the true stems, and doing nothing.

Every model score needs context: the ideal ratio mask and ideal binary mask (STFT masks computed from the
reference stems, applied to the mixture) are upper bounds for masking separators, and the mixture used as
every estimate is the floor. Stems are (sources, channels, samples); the mixture is their sum. The stems are the
set being scored: for a two-stem model, (vocals, accompaniment) with accompaniment the sum of the other stems
(stemgui.eval.dataset), so the masks are the two-source ones its papers report (vocals against accompaniment).
"""

from __future__ import annotations

import numpy as np

ORACLES = ("irm", "ibm", "mix")
"""Names accepted by `oracle_estimates` and `stemgui evaluate --oracle`."""
ORACLE_LABELS = {"irm": "oracle-IRM", "ibm": "oracle-IBM", "mix": "mixture"}
"""How reports name each oracle's scores (figures draw these as references, in grey)."""

NFFT = 4096
HOP = 1024


def _stft(signal, nfft: int, hop: int, window):
    import torch

    return torch.stft(signal, nfft, hop, window=window, center=True, pad_mode="constant", return_complex=True)


def _istft(spec, nfft: int, hop: int, window, length: int):
    import torch

    return torch.istft(spec, nfft, hop, window=window, center=True, length=length)


def masked_estimates(stems: np.ndarray, binary: bool, power: float = 1.0, nfft: int = NFFT, hop: int = HOP) -> np.ndarray:
    """Estimates from masks on the mixture's STFT: ratio |S_j|^p / Σ|S_i|^p, or 1 where source j is the
    loudest (binary). One channel at a time and one source at a time, so a whole song fits in memory."""
    import torch

    stems = np.asarray(stems, dtype=np.float32)
    nsrc, nchan, length = stems.shape
    out = np.zeros_like(stems)
    if length == 0:
        return out
    window = torch.hann_window(nfft)
    with torch.inference_mode():
        for c in range(nchan):
            channel = torch.from_numpy(np.ascontiguousarray(stems[:, c]))
            mix_spec = _stft(channel.sum(dim=0), nfft, hop, window)
            if binary:
                best = None
                winner = None
                for j in range(nsrc):
                    mag = _stft(channel[j], nfft, hop, window).abs()
                    if best is None:
                        best, winner = mag, torch.zeros(mag.shape, dtype=torch.long)
                    else:
                        louder = mag > best
                        best = torch.where(louder, mag, best)
                        winner[louder] = j
                for j in range(nsrc):
                    mask = (winner == j).to(mix_spec.real.dtype)
                    out[j, c] = _istft(mix_spec * mask, nfft, hop, window, length).numpy()
            else:
                total = None
                for j in range(nsrc):
                    weight = _stft(channel[j], nfft, hop, window).abs().pow(power)
                    total = weight if total is None else total + weight
                tiny = torch.finfo(total.dtype).tiny
                for j in range(nsrc):
                    weight = _stft(channel[j], nfft, hop, window).abs().pow(power)
                    mask = weight / total.clamp_min(tiny)
                    out[j, c] = _istft(mix_spec * mask, nfft, hop, window, length).numpy()
    return out


def ideal_ratio_mask(stems: np.ndarray, power: float = 1.0, nfft: int = NFFT, hop: int = HOP) -> np.ndarray:
    """Each source's share |S_j|^p / Σ|S_i|^p of every time-frequency bin of the mixture (p=1: magnitude
    ratio, sigsep's IRM1; p=2: Wiener-like IRM2)."""
    return masked_estimates(stems, binary=False, power=power, nfft=nfft, hop=hop)


def ideal_binary_mask(stems: np.ndarray, nfft: int = NFFT, hop: int = HOP) -> np.ndarray:
    """Every time-frequency bin of the mixture given wholly to the source that is loudest there."""
    return masked_estimates(stems, binary=True, nfft=nfft, hop=hop)


def mixture_as_estimate(stems: np.ndarray) -> np.ndarray:
    """The mixture as the estimate of every source: the score of doing nothing."""
    stems = np.asarray(stems, dtype=np.float32)
    return np.broadcast_to(stems.sum(axis=0), stems.shape).copy()


def oracle_estimates(stems: np.ndarray, method: str) -> np.ndarray:
    """Estimates (sources, channels, samples) of the oracle `method` ("irm", "ibm" or "mix")."""
    if method == "irm":
        return ideal_ratio_mask(stems)
    if method == "ibm":
        return ideal_binary_mask(stems)
    if method == "mix":
        return mixture_as_estimate(stems)
    raise ValueError(f"unknown oracle '{method}' (expected one of {', '.join(ORACLES)})")
