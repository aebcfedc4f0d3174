"""Wave-U-Net (Stoller, Ewert, Dixon, "Wave-U-Net: A Multi-Scale Neural Network for End-to-End Audio Source
Separation", ISMIR 2018): a 1-D U-Net on the raw waveform that resamples its feature maps instead of striding.

Written for StemGUI from the paper and the authors' published configuration (`f90/Wave-U-Net`, `Config.py`).
Defaults are the paper's best multi-instrument model (M7 = the M4 settings for four sources: difference output
layer, proper input context, stereo, linear-interpolation upsampling): `levels` L = 12, `features` F_c = 24
extra filters per level, kernel `kernel_down` f_d = 15 in the downsampling blocks and `kernel_up` f_u = 5 in the
upsampling blocks, LeakyReLU (slope 0.2), tanh 1x1 output convolutions. Differences from the paper, all
settings: the paper ran at 22.05 kHz; here `samplerate` is whatever the data is (44.1 kHz by default), so the
receptive field in seconds is half the paper's unless the data is resampled. Learned upsampling (M5) is not
implemented. The full-size network (~10 M parameters, ~150 k multiply-adds per sample, and ~131 k samples of input
context per segment) is kept as the default: it runs on 2 CPU cores, slowly (one L1 step on 2 x 1 s took 21 s on one
thread of a 2-core machine at load average 12; benchmarks/train_speed.py); the tests use 3 levels, 4 features.

Shapes, for input (B, C, T) with C = `audio_channels`, S = len(sources), F = `features`:

* `context=True` (the paper's valid convolutions, M3 and later): the input is zero-padded (centred) to
  `valid_length(T)` = T + ~2^L·(f_d − 1 + f_u − 1) samples, so every output sample sees real (or, at the song's
  edges, zero) context; the separator instead pads each segment with the surrounding audio.
  `context=False` (M1/M2, "same" padding): the input is padded to a multiple of 2^L and every map halves / doubles
  exactly.
* downsampling block i = 1..L: Conv1d(k=f_d, F·i channels) -> LeakyReLU -> kept as skip i -> decimation x[..., ::2];
* bottleneck: Conv1d(k=f_d, F·(L+1) channels) -> LeakyReLU;
* upsampling block i = L..1: linear interpolation x2 (2n−1 samples with context, 2n without) -> concat(centre-cropped
  skip i, x) -> Conv1d(k=f_u, F·i channels) -> LeakyReLU;
* output: concat(centre-cropped mix, x) (F + C channels) -> per source a Conv1d(k=1, C channels) -> tanh (one
  conv with S·C outputs). With `output="difference"` only the first S − 1 are used; the last source is
  mix − sum(others), so the estimates sum to the mixture exactly (the paper's difference output layer).
  `output="direct"`: every source from its conv (M1);
* centre trim to T: (B, S, C, T).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["WaveUNet"]

OUTPUTS = ("difference", "direct")
ACTIVATIONS = ("tanh", "linear")


PAPER = ("Stoller, Ewert, Dixon, Wave-U-Net: A Multi-Scale Neural Network for End-to-End Audio Source Separation, "
         "ISMIR 2018 (M7: multi-instrument, difference output, context, stereo, linear upsampling; 22.05 kHz in "
         "the paper)")


def _paper_text(model: nn.Module) -> str:
    """PAPER plus the settings that differ from the paper's (the class defaults), for the card."""
    from stemgui.models.architectures import changed_settings

    changed = changed_settings(model)
    return f"{PAPER}; settings other than the paper's: {changed}" if changed else PAPER


def _centre_crop(x: torch.Tensor, length: int) -> torch.Tensor:
    excess = x.shape[-1] - length
    if excess <= 0:
        return x
    return x[..., excess // 2 : excess // 2 + length]


class WaveUNet(nn.Module):
    """Wave-U-Net separator: (batch, channels, time) -> (batch, sources, channels, time). See the module doc."""

    architecture = "waveunet"

    paper = property(lambda self: _paper_text(self))  # the card's "paper": the paper and how this model departs

    def __init__(
        self,
        sources: Sequence[str],
        audio_channels: int = 2,
        levels: int = 12,
        features: int = 24,
        kernel_down: int = 15,
        kernel_up: int = 5,
        context: bool = True,
        output: str = "difference",
        output_activation: str = "tanh",
        leaky_slope: float = 0.2,
        samplerate: int = 44100,
        segment: float = 16384 / 22050,  # the paper's output length: 16384 samples at 22.05 kHz
    ) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r}: must be one of {', '.join(OUTPUTS)}")
        if output_activation not in ACTIVATIONS:
            raise ValueError(f"output_activation={output_activation!r}: must be one of {', '.join(ACTIVATIONS)}")
        if levels < 1 or features < 1 or kernel_down < 1 or kernel_up < 1:
            raise ValueError("levels, features, kernel_down and kernel_up must be >= 1")
        if kernel_down % 2 == 0 or kernel_up % 2 == 0:
            raise ValueError("kernel_down and kernel_up must be odd (centred convolutions)")
        if output == "difference" and len(sources) < 2:
            raise ValueError("the difference output needs at least two sources")
        self.init_kwargs: dict[str, Any] = {
            "sources": list(sources), "audio_channels": audio_channels, "levels": levels, "features": features,
            "kernel_down": kernel_down, "kernel_up": kernel_up, "context": bool(context), "output": output,
            "output_activation": output_activation, "leaky_slope": leaky_slope, "samplerate": samplerate,
            "segment": float(segment),
        }
        self.sources = list(sources)
        self.audio_channels = audio_channels
        self.samplerate = samplerate
        self.segment = float(segment)
        self.levels = levels
        self.kernel_down = kernel_down
        self.kernel_up = kernel_up
        self.context = bool(context)
        self.output = output
        self.output_activation = output_activation
        self.leaky_slope = leaky_slope

        pad_down = 0 if context else kernel_down // 2
        pad_up = 0 if context else kernel_up // 2
        # `encoder` / `decoder` are the names the fine-tuning surgery freezes layers by.
        self.encoder = nn.ModuleList()
        chin = audio_channels
        for i in range(1, levels + 1):
            self.encoder.append(nn.Conv1d(chin, features * i, kernel_down, padding=pad_down))
            chin = features * i
        self.bottleneck = nn.Conv1d(chin, features * (levels + 1), kernel_down, padding=pad_down)
        self.decoder = nn.ModuleList()
        below = features * (levels + 1)
        for i in range(levels, 0, -1):
            self.decoder.append(nn.Conv1d(below + features * i, features * i, kernel_up, padding=pad_up))
            below = features * i
        # The paper's per-source 1x1 convs as one conv, source-major (S x C channels), so the fine-tuning surgery
        # can map sources by name. With the difference output the last source's slot is unused (mix - others).
        self.output_conv = nn.Conv1d(features + audio_channels, len(self.sources) * audio_channels, 1)
        for module in self.modules():  # TensorFlow's defaults, as the authors trained with
            if isinstance(module, nn.Conv1d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    # -- lengths ----------------------------------------------------------------------------------------------
    def _output_length(self, bottom: int) -> int:
        """Output length of the context (valid) network whose bottleneck output has `bottom` samples."""
        length = bottom
        for _ in range(self.levels):
            length = 2 * length - 1 - (self.kernel_up - 1)
        return length

    def _input_length(self, bottom: int) -> int:
        length = bottom + self.kernel_down - 1
        for _ in range(self.levels):
            length = 2 * length - 1 + self.kernel_down - 1
        return length

    def _bottom_for(self, length: int) -> int:
        """The smallest bottleneck length whose output covers `length` samples (the authors' get_padding)."""
        rem = float(length)
        for _ in range(self.levels):
            rem = (rem + self.kernel_up - 1 + 1) / 2
        bottom = max(2, math.ceil(rem))
        while self._output_length(bottom) < length:
            bottom += 1
        return bottom

    def valid_length(self, length: int) -> int:
        """Input samples the network needs for `length` output samples (>= `length`).

        With context this is `length` plus the receptive field's margin (the separator fills it with the audio
        around the segment); without, `length` rounded up to a multiple of 2^levels.
        """
        length = max(1, int(length))
        if not self.context:
            block = 1 << self.levels
            return int(math.ceil(length / block) * block)
        return int(self._input_length(self._bottom_for(length)))

    def output_length(self, input_length: int) -> int:
        """Samples the bare network returns for `input_length` input samples (context: fewer; else the same)."""
        if not self.context:
            return int(input_length)
        length = int(input_length)
        for _ in range(self.levels):
            length = (length - (self.kernel_down - 1) - 1) // 2 + 1
        return self._output_length(length - (self.kernel_down - 1))

    # -- forward ------------------------------------------------------------------------------------------------
    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.leaky_slope)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix (B, C, T), any T >= 1 -> (B, S, C, T)."""
        batch, channels, length = mix.shape
        target = self.valid_length(length)
        pad = target - length
        x = F.pad(mix, (pad // 2, pad - pad // 2)) if pad else mix
        inputs = x
        skips: list[torch.Tensor] = []
        for conv in self.encoder:
            x = self._act(conv(x))
            skips.append(x)
            x = x[..., ::2]
        x = self._act(self.bottleneck(x))
        for conv in self.decoder:
            skip = skips.pop()
            if self.context:  # align_corners: n -> 2n - 1, the authors' resize_bilinear(align_corners=True)
                x = F.interpolate(x, size=2 * x.shape[-1] - 1, mode="linear", align_corners=True)
            else:
                x = F.interpolate(x, size=2 * x.shape[-1], mode="linear", align_corners=False)
            x = self._act(conv(torch.cat([_centre_crop(skip, x.shape[-1]), x], dim=1)))
        cropped = _centre_crop(inputs, x.shape[-1])
        features = torch.cat([cropped, x], dim=1)
        y = self.output_conv(features).reshape(batch, len(self.sources), channels, -1)  # (B, S, C, T')
        if self.output_activation == "tanh":
            y = torch.tanh(y)
        if self.output == "difference":
            others = y[:, :-1]
            y = torch.cat([others, (cropped - others.sum(dim=1)).unsqueeze(1)], dim=1)
        return _centre_crop(y, length)
