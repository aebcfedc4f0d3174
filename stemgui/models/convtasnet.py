"""Conv-TasNet (Luo & Mesgarani, "Conv-TasNet: Surpassing Ideal Time-Frequency Magnitude Masking for Speech
Separation", IEEE/ACM TASLP 2019) in the music configuration of the Demucs paper (Défossez et al. 2019, "Music
Source Separation in the Waveform Domain"): stereo in, four stereo sources out, non-causal, gLN, ReLU masks.

Written for StemGUI from the papers; module and parameter names follow the Demucs project's `tasnet.py` (its
adaptation of Kaituo Xu's implementation), so the same state-dict layout is used. Defaults are the Demucs
paper's baseline: N = 256 encoder filters of length L = 20 (hop L/2 = 10 samples), B = 256 bottleneck channels,
H = 512 channels in the convolutional blocks, kernel P = 3, X = 8 blocks per repeat (dilations 1 ... 128),
R = 4 repeats, 8 s training segments at 44.1 kHz. As in Demucs' version, the blocks have no separate skip-
connection path (their residual output feeds the next block and, after the last, the mask convolution);
`skip=True` adds the original paper's skip path (Sc = B channels summed over blocks, PReLU, then the masks).
Full size is ~38 G multiply-adds per second of stereo audio (8.7 M per encoder frame, 4410 frames/s): on 2 CPU
cores a step of 4 x 8 s takes minutes, so CPU runs shrink it (e.g. B=128, H=256, R=2); the card's `args` say
which sizes were used. The tests use N=16, B=8, H=16, X=2, R=1.

Shapes, for input (B_, C, T) with C = `audio_channels`, S = len(sources), K = (T' − L) / (L/2) + 1 frames:

* zero padding (right) to T' = `valid_length(T)` so the encoder's frames cover the input exactly;
* encoder: Conv1d(C -> N, kernel L, stride L/2, no bias) -> ReLU: mixture_w (B_, N, K);
* separator (TemporalConvNet): cLN(N) -> 1x1 conv N -> B -> R x X TemporalBlocks, each
  1x1 B -> H, PReLU, gLN, depthwise conv (kernel P, dilation 2^x, "same" padding), PReLU, gLN, 1x1 H -> B,
  plus the residual -> 1x1 conv B -> S·N -> ReLU (or softmax over sources): masks (B_, S, N, K);
* decoder: (mixture_w x mask) per source -> Linear(N -> C·L) basis signals -> overlap-add with hop L/2:
  (B_, S, C, T'), trimmed to T.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConvTasNet"]

EPS = 1e-8
NORMS = ("gLN", "cLN", "BN", "id")
MASKS = ("relu", "softmax")


PAPER = ("Luo & Mesgarani, Conv-TasNet, IEEE/ACM TASLP 2019, in the music configuration of Défossez et al., "
         "Music Source Separation in the Waveform Domain, 2019")


def _paper_text(model: nn.Module) -> str:
    """PAPER plus the settings that differ from the paper's (the class defaults), for the card."""
    from stemgui.models.architectures import changed_settings

    changed = changed_settings(model)
    return f"{PAPER}; settings other than the paper's: {changed}" if changed else PAPER


class ChannelwiseLayerNorm(nn.Module):
    """cLN: normalise each frame over channels; (B, N, K) -> (B, N, K)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        mean = y.mean(dim=1, keepdim=True)
        var = y.var(dim=1, keepdim=True, unbiased=False)
        return self.gamma * (y - mean) / torch.sqrt(var + EPS) + self.beta


class GlobalLayerNorm(nn.Module):
    """gLN: normalise over channels and time together (one mean / variance per example); (B, N, K)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        mean = y.mean(dim=(1, 2), keepdim=True)
        var = (y - mean).pow(2).mean(dim=(1, 2), keepdim=True)
        return self.gamma * (y - mean) / torch.sqrt(var + EPS) + self.beta


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "gLN":
        return GlobalLayerNorm(channels)
    if kind == "cLN":
        return ChannelwiseLayerNorm(channels)
    if kind == "id":
        return nn.Identity()
    return nn.BatchNorm1d(channels)


class Encoder(nn.Sequential):
    """Conv1d(C -> N, kernel L, stride L/2) + ReLU. A Sequential (of one layer) so that the fine-tuning surgery
    can freeze `encoder` layers as in every other architecture."""

    def __init__(self, L: int, N: int, audio_channels: int) -> None:
        super().__init__(OrderedDict(conv1d_U=nn.Conv1d(audio_channels, N, kernel_size=L, stride=L // 2, bias=False)))

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv1d_U(mixture))  # (B, N, K)


class Decoder(nn.Module):
    def __init__(self, N: int, L: int, audio_channels: int) -> None:
        super().__init__()
        self.L = L
        self.audio_channels = audio_channels
        self.basis_signals = nn.Linear(N, audio_channels * L, bias=False)

    def forward(self, mixture_w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """mixture_w (B, N, K), mask (B, S, N, K) -> (B, S, C, (K − 1)·L/2 + L)."""
        batch, sources, _, frames = mask.shape
        source_w = (mixture_w.unsqueeze(1) * mask).transpose(2, 3)  # (B, S, K, N)
        frames_out = self.basis_signals(source_w)  # (B, S, K, C·L)
        length = (frames - 1) * (self.L // 2) + self.L
        cols = frames_out.reshape(batch * sources, frames, -1).transpose(1, 2)  # (B·S, C·L, K)
        out = F.fold(cols, output_size=(1, length), kernel_size=(1, self.L), stride=(1, self.L // 2))
        return out.reshape(batch, sources, self.audio_channels, length)


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, channels: int, out_channels: int, kernel: int, padding: int, dilation: int,
                 norm: str) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(channels, channels, kernel, padding=padding, dilation=dilation, groups=channels, bias=False),
            nn.PReLU(), _norm(norm, channels), nn.Conv1d(channels, out_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TemporalBlock(nn.Module):
    """1x1 conv B -> H, PReLU, norm, depthwise-separable conv H -> B (+ skip conv), residual; (B_, B, K)."""

    def __init__(self, B: int, H: int, P: int, dilation: int, norm: str, skip: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(B, H, 1, bias=False), nn.PReLU(), _norm(norm, H),
                                 DepthwiseSeparableConv(H, B, P, (P - 1) * dilation // 2, dilation, norm))
        # The paper's skip-connection output: a second 1x1 conv next to the residual one (Sc = B channels).
        self.skip_conv = nn.Conv1d(H, B, 1, bias=False) if skip else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.skip_conv is None:
            return x + self.net(x), None
        hidden = self.net[3].net[:3](self.net[:3](x))  # everything before the pointwise convs
        return x + self.net[3].net[3](hidden), self.skip_conv(hidden)


class TemporalConvNet(nn.Module):
    def __init__(self, N: int, B: int, H: int, P: int, X: int, R: int, C: int, norm: str, mask: str,
                 skip: bool) -> None:
        super().__init__()
        self.C = C
        self.mask = mask
        self.skip = skip
        repeats = [nn.Sequential(*[TemporalBlock(B, H, P, 2 ** x, norm, skip) for x in range(X)]) for _ in range(R)]
        head: list[nn.Module] = [nn.PReLU()] if skip else []
        # Positions match Demucs' tasnet.py: network.0 cLN, .1 bottleneck, .2 blocks, .3 mask conv.
        self.network = nn.Sequential(ChannelwiseLayerNorm(N), nn.Conv1d(N, B, 1, bias=False), nn.Sequential(*repeats),
                                     nn.Conv1d(B, C * N, 1, bias=False))
        self.skip_act = head[0] if head else None

    def forward(self, mixture_w: torch.Tensor) -> torch.Tensor:
        """(B_, N, K) -> masks (B_, C, N, K)."""
        batch, n, frames = mixture_w.shape
        x = self.network[1](self.network[0](mixture_w))
        skips = 0
        for repeat in self.network[2]:
            for block in repeat:
                x, s = block(x)
                if s is not None:
                    skips = skips + s
        if self.skip_act is not None:
            x = self.skip_act(skips)
        score = self.network[3](x).reshape(batch, self.C, n, frames)
        return F.softmax(score, dim=1) if self.mask == "softmax" else F.relu(score)


class ConvTasNet(nn.Module):
    """Conv-TasNet separator: (batch, channels, time) -> (batch, sources, channels, time). See the module doc."""

    architecture = "convtasnet"

    paper = property(lambda self: _paper_text(self))  # the card's "paper": the paper and how this model departs

    def __init__(
        self,
        sources: Sequence[str],
        N: int = 256,
        L: int = 20,
        B: int = 256,
        H: int = 512,
        P: int = 3,
        X: int = 8,
        R: int = 4,
        audio_channels: int = 2,
        norm_type: str = "gLN",
        mask_nonlinear: str = "relu",
        skip: bool = False,
        samplerate: int = 44100,
        segment: float = 8.0,
    ) -> None:
        super().__init__()
        for name, value in (("N", N), ("L", L), ("B", B), ("H", H), ("P", P), ("X", X), ("R", R)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name}={value!r}: must be a whole number >= 1")
        if L < 2 or L % 2:
            raise ValueError(f"L={L}: the encoder hop is L/2, so L must be even and >= 2")
        if P % 2 == 0:
            raise ValueError(f"P={P}: the dilated convolutions need an odd kernel to keep the frame count")
        if norm_type not in NORMS:
            raise ValueError(f"norm_type={norm_type!r}: must be one of {', '.join(NORMS)}")
        if mask_nonlinear not in MASKS:
            raise ValueError(f"mask_nonlinear={mask_nonlinear!r}: must be one of {', '.join(MASKS)}")
        self.init_kwargs: dict[str, Any] = {
            "sources": list(sources), "N": N, "L": L, "B": B, "H": H, "P": P, "X": X, "R": R,
            "audio_channels": audio_channels, "norm_type": norm_type, "mask_nonlinear": mask_nonlinear,
            "skip": bool(skip), "samplerate": samplerate, "segment": float(segment),
        }
        self.sources = list(sources)
        self.audio_channels = audio_channels
        self.samplerate = samplerate
        self.segment = float(segment)
        self.L = L
        self.encoder = Encoder(L, N, audio_channels)
        self.separator = TemporalConvNet(N, B, H, P, X, R, len(self.sources), norm_type, mask_nonlinear, skip)
        self.decoder = Decoder(N, L, audio_channels)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    def valid_length(self, length: int) -> int:
        """The smallest length >= `length` (and >= L) that the encoder's hop-L/2 frames cover exactly."""
        hop = self.L // 2
        length = max(int(length), self.L)
        return int(self.L + math.ceil((length - self.L) / hop) * hop)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix (B, C, T), any T >= 1 -> (B, S, C, T)."""
        length = mix.shape[-1]
        pad = self.valid_length(length) - length
        x = F.pad(mix, (0, pad)) if pad else mix
        mixture_w = self.encoder(x)
        masks = self.separator(mixture_w)
        return self.decoder(mixture_w, masks)[..., :length]
