"""DRNN: deep recurrent neural networks with a time-frequency masking layer (Huang, Kim, Hasegawa-Johnson,
Smaragdis, "Singing-voice separation from monaural recordings using deep recurrent neural networks", ISMIR 2014;
"Joint optimization of masks and deep recurrent neural networks for monaural source separation", TASLP 2015).

Written for StemGUI from the papers. Shapes (defaults: 16 kHz mono, 1024-point STFT, hop 512 = 50 % overlap):

* mix (batch, channels, time) -> |STFT| (batch * channels, frames, 513): each channel is its own sequence;
* optional context: each frame concatenated with `context` neighbours on each side -> 513 * (2 context + 1);
* `layers` hidden layers of `hidden` ReLU units; the recurrent connection (h_t = relu(W x_t + U h_{t-1} + b))
  sits at layer `recurrent` (DRNN-k, 1-based; 0 = a plain DNN) or at every layer (`stacked`, the sRNN);
* one output layer per source: ŷ_s = |W_s h + b_s| (frames, 513);
* the masking layer: m_s = ŷ_s / Σ_s' ŷ_s' (the masks sum to one, so the estimates sum to the mixture), applied
  to the complex mixture spectrogram (the mixture's phase) and inverted per source -> (batch, sources,
  channels, time).

Training (preset `drnn` in `stemgui.train.losses`): MSE or generalized KL between estimated and true source
magnitudes, minus r times the same distance to the other sources (the discriminative term). The paper's
best MIR-1K system is DRNN-2 with 1000 units per layer, context 1 (3 frames) and discriminative training.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from stemgui.models.masking import check_frames, context_frames, reconstruct, stft

__all__ = ["DRNN"]

PAPER = ("Huang et al., Singing-voice separation from monaural recordings using deep recurrent neural networks, "
         "ISMIR 2014; Joint optimization of masks and deep recurrent neural networks, IEEE/ACM TASLP 2015")


class DRNN(nn.Module):
    """(batch, channels, time) -> (batch, sources, channels, time) by recurrent-network masks on |STFT|."""

    architecture = "drnn"
    own_format = True  # runs at its own rate / channels (16 kHz mono); the trainer converts the data to them
    paper = PAPER
    # the paper's best MIR-1K system (DRNN-2, discriminative training); a trained card lists what differs
    paper_args = {"samplerate": 16000, "audio_channels": 1, "nfft": 1024, "hop": 512, "context": 1, "hidden": 1000,
                  "layers": 3, "recurrent": 2, "stacked": False}

    def __init__(self, sources: Sequence[str], audio_channels: int = 1, samplerate: int = 16000,
                 segment: float = 4.0, nfft: int = 1024, hop: int = 0, context: int = 1, hidden: int = 1000,
                 layers: int = 3, recurrent: int = 2, stacked: bool = False, eps: float = 1e-8) -> None:
        super().__init__()
        hop = int(hop) or int(nfft) // 2
        if len(sources) < 1:
            raise ValueError("at least one source is needed")
        check_frames(nfft, hop)
        if layers < 1 or hidden < 1 or context < 0:
            raise ValueError("layers and hidden must be >= 1, context >= 0")
        if not stacked and not 0 <= recurrent <= layers:
            raise ValueError(f"recurrent={recurrent}: the recurrent layer must be 0 (none) .. layers={layers}")
        self.sources = list(sources)
        self.audio_channels = int(audio_channels)
        self.samplerate = int(samplerate)
        self.segment = float(segment)
        self.nfft, self.hop, self.context = int(nfft), hop, int(context)
        self.recurrent, self.stacked, self.eps = int(recurrent), bool(stacked), float(eps)
        self.init_kwargs = dict(audio_channels=self.audio_channels, samplerate=self.samplerate,
                                segment=self.segment, nfft=self.nfft, hop=hop, context=self.context,
                                hidden=int(hidden), layers=int(layers), recurrent=self.recurrent,
                                stacked=self.stacked, eps=self.eps)
        bins = self.nfft // 2 + 1
        width = bins * (2 * self.context + 1)
        self.hidden = nn.ModuleList()
        for index in range(1, layers + 1):
            if self.stacked or index == self.recurrent:
                self.hidden.append(nn.RNN(width, hidden, nonlinearity="relu", batch_first=True))
            else:
                self.hidden.append(nn.Linear(width, hidden))
            width = hidden
        self.heads = nn.ModuleList(nn.Linear(hidden, bins) for _ in self.sources)

    @property
    def spec_params(self) -> tuple[int, int]:
        """(nfft, hop) of the front end: what the spectral training losses compare magnitudes with."""
        return self.nfft, self.hop

    def masks(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Masks (sources, N, frames, bins) summing to one over sources, from magnitudes (N, frames, bins)."""
        h = context_frames(magnitude, self.context)
        for layer in self.hidden:
            h = layer(h)[0] if isinstance(layer, nn.RNN) else torch.relu(layer(h))
        outputs = torch.stack([head(h).abs() + self.eps for head in self.heads])
        return outputs / outputs.sum(dim=0, keepdim=True)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        batch, channels, _ = mix.shape
        spec = stft(mix, self.nfft, self.hop)  # (B, C, F, N)
        magnitude = spec.abs().reshape(batch * channels, *spec.shape[-2:]).transpose(1, 2)
        masks = self.masks(magnitude)  # (S, B*C, N, F)
        masks = masks.transpose(2, 3).reshape(len(self.sources), batch, channels, *spec.shape[-2:])
        return reconstruct(spec, masks.transpose(0, 1), mix, self.nfft, self.hop, exact_sum=True)
