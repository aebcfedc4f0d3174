"""Hybrid Demucs (v3): a waveform U-Net and a spectrogram U-Net that merge in their deepest layers.

Written for StemGUI, following the published architecture (Défossez 2021, "Hybrid Spectrogram and Waveform
Source Separation"). Constructor arguments and parameter names are those of the Demucs project's
`hdemucs.HDemucs`, so a state dict saved by that package loads here unchanged (`strict=True`) and gives the
same output; `tests/test_hdemucs.py` checks this against the reference package.

Shape of the network (defaults): the frequency branch sees the complex STFT of the mix (real and imaginary
parts as channels, nfft 4096, hop 1024) and halves... quarters the frequency axis in each layer until one bin
is left; the time branch quarters the waveform length in step. When both have the same resolution the time
branch's last conv output is injected into the frequency branch, the remaining layers are shared, and the
decoder splits them again. Output = time branch + iSTFT(frequency branch).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from stemgui.models.spec import hybrid_inverse, hybrid_inverse_channels, hybrid_spectrogram

__all__ = ["HDemucs"]


# ----------------------------------------------------------------------------------------------------------
# Building blocks of the residual DConv branch
# ----------------------------------------------------------------------------------------------------------


class LayerScale(nn.Module):
    """Per-channel scale on a residual branch, initialised near zero so deep nets start as identities."""

    def __init__(self, channels: int, init: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale[:, None] * x


class BLSTM(nn.Module):
    """Bidirectional LSTM over time for (B, C, T) input, run on overlapping windows for long inputs.

    Windows of `max_steps` frames with 50% overlap keep memory and the receptive field bounded; each window
    contributes only its centre (the outer quarter on each side is dropped), except at the two ends.
    """

    def __init__(self, dim: int, layers: int = 1, max_steps: int | None = None, skip: bool = False) -> None:
        super().__init__()
        assert max_steps is None or max_steps % 4 == 0
        self.max_steps = max_steps
        self.skip = skip
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lstm(x.permute(2, 0, 1))[0]  # (T, B, 2C)
        return self.linear(y).permute(1, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, chans, length = x.shape
        if self.max_steps is None or length <= self.max_steps:
            out = self._run(x)
        else:
            width, hop = self.max_steps, self.max_steps // 2
            count = math.ceil(length / hop)
            padded = F.pad(x, (0, (count - 1) * hop + width - length))
            if torch.onnx.is_in_onnx_export():  # the exporter cannot size an unfold of a padded tensor
                frames = torch.stack([padded[..., k * hop:k * hop + width] for k in range(count)], dim=1)
            else:
                frames = padded.unfold(-1, width, hop).permute(0, 2, 1, 3)  # (B, count, C, width)
            frames = frames.reshape(-1, chans, width)
            y = self._run(frames).reshape(batch, count, chans, width)
            cut = hop // 2
            pieces = [y[:, 0, :, :-cut]]
            pieces += [y[:, k, :, cut:-cut] for k in range(1, count - 1)]
            pieces.append(y[:, count - 1, :, cut:])
            out = torch.cat(pieces, dim=-1)[..., :length]
        return out + x if self.skip else out


class LocalState(nn.Module):
    """Multi-head self-attention over time without positional embeddings.

    A learned, per-query decay penalises distant frames so attention stays mostly local; each frame is barred
    from attending to itself.
    """

    def __init__(self, channels: int, heads: int = 4, nfreqs: int = 0, ndecay: int = 4) -> None:
        super().__init__()
        assert channels % heads == 0, (channels, heads)
        self.heads = heads
        self.nfreqs = nfreqs
        self.ndecay = ndecay
        self.content = nn.Conv1d(channels, channels, 1)
        self.query = nn.Conv1d(channels, channels, 1)
        self.key = nn.Conv1d(channels, channels, 1)
        if nfreqs:
            self.query_freqs = nn.Conv1d(channels, heads * nfreqs, 1)
        if ndecay:
            self.query_decay = nn.Conv1d(channels, heads * ndecay, 1)
            # Sigmoid(-2) keeps the decay small at first: attention starts with a wide window.
            with torch.no_grad():
                self.query_decay.weight.mul_(0.01)
                self.query_decay.bias.fill_(-2.0)
        self.proj = nn.Conv1d(channels + heads * nfreqs, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length = x.shape
        heads = self.heads
        pos = torch.arange(length, device=x.device, dtype=x.dtype)
        delta = pos[:, None] - pos[None, :]  # key index minus query index

        queries = self.query(x).view(batch, heads, -1, length)
        keys = self.key(x).view(batch, heads, -1, length)
        scores = torch.einsum("bhck,bhcq->bhkq", keys, queries) / keys.shape[2] ** 0.5
        if self.nfreqs:
            periods = torch.arange(1, self.nfreqs + 1, device=x.device, dtype=x.dtype)
            freq_kernel = torch.cos(2 * math.pi * delta / periods.view(-1, 1, 1))
            freq_q = self.query_freqs(x).view(batch, heads, -1, length) / self.nfreqs**0.5
            scores = scores + torch.einsum("fkq,bhfq->bhkq", freq_kernel, freq_q)
        if self.ndecay:
            rates = torch.arange(1, self.ndecay + 1, device=x.device, dtype=x.dtype)
            decay_q = torch.sigmoid(self.query_decay(x).view(batch, heads, -1, length)) / 2
            # The decay kernels are rate_f·|k - q|: the sum over f factorises into |k - q| times one weight per
            # query, an elementwise product instead of T small matrix products (same sum, reordered).
            decay = (decay_q * rates.view(1, 1, -1, 1)).sum(dim=2) / self.ndecay**0.5  # (B, H, q)
            scores = scores - delta.abs() * decay[:, :, None, :]
        index = torch.arange(length, device=x.device)
        eye = index[:, None] == index[None, :]  # the diagonal (torch.eye of bools has no ONNX Runtime kernel)
        weights = torch.softmax(scores.masked_fill(eye, -100.0), dim=2)

        content = self.content(x).view(batch, heads, -1, length)
        result = torch.einsum("bhkq,bhck->bhcq", weights, content)
        if self.nfreqs:
            time_sig = torch.einsum("bhkq,fkq->bhfq", weights, freq_kernel)
            result = torch.cat([result, time_sig], dim=2)
        return x + self.proj(result.reshape(batch, -1, length))


class DConv(nn.Module):
    """Residual stack of dilated convolutions on a compressed channel space.

    Each of the `depth` layers is conv(k, dilation 2^d) -> norm -> GELU -> [BiLSTM] -> [attention] ->
    1x1 conv -> norm -> GLU -> LayerScale, added to its input. It gives every encoder layer a long temporal
    receptive field at low cost. Module indices inside each layer follow the published layout.
    """

    def __init__(
        self,
        channels: int,
        compress: float = 4,
        depth: int = 2,
        init: float = 1e-4,
        norm: bool = True,
        attn: bool = False,
        heads: int = 4,
        ndecay: int = 4,
        lstm: bool = False,
        gelu: bool = True,
        kernel: int = 3,
        dilate: bool = True,
    ) -> None:
        super().__init__()
        assert kernel % 2 == 1
        self.channels = channels
        self.compress = compress
        self.depth = abs(depth)
        dilate = depth > 0
        hidden = int(channels / compress)
        self.layers = nn.ModuleList()
        for d in range(self.depth):
            dilation = 2**d if dilate else 1
            mods: list[nn.Module] = [
                nn.Conv1d(channels, hidden, kernel, dilation=dilation, padding=dilation * (kernel // 2)),
                nn.GroupNorm(1, hidden) if norm else nn.Identity(),
                nn.GELU() if gelu else nn.ReLU(),
            ]
            if lstm:
                mods.append(BLSTM(hidden, layers=2, max_steps=200, skip=True))
            if attn:
                mods.append(LocalState(hidden, heads=heads, ndecay=ndecay))
            mods += [
                nn.Conv1d(hidden, 2 * channels, 1),
                nn.GroupNorm(1, 2 * channels) if norm else nn.Identity(),
                nn.GLU(1),
                LayerScale(channels, init),
            ]
            self.layers.append(nn.Sequential(*mods))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            for layer in self.layers:
                x = x + layer(x)
            return x
        for layer in self.layers:
            x = self._infer_layer(layer, x).add_(x)
        return x

    @staticmethod
    def _infer_layer(layer: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """One residual branch without autograd: the LayerScale is folded into the last norm's affine.

        scale·(a·σ(b)) = (scale·a)·σ(b), and `a` is an affine output of the GroupNorm, so multiplying the first
        half of its weight and bias by the scale saves a full pass over the activations.
        """
        *head, norm, glu, scale = layer
        for module in head:
            x = module(x)
        if not isinstance(norm, nn.GroupNorm) or not norm.affine:
            return scale(glu(norm(x)))
        factor = torch.cat([scale.scale, torch.ones_like(scale.scale)])
        x = F.group_norm(x, norm.num_groups, norm.weight * factor, norm.bias * factor, norm.eps)
        return F.glu(x, dim=1)


# Elements (floats) an inference-only helper below processes per piece: it bounds the transient buffers of the
# widest frequency layers (a 2 x hidden-channel DConv stage at 512 bins of a 7.8 s segment is 63 MB at once).
INFER_PIECE_ELEMENTS = 1 << 21


def _dconv_over_freqs(dconv: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Apply a time DConv to every frequency row of a (B, C, F, T) tensor independently.

    Without autograd the rows go through in pieces of about INFER_PIECE_ELEMENTS, written into one output:
    the rows are independent (the DConv's GroupNorms normalise each row), so only the peak memory changes.
    """
    batch, chans, freqs, frames = y.shape
    rows = y.permute(0, 2, 1, 3).reshape(-1, chans, frames)  # (B*F, C, T)
    step = max(1, INFER_PIECE_ELEMENTS // (2 * chans * frames))
    if torch.is_grad_enabled() or step >= rows.shape[0]:
        out = dconv(rows)
    else:
        out = torch.empty_like(rows)
        for first in range(0, rows.shape[0], step):
            out[first:first + step] = dconv(rows[first:first + step])
    return out.view(batch, freqs, chans, frames).permute(0, 2, 1, 3)


def _freq_conv_transpose(conv: nn.ConvTranspose2d, y: torch.Tensor) -> torch.Tensor:
    """`conv(y)` for a (kernel K x 1, stride S x 1) transposed conv with S dividing K, without autograd.

    y (B, Cin, F, T) -> (B, Cout, (F - 1) * S + K, T). Output bin f*S + s + j*S receives weight[:, :, j*S + s]
    applied to input bin f: one (Cout*S, Cin) matmul per phase j, added in place into the output over pieces
    of input bins, so the transient is a piece, not the (Cout, K, F, T) column buffer of the generic kernel.
    The same sums in another order: the result agrees with `conv(y)` to float rounding.
    """
    weight = conv.weight  # (Cin, Cout, K, 1)
    stride, kernel = conv.stride[0], weight.shape[2]
    batch, chin, freqs, frames = y.shape
    chout, phases = weight.shape[1], kernel // stride
    out = y.new_empty(batch, chout, freqs + phases - 1, stride, frames)  # bin (g, s) = g*S + s
    out.copy_(conv.bias.view(1, chout, 1, 1, 1).expand_as(out))
    step = max(1, INFER_PIECE_ELEMENTS // (chout * stride * frames))
    for phase in range(phases):
        w = weight[:, :, phase * stride:(phase + 1) * stride, 0].permute(1, 2, 0).reshape(chout * stride, chin)
        for first in range(0, freqs, step):
            piece = y[:, :, first:first + step]
            count = piece.shape[2]
            z = torch.matmul(w, piece.reshape(batch, chin, count * frames))  # (B, Cout*S, n*T)
            out[:, :, phase + first:phase + first + count] += z.view(batch, chout, stride, count, frames).transpose(2, 3)
    return out.view(batch, chout, (freqs + phases - 1) * stride, frames)


def _conv_transpose(conv: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """A decoder's transposed conv: the piecewise matmul form for frequency layers at inference, else `conv`."""
    if (isinstance(conv, nn.ConvTranspose2d) and not torch.is_grad_enabled() and conv.bias is not None
            and conv.kernel_size[1] == 1 and conv.stride[1] == 1 and conv.kernel_size[0] % conv.stride[0] == 0
            and conv.padding == (0, 0) and conv.groups == 1 and y.dim() == 4):
        return _freq_conv_transpose(conv, y)
    return conv(y)


class ScaledEmbedding(nn.Module):
    """Frequency-position embedding whose weights are stored divided by `scale` (a larger effective LR)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, scale: float = 10.0, smooth: bool = False) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)
        with torch.no_grad():
            if smooth:
                # A random walk over frequencies, renormalised so its scale does not grow with the index.
                walk = torch.cumsum(self.embedding.weight, dim=0)
                walk = walk / torch.arange(1, num_embeddings + 1, dtype=walk.dtype).sqrt()[:, None]
                self.embedding.weight.copy_(walk)
            self.embedding.weight.div_(scale)
        self.scale = scale

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x) * self.scale


# ----------------------------------------------------------------------------------------------------------
# Encoder and decoder layers (shared by the time and the frequency branch)
# ----------------------------------------------------------------------------------------------------------


def _norm(enabled: bool, groups: int, channels: int) -> nn.Module:
    return nn.GroupNorm(groups, channels) if enabled else nn.Identity()


class HEncLayer(nn.Module):
    """Strided conv -> norm -> GELU -> DConv -> 1x1 conv -> norm -> GLU.

    On the frequency branch convs run along frequency only ((k, 1) kernels); on the time branch along time.
    `empty` keeps only the strided conv: the time branch's last layer before the merge, whose output is added
    (`inject`) to the frequency branch's conv output.
    """

    def __init__(
        self,
        chin: int,
        chout: int,
        kernel_size: int = 8,
        stride: int = 4,
        norm_groups: int = 1,
        empty: bool = False,
        freq: bool = True,
        dconv: bool = True,
        norm: bool = True,
        context: int = 0,
        dconv_kw: dict[str, Any] | None = None,
        pad: bool = True,
        rewrite: bool = True,
    ) -> None:
        super().__init__()
        pad_size = kernel_size // 4 if pad else 0
        self.freq = freq
        self.kernel_size = kernel_size
        self.stride = stride
        self.empty = empty
        self.norm = norm
        self.pad = pad_size
        if freq:
            conv: type[nn.Module] = nn.Conv2d
            self.conv = nn.Conv2d(chin, chout, (kernel_size, 1), (stride, 1), (pad_size, 0))
        else:
            conv = nn.Conv1d
            self.conv = nn.Conv1d(chin, chout, kernel_size, stride, pad_size)
        if empty:
            return
        self.norm1 = _norm(norm, norm_groups, chout)
        self.rewrite = None
        if rewrite:
            self.rewrite = conv(chout, 2 * chout, 1 + 2 * context, 1, context)
            self.norm2 = _norm(norm, norm_groups, 2 * chout)
        self.dconv = DConv(chout, **(dconv_kw or {})) if dconv else None

    def forward(self, x: torch.Tensor, inject: torch.Tensor | None = None) -> torch.Tensor:
        if not self.freq:
            if x.dim() == 4:  # the shared layers after the merge see (B, C, 1, T)
                x = x.reshape(x.shape[0], -1, x.shape[-1])
            rest = x.shape[-1] % self.stride
            if rest:
                x = F.pad(x, (0, self.stride - rest))
        y = self.conv(x)
        if self.empty:
            return y
        if inject is not None:
            assert inject.shape[-1] == y.shape[-1], (inject.shape, y.shape)
            if inject.dim() == 3 and y.dim() == 4:
                inject = inject[:, :, None]
            y = y + inject
        y = F.gelu(self.norm1(y))
        if self.dconv is not None:
            y = _dconv_over_freqs(self.dconv, y) if self.freq else self.dconv(y)
        if self.rewrite is None:
            return y
        return F.glu(self.norm2(self.rewrite(y)), dim=1)


class HDecLayer(nn.Module):
    """Skip add -> 1x1 conv -> norm -> GLU -> [DConv] -> transposed strided conv -> norm -> GELU.

    Returns the layer output and its input to the transposed conv; the latter feeds the time decoder where the
    branches split again. `empty` keeps only the transposed conv (that split point on the time side).
    """

    def __init__(
        self,
        chin: int,
        chout: int,
        last: bool = False,
        kernel_size: int = 8,
        stride: int = 4,
        norm_groups: int = 1,
        empty: bool = False,
        freq: bool = True,
        dconv: bool = True,
        norm: bool = True,
        context: int = 1,
        dconv_kw: dict[str, Any] | None = None,
        pad: bool = True,
        context_freq: bool = True,
        rewrite: bool = True,
    ) -> None:
        super().__init__()
        self.pad = kernel_size // 4 if pad else 0
        self.last = last
        self.freq = freq
        self.chin = chin
        self.empty = empty
        self.stride = stride
        self.kernel_size = kernel_size
        self.norm = norm
        self.context_freq = context_freq
        if freq:
            self.conv_tr = nn.ConvTranspose2d(chin, chout, (kernel_size, 1), (stride, 1))
        else:
            self.conv_tr = nn.ConvTranspose1d(chin, chout, kernel_size, stride)
        self.norm2 = _norm(norm, norm_groups, chout)
        if empty:
            return
        self.rewrite = None
        if rewrite:
            if not freq:
                self.rewrite = nn.Conv1d(chin, 2 * chin, 1 + 2 * context, 1, context)
            elif context_freq:
                self.rewrite = nn.Conv2d(chin, 2 * chin, 1 + 2 * context, 1, context)
            else:  # context along time only, so that frequency bands stay independent (MultiWrap)
                self.rewrite = nn.Conv2d(chin, 2 * chin, (1, 1 + 2 * context), 1, (0, context))
            self.norm1 = _norm(norm, norm_groups, 2 * chin)
        self.dconv = DConv(chin, **(dconv_kw or {})) if dconv else None

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None, length: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.freq and x.dim() == 3:  # first frequency layer after the split
            x = x.view(x.shape[0], self.chin, -1, x.shape[-1])
        if self.empty:
            assert skip is None
            y = x
        else:
            x = x + skip
            y = F.glu(self.norm1(self.rewrite(x)), dim=1) if self.rewrite is not None else x
            if self.dconv is not None:
                y = _dconv_over_freqs(self.dconv, y) if self.freq else self.dconv(y)
        z = self.norm2(_conv_transpose(self.conv_tr, y))
        if self.freq:
            if self.pad:
                z = z[..., self.pad : -self.pad, :]
        else:
            z = z[..., self.pad : self.pad + length]
            assert z.shape[-1] == length, (z.shape[-1], length)
        if not self.last:
            z = F.gelu(z)
        return z, y


class MultiWrap(nn.Module):
    """Split the frequency axis into bands, each with its own copy of a layer (`multi_freqs` option).

    Band edges are chosen so that, if all copies had equal weights, the result would equal the unsplit layer;
    the layer passed in is only a template (its padding is handled here, its weights are not used).
    """

    def __init__(self, layers: Sequence[nn.Module], split_ratios: Sequence[float]) -> None:
        super().__init__()
        template = layers[0]
        assert len(layers) == len(split_ratios) + 1
        assert not template.norm and template.freq and template.pad
        self.split_ratios = list(split_ratios)
        self.conv = isinstance(template, HEncLayer)
        if not self.conv:
            assert not template.context_freq
        for layer in layers:
            if self.conv:
                layer.conv.padding = (0, 0)
            else:
                layer.pad = 0
        self.layers = nn.ModuleList(layers)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        freqs = x.shape[2]
        start = 0
        outs = []
        for ratio, layer in zip(self.split_ratios + [1], self.layers):
            pad, ker, stride = layer.kernel_size // 4, layer.kernel_size, layer.stride
            if ratio == 1:
                limit = freqs
            else:
                # End the band on a whole number of conv windows.
                span = int(round(freqs * ratio)) - start + (pad if start == 0 else 0)
                windows = round((span - ker) / stride + 1)
                limit = start + (windows - 1) * stride + ker - (pad if start == 0 else 0)
            assert 0 < limit - start and limit <= freqs, (start, limit, freqs)
            band = x[:, :, start:limit, :]
            band = F.pad(band, (0, 0, pad if start == 0 else 0, pad if ratio == 1 else 0))
            outs.append(layer(band))
            start = limit - ker + stride
        return torch.cat(outs, dim=2)

    def _decode(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        freqs = x.shape[2]
        start = 0
        outs: list[torch.Tensor] = []
        last = self.layers[-1].last
        for ratio, layer in zip(self.split_ratios + [1], self.layers):
            limit = freqs if ratio == 1 else int(round(freqs * ratio))
            stride = layer.stride
            was_last, layer.last = layer.last, True  # activation applied once, after the bands are joined
            out, _ = layer(x[:, :, start:limit], skip[:, :, start:limit], None)
            layer.last = was_last
            if outs:  # overlap-add the transposed conv tails across the band edge (bias counted once)
                outs[-1][:, :, -stride:] += out[:, :, :stride] - layer.conv_tr.bias.view(1, -1, 1, 1)
                out = out[:, :, stride:]
            if ratio == 1:
                out = out[:, :, : -(stride // 2), :]
            if start == 0:
                out = out[:, :, stride // 2 :, :]
            outs.append(out)
            start = limit
        out = torch.cat(outs, dim=2)
        return out if last else F.gelu(out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, length: int | None = None):
        if self.conv:
            return self._encode(x)
        return self._decode(x, skip), None


# ----------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------


def _rescale_convs(module: nn.Module, reference: float) -> None:
    """Shrink initial conv weights towards std `reference` (square-root rule): trains faster from scratch."""
    for sub in module.modules():
        if isinstance(sub, (nn.Conv1d, nn.ConvTranspose1d, nn.Conv2d, nn.ConvTranspose2d)):
            with torch.no_grad():
                scale = (sub.weight.std() / reference) ** 0.5
                sub.weight.div_(scale)
                if sub.bias is not None:
                    sub.bias.div_(scale)


class HybridIO:
    """What Hybrid Demucs and Hybrid Transformer Demucs share around their networks: the spectrogram and the
    standardised waveform in, the frequency branch's output back to a waveform, plus the time branch's.

    The subclass provides `network(x, xt)`, `sources`, `nfft`, `cac`, `hybrid` and `hybrid_old`.
    """

    sources: list[str]
    nfft: int
    cac: bool
    hybrid: bool = True
    hybrid_old: bool = False

    def _spec_to_channels(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, F, T) complex -> network input: real/imag as channels (B, 2C, F, T) (cac), else the magnitude."""
        if not self.cac:
            return z.abs()
        batch, chans, freqs, frames = z.shape
        return torch.view_as_real(z).permute(0, 1, 4, 2, 3).reshape(batch, 2 * chans, freqs, frames)

    def _channels_to_spec(self, z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """(B, S, C·2, F, T) network output -> (B, S, C, F, T) complex spectrogram per source."""
        if self.cac:
            batch, sources, chans, freqs, frames = out.shape
            out = out.view(batch, sources, chans // 2, 2, freqs, frames).permute(0, 1, 2, 4, 5, 3)
            return torch.view_as_complex(out.contiguous())
        # Magnitude mask with the mixture's phase (wiener_iters < 0; Wiener filtering is refused at init).
        z = z[:, None]
        return z / (1e-8 + z.abs()) * out

    def _separate(self, mix: torch.Tensor, network: Callable) -> torch.Tensor:
        """mix (B, C, L) -> stems (B, S, C, L) through `network` (the model's own or an engine backend's copy)."""
        length = mix.shape[-1]
        z = hybrid_spectrogram(mix, self.nfft, self.hybrid, self.hybrid_old)
        x = self._spec_to_channels(z).to(mix.device)
        batch, _, freqs, frames = x.shape

        # Both branches work on standardised input; the statistics are put back at the end.
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (1e-5 + std)
        if self.hybrid:
            meant = mix.mean(dim=(1, 2), keepdim=True)
            stdt = mix.std(dim=(1, 2), keepdim=True)
            xt = (mix - meant) / (1e-5 + stdt)
        else:
            xt = None
        fast_inverse = self.cac and not self.hybrid_old and mix.device.type != "mps" and not torch.is_grad_enabled()
        if fast_inverse:
            del z  # x is a copy; the inverse rebuilds the spectrogram from the network's output (less peak memory)
        handover = [x, xt]  # no reference kept here: the network frees its inputs after their first layers
        del x, xt
        x, xt = network(handover.pop(0), handover.pop())

        n_src = len(self.sources)
        x = x.view(batch, n_src, -1, freqs, frames)
        if fast_inverse:  # inference fast path, same values
            out = hybrid_inverse_channels(x, std.view(batch), mean.view(batch), length, self.nfft, self.hybrid)
            del x
            if self.hybrid:  # in place, in the order of the expression below: no output-sized temporaries
                out.add_(xt.view(batch, n_src, -1, length).mul_(stdt[:, None])).add_(meant[:, None])
            return out
        on_mps = x.device.type == "mps"  # MPS has no complex tensors
        x = x * std[:, None] + mean[:, None]
        if on_mps:
            x = x.cpu()
        out = hybrid_inverse(self._channels_to_spec(z, x), length, self.nfft, self.hybrid, self.hybrid_old)
        if on_mps:
            out = out.to("mps")
        if self.hybrid:
            out = out + xt.view(batch, n_src, -1, length) * stdt[:, None] + meant[:, None]
        return out


class HDemucs(HybridIO, nn.Module):
    """Hybrid (time + spectrogram) Demucs: (batch, channels, time) -> (batch, sources, channels, time).

    Arguments and defaults are those of the published `hdemucs.HDemucs`; the ones that matter most: `channels`
    (width of the first layer, x`growth` per layer), `depth`, `nfft`, `dconv_lstm` / `dconv_attn` (first
    layer index with a BiLSTM / local attention in its DConv branch), `cac` (complex-as-channels output; the
    alternative is a magnitude mask, with optional Wiener filtering, not implemented here).
    `samplerate` and `segment` (seconds per training example) are metadata used by the separator.
    """

    architecture = "hdemucs"

    def __init__(
        self,
        sources: Sequence[str],
        audio_channels: int = 2,
        channels: int = 48,
        channels_time: int | None = None,
        growth: float = 2,
        nfft: int = 4096,
        wiener_iters: int = 0,
        end_iters: int = 0,
        wiener_residual: bool = False,
        cac: bool = True,
        depth: int = 6,
        rewrite: bool = True,
        hybrid: bool = True,
        hybrid_old: bool = False,
        multi_freqs: Sequence[float] | None = None,
        multi_freqs_depth: int = 2,
        freq_emb: float = 0.2,
        emb_scale: float = 10,
        emb_smooth: bool = True,
        kernel_size: int = 8,
        time_stride: int = 2,
        stride: int = 4,
        context: int = 1,
        context_enc: int = 0,
        norm_starts: int = 4,
        norm_groups: int = 4,
        dconv_mode: int = 1,
        dconv_depth: int = 2,
        dconv_comp: float = 4,
        dconv_attn: int = 4,
        dconv_lstm: int = 4,
        dconv_init: float = 1e-4,
        rescale: float = 0.1,
        samplerate: int = 44100,
        segment: float = 4 * 10,
    ) -> None:
        super().__init__()
        if hybrid_old and not hybrid:
            raise ValueError("hybrid_old requires hybrid=True")
        if hybrid and wiener_iters != end_iters:
            raise ValueError("a hybrid model needs wiener_iters == end_iters")
        if not cac and wiener_iters >= 0:
            raise NotImplementedError("Wiener filtering (cac=False, wiener_iters >= 0) is not implemented")
        self.init_kwargs: dict[str, Any] = {
            "sources": list(sources), "audio_channels": audio_channels, "channels": channels,
            "channels_time": channels_time, "growth": growth, "nfft": nfft, "wiener_iters": wiener_iters,
            "end_iters": end_iters, "wiener_residual": wiener_residual, "cac": cac, "depth": depth,
            "rewrite": rewrite, "hybrid": hybrid, "hybrid_old": hybrid_old,
            "multi_freqs": None if multi_freqs is None else [float(r) for r in multi_freqs],
            "multi_freqs_depth": multi_freqs_depth, "freq_emb": freq_emb, "emb_scale": emb_scale,
            "emb_smooth": emb_smooth, "kernel_size": kernel_size, "time_stride": time_stride, "stride": stride,
            "context": context, "context_enc": context_enc, "norm_starts": norm_starts,
            "norm_groups": norm_groups, "dconv_mode": dconv_mode, "dconv_depth": dconv_depth,
            "dconv_comp": dconv_comp, "dconv_attn": dconv_attn, "dconv_lstm": dconv_lstm,
            "dconv_init": dconv_init, "rescale": rescale, "samplerate": samplerate, "segment": float(segment),
        }
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
        self.hybrid = hybrid
        self.hybrid_old = hybrid_old
        self.nfft = nfft
        self.hop_length = nfft // 4
        self.samplerate = samplerate
        self.segment = float(segment)
        self.freq_emb: ScaledEmbedding | None = None

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        if hybrid:
            self.tencoder = nn.ModuleList()
            self.tdecoder = nn.ModuleList()

        spec_factor = 2 if cac else 1  # complex-as-channels doubles the frequency branch's channels
        chin, chin_z = audio_channels, audio_channels * spec_factor
        chout, chout_z = channels_time or channels, channels
        freqs = nfft // 2
        for index in range(depth):
            freq = freqs > 1
            ker, stri, pad, last_freq = kernel_size, stride, True, False
            if not freq:  # shared layers after the merge: plain time convolutions
                assert freqs == 1
                ker, stri = 2 * time_stride, time_stride
            elif freqs <= kernel_size:  # last frequency layer collapses the remaining bins
                ker, pad, last_freq = freqs, False, True
            dconv_kw = {
                "lstm": index >= dconv_lstm, "attn": index >= dconv_attn, "depth": dconv_depth,
                "compress": dconv_comp, "init": dconv_init, "gelu": True,
            }
            common = {
                "norm": index >= norm_starts, "rewrite": rewrite, "norm_groups": norm_groups, "dconv_kw": dconv_kw,
            }
            freq_kw = {"kernel_size": ker, "stride": stri, "freq": freq, "pad": pad, **common}
            time_kw = {"kernel_size": kernel_size, "stride": stride, "freq": False, "pad": True, **common}
            multi = bool(multi_freqs) and index < multi_freqs_depth
            if last_freq:  # the merge layer: both branches must have the same width
                chout_z = max(chout, chout_z)
                chout = chout_z

            def make_enc() -> HEncLayer:
                return HEncLayer(chin_z, chout_z, dconv=bool(dconv_mode & 1), context=context_enc, **freq_kw)

            enc = MultiWrap([make_enc() for _ in range(len(multi_freqs) + 1)], multi_freqs) if multi else make_enc()
            self.encoder.append(enc)
            if hybrid and freq:
                self.tencoder.append(
                    HEncLayer(chin, chout, dconv=bool(dconv_mode & 1), context=context_enc, empty=last_freq,
                              **time_kw)
                )
            if index == 0:  # decoders output every source
                chin = audio_channels * len(self.sources)
                chin_z = chin * spec_factor

            def make_dec() -> HDecLayer:
                return HDecLayer(chout_z, chin_z, dconv=bool(dconv_mode & 2), last=index == 0, context=context,
                                 context_freq=not multi, **freq_kw)

            dec = MultiWrap([make_dec() for _ in range(len(multi_freqs) + 1)], multi_freqs) if multi else make_dec()
            self.decoder.insert(0, dec)
            if hybrid and freq:
                self.tdecoder.insert(
                    0,
                    HDecLayer(chout, chin, dconv=bool(dconv_mode & 2), empty=last_freq, last=index == 0,
                              context=context, **time_kw),
                )

            chin, chin_z = chout, chout_z
            chout, chout_z = int(growth * chout), int(growth * chout_z)
            if freq:
                freqs = 1 if freqs <= kernel_size else freqs // stride
            if index == 0 and freq_emb:
                self.freq_emb = ScaledEmbedding(freqs, chin_z, smooth=emb_smooth, scale=emb_scale)
                self.freq_emb_scale = freq_emb

        if rescale:
            _rescale_convs(self, rescale)

    def valid_length(self, length: int) -> int:
        """Any length works: the time branch pads to its strides and trims back, the STFT is padded exactly."""
        return int(length)

    # -- spectrogram in and out ---------------------------------------------------------------------------

    # -- forward --------------------------------------------------------------------------------------------

    def network(self, x: torch.Tensor, xt: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The learned part between the spectrogram and its inverse, on fixed shapes and real tensors only.

        x (B, 2C, F, T) standardised spectrogram channels, xt (B, C, L) standardised waveform (None unless
        hybrid) -> the frequency branch's output (B, S·2C, F, T) and the time branch's (B, S·C, L). This is what
        a compiled or exported engine backend (stemgui/backends.py) replaces; the STFTs stay in torch around it.
        """
        skips: list[torch.Tensor] = []
        skips_t: list[torch.Tensor] = []
        lengths: list[int] = []
        lengths_t: list[int] = []
        n_time = len(self.tencoder) if self.hybrid else 0
        for idx, encode in enumerate(self.encoder):
            lengths.append(x.shape[-1])
            inject = None
            if idx < n_time:
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

        x = torch.zeros_like(x)  # the decoders start from zero: everything flows through the skips
        xt = torch.zeros_like(x) if self.hybrid else None
        offset = self.depth - len(self.tdecoder) if self.hybrid else self.depth
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
        """mix (B, C, T) -> stems (B, S, C, T); `network` replaces `self.network` (an engine backend's copy)."""
        return self._separate(mix, network or self.network)
