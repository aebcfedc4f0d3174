"""The cross-domain Transformer at the bottom of Hybrid Transformer Demucs (v4).

Written for StemGUI after Rouard, Massa & Défossez 2023 ("Hybrid Transformers for Music Source Separation").
Module and parameter names follow the Demucs project's `transformer.CrossTransformerEncoder` (whose layers are
`torch.nn.TransformerEncoderLayer` subclasses and `nn.MultiheadAttention`), so its state dicts load here with
`strict=True`; `tests/test_htdemucs.py` checks the outputs against the reference package.

Two token sequences go through it side by side: the spectrogram branch's bottleneck (B, C, F, T1), flattened
time-major into T1·F tokens, and the waveform branch's bottleneck (B, C, T2). Layers alternate between
self-attention within each sequence and cross-attention from each sequence to the other. Everything inside
runs batch-first on (B, tokens, C) tensors.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "CrossTransformerEncoder",
    "SelfAttentionLayer",
    "CrossAttentionLayer",
    "sin_embedding",
    "sin_embedding_2d",
    "cape_embedding",
]


# ----------------------------------------------------------------------------------------------------------
# Positional embeddings
# ----------------------------------------------------------------------------------------------------------


def _sin_cos(pos: torch.Tensor, dim: int, max_period: float) -> torch.Tensor:
    """[cos | sin] of pos / max_period^(i / (dim/2 - 1)) for i < dim/2: (..., 1) positions -> (..., dim)."""
    half = dim // 2
    index = torch.arange(half, device=pos.device)
    phase = pos / (max_period ** (index / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def sin_embedding(length: int, dim: int, shift: int = 0, device: torch.device | str = "cpu",
                  max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of positions shift .. shift+length-1: (1, length, dim), float32."""
    if dim % 2:
        raise ValueError(f"sinusoidal embeddings need an even dimension, got {dim}")
    pos = shift + torch.arange(length, device=device).view(-1, 1)
    return _sin_cos(pos, dim, max_period)[None].float()


def sin_embedding_2d(dim: int, freqs: int, frames: int, device: torch.device | str = "cpu",
                     max_period: float = 10000.0) -> torch.Tensor:
    """2D sinusoidal embedding for the spectrogram tokens: (1, frames·freqs, dim), time-major, float32.

    The first half of the channels encodes the time position, the second half the frequency position; within
    each half even channels are sines and odd ones cosines of geometrically spaced frequencies.
    """
    if dim % 4:
        raise ValueError(f"the 2D sinusoidal embedding needs a dimension divisible by 4, got {dim}")
    half = dim // 2
    rates = torch.exp(torch.arange(0.0, half, 2, device=device) * -(math.log(max_period) / half))  # (half/2,)
    t = torch.arange(0.0, frames, device=device)[:, None] * rates  # (T1, half/2)
    f = torch.arange(0.0, freqs, device=device)[:, None] * rates  # (F, half/2)
    time_part = torch.stack([torch.sin(t), torch.cos(t)], dim=-1).reshape(frames, 1, half)
    freq_part = torch.stack([torch.sin(f), torch.cos(f)], dim=-1).reshape(1, freqs, half)
    emb = torch.cat([time_part.expand(frames, freqs, half), freq_part.expand(frames, freqs, half)], dim=-1)
    return emb.reshape(1, frames * freqs, dim)


def cape_embedding(length: int, dim: int, batch: int, mean_normalize: bool, augment: bool,
                   max_global_shift: float = 0.0, max_local_shift: float = 0.0, max_scale: float = 1.0,
                   device: torch.device | str = "cpu", max_period: float = 10000.0) -> torch.Tensor:
    """CAPE (Likhomanenko et al. 2021): sinusoidal embedding of centred, randomly shifted and scaled positions.

    Returns (batch, length, dim) float32. Augmentation (training only) draws per example a global shift in
    ±max_global_shift, a per-position shift in ±max_local_shift and a scale in [1/max_scale, max_scale]
    (log-uniform), from torch's default generator.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal embeddings need an even dimension, got {dim}")
    pos = torch.arange(length, dtype=torch.float32).view(1, -1, 1).repeat(batch, 1, 1)  # (B, T, 1)
    if mean_normalize:
        pos = pos - pos.mean(dim=1, keepdim=True)
    if augment:  # drawn (and applied) in float64, as the reference's NumPy draws are
        def uniform(*shape: int, bound: float) -> torch.Tensor:
            return (2 * torch.rand(*shape, dtype=torch.float64) - 1) * bound

        glob = uniform(batch, 1, 1, bound=max_global_shift)
        local = uniform(batch, length, 1, bound=max_local_shift)
        log_scale = uniform(batch, 1, 1, bound=math.log(max_scale))
        pos = (pos.double() + glob + local) * log_scale.exp()
    return _sin_cos(pos.to(device), dim, max_period).float()


# ----------------------------------------------------------------------------------------------------------
# Small layers
# ----------------------------------------------------------------------------------------------------------


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch on channel-last (..., C) tensors (Touvron et al. 2021)."""

    def __init__(self, channels: int, init: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class TokenGroupNorm(nn.GroupNorm):
    """GroupNorm for (B, tokens, C): statistics over all tokens (and the group's channels) of each example.

    Unlike LayerNorm it couples the tokens, so a model using it depends on the sequence length it sees.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class PositionEmbedding(nn.Module):
    """Learned positions ("scaled" embedding): weights stored divided by `boost` for a larger effective LR."""

    def __init__(self, num_embeddings: int, embedding_dim: int, scale: float = 1.0, boost: float = 3.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)
        with torch.no_grad():
            self.embedding.weight.mul_(scale / boost)
        self.boost = boost

    @property
    def weight(self) -> torch.Tensor:
        return self.embedding.weight * self.boost

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x) * self.boost


class Attention(nn.Module):
    """Multi-head attention with `nn.MultiheadAttention`'s parameter layout, batch-first.

    `in_proj_weight` stacks the query, key and value projections (3C, C); the product runs through
    `F.scaled_dot_product_attention` (fused kernels, no (tokens x tokens) weights kept for autograd on CPU).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, k·C) -> (k, B, H, N, C/H)."""
        batch, tokens, width = x.shape
        chunks = width // self.out_proj.in_features
        return x.view(batch, tokens, chunks, self.heads, -1).permute(2, 0, 3, 1, 4)

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """query (B, Nq, C), key = value (B, Nk, C) (None: self-attention) -> (B, Nq, C)."""
        dim = query.shape[-1]
        if key is None:
            q, k, v = self._heads(F.linear(query, self.in_proj_weight, self.in_proj_bias))
        else:
            w, b = self.in_proj_weight, self.in_proj_bias
            q = self._heads(F.linear(query, w[:dim], b[:dim]))[0]
            k, v = self._heads(F.linear(key, w[dim:], b[dim:]))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, Nq, C/H)
        return self.out_proj(y.transpose(1, 2).reshape(query.shape[0], query.shape[1], dim))


def _token_norm(group_norm: int | bool, dim: int, eps: float) -> nn.Module:
    return TokenGroupNorm(int(group_norm), dim, eps=eps) if group_norm else nn.LayerNorm(dim, eps=eps)


class _Layer(nn.Module):
    """What self- and cross-attention layers share: attention, feed-forward block, norms, LayerScales.

    Submodules are registered in the reference's order (attention, linear1, linear2, norm1.., norm_out,
    gamma_1, gamma_2) so the state-dict keys come out in the same order too.
    """

    def __init__(self, attention: str, norms: int, dim: int, heads: int, hidden: int, dropout: float,
                 activation: Callable[[torch.Tensor], torch.Tensor], group_norm: int | bool, norm_first: bool,
                 norm_out: int | bool, layer_norm_eps: float, layer_scale: bool, init_values: float) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.activation = activation
        setattr(self, attention, Attention(dim, heads, dropout))
        self.linear1 = nn.Linear(dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(hidden, dim)
        for index in range(1, norms + 1):
            setattr(self, f"norm{index}", _token_norm(group_norm, dim, layer_norm_eps))
        # A GroupNorm over all tokens after every (pre-norm) layer: keeps the residual stream's scale in check.
        self.norm_out = TokenGroupNorm(int(norm_out), dim) if norm_first and norm_out else None
        self.gamma_1: nn.Module = LayerScale(dim, init_values) if layer_scale else nn.Identity()
        self.gamma_2: nn.Module = LayerScale(dim, init_values) if layer_scale else nn.Identity()
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class SelfAttentionLayer(_Layer):
    """Transformer encoder layer (B, N, C) -> (B, N, C), parameter names of `nn.TransformerEncoderLayer`.

    Pre-norm (`norm_first`): x + γ1·SA(norm1 x), then + γ2·FF(norm2 x), then `norm_out`. Post-norm: norm1 after
    the attention residual, norm2 after the feed-forward residual.
    """

    def __init__(self, dim: int, heads: int, hidden: int = 2048, dropout: float = 0.1,
                 activation: Callable[[torch.Tensor], torch.Tensor] = F.relu, group_norm: int | bool = 0,
                 norm_first: bool = False, norm_out: int | bool = False, layer_norm_eps: float = 1e-5,
                 layer_scale: bool = False, init_values: float = 1e-4) -> None:
        super().__init__("self_attn", 2, dim, heads, hidden, dropout, activation, group_norm, norm_first,
                         norm_out, layer_norm_eps, layer_scale, init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.gamma_1(self.dropout1(self.self_attn(self.norm1(x))))
            x = x + self.gamma_2(self._feed_forward(self.norm2(x)))
            return self.norm_out(x) if self.norm_out is not None else x
        x = self.norm1(x + self.gamma_1(self.dropout1(self.self_attn(x))))
        return self.norm2(x + self.gamma_2(self._feed_forward(x)))


class CrossAttentionLayer(_Layer):
    """Cross-attention layer: tokens q (B, Nq, C) attend to the other branch's tokens k (B, Nk, C).

    Pre-norm: q + γ1·CA(norm1 q, norm2 k), then + γ2·FF(norm3 x), then `norm_out`. Post-norm uses norm1 and
    norm2 after the residuals (norm3 exists but is unused, as in the reference).
    """

    def __init__(self, dim: int, heads: int, hidden: int = 2048, dropout: float = 0.1,
                 activation: Callable[[torch.Tensor], torch.Tensor] = F.relu, group_norm: int | bool = 0,
                 norm_first: bool = False, norm_out: int | bool = False, layer_norm_eps: float = 1e-5,
                 layer_scale: bool = False, init_values: float = 1e-4) -> None:
        super().__init__("cross_attn", 3, dim, heads, hidden, dropout, activation, group_norm, norm_first,
                         norm_out, layer_norm_eps, layer_scale, init_values)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = q + self.gamma_1(self.dropout1(self.cross_attn(self.norm1(q), self.norm2(k))))
            x = x + self.gamma_2(self._feed_forward(self.norm3(x)))
            return self.norm_out(x) if self.norm_out is not None else x
        x = self.norm1(q + self.gamma_1(self.dropout1(self.cross_attn(q, k))))
        return self.norm2(x + self.gamma_2(self._feed_forward(x)))


# ----------------------------------------------------------------------------------------------------------
# The two-branch encoder
# ----------------------------------------------------------------------------------------------------------


class CrossTransformerEncoder(nn.Module):
    """Spectrogram tokens (B, C, F, T1) and waveform tokens (B, C, T2) in, the same shapes out.

    `num_layers` layers per branch; with `cross_first=False` even layers are self-attention and odd layers
    cross-attention (each branch attends to the other's input of that layer). Positional embeddings: a 2D
    sinusoid on the spectrogram tokens, and on the waveform tokens `emb` = "sin", "cape" or "scaled" (learned).
    """

    def __init__(
        self,
        dim: int,
        emb: str = "sin",
        hidden_scale: float = 4.0,
        num_heads: int = 8,
        num_layers: int = 6,
        cross_first: bool = False,
        dropout: float = 0.0,
        max_positions: int = 1000,
        norm_in: bool = True,
        norm_in_group: bool = False,
        group_norm: int | bool = False,
        norm_first: bool = False,
        norm_out: bool = False,
        max_period: float = 10000.0,
        weight_decay: float = 0.0,
        lr: float | None = None,
        layer_scale: bool = False,
        gelu: bool = True,
        sin_random_shift: int = 0,
        weight_pos_embed: float = 1.0,
        cape_mean_normalize: bool = True,
        cape_augment: bool = True,
        cape_glob_loc_scale: Sequence[float] = (5000.0, 1.0, 1.4),
        sparse_self_attn: bool = False,
        sparse_cross_attn: bool = False,
        **sparse_options: Any,
    ) -> None:
        super().__init__()
        if sparse_self_attn or sparse_cross_attn:
            raise NotImplementedError(
                "sparse attention (t_sparse_self_attn / t_sparse_cross_attn, xformers kernels in the reference) "
                "is not implemented; no published model uses it"
            )
        if dim % num_heads:
            raise ValueError(f"transformer width {dim} is not divisible by {num_heads} heads")
        if emb not in ("sin", "cape", "scaled"):
            raise ValueError(f"unknown positional embedding '{emb}' (sin, cape or scaled)")
        self.num_layers = num_layers
        self.classic_parity = 1 if cross_first else 0  # layers with idx % 2 == parity are self-attention
        self.emb = emb
        self.max_period = max_period
        self.weight_decay = weight_decay
        self.lr = lr
        self.weight_pos_embed = weight_pos_embed
        self.sin_random_shift = sin_random_shift
        self.cape_mean_normalize = cape_mean_normalize
        self.cape_augment = cape_augment
        self.cape_glob_loc_scale = [float(v) for v in cape_glob_loc_scale]
        if emb == "scaled":
            self.position_embeddings = PositionEmbedding(max_positions, dim, scale=0.2)

        self.norm_in: nn.Module
        self.norm_in_t: nn.Module
        if norm_in:
            self.norm_in, self.norm_in_t = nn.LayerNorm(dim), nn.LayerNorm(dim)
        elif norm_in_group:
            self.norm_in = TokenGroupNorm(int(norm_in_group), dim)
            self.norm_in_t = TokenGroupNorm(int(norm_in_group), dim)
        else:
            self.norm_in, self.norm_in_t = nn.Identity(), nn.Identity()

        layer_kw = dict(
            dim=dim, heads=num_heads, hidden=int(dim * hidden_scale), dropout=dropout,
            activation=F.gelu if gelu else F.relu, group_norm=group_norm, norm_first=norm_first,
            norm_out=norm_out, layer_scale=layer_scale,
        )
        self.layers = nn.ModuleList()  # spectrogram branch
        self.layers_t = nn.ModuleList()  # waveform branch
        for idx in range(num_layers):
            kind = SelfAttentionLayer if idx % 2 == self.classic_parity else CrossAttentionLayer
            self.layers.append(kind(**layer_kw))
            self.layers_t.append(kind(**layer_kw))

    def _time_embedding(self, length: int, batch: int, dim: int, device: torch.device) -> torch.Tensor:
        """(1 or B, length, dim) positional embedding of the waveform tokens."""
        if self.emb == "sin":
            # The reference draws the shift from Python's `random` in training and evaluation alike.
            shift = random.randrange(self.sin_random_shift + 1)
            return sin_embedding(length, dim, shift=shift, device=device, max_period=self.max_period)
        if self.emb == "cape":
            glob, local, scale = self.cape_glob_loc_scale
            return cape_embedding(length, dim, batch, self.cape_mean_normalize,
                                  augment=self.training and self.cape_augment, max_global_shift=glob,
                                  max_local_shift=local, max_scale=scale, device=device,
                                  max_period=self.max_period)
        return self.position_embeddings(torch.arange(length, device=device))[None]

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, F, T1), xt (B, C, T2) -> the same shapes, after all layers."""
        batch, dim, freqs, frames = x.shape
        pos_2d = sin_embedding_2d(dim, freqs, frames, x.device, self.max_period)
        x = x.permute(0, 3, 2, 1).reshape(batch, frames * freqs, dim)  # tokens time-major: (t, f) -> t·F + f
        x = self.norm_in(x) + self.weight_pos_embed * pos_2d.to(x.dtype)

        length = xt.shape[-1]
        pos_t = self._time_embedding(length, batch, dim, x.device)
        xt = xt.transpose(1, 2)  # (B, T2, C)
        xt = self.norm_in_t(xt) + self.weight_pos_embed * pos_t.to(xt.dtype)

        for idx in range(self.num_layers):
            if idx % 2 == self.classic_parity:
                x, xt = self.layers[idx](x), self.layers_t[idx](xt)
            else:
                x, xt = self.layers[idx](x, xt), self.layers_t[idx](xt, x)

        x = x.reshape(batch, frames, freqs, dim).permute(0, 3, 2, 1)
        return x, xt.transpose(1, 2)

    def make_optim_group(self) -> dict[str, Any]:
        """Optimizer parameter group with the transformer's own weight decay and (optional) learning rate."""
        group: dict[str, Any] = {"params": list(self.parameters()), "weight_decay": self.weight_decay}
        if self.lr is not None:
            group["lr"] = self.lr
        return group
