"""Waveform Demucs (v2, and the v3 waveform-only variant): a U-Net on the raw waveform with a BiLSTM bottleneck.

Written for StemGUI, following the published architecture (Défossez et al. 2019, "Music Source Separation in
the Waveform Domain"; the waveform models of the MDX 2021 challenge add the residual DConv branches of Hybrid
Demucs). Constructor arguments and parameter names are those of the Demucs project's `demucs.demucs.Demucs`,
so its state dicts (the `mdx` / `repro_mdx_a` waveform members, v2 checkpoints) load here with `strict=True`
and give the same output; `tests/test_demucs_v2.py` checks this against the reference package.

Shape of the network with the defaults (depth 6, kernel 8, stride 4, channels 64 doubling per layer):

* optional normalisation by the mean / std of the mono mix, undone on the output;
* zero padding (centred) to `valid_length`, so every strided conv consumes its input exactly;
* optional 2x band-limited upsampling (`resample`): the U-Net runs at 88.2 kHz;
* encoder layer i: Conv1d(k, stride) -> [GroupNorm] -> GELU/ReLU -> [DConv residual branch] ->
  [1x1 Conv -> [GroupNorm] -> GLU/ReLU]  ("rewrite"); each output is kept as a skip;
* optional BiLSTM over the deepest layer (`lstm_layers`);
* decoder layer i (reversed): (x + skip) -> [Conv(2 context + 1) -> [GroupNorm] -> GLU/ReLU] -> [DConv] ->
  ConvTranspose1d(k, stride) -> [GroupNorm -> GELU/ReLU] (not on the outermost layer, which outputs
  sources x channels);
* 2x downsampling, de-normalisation, centre trim back to the input length.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from stemgui.models.hdemucs import BLSTM, DConv, _rescale_convs
from stemgui.models.sinc_resample import downsample2, upsample2

__all__ = ["Demucs", "Demucs1", "center_trim"]


PAPER_V1 = ("Défossez, Usunier, Bottou, Bach, Music Source Separation in the Waveform Domain, 2019 (Demucs v1, the "
            "v1 code's training defaults)")


def _paper_text(model: nn.Module) -> str:
    """PAPER_V1 plus the settings that differ from the paper's (the class defaults), for the card."""
    from stemgui.models.architectures import changed_settings

    changed = changed_settings(model)
    return f"{PAPER_V1}; settings other than the paper's: {changed}" if changed else PAPER_V1


def center_trim(x: torch.Tensor, length: int) -> torch.Tensor:
    """Keep the central `length` samples of (..., T); an odd excess is cut on the right (reference rule)."""
    excess = x.shape[-1] - length
    if excess < 0:
        raise ValueError(f"cannot trim {x.shape[-1]} samples to {length}")
    if excess:
        x = x[..., excess // 2 : x.shape[-1] - (excess - excess // 2)]
    return x


class Demucs(nn.Module):
    """Waveform U-Net separator: (batch, channels, time) -> (batch, sources, channels, time).

    Arguments and defaults are those of the published `demucs.demucs.Demucs`. The ones that matter most:
    `channels` (width of the first layer, x`growth` per layer), `depth`, `kernel_size` / `stride` of the
    strided convs, `glu` (GLU after the 1x1 "rewrite" convs, else ReLU), `gelu` (GELU after the strided
    convs, else ReLU), `lstm_layers` (BiLSTM bottleneck; 0 = none, the v3 models use DConv LSTMs instead),
    `dconv_mode` (1: DConv branches in the encoder, 2: decoder, 3: both), `dconv_lstm` / `dconv_attn`
    (first layer with a BiLSTM / local attention inside its DConv branch), `normalize` (standardise the input
    by the mono mix's statistics), `resample` (run the U-Net at twice the sample rate).
    `samplerate` and `segment` (seconds per training example) are metadata used by the separator.
    """

    architecture = "demucs"

    def __init__(
        self,
        sources: Sequence[str],
        audio_channels: int = 2,
        channels: int = 64,
        growth: float = 2.0,
        depth: int = 6,
        rewrite: bool = True,
        lstm_layers: int = 0,
        kernel_size: int = 8,
        stride: int = 4,
        context: int = 1,
        gelu: bool = True,
        glu: bool = True,
        norm_starts: int = 4,
        norm_groups: int = 4,
        dconv_mode: int = 1,
        dconv_depth: int = 2,
        dconv_comp: float = 4,
        dconv_attn: int = 4,
        dconv_lstm: int = 4,
        dconv_init: float = 1e-4,
        normalize: bool = True,
        resample: bool = True,
        rescale: float = 0.1,
        samplerate: int = 44100,
        segment: float = 4 * 10,
    ) -> None:
        super().__init__()
        self.init_kwargs: dict[str, Any] = {
            "sources": list(sources), "audio_channels": audio_channels, "channels": channels, "growth": growth,
            "depth": depth, "rewrite": rewrite, "lstm_layers": lstm_layers, "kernel_size": kernel_size,
            "stride": stride, "context": context, "gelu": gelu, "glu": glu, "norm_starts": norm_starts,
            "norm_groups": norm_groups, "dconv_mode": dconv_mode, "dconv_depth": dconv_depth,
            "dconv_comp": dconv_comp, "dconv_attn": dconv_attn, "dconv_lstm": dconv_lstm,
            "dconv_init": dconv_init, "normalize": normalize, "resample": resample, "rescale": rescale,
            "samplerate": samplerate, "segment": float(segment),
        }
        self.sources = list(sources)
        self.audio_channels = audio_channels
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.context = context
        self.depth = depth
        self.normalize = normalize
        self.resample = resample
        self.samplerate = samplerate
        self.segment = float(segment)

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        # Present (and empty) in the reference; kept so module listings line up.
        self.skip_scales = nn.ModuleList()

        # GLU halves its input channels, so the rewrite convs produce twice the width they keep.
        widen = 2 if glu else 1

        def rewrite_act() -> nn.Module:
            return nn.GLU(dim=1) if glu else nn.ReLU()

        def conv_act() -> nn.Module:
            return nn.GELU() if gelu else nn.ReLU()

        chin = audio_channels
        for index in range(depth):
            # Module positions inside each Sequential follow the published layout (identities included), so
            # the state-dict keys match: e.g. encoder.{i}.0 = strided conv, .3 = DConv, .4 = rewrite conv.
            def norm(width: int, _index: int = index) -> nn.Module:
                return nn.GroupNorm(norm_groups, width) if _index >= norm_starts else nn.Identity()

            def dconv() -> DConv:
                return DConv(channels, compress=dconv_comp, depth=dconv_depth, init=dconv_init,
                             attn=index >= dconv_attn, lstm=index >= dconv_lstm)

            enc: list[nn.Module] = [nn.Conv1d(chin, channels, kernel_size, stride), norm(channels), conv_act()]
            if dconv_mode & 1:
                enc.append(dconv())
            if rewrite:
                enc += [nn.Conv1d(channels, widen * channels, 1), norm(widen * channels), rewrite_act()]
            self.encoder.append(nn.Sequential(*enc))

            chout = chin if index > 0 else len(self.sources) * audio_channels
            dec: list[nn.Module] = []
            if rewrite:
                dec += [nn.Conv1d(channels, widen * channels, 2 * context + 1, padding=context),
                        norm(widen * channels), rewrite_act()]
            if dconv_mode & 2:
                dec.append(dconv())
            dec.append(nn.ConvTranspose1d(channels, chout, kernel_size, stride))
            if index > 0:
                dec += [norm(chout), conv_act()]
            self.decoder.insert(0, nn.Sequential(*dec))

            chin = channels
            channels = int(growth * channels)

        self.lstm: BLSTM | None = BLSTM(chin, lstm_layers) if lstm_layers else None

        if rescale:
            _rescale_convs(self, rescale)

    # -- lengths ----------------------------------------------------------------------------------------------

    def valid_length(self, length: int) -> int:
        """The input length the U-Net consumes exactly for an input of `length` samples (>= `length`).

        Every strided conv then uses all its input and the transposed convs rebuild the same length. The
        forward pass pads any input to this length with zeros itself (centred) and trims the output back;
        the separator instead pads each segment with the surrounding audio, as the reference `apply_model`
        does, so the model sees real context, and centre-trims the output to the segment.
        """
        length = int(length) * (2 if self.resample else 1)
        for _ in range(self.depth):
            length = max(1, math.ceil((length - self.kernel_size) / self.stride) + 1)
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel_size
        if self.resample:
            length = math.ceil(length / 2)
        return int(length)

    # -- forward ------------------------------------------------------------------------------------------------

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix (B, C, T), any T >= 1 -> (B, S, C, T); inputs of `valid_length(T)` samples avoid zero padding."""
        batch, _, length = mix.shape
        if self.normalize:
            mono = mix.mean(dim=1, keepdim=True)  # (B, 1, T): one scale for all channels keeps the stereo image
            mean = mono.mean(dim=-1, keepdim=True)
            std = mono.std(dim=-1, keepdim=True)
            x = (mix - mean) / (1e-5 + std)
        else:
            mean = std = None
            x = mix

        pad = self.valid_length(length) - length
        if pad:
            x = F.pad(x, (pad // 2, pad - pad // 2))
        if self.resample:
            x = upsample2(x)

        inference = not torch.is_grad_enabled()
        skips: list[torch.Tensor] = []
        for encode in self.encoder:
            x = encode(x)
            skips.append(x)
        if self.lstm is not None:
            x = self.lstm(x)
        for decode in self.decoder:
            skip = center_trim(skips.pop(), x.shape[-1])
            # Without autograd the decoder's input can be summed in place (x is a fresh activation).
            x = decode(x.add_(skip) if inference else x + skip)

        if self.resample:
            x = downsample2(x)
        if mean is not None:
            x = x * std + mean
        x = center_trim(x, length)
        return x.reshape(batch, len(self.sources), self.audio_channels, x.shape[-1])

    # -- loading ------------------------------------------------------------------------------------------------

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Load weights; also accepts first-generation (v2, no norm slots) names as the reference does.

        Early Demucs layers had no normalisation placeholder, so their second conv sat at position 2 of each
        Sequential instead of 3; such keys are renamed (only when the new name is absent).
        """
        state = dict(state_dict)
        for index in range(self.depth):
            for part in ("encoder", "decoder"):
                for name in ("weight", "bias"):
                    old, new = f"{part}.{index}.2.{name}", f"{part}.{index}.3.{name}"
                    if old in state and new not in state:
                        state[new] = state.pop(old)
        return super().load_state_dict(state, strict=strict, assign=assign)


class Demucs1(Demucs):
    """Demucs v1 (Défossez et al. 2019, the first "Music Source Separation in the Waveform Domain" preprint and
    the Demucs project's v1 code): the `Demucs` network with the v1 settings as defaults.

    v1 is the plain waveform U-Net: 6 layers of Conv1d(kernel 8, stride 4) -> ReLU -> 1x1 conv -> GLU in the
    encoder, a 2-layer BiLSTM (+ linear) over the deepest layer, and decoder layers of conv(kernel 3) -> GLU ->
    ConvTranspose1d(8, 4) -> ReLU; channels 100 in the first layer (the v1 training default; the 2021 revision
    used 64 with 2x upsampling), doubling per layer; initial weights rescaled towards std 0.1. None of the later
    additions: no input normalisation, no 2x resampling, no GELU, no GroupNorm, no DConv branches. v1's decoder
    convs are unpadded ("valid", its `context=3` is their kernel size): `valid_context=True` keeps that (this
    class's `context=1` is the same kernel 3) and `valid_length` then includes their margin; False pads them.
    Full size (~650 M parameters, most in the BiLSTM over 3200 channels) is far beyond 2 CPU cores; CPU runs
    shrink `channels` (the card's `args` record it). v1 trained with L1 on 10 s segments, remix / channel-swap /
    sign-flip / shift augmentation.
    """

    architecture = "demucs1"

    paper = property(lambda self: _paper_text(self))  # the card's "paper": the paper and how this model departs

    def __init__(
        self,
        sources: Sequence[str],
        audio_channels: int = 2,
        channels: int = 100,
        growth: float = 2.0,
        depth: int = 6,
        rewrite: bool = True,
        lstm_layers: int = 2,
        kernel_size: int = 8,
        stride: int = 4,
        context: int = 1,
        gelu: bool = False,
        glu: bool = True,
        norm_starts: int = 99,
        dconv_mode: int = 0,
        normalize: bool = False,
        resample: bool = False,
        rescale: float = 0.1,
        samplerate: int = 44100,
        segment: float = 10.0,
        valid_context: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(sources, audio_channels=audio_channels, channels=channels, growth=growth, depth=depth,
                         rewrite=rewrite, lstm_layers=lstm_layers, kernel_size=kernel_size, stride=stride,
                         context=context, gelu=gelu, glu=glu, norm_starts=norm_starts, dconv_mode=dconv_mode,
                         normalize=normalize, resample=resample, rescale=rescale, samplerate=samplerate,
                         segment=segment, **kwargs)
        self.valid_context = bool(valid_context) and rewrite
        self.init_kwargs["valid_context"] = bool(valid_context)
        if self.valid_context:
            for layer in self.decoder:
                layer[0].padding = (0,)  # the context conv: v1's unpadded kernel 2·context + 1

    def _network_lengths(self, length: int) -> tuple[int, bool]:
        """Output length of the network for an input of `length`, and whether every strided conv consumed its
        input exactly."""
        exact = True
        for _ in range(self.depth):
            if length < self.kernel_size:
                return 0, False
            exact &= (length - self.kernel_size) % self.stride == 0
            length = (length - self.kernel_size) // self.stride + 1
        for _ in range(self.depth):
            length -= 2 * self.context if self.valid_context else 0
            if length < 1:
                return 0, False
            length = (length - 1) * self.stride + self.kernel_size
        return length, exact

    def valid_length(self, length: int) -> int:
        """The smallest input length >= `length` that the strided convs consume exactly and whose output (after
        the decoder convs' context margin) still covers `length` samples."""
        if not self.valid_context:
            return super().valid_length(length)
        length = max(1, int(length))
        # Build from the bottleneck up: each bottleneck length gives one exact input length.
        # Below this bottleneck length the input would be shorter than `length` (a safe place to start).
        bottom = max(1, length // self.stride ** self.depth - self.kernel_size // max(1, self.stride - 1) - 2)
        while True:
            size = bottom
            for _ in range(self.depth):
                size = (size - 1) * self.stride + self.kernel_size
            out, _ = self._network_lengths(size)
            if size >= length and out >= length:
                return int(size)
            bottom += 1
