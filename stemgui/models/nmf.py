"""Supervised NMF: the classic masking baseline (a dictionary per source, activations fitted on the mixture).

Written for StemGUI from the textbook method (Smaragdis 2007 "supervised NMF"; Févotte & Idier, "Algorithms for
nonnegative matrix factorization with the beta-divergence", Neural Computation 2011, for the updates).

* "Training" is dictionary learning (`fit`, called by `stemgui train --arch nmf`): for each source s the
  magnitude spectrogram V_s (bins, frames) of its training stems is factorised V_s ≈ W_s H_s with K =
  `components` columns by multiplicative updates minimising the beta-divergence (`beta` 2: Euclidean,
  1: generalized KL, 0: Itakura-Saito); the columns of W_s are scaled to sum to one. The dictionaries are the
  buffer `dictionaries` (sources, bins, K), so they travel in the safetensors file like any weight. Under a
  CPU-time budget (`train.cpu_minutes`, a study's equal-CPU comparison) the updates stop when it is spent.
* Separation (`forward`): the mixture's |STFT| V ≈ [W_1 ... W_S] H with the dictionaries fixed and H fitted by
  `iterations` multiplicative updates; then Wiener-style masks m_s = (W_s H_s)^p / Σ_s' (W_s' H_s')^p
  (`power` p = 2: the classic Wiener filter on magnitudes), which sum to one, applied to the mixture's complex
  spectrogram (its phase); the estimates sum to the mixture.

The updates use the exponent γ(β) of Févotte & Idier, so the divergence never increases for any β.
Shapes: mix (batch, channels, time) -> (batch, sources, channels, time); each channel is factorised alone.
"""

from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from stemgui.models.masking import check_frames, reconstruct, stft

__all__ = ["NMF", "beta_divergence", "update_activations", "update_dictionary"]

PAPER = ("Supervised NMF (Smaragdis et al. 2007) with beta-divergence multiplicative updates (Févotte & Idier, "
         "Neural Computation 2011)")
EPS = 1e-10


def beta_divergence(v: torch.Tensor, v_hat: torch.Tensor, beta: float) -> torch.Tensor:
    """Σ d_β(v | v̂) over every element (float64 sum)."""
    v = v.double().clamp_min(EPS)
    v_hat = v_hat.double().clamp_min(EPS)
    if beta == 1:
        return (v * (v / v_hat).log() - v + v_hat).sum()
    if beta == 0:
        ratio = v / v_hat
        return (ratio - ratio.log() - 1).sum()
    return ((v ** beta + (beta - 1) * v_hat ** beta - beta * v * v_hat ** (beta - 1)) / (beta * (beta - 1))).sum()


def _gamma(beta: float) -> float:
    """The exponent that makes the multiplicative updates monotone (Févotte & Idier 2011, table 2)."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def update_activations(v: torch.Tensor, w: torch.Tensor, h: torch.Tensor, beta: float,
                       v_hat: torch.Tensor | None = None) -> torch.Tensor:
    """One multiplicative update of H (..., K, frames) for V ≈ W H with W (..., bins, K) fixed.

    `v_hat`: W H when the caller already has it (the fit computes it for the divergence), saving a product.
    """
    v_hat = (w @ h if v_hat is None else v_hat).clamp_min(EPS)
    if beta == 1:  # KL: V̂^(β-1) is all ones, so the denominator is W's column sums (no bins x frames pass)
        return h * ((w.transpose(-1, -2) @ (v / v_hat)) / w.sum(dim=-2).unsqueeze(-1).clamp_min(EPS))
    numerator = w.transpose(-1, -2) @ (v * v_hat ** (beta - 2))
    denominator = (w.transpose(-1, -2) @ v_hat ** (beta - 1)).clamp_min(EPS)
    return h * (numerator / denominator) ** _gamma(beta)


def update_dictionary(v: torch.Tensor, w: torch.Tensor, h: torch.Tensor, beta: float) -> torch.Tensor:
    """One multiplicative update of W (bins, K) for V ≈ W H with H (K, frames) fixed."""
    v_hat = (w @ h).clamp_min(EPS)
    if beta == 1:  # KL: the denominator is H's row sums
        return w * (((v / v_hat) @ h.transpose(-1, -2)) / h.sum(dim=-1).unsqueeze(-2).clamp_min(EPS))
    numerator = (v * v_hat ** (beta - 2)) @ h.transpose(-1, -2)
    denominator = (v_hat ** (beta - 1) @ h.transpose(-1, -2)).clamp_min(EPS)
    return w * (numerator / denominator) ** _gamma(beta)


class NMF(nn.Module):
    """Supervised NMF separator; `fit(stems)` learns the dictionaries, `forward` separates."""

    architecture = "nmf"
    trained_by_fitting = True  # the trainer calls fit() instead of running gradient steps
    paper = PAPER

    def __init__(self, sources: Sequence[str], audio_channels: int = 2, samplerate: int = 44100,
                 segment: float = 10.0, nfft: int = 2048, hop: int = 512, components: int = 32,
                 beta: float = 1.0, iterations: int = 50, fit_iterations: int = 100, power: float = 2.0,
                 seed: int = 0) -> None:
        super().__init__()
        check_frames(nfft, hop)
        if components < 1 or iterations < 1 or fit_iterations < 1:
            raise ValueError("components, iterations and fit_iterations must be >= 1")
        if power <= 0:
            raise ValueError(f"power={power}: must be > 0")
        self.sources = list(sources)
        self.audio_channels = int(audio_channels)
        self.samplerate = int(samplerate)
        self.segment = float(segment)
        self.nfft, self.hop, self.components = int(nfft), int(hop), int(components)
        self.beta, self.iterations, self.fit_iterations = float(beta), int(iterations), int(fit_iterations)
        self.power, self.seed = float(power), int(seed)
        self.init_kwargs = dict(audio_channels=self.audio_channels, samplerate=self.samplerate,
                                segment=self.segment, nfft=self.nfft, hop=self.hop, components=self.components,
                                beta=self.beta, iterations=self.iterations, fit_iterations=self.fit_iterations,
                                power=self.power, seed=self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        bins = self.nfft // 2 + 1
        w = torch.rand(len(self.sources), bins, self.components, generator=generator) + 0.1
        self.register_buffer("dictionaries", w / w.sum(dim=1, keepdim=True))

    @property
    def spec_params(self) -> tuple[int, int]:
        return self.nfft, self.hop

    # ------------------------------------------------------------------------------------------- training
    @torch.no_grad()
    def fit(self, stems: torch.Tensor, cpu_seconds: float | None = None) -> dict[str, list[float]]:
        """Learn each source's dictionary from `stems` (items, sources, channels, time) at the model's rate.

        `cpu_seconds`: a budget of process CPU time (a study's equal-CPU comparison), shared evenly by the sources
        still to fit; a source stops updating once its share is spent (after at least one update), so a budget
        cuts every dictionary's iterations, not the last sources'. Returns the beta-divergence before and after
        every update, per source (the tests check it never increases; its length says how many updates ran).
        """
        if stems.dim() != 4 or stems.shape[1] != len(self.sources):
            raise ValueError(f"stems must be (items, {len(self.sources)} sources, channels, time), "
                             f"not {tuple(stems.shape)}")
        generator = torch.Generator().manual_seed(self.seed)
        history: dict[str, list[float]] = {}
        learned = []
        started = time.process_time()
        for index, name in enumerate(self.sources):
            deadline = None
            if cpu_seconds is not None:  # this source's share of what is left
                left = cpu_seconds - (time.process_time() - started)
                deadline = time.process_time() + max(0.0, left) / (len(self.sources) - index)
            spec = stft(stems[:, index].float(), self.nfft, self.hop).abs()  # (items, channels, F, N)
            v = spec.permute(2, 0, 1, 3).reshape(spec.shape[2], -1).double()  # (F, all frames)
            w = torch.rand(v.shape[0], self.components, generator=generator, dtype=torch.float64) + 0.1
            h = torch.rand(self.components, v.shape[1], generator=generator, dtype=torch.float64) + 0.1
            h *= v.mean() / (w @ h).mean().clamp_min(EPS)
            v_hat = w @ h
            values = [float(beta_divergence(v, v_hat, self.beta))]
            for _ in range(self.fit_iterations):
                if deadline is not None and len(values) > 1 and time.process_time() >= deadline:
                    break
                h = update_activations(v, w, h, self.beta, v_hat=v_hat)
                w = update_dictionary(v, w, h, self.beta)
                v_hat = w @ h
                values.append(float(beta_divergence(v, v_hat, self.beta)))
            del v_hat
            scale = w.sum(dim=0, keepdim=True).clamp_min(EPS)
            learned.append((w / scale).float())
            history[name] = values
        self.dictionaries.copy_(torch.stack(learned))
        return history

    # ------------------------------------------------------------------------------------------ separation
    def activations(self, magnitude: torch.Tensor) -> torch.Tensor:
        """H (N, sources * K, frames) for magnitudes (N, bins, frames) with the dictionaries fixed."""
        w = self.dictionaries.permute(1, 0, 2).reshape(self.dictionaries.shape[1], -1).to(magnitude)
        v = magnitude.clamp_min(EPS)
        h = torch.full((v.shape[0], w.shape[1], v.shape[2]), 1.0 / w.shape[1], dtype=v.dtype, device=v.device)
        h = h * v.mean(dim=(1, 2), keepdim=True)
        for _ in range(self.iterations):
            h = update_activations(v, w, h, self.beta)
        return h

    def masks(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Wiener-style masks (N, sources, bins, frames) summing to one over the sources."""
        h = self.activations(magnitude)
        k = self.components
        parts = torch.stack([self.dictionaries[s].to(magnitude) @ h[:, s * k:(s + 1) * k]
                             for s in range(len(self.sources))], dim=1)
        parts = parts.clamp_min(EPS) ** self.power
        return parts / parts.sum(dim=1, keepdim=True)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        batch, channels, _ = mix.shape
        spec = stft(mix, self.nfft, self.hop)  # (B, C, F, N)
        magnitude = spec.abs().reshape(batch * channels, *spec.shape[-2:])
        with torch.no_grad():
            masks = self.masks(magnitude.detach())
        masks = masks.reshape(batch, channels, len(self.sources), *spec.shape[-2:]).transpose(1, 2)
        return reconstruct(spec, masks, mix, self.nfft, self.hop, exact_sum=True)
