"""The time-frequency masking pipeline shared by the spectrogram models (`drnn`, `unet`, `nmf`).

mixture (batch, channels, time) -> complex STFT X (Hann window, `center=True`) -> the model's masks
M (batch, sources, channels, bins, frames) -> S_s = M_s ⊙ X (the mixture's phase) -> inverse STFT per source.

When the masks sum to one over the sources (DRNN's masking layer, NMF's Wiener masks) the source spectrograms
sum to X; the inverse STFT is linear, so the waveforms sum to the mixture up to its reconstruction error
(~1e-7), which `reconstruct(..., exact_sum=True)` spreads equally over the sources so that the estimates
sum to the mixture exactly (to float rounding).
"""

from __future__ import annotations

import torch

__all__ = ["check_frames", "stft", "istft", "reconstruct", "context_frames"]


def check_frames(nfft: int, hop: int) -> None:
    """Refuse STFT settings the masking pipeline cannot invert (one line naming the setting)."""
    if nfft < 2 or nfft % 2:
        raise ValueError(f"nfft={nfft}: must be even")
    if not 0 < hop < nfft:
        raise ValueError(f"hop={hop}: must be in 1..nfft - 1 (Hann frames must overlap)")


def _window(nfft: int, x: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(nfft, device=x.device, dtype=x.real.dtype if x.is_complex() else x.dtype)


def stft(x: torch.Tensor, nfft: int, hop: int) -> torch.Tensor:
    """Complex STFT of (..., time) -> (..., nfft//2 + 1, frames), frames = time // hop + 1 (+ 1 when hop > nfft/2)."""
    *shape, length = x.shape
    flat = x.reshape(-1, length)
    if hop > nfft // 2:  # little overlap (the U-Net's hop 768 of 1024): one more frame so the last samples are
        flat = torch.nn.functional.pad(flat, (0, hop))  # covered by a window that is not near its zero end
        length += hop
    pad_mode = "reflect" if length > nfft // 2 else "constant"
    spec = torch.stft(flat, nfft, hop, window=_window(nfft, flat), center=True, pad_mode=pad_mode,
                      return_complex=True)
    return spec.reshape(*shape, *spec.shape[-2:])


def istft(spec: torch.Tensor, nfft: int, hop: int, length: int) -> torch.Tensor:
    """Inverse of `stft`: (..., bins, frames) -> (..., length)."""
    *shape, bins, frames = spec.shape
    flat = spec.reshape(-1, bins, frames)
    out = torch.istft(flat, nfft, hop, window=_window(nfft, flat.real), center=True, length=length)
    return out.reshape(*shape, length)


def reconstruct(spec: torch.Tensor, masks: torch.Tensor, mix: torch.Tensor, nfft: int, hop: int,
                exact_sum: bool = False) -> torch.Tensor:
    """Source waveforms (batch, sources, channels, time) from the mixture spectrogram `spec` (batch, channels,
    bins, frames), `masks` (batch, sources, channels, bins, frames) and the mixture `mix` (batch, channels, time).

    `exact_sum`: the masks sum to one, so the only mismatch between the sum of the estimates and the mixture is
    the STFT's reconstruction error; it is shared equally by the sources.
    """
    est = istft(masks * spec[:, None], nfft, hop, mix.shape[-1])
    if exact_sum:
        est = est + (mix[:, None] - est.sum(dim=1, keepdim=True)) / est.shape[1]
    return est


def context_frames(features: torch.Tensor, context: int) -> torch.Tensor:
    """Concatenate each frame with its `context` neighbours on each side (edge frames repeated).

    (..., frames, dim) -> (..., frames, (2 * context + 1) * dim).
    """
    if context <= 0:
        return features
    frames = features.shape[-2]
    idx = torch.arange(frames, device=features.device)
    parts = [features.index_select(-2, (idx + k).clamp(0, frames - 1)) for k in range(-context, context + 1)]
    return torch.cat(parts, dim=-1)
