"""The generative-optimization objective: waveform L1, multi-resolution STFT, least-squares GAN, feature matching.

`GeneratorObjective` combines them with the configured weights (and the RMS warm-up) into what G minimises.

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

from stemgui.train.config import SPECTRAL_PRESETS, LossConfig

MAG_FLOOR = 1e-7
KL_FLOOR = 1e-6  # magnitudes floored under the generalized KL divergence


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
        """(spectral convergence, log magnitude), each averaged over resolutions.

        Values and gradients are those of the plain autograd formulation through `stft_magnitude` (the tests
        hold the two together), but the gradient is formed by hand (`_STFTLossTerms`): autograd through |STFT|
        walks a dozen full-size complex intermediates and torch.stft's strided-view backward, which made this
        loss 3x the cost of the generator.
        """
        flat = estimate.reshape(-1, estimate.shape[-1]).float()
        ref_flat = target.detach().reshape(-1, target.shape[-1]).float()
        sc_total = flat.new_zeros(())
        mag_total = flat.new_zeros(())
        for fft, hop, win in self.resolutions:
            sc, mag = _STFTLossTerms.apply(flat, ref_flat, fft, hop, win, self.sc_floor, self.log_floor)
            sc_total = sc_total + sc
            mag_total = mag_total + mag
        n = len(self.resolutions)
        return sc_total / n, mag_total / n

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        sc, mag = self.terms(estimate, target)
        return self.sc_weight * sc + self.mag_weight * mag


def _bin_noise(win: int) -> float:
    """Expected |X_k| scale of unit-RMS white noise under a Hann window of `win` samples (one-sided STFT).

    E|X_k|² = σ²·Σw² = σ²·3·win/8, so a floor "noise of RMS σ" is σ times this.
    """
    return math.sqrt(3 * win / 8)


def _stft_adjoint(grad_spec: torch.Tensor, length: int, fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """Gradient w.r.t. the signal of Re<STFT(x), G> for torch.stft(center=True, reflect padding, onesided).

    The transpose of each step of the forward: one-sided rfft -> M·irfft with the interior bins halved (they
    stand for two conjugate bins), framing with the window -> windowed overlap-add (F.fold), reflect padding ->
    folding the padded ends back onto the samples they were mirrored from.
    """
    pad = fft // 2
    scale = torch.ones(grad_spec.shape[1], device=grad_spec.device, dtype=torch.float32)
    scale[1:fft // 2] = 0.5
    frames = torch.fft.irfft(grad_spec * scale[:, None], n=fft, dim=1)  # (N, fft, T)
    frames.mul_(window[None, :, None] * fft)
    padded_len = length + 2 * pad
    signal = F.fold(frames, output_size=(1, padded_len), kernel_size=(1, fft), stride=(1, hop))
    signal = signal.reshape(grad_spec.shape[0], padded_len)
    grad = signal[:, pad:pad + length].clone()
    grad[:, 1:pad + 1] += signal[:, :pad].flip(-1)
    grad[:, length - 1 - pad:length - 1] += signal[:, pad + length:].flip(-1)
    return grad


class _STFTLossTerms(torch.autograd.Function):
    """One resolution of the MR-STFT loss, (spectral convergence, log magnitude), with a hand-formed gradient.

    Signals are processed in small chunks so the complex spectra of each step stay in cache: every step here is
    a memory-bound elementwise pass, and on full-size tensors they cost more than the FFTs.
    """

    CHUNK = 2

    @staticmethod
    def forward(ctx, est: torch.Tensor, ref_signal: torch.Tensor, fft: int, hop: int, win: int,  # type: ignore[override]
                sc_floor: float, log_floor: float) -> tuple[torch.Tensor, torch.Tensor]:
        window = torch.hann_window(win, device=est.device, dtype=torch.float32)
        bin_noise = _bin_noise(win)
        low = log_floor * bin_noise
        signals = est.shape[0]
        sc_sum = est.new_zeros(())
        log_sum = est.new_zeros(())
        count = 0
        saved = []
        for start in range(0, signals, _STFTLossTerms.CHUNK):
            part = slice(start, start + _STFTLossTerms.CHUNK)
            spec = torch.stft(est[part], fft, hop, win, window=window, return_complex=True, center=True,
                              pad_mode="reflect")
            ref = stft_magnitude(ref_signal[part], fft, hop, win)
            raw = spec.abs()
            mag = raw.clamp_min(MAG_FLOOR)
            bins, frames = mag.shape[1], mag.shape[2]
            floor_sq = (sc_floor * bin_noise) ** 2 * bins * frames
            delta = mag - ref
            diff = torch.linalg.vector_norm(delta, dim=(1, 2))
            norm = (torch.linalg.vector_norm(ref, dim=(1, 2)).square() + floor_sq).sqrt()
            sc_sum = sc_sum + (diff / norm).sum()
            log_err = ref.clamp_min_(low).log_().sub_(mag.clamp_min(low).log_())
            log_sum = log_sum + log_err.abs().sum()
            count += log_err.numel()
            # d/d|X| of each term, up to the 1/N means applied in backward; the masks keep clamp_min's zero
            # gradient below the floors, and X/|X| turns a gradient on |X| into one on X.
            d_sc = delta.div_((diff * norm).clamp_min(1e-30)[:, None, None])
            d_log = log_err.sign_().neg_().div_(mag).mul_(mag > low)
            phasor = spec.div_(raw.clamp_min_(MAG_FLOOR)).mul_(raw > MAG_FLOOR)
            saved.append((d_sc, d_log, phasor))
        ctx.saved_chunks = saved
        ctx.meta = (est.shape[-1], fft, hop, window, signals, count)
        return sc_sum / signals, log_sum / count

    @staticmethod
    def backward(ctx, grad_sc: torch.Tensor, grad_log: torch.Tensor):  # type: ignore[override]
        length, fft, hop, window, signals, count = ctx.meta
        lead = (fft - window.shape[0]) // 2
        padded_window = F.pad(window, (lead, fft - window.shape[0] - lead))
        w_sc, w_log = grad_sc / signals, grad_log / count
        grads = []
        for d_sc, d_log, phasor in ctx.saved_chunks:
            grad_spec = phasor.mul_(d_sc.mul_(w_sc).add_(d_log.mul_(w_log)))
            grads.append(_stft_adjoint(grad_spec, length, fft, hop, padded_window))
        ctx.saved_chunks = None
        return torch.cat(grads), None, None, None, None, None, None


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


def rms_error(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Root mean squared error over every sample (the waveform term during `loss.rms_warmup_steps`)."""
    return (estimate - target).square().mean().add(1e-12).sqrt()


def spectral_distance(estimate: torch.Tensor, target: torch.Tensor, divergence: str) -> torch.Tensor:
    """Mean distance between magnitudes: squared error ("mse"), generalized KL D(target | estimate) ("kl") or
    absolute error ("l1")."""
    if divergence == "l1":
        return (estimate - target).abs().mean()
    if divergence == "kl":
        est = estimate.clamp_min(KL_FLOOR)
        ref = target.clamp_min(KL_FLOOR)
        return (ref * (ref / est).log() - ref + est).mean()
    return (estimate - target).square().mean()


def spectral_loss(estimate: torch.Tensor, target: torch.Tensor, nfft: int, hop: int, divergence: str = "mse",
                  discriminative: float = 0.0) -> torch.Tensor:
    """The masking papers' objective on |STFT| of (batch, sources, channels, time) waveforms.

    DRNN (Huang et al.): D(ŷ_s, y_s) - r · D(ŷ_s, y_s') summed over the other sources s' (for two sources
    exactly the paper's ‖ŷ1 − y1‖² + ‖ŷ2 − y2‖² − r(‖ŷ1 − y2‖² + ‖ŷ2 − y1‖²), here as means; with more sources
    the discriminative term is averaged over the others). The U-Net (Jansson et al.): "l1", r = 0.
    Magnitudes are those of the output waveforms under the model's own STFT (nfft, hop), i.e. the masked
    mixture spectrogram up to the STFT's consistency.
    """
    from stemgui.models.masking import stft

    est = stft(estimate.float(), nfft, hop).abs()
    ref = stft(target.float(), nfft, hop).abs()
    total = spectral_distance(est, ref, divergence)
    sources = est.shape[1]
    if discriminative > 0 and sources > 1:
        others = sum(spectral_distance(est, ref.roll(k, dims=1), divergence) for k in range(1, sources))
        total = total - discriminative * others / (sources - 1)
    return total


class GeneratorObjective:
    """What the generator minimises, and the one owner of the loss weights (`LossConfig`).

    Reconstruction: the waveform term (RMS error for the first `rms_warmup_steps`, L1 after; see LossConfig)
    plus the weighted MR-STFT loss when `use_stft`. Adversarial (once D is on): LSGAN + feature matching. Each
    part returns the weighted total and the unweighted terms for the log.
    """

    def __init__(self, weights: LossConfig, use_stft: bool, spec_params: tuple[int, int] | None = None) -> None:
        self.weights = weights
        self.use_stft = use_stft
        self.spec_params = tuple(spec_params) if spec_params else (1024, 256)  # the spectral presets' STFT
        self.stft = MultiResolutionSTFTLoss(weights.stft_resolutions, weights.stft_sc, weights.stft_mag,
                                            weights.stft_sc_floor, weights.stft_log_floor)

    def reconstruction(self, estimate: torch.Tensor, target: torch.Tensor,
                       step: int) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.weights
        terms: dict[str, float] = {}
        l1 = l1_loss(estimate, target)
        if w.preset in SPECTRAL_PRESETS:  # the masking papers' losses replace the waveform term
            divergence = "l1" if w.preset == "unet" else w.divergence
            discriminative = w.discriminative if w.preset == "drnn" else 0.0
            total = spectral_loss(estimate, target, *self.spec_params, divergence, discriminative)
            terms["spectral"] = float(total.detach())
        elif step < w.rms_warmup_steps:
            rms = rms_error(estimate, target)
            total = w.l1 * rms
            terms["rms_error"] = float(rms.detach())
        else:
            total = w.l1 * l1
        terms["l1"] = float(l1.detach())
        if self.use_stft:
            sc, mag = self.stft.terms(estimate, target)
            stft = w.stft_sc * sc + w.stft_mag * mag
            total = total + w.stft * stft
            terms.update(stft=float(stft.detach()), stft_sc=float(sc.detach()), stft_mag=float(mag.detach()))
        return total, terms

    def adversarial(self, fake_scores: Sequence[torch.Tensor], real_features: Sequence[Sequence[torch.Tensor]],
                    fake_features: Sequence[Sequence[torch.Tensor]]) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.weights
        adv = generator_adversarial_loss(fake_scores)
        fm = feature_matching_loss(real_features, fake_features)
        total = w.adversarial * adv + w.feature_matching * fm
        return total, {"adv": float(adv.detach()), "fm": float(fm.detach())}
