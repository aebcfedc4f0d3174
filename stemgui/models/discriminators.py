"""Waveform discriminators for generative optimization of the separator.

StyleMelGAN-style random-window discriminators look at short random crops of each separated source through a
PQMF sub-band filter bank (more bands for longer windows), so D judges local texture at several scales cheaply;
a multi-resolution spectrogram discriminator is the alternative view. One discriminator set per source, applied
to every audio channel as a separate mono signal. The random windows come from an explicit torch.Generator so a
training step is reproducible (resume, DDP) without touching the global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrizations

Scores = list[torch.Tensor]
Features = list[list[torch.Tensor]]

# (taps, cutoff ratio, Kaiser beta) of the PQMF prototype per band count (as used with StyleMelGAN).
PQMF_PARAMS = {2: (62, 0.2670, 9.0), 4: (62, 0.1420, 9.0), 8: (62, 0.07949, 9.0), 16: (62, 0.03899, 9.0)}


def _normed(module: nn.Module, spectral: bool) -> nn.Module:
    return parametrizations.spectral_norm(module) if spectral else parametrizations.weight_norm(module)


class PQMF(nn.Module):
    """Pseudo-quadrature mirror filter bank analysis: (N, 1, T) -> (N, bands, T / bands).

    Cosine-modulated copies of a Kaiser-windowed low-pass prototype split the signal into `bands` critically
    sampled sub-bands, so a discriminator sees each frequency region at its own rate.
    """

    def __init__(self, bands: int) -> None:
        super().__init__()
        self.bands = bands
        if bands == 1:
            self.register_buffer("filters", torch.ones(1, 1, 1), persistent=False)
            self.taps = 0
            return
        taps, cutoff, beta = PQMF_PARAMS.get(bands, (62, 0.5 / bands * 0.6, 9.0))
        n = np.arange(taps + 1) - taps / 2
        wc = math.pi * cutoff
        with np.errstate(invalid="ignore", divide="ignore"):
            proto = np.where(n == 0, wc / math.pi, np.sin(wc * n) / (math.pi * n))
        proto = proto * np.kaiser(taps + 1, beta)
        k = np.arange(bands)[:, None]
        phase = (-1.0) ** k * math.pi / 4
        filt = 2 * proto[None, :] * np.cos((2 * k + 1) * math.pi / (2 * bands) * n[None, :] + phase)
        self.register_buffer("filters", torch.tensor(filt, dtype=torch.float32)[:, None, :], persistent=False)
        self.taps = taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bands == 1:
            return x
        x = F.pad(x, (self.taps // 2, self.taps // 2))
        return F.conv1d(x, self.filters.to(x.dtype), stride=self.bands)


class WindowDiscriminator(nn.Module):
    """MelGAN-style stack of grouped strided convolutions over the PQMF sub-bands of one window size."""

    def __init__(self, bands: int, channels: int = 16, layers: int = 3, max_channels: int = 256,
                 spectral_norm: bool = False) -> None:
        super().__init__()
        self.pqmf = PQMF(bands)
        convs: list[nn.Module] = [_normed(nn.Conv1d(bands, channels, 15, padding=7), spectral_norm)]
        ch = channels
        for _ in range(layers):
            out = min(ch * 4, max_channels)
            groups = max(1, ch // 4)
            convs.append(_normed(nn.Conv1d(ch, out, 41, stride=4, padding=20, groups=groups), spectral_norm))
            ch = out
        convs.append(_normed(nn.Conv1d(ch, ch, 5, padding=2), spectral_norm))
        self.convs = nn.ModuleList(convs)
        self.head = _normed(nn.Conv1d(ch, 1, 3, padding=1), spectral_norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (N, 1, window) -> score (N, 1, frames), feature maps."""
        x = self.pqmf(x)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.head(x), features


class StyleMelGANDiscriminator(nn.Module):
    """Random-window discriminators at several scales: windows 512/1024/2048/4096 with 1/2/4/8 PQMF bands."""

    def __init__(self, windows: Sequence[int] = (512, 1024, 2048, 4096), bands: Sequence[int] = (1, 2, 4, 8),
                 repeats: int = 1, channels: int = 16, layers: int = 3, spectral_norm: bool = False) -> None:
        super().__init__()
        if len(windows) != len(bands):
            raise ValueError("windows and bands must have the same length")
        self.windows = [int(w) for w in windows]
        self.repeats = int(repeats)
        self.discs = nn.ModuleList(
            WindowDiscriminator(b, channels, layers, spectral_norm=spectral_norm) for b in bands
        )

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Scores, Features]:
        """x (N, 1, T): one random crop per window size and repeat, the same crop for the whole batch."""
        scores: Scores = []
        features: Features = []
        length = x.shape[-1]
        for _ in range(self.repeats):
            for window, disc in zip(self.windows, self.discs):
                if length <= window:
                    crop = F.pad(x, (0, window - length))
                else:
                    start = int(torch.randint(0, length - window + 1, (1,), generator=generator).item())
                    crop = x[..., start:start + window]
                score, feats = disc(crop)
                scores.append(score)
                features.append(feats)
        return scores, features


class SpectrogramDiscriminator(nn.Module):
    """2-D conv stack over the log-magnitude spectrogram at one STFT resolution (UnivNet-style)."""

    def __init__(self, fft: int, hop: int, win: int, channels: int = 16, spectral_norm: bool = False) -> None:
        super().__init__()
        self.fft, self.hop, self.win = fft, hop, win
        c = channels
        self.convs = nn.ModuleList([
            _normed(nn.Conv2d(1, c, (3, 9), padding=(1, 4)), spectral_norm),
            _normed(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)), spectral_norm),
            _normed(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)), spectral_norm),
            _normed(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4)), spectral_norm),
            _normed(nn.Conv2d(c, c, (3, 3), padding=(1, 1)), spectral_norm),
        ])
        self.head = _normed(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)), spectral_norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        flat = x.reshape(-1, x.shape[-1]).float()
        window = torch.hann_window(self.win, device=flat.device)
        spec = torch.stft(flat, self.fft, self.hop, self.win, window=window, return_complex=True)
        mag = (spec.real.square() + spec.imag.square()).clamp_min(1e-10).log().transpose(1, 2)[:, None]
        h = mag.to(x.dtype)
        features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            features.append(h)
        return self.head(h), features


class MultiResolutionSpectrogramDiscriminator(nn.Module):
    def __init__(self, resolutions: Sequence[Sequence[int]] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240)),
                 channels: int = 16, spectral_norm: bool = False) -> None:
        super().__init__()
        self.discs = nn.ModuleList(SpectrogramDiscriminator(*r, channels=channels, spectral_norm=spectral_norm)
                                   for r in resolutions)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Scores, Features]:
        scores, features = [], []
        for disc in self.discs:
            score, feats = disc(x)
            scores.append(score)
            features.append(feats)
        return scores, features


class SourceDiscriminators(nn.Module):
    """One discriminator set per source; each source's channels are judged as separate mono signals.

    forward((batch, sources, channels, time)) returns flat lists over sources and sub-discriminators: scores with
    batch*channels rows each (rows ordered batch-major), and their feature maps.
    """

    def __init__(self, sources: Sequence[str], kind: str = "stylemelgan", channels: int = 16,
                 windows: Sequence[int] = (512, 1024, 2048, 4096), bands: Sequence[int] = (1, 2, 4, 8),
                 repeats: int = 1, layers: int = 3, spectral_norm: bool = False,
                 mrsd_resolutions: Sequence[Sequence[int]] = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240)),
                 ) -> None:
        super().__init__()
        if kind not in ("stylemelgan", "mrsd", "both"):
            raise ValueError(f"unknown discriminator kind {kind!r}")
        self.sources = list(sources)
        self.kind = kind
        self.init_kwargs = dict(kind=kind, channels=channels, windows=list(windows), bands=list(bands),
                                repeats=repeats, layers=layers, spectral_norm=spectral_norm,
                                mrsd_resolutions=[list(r) for r in mrsd_resolutions])
        self.style = nn.ModuleList()
        self.spec = nn.ModuleList()
        for _ in self.sources:
            if kind in ("stylemelgan", "both"):
                self.style.append(StyleMelGANDiscriminator(windows, bands, repeats, channels, layers, spectral_norm))
            if kind in ("mrsd", "both"):
                self.spec.append(MultiResolutionSpectrogramDiscriminator(mrsd_resolutions, channels, spectral_norm))

    def forward(self, wave: torch.Tensor, generator: torch.Generator | None = None) -> tuple[Scores, Features]:
        batch, sources, channels, length = wave.shape
        if sources != len(self.sources):
            raise ValueError(f"expected {len(self.sources)} sources, got {sources}")
        scores: Scores = []
        features: Features = []
        for index in range(sources):
            mono = wave[:, index].reshape(batch * channels, 1, length)
            for bank in (self.style, self.spec):
                if len(bank):
                    s, f = bank[index](mono, generator)
                    scores.extend(s)
                    features.extend(f)
        return scores, features


def split_batch(scores: Scores, features: Features, rows: int) -> tuple[Scores, Features, Scores, Features]:
    """Split outputs of D on cat([a, b]) into (scores_a, features_a, scores_b, features_b) at row `rows`."""
    sa = [s[:rows] for s in scores]
    sb = [s[rows:] for s in scores]
    fa = [[f[:rows] for f in fl] for fl in features]
    fb = [[f[rows:] for f in fl] for fl in features]
    return sa, fa, sb, fb
