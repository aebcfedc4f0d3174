"""Hybrid Transformer Demucs (v4): Hybrid Demucs with a cross-domain Transformer between its two U-Nets.

Written for StemGUI after Rouard, Massa & Défossez 2023 ("Hybrid Transformers for Music Source Separation").
Constructor arguments and parameter names are those of the Demucs project's `htdemucs.HTDemucs`, so the
published `htdemucs` / `htdemucs_6s` / `htdemucs_ft` weights load here unchanged (`strict=True`) and give the
same output; `tests/test_htdemucs.py` checks this against the reference package.

Shape of the network (published configuration, depth 4): the frequency branch sees the complex STFT of the
mix (real/imaginary parts as channels, nfft 4096, hop 1024) and quarters the frequency axis in each of its
four layers (2048 -> 8 bins); the time branch quarters the waveform length in step. Unlike v3 the branches
never merge: their bottlenecks, (B, 384, 8, T/1024) and (B, 384, T/256), go through `CrossTransformerEncoder`
(self-attention within, cross-attention between the branches), optionally after 1x1 convs to
`bottom_channels`. The encoder/decoder layers are v3's (`stemgui.models.hdemucs`).

The Transformer's output-norms and positional embeddings see the whole segment, so the model depends on the
length it runs on: with `use_train_segment` (the default) evaluation always runs on the training segment
(shorter inputs are zero-padded at the end and the output trimmed), as the published models expect.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from stemgui.models.hdemucs import HDecLayer, HEncLayer, HybridIO, MultiWrap, ScaledEmbedding, _rescale_convs
from stemgui.models.transformer import CrossTransformerEncoder

__all__ = ["HTDemucs"]


def _jsonable(value: Any) -> Any:
    """Fractions -> float, tuples -> lists (recursively), so init_kwargs can go into a JSON card."""
    if isinstance(value, Fraction):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class HTDemucs(HybridIO, nn.Module):
    """Hybrid Transformer Demucs: (batch, channels, time) -> (batch, sources, channels, time).

    Arguments and defaults are those of the published `htdemucs.HTDemucs`. The U-Net ones are v3's (see
    `stemgui.models.hdemucs.HDemucs`); `bottom_channels` adds 1x1 convs to that width around the Transformer;
    the `t_*` arguments configure `CrossTransformerEncoder` (`t_layers` layers per branch, `t_heads` heads,
    FFN width `t_hidden_scale` x, pre-norm `t_norm_first`, GroupNorm output `t_norm_out`, LayerScale
    `t_layer_scale`, positional embedding `t_emb` "sin" / "cape" / "scaled"). Sparse attention
    (`t_sparse_self_attn`, `t_sparse_cross_attn`, xformers kernels in the reference) and Wiener filtering
    (`cac=False` with `wiener_iters >= 0`) are not implemented; no published model uses them.
    `samplerate` and `segment` (seconds per training example) are metadata and, with `use_train_segment`,
    the length every evaluation runs on.
    """

    architecture = "htdemucs"

    def __init__(
        self,
        sources: Sequence[str],
        # Channels
        audio_channels: int = 2,
        channels: int = 48,
        channels_time: int | None = None,
        growth: float = 2,
        # STFT
        nfft: int = 4096,
        wiener_iters: int = 0,
        end_iters: int = 0,
        wiener_residual: bool = False,
        cac: bool = True,
        # Main structure
        depth: int = 4,
        rewrite: bool = True,
        # Frequency branch
        multi_freqs: Sequence[float] | None = None,
        multi_freqs_depth: int = 3,
        freq_emb: float = 0.2,
        emb_scale: float = 10,
        emb_smooth: bool = True,
        # Convolutions
        kernel_size: int = 8,
        time_stride: int = 2,
        stride: int = 4,
        context: int = 1,
        context_enc: int = 0,
        # Normalization
        norm_starts: int = 4,
        norm_groups: int = 4,
        # DConv residual branch
        dconv_mode: int = 1,
        dconv_depth: int = 2,
        dconv_comp: float = 8,
        dconv_init: float = 1e-3,
        # Before the Transformer
        bottom_channels: int = 0,
        # Transformer
        t_layers: int = 5,
        t_emb: str = "sin",
        t_hidden_scale: float = 4.0,
        t_heads: int = 8,
        t_dropout: float = 0.0,
        t_max_positions: int = 10000,
        t_norm_in: bool = True,
        t_norm_in_group: bool = False,
        t_group_norm: bool = False,
        t_norm_first: bool = True,
        t_norm_out: bool = True,
        t_max_period: float = 10000.0,
        t_weight_decay: float = 0.0,
        t_lr: float | None = None,
        t_layer_scale: bool = True,
        t_gelu: bool = True,
        t_weight_pos_embed: float = 1.0,
        t_sin_random_shift: int = 0,
        t_cape_mean_normalize: bool = True,
        t_cape_augment: bool = True,
        t_cape_glob_loc_scale: Sequence[float] = (5000.0, 1.0, 1.4),
        t_sparse_self_attn: bool = False,
        t_sparse_cross_attn: bool = False,
        t_mask_type: str = "diag",
        t_mask_random_seed: int = 42,
        t_sparse_attn_window: int = 500,
        t_global_window: int = 100,
        t_sparsity: float = 0.95,
        t_auto_sparsity: bool = False,
        # Particular parameters
        t_cross_first: bool = False,
        # Weight init
        rescale: float = 0.1,
        # Metadata
        samplerate: int = 44100,
        segment: float = 10,
        use_train_segment: bool = True,
    ) -> None:
        super().__init__()
        args = dict(locals())
        for key in ("self", "__class__", "sources"):
            args.pop(key, None)
        if wiener_iters != end_iters:
            raise ValueError("HTDemucs needs wiener_iters == end_iters")
        if not cac and wiener_iters >= 0:
            raise NotImplementedError("Wiener filtering (cac=False, wiener_iters >= 0) is not implemented")
        if t_layers > 0 and (t_sparse_self_attn or t_sparse_cross_attn):
            raise NotImplementedError(
                "sparse attention (t_sparse_self_attn / t_sparse_cross_attn, xformers kernels in the reference) "
                "is not implemented; no published model uses it"
            )
        if segment <= 0:
            raise ValueError(f"segment must be positive seconds, got {segment}")
        self.init_kwargs: dict[str, Any] = {"sources": list(sources)}
        self.init_kwargs.update({key: _jsonable(value) for key, value in args.items()})
        self.init_kwargs["segment"] = float(segment)

        self.sources = list(sources)
        self.audio_channels = audio_channels
        self.channels = channels
        self.depth = depth
        self.kernel_size = kernel_size
        self.stride = stride
        self.context = context
        self.cac = cac
        self.wiener_iters = wiener_iters
        self.end_iters = end_iters
        self.wiener_residual = wiener_residual
        self.bottom_channels = bottom_channels
        self.nfft = nfft
        self.hop_length = nfft // 4
        self.samplerate = samplerate
        self.segment = float(segment)
        self.use_train_segment = use_train_segment
        self.freq_emb: ScaledEmbedding | None = None

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.tencoder = nn.ModuleList()
        self.tdecoder = nn.ModuleList()

        spec_factor = 2 if cac else 1  # complex-as-channels doubles the frequency branch's channels
        chin, chin_z = audio_channels, audio_channels * spec_factor
        chout, chout_z = channels_time or channels, channels
        time_width = 0  # channels of the time branch's bottleneck
        freqs = nfft // 2
        for index in range(depth):
            freq = freqs > 1
            ker, stri, pad, last_freq = kernel_size, stride, True, False
            if not freq:  # layers after the merge (depth > 5 with the defaults): plain time convolutions
                assert freqs == 1
                ker, stri = 2 * time_stride, time_stride
            elif freqs <= kernel_size:  # last frequency layer collapses the remaining bins: merge point
                ker, pad, last_freq = freqs, False, True
            dconv_kw = {"depth": dconv_depth, "compress": dconv_comp, "init": dconv_init, "gelu": True}
            common = {"norm": index >= norm_starts, "rewrite": rewrite, "norm_groups": norm_groups,
                      "dconv_kw": dconv_kw}
            freq_kw = {"kernel_size": ker, "stride": stri, "freq": freq, "pad": pad, **common}
            time_kw = {"kernel_size": kernel_size, "stride": stride, "freq": False, "pad": True, **common}
            multi = bool(multi_freqs) and index < multi_freqs_depth
            if last_freq:  # both branches must have the same width where they merge
                chout_z = max(chout, chout_z)
                chout = chout_z

            def make_enc() -> HEncLayer:
                return HEncLayer(chin_z, chout_z, dconv=bool(dconv_mode & 1), context=context_enc, **freq_kw)

            enc = MultiWrap([make_enc() for _ in range(len(multi_freqs) + 1)], multi_freqs) if multi else make_enc()
            self.encoder.append(enc)
            if freq:
                self.tencoder.append(HEncLayer(chin, chout, dconv=bool(dconv_mode & 1), context=context_enc,
                                               empty=last_freq, **time_kw))
                time_width = chout
            if index == 0:  # decoders output every source
                chin = audio_channels * len(self.sources)
                chin_z = chin * spec_factor

            def make_dec() -> HDecLayer:
                return HDecLayer(chout_z, chin_z, dconv=bool(dconv_mode & 2), last=index == 0, context=context,
                                 context_freq=not multi, **freq_kw)

            dec = MultiWrap([make_dec() for _ in range(len(multi_freqs) + 1)], multi_freqs) if multi else make_dec()
            self.decoder.insert(0, dec)
            if freq:
                self.tdecoder.insert(0, HDecLayer(chout, chin, dconv=bool(dconv_mode & 2), empty=last_freq,
                                                  last=index == 0, context=context, **time_kw))

            chin, chin_z = chout, chout_z
            chout, chout_z = int(growth * chout), int(growth * chout_z)
            if freq:
                freqs = 1 if freqs <= kernel_size else freqs // stride
            if index == 0 and freq_emb:
                self.freq_emb = ScaledEmbedding(freqs, chin_z, smooth=emb_smooth, scale=emb_scale)
                self.freq_emb_scale = freq_emb

        # Only the U-Net convs are rescaled: the reference rescales before building the Transformer.
        if rescale:
            _rescale_convs(self, rescale)

        width = chin_z  # channels of the frequency branch's bottleneck
        if t_layers > 0 and width != time_width:
            raise ValueError(
                f"the Transformer needs both bottlenecks equally wide (frequency {width}, time {time_width}): "
                "use channels_time=None and a depth that ends on frequency layers"
            )
        if bottom_channels:
            self.channel_upsampler = nn.Conv1d(width, bottom_channels, 1)
            self.channel_downsampler = nn.Conv1d(bottom_channels, width, 1)
            self.channel_upsampler_t = nn.Conv1d(time_width, bottom_channels, 1)
            self.channel_downsampler_t = nn.Conv1d(bottom_channels, time_width, 1)
            width = bottom_channels

        self.crosstransformer: CrossTransformerEncoder | None = None
        if t_layers > 0:
            self.crosstransformer = CrossTransformerEncoder(
                dim=width, emb=t_emb, hidden_scale=t_hidden_scale, num_heads=t_heads, num_layers=t_layers,
                cross_first=t_cross_first, dropout=t_dropout, max_positions=t_max_positions, norm_in=t_norm_in,
                norm_in_group=t_norm_in_group, group_norm=t_group_norm, norm_first=t_norm_first,
                norm_out=t_norm_out, max_period=t_max_period, weight_decay=t_weight_decay, lr=t_lr,
                layer_scale=t_layer_scale, gelu=t_gelu, sin_random_shift=t_sin_random_shift,
                weight_pos_embed=t_weight_pos_embed, cape_mean_normalize=t_cape_mean_normalize,
                cape_augment=t_cape_augment, cape_glob_loc_scale=t_cape_glob_loc_scale,
            )

    # -- segment ------------------------------------------------------------------------------------------

    def training_length(self) -> int:
        """The training segment in samples (rounded: 7.8 s at 44.1 kHz is 343980 samples, not 343979)."""
        return int(round(self.segment * self.samplerate))

    def valid_length(self, length: int) -> int:
        """Input length for evaluating `length` samples: the training length (ValueError if `length` is longer).

        Without `use_train_segment` any length works and is returned unchanged.
        """
        if not self.use_train_segment:
            return int(length)
        train = self.training_length()
        if length > train:
            raise ValueError(f"given length {length} is longer than the training length {train}")
        return train

    # -- forward --------------------------------------------------------------------------------------------

    def _bottleneck(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Transformer on x (B, C, F, T1) and xt (B, C, T2), with the optional width change around it."""
        if self.crosstransformer is None:
            return x, xt
        if self.bottom_channels:
            batch, _, freqs, frames = x.shape
            x = self.channel_upsampler(x.reshape(batch, -1, freqs * frames)).view(batch, -1, freqs, frames)
            xt = self.channel_upsampler_t(xt)
        x, xt = self.crosstransformer(x, xt)
        if self.bottom_channels:
            batch, _, freqs, frames = x.shape
            x = self.channel_downsampler(x.reshape(batch, -1, freqs * frames)).view(batch, -1, freqs, frames)
            xt = self.channel_downsampler_t(xt)
        return x, xt

    def network(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned part between the spectrogram and its inverse, on fixed shapes and real tensors only.

        x (B, 2C, F, T) standardised spectrogram channels, xt (B, C, L) standardised waveform -> the frequency
        branch's output (B, S·2C, F, T) and the time branch's (B, S·C, L). This is what a compiled or exported
        engine backend (stemgui/backends.py) replaces; the STFT and its inverse stay in torch around it.
        """
        skips: list[torch.Tensor] = []
        skips_t: list[torch.Tensor] = []
        lengths: list[int] = []
        lengths_t: list[int] = []
        for idx, encode in enumerate(self.encoder):
            lengths.append(x.shape[-1])
            inject = None
            if idx < len(self.tencoder):
                lengths_t.append(xt.shape[-1])
                tenc = self.tencoder[idx]
                xt = tenc(xt)
                if tenc.empty:
                    inject = xt  # same resolution as the frequency branch now: merge
                else:
                    skips_t.append(xt)
            x = encode(x, inject)
            if idx == 0 and self.freq_emb is not None:
                # Convolutions over frequency are shift-invariant; the embedding tells them where they are.
                emb = self.freq_emb(torch.arange(x.shape[-2], device=x.device)).t()
                x = x + self.freq_emb_scale * emb[None, :, :, None].expand_as(x)
            skips.append(x)

        x, xt = self._bottleneck(x, xt)

        offset = self.depth - len(self.tdecoder)
        for idx, decode in enumerate(self.decoder):
            x, pre = decode(x, skips.pop(), lengths.pop())
            if idx >= offset:
                tdec = self.tdecoder[idx - offset]
                length_t = lengths_t.pop()
                if tdec.empty:  # split point: the time branch starts from the shared layers' output
                    assert pre.shape[2] == 1, pre.shape
                    xt, _ = tdec(pre[:, :, 0], None, length_t)
                else:
                    xt, _ = tdec(xt, skips_t.pop(), length_t)
        assert not skips and not skips_t and not lengths_t
        return x, xt

    def forward(self, mix: torch.Tensor, network: Callable | None = None) -> torch.Tensor:
        """mix (B, C, T) -> stems (B, S, C, T).

        With `use_train_segment`: in training mode the input length becomes the training segment (as in the
        reference); in eval mode a shorter input is zero-padded at the end to the training length and the
        output trimmed back. A longer input runs at its own length (the reference fails there). `network`
        replaces `self.network` (an engine backend's compiled or exported copy of it).
        """
        length = mix.shape[-1]
        if self.use_train_segment:
            if self.training:
                self.segment = length / self.samplerate
                self.init_kwargs["segment"] = self.segment  # a card saved now describes what was trained
            else:
                train = self.training_length()
                if length < train:
                    mix = F.pad(mix, (0, train - length))
        padded = mix.shape[-1]
        out = self._separate(mix, network or self.network)
        return out[..., :length] if padded != length else out
