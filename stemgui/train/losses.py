"""The generative-optimization objective: waveform L1, multi-resolution STFT, least-squares GAN, feature matching.

All losses take tensors shaped (batch, sources, channels, time) for waveforms, or lists of discriminator
outputs. They return scalar means so that DDP gradient averaging over equal local batches equals the gradient
of the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

MAG_FLOOR = 1e-7


def l1_loss(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over every sample of every source."""
    return F.l1_loss(estimate, target)


def stft_magnitude(x: torch.Tensor, fft: int, hop: int, win: int) -> torch.Tensor:
    """|STFT| of (..., time) with a Hann window of `win` samples, as (N, bins, frames), floored above zero."""
    flat = x.reshape(-1, x.shape[-1]).float()
    window = torch.hann_window(win, device=flat.device, dtype=flat.dtype)
    spec = torch.stft(flat, fft, hop, win, window=window, return_complex=True, center=True, pad_mode="reflect")
    return spec.abs().clamp_min(MAG_FLOOR)


class MultiResolutionSTFTLoss(nn.Module):
    """Parallel WaveGAN's auxiliary loss: spectral convergence + mean |log|S| - log|Ŝ||, averaged over resolutions.

    Spectral convergence is ‖|S|−|Ŝ|‖_F / ‖|S|‖_F per signal (scale invariant: it only sees the relative error);
    the log-magnitude term is scale sensitive and weights quiet bins, so together they cover both ends.

    Separated sources are often silent (no vocals in an intro), where ‖|S|‖_F -> 0 makes spectral convergence
    explode and log|S| has unbounded gradients. So both terms get a floor expressed as the level of white noise:
    the SC denominator is sqrt(‖|S|‖² + ‖|N|‖²) for noise N of RMS `sc_floor` (negligible for real signals), and
    magnitudes in the log term are clamped at the expected bin magnitude of noise of RMS `log_floor`.
    """

    def __init__(
        self,
        resolutions: Sequence[Sequence[int]] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240)),
        sc_weight: float = 1.0,
        mag_weight: float = 1.0,
        sc_floor: float = 1e-2,
        log_floor: float = 1e-4,
    ) -> None:
        super().__init__()
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        self.sc_weight = sc_weight
        self.mag_weight = mag_weight
        self.sc_floor = sc_floor
        self.log_floor = log_floor

    def terms(self, estimate: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(spectral convergence, log magnitude), each averaged over resolutions."""
        sc_total = estimate.new_zeros((), dtype=torch.float32)
        mag_total = estimate.new_zeros((), dtype=torch.float32)
        for fft, hop, win in self.resolutions:
            est = stft_magnitude(estimate, fft, hop, win)
            with torch.no_grad():
                ref = stft_magnitude(target.detach(), fft, hop, win)
            # Hann window: E|X_k|² = σ²·Σw² = σ²·3·win/8 for white noise of RMS σ (one-sided, unnormalized STFT).
            bin_noise = math.sqrt(3 * win / 8)
            floor_sq = (self.sc_floor * bin_noise) ** 2 * ref.shape[1] * ref.shape[2]
            diff = torch.linalg.vector_norm(ref - est, dim=(1, 2))
            norm = (torch.linalg.vector_norm(ref, dim=(1, 2)).square() + floor_sq).sqrt()
            sc_total = sc_total + (diff / norm).mean()
            low = self.log_floor * bin_noise
            mag_total = mag_total + (ref.clamp_min(low).log() - est.clamp_min(low).log()).abs().mean()
        n = len(self.resolutions)
        return sc_total / n, mag_total / n

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sc, mag = self.terms(estimate, target)
        return self.sc_weight * sc + self.mag_weight * mag


def discriminator_loss(real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN loss for D: mean over discriminators of (D(s)-1)² + D(ŝ)²."""
    total = real_scores[0].new_zeros((), dtype=torch.float32)
    for real, fake in zip(real_scores, fake_scores):
        total = total + (real.float() - 1).square().mean() + fake.float().square().mean()
    return total / len(real_scores)


def generator_adversarial_loss(fake_scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN loss for G: mean over discriminators of (D(ŝ)-1)²."""
    total = fake_scores[0].new_zeros((), dtype=torch.float32)
    for fake in fake_scores:
        total = total + (fake.float() - 1).square().mean()
    return total / len(fake_scores)


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]], fake_features: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """L1 between D's intermediate activations on real and generated audio (real side detached)."""
    total = None
    count = 0
    for real_list, fake_list in zip(real_features, fake_features):
        for real, fake in zip(real_list, fake_list):
            term = F.l1_loss(fake.float(), real.detach().float())
            total = term if total is None else total + term
            count += 1
    if total is None:
        raise ValueError("feature_matching_loss needs at least one feature map")
    return total / count
