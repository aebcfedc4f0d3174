"""Spectrogram U-Net (Jansson, Humphrey, Montecchio, Bittner, Kumar, Weyde, "Singing voice separation with deep
U-Net convolutional networks", ISMIR 2017).

Written for StemGUI from the paper. Shapes (paper defaults: 8192 Hz mono, 1024-point STFT, hop 768, patches of
128 frames, i.e. 11.9 s):

* mix (batch, channels, time) -> |STFT| without the Nyquist bin (batch * channels, 1, 512, frames), each
  channel its own image, scaled to a maximum of one per image (the paper's normalised input), frames padded
  with zeros to a multiple of 64 (the six strides), at least 128;
* encoder: 6 Conv2d 5x5 stride 2 (16, 32, 64, 128, 256, 512 channels; `channels` scales them), batch norm,
  leaky ReLU 0.2;
* decoder: 6 ConvTranspose2d 5x5 stride 2 (256, 128, 64, 32, 16, then one map per source), batch norm, ReLU,
  dropout 0.5 in the first three, the encoder output of the same size concatenated (skip connections) before
  every layer but the first;
* a sigmoid mask per source, applied to the mixture's complex spectrogram (its phase), inverted per source.

Training: preset `unet` in `stemgui.train.losses` (L1 between the masked mixture magnitude and the source
magnitude). The paper trains one network per source; here one network has one output map per source.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from stemgui.models.masking import reconstruct, stft

__all__ = ["SpectrogramUNet"]

PAPER = "Jansson et al., Singing voice separation with deep U-Net convolutional networks, ISMIR 2017"
DEPTH = 6


class SpectrogramUNet(nn.Module):
    """(batch, channels, time) -> (batch, sources, channels, time) by U-Net sigmoid masks on |STFT|."""

    architecture = "unet"
    own_format = True  # 8192 Hz mono unless told otherwise; the trainer converts the data to it
    paper = PAPER
    paper_args = {"samplerate": 8192, "audio_channels": 1, "nfft": 1024, "hop": 768, "channels": 16,
                  "dropout": 0.5, "leak": 0.2, "segment": 127 * 768 / 8192}

    def __init__(self, sources: Sequence[str], audio_channels: int = 1, samplerate: int = 8192,
                 segment: float = 127 * 768 / 8192, nfft: int = 1024, hop: int = 768, channels: int = 16,
                 dropout: float = 0.5, leak: float = 0.2) -> None:
        super().__init__()
        if nfft < 2 or nfft & (nfft - 1):
            raise ValueError(f"nfft={nfft}: must be a power of two")
        if nfft // 2 < 2 ** DEPTH:
            raise ValueError(f"nfft={nfft}: the six strided layers need at least {2 ** (DEPTH + 1)} points")
        if not 0 < hop < nfft:
            raise ValueError(f"hop={hop}: must be in 1..nfft - 1 (Hann frames must overlap)")
        if channels < 1:
            raise ValueError(f"channels={channels}: must be >= 1")
        self.sources = list(sources)
        self.audio_channels = int(audio_channels)
        self.samplerate = int(samplerate)
        self.segment = float(segment)
        self.nfft, self.hop, self.leak = int(nfft), int(hop), float(leak)
        self.init_kwargs = dict(audio_channels=self.audio_channels, samplerate=self.samplerate,
                                segment=self.segment, nfft=self.nfft, hop=self.hop, channels=int(channels),
                                dropout=float(dropout), leak=self.leak)
        widths = [channels * 2 ** i for i in range(DEPTH)]  # 16 ... 512
        self.encoder = nn.ModuleList()
        previous = 1
        for width in widths:
            self.encoder.append(nn.Sequential(nn.Conv2d(previous, width, 5, stride=2, padding=2),
                                              nn.BatchNorm2d(width)))
            previous = width
        self.decoder = nn.ModuleList()
        outs = widths[-2::-1] + [len(self.sources)]  # 256 ... 16, sources
        for index, width in enumerate(outs):
            ins = widths[-1] if index == 0 else 2 * widths[DEPTH - 1 - index]
            layers: list[nn.Module] = [nn.ConvTranspose2d(ins, width, 5, stride=2, padding=2, output_padding=1)]
            if index < DEPTH - 1:
                layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU())
                if index < 3 and dropout > 0:
                    layers.append(nn.Dropout(dropout))
            self.decoder.append(nn.Sequential(*layers))

    @property
    def spec_params(self) -> tuple[int, int]:
        return self.nfft, self.hop

    def masks(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Sigmoid masks (N, sources, bins - 1, frames) from magnitudes (N, 1, bins - 1, frames)."""
        frames = magnitude.shape[-1]
        stride = 2 ** DEPTH
        padded = max(2 * stride, frames + (-frames) % stride)  # >= 2 frames at the bottom for batch norm
        x = F.pad(magnitude, (0, padded - frames))
        x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
        skips = []
        for layer in self.encoder:
            x = F.leaky_relu(layer(x), self.leak)
            skips.append(x)
        skips.pop()  # the deepest output is the decoder's input, not a skip
        for index, layer in enumerate(self.decoder):
            if index:
                x = torch.cat([x, skips.pop()], dim=1)
            x = layer(x)
        return torch.sigmoid(x[..., :frames])

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        batch, channels, _ = mix.shape
        spec = stft(mix, self.nfft, self.hop)  # (B, C, F, N)
        bins, frames = spec.shape[-2:]
        magnitude = spec[:, :, :-1].abs().reshape(batch * channels, 1, bins - 1, frames)
        masks = self.masks(magnitude)  # (B*C, S, F-1, N)
        masks = F.pad(masks, (0, 0, 0, 1), mode="replicate")  # the Nyquist bin takes its neighbour's mask
        masks = masks.reshape(batch, channels, len(self.sources), bins, frames).transpose(1, 2)
        return reconstruct(spec, masks, mix, self.nfft, self.hop)
