"""A bag of models: several separators whose estimates are averaged with per-source weights.

The published `htdemucs_ft` is four specialist HTDemucs (each trusted for one source), `mdx` mixes Demucs v2
and Hybrid Demucs models with a (members x sources) weight matrix. A bag is one model file like any other:
its card names `architecture: "bag"` and lists every member's architecture, arguments and sources, the weight
matrix and an optional segment; its safetensors file holds every member's tensors under `models.K.`.

The Separator runs each member over the whole song (its own segment, its own random shifts, in member order)
and combines the results as `sum_k w[k, s] * est_k[s] / sum_k w[k, s]`, which is what the Demucs project's
`apply_model` does for its `BagOfModels`. `forward` applies the same combination to one segment, for callers
that treat the bag as a plain model (training code never does: a bag member is fine-tuned on its own).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

__all__ = ["BagOfModels", "is_bag"]


def is_bag(model: nn.Module) -> bool:
    return getattr(model, "architecture", None) == "bag"


class BagOfModels(nn.Module):
    """Members built from their specs; `weights[k][s]` is member k's weight for source s."""

    architecture = "bag"

    def __init__(self, sources: Sequence[str], members: Sequence[dict[str, Any]],
                 weights: Sequence[Sequence[float]] | None = None, segment: float | None = None) -> None:
        super().__init__()
        from stemgui.models.architectures import build_model

        if not members:
            raise ValueError("a bag needs at least one member model")
        models = []
        for index, spec in enumerate(members):
            if spec.get("architecture") == "bag":
                raise ValueError(f"member {index}: a bag cannot contain another bag")
            member_sources = list(spec.get("sources") or sources)
            if member_sources != list(sources):
                raise ValueError(f"member {index} separates {member_sources}, the bag {list(sources)}")
            models.append(build_model(str(spec["architecture"]), member_sources, dict(spec.get("args") or {}),
                                      where=f"bag member {index}"))
        first = models[0]
        for index, other in enumerate(models[1:], 1):
            if (other.samplerate, other.audio_channels) != (first.samplerate, first.audio_channels):
                raise ValueError(f"member {index} runs at {other.samplerate} Hz x {other.audio_channels} channels, "
                                 f"member 0 at {first.samplerate} Hz x {first.audio_channels}")
        if weights is None:
            weights = [[1.0] * len(sources) for _ in models]
        weights = [[float(w) for w in row] for row in weights]
        if len(weights) != len(models) or any(len(row) != len(sources) for row in weights):
            raise ValueError(f"bag weights must be {len(models)} rows of {len(sources)} numbers (members x sources)")
        if any(w < 0 for row in weights for w in row):
            raise ValueError("bag weights must not be negative")
        for s, name in enumerate(sources):
            if sum(row[s] for row in weights) <= 0:
                raise ValueError(f"no member has a positive weight for source '{name}'")
        if segment is not None:
            if segment <= 0:
                raise ValueError(f"bag segment must be positive, got {segment}")
            for model in models:  # the reference overrides every member's segment in place
                model.segment = float(segment)
        self.models = nn.ModuleList(models)
        self.weights = weights
        self.sources = list(sources)
        self.samplerate = int(first.samplerate)
        self.audio_channels = int(first.audio_channels)
        self.segment = float(segment) if segment is not None else min(float(m.segment) for m in models)
        self.init_kwargs: dict[str, Any] = {
            "sources": list(sources),
            "members": [{"architecture": m.architecture, "args": {k: v for k, v in m.init_kwargs.items()
                                                                  if k != "sources"},
                         "sources": list(m.sources)} for m in models],
            "weights": weights,
            "segment": None if segment is None else float(segment),
        }

    def weight_matrix(self) -> torch.Tensor:
        """(members, sources) float tensor of the bag weights."""
        return torch.tensor(self.weights, dtype=torch.float32)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """(batch, channels, time) -> (batch, sources, channels, time): the weighted mean of the members."""
        weights = self.weight_matrix().to(mix.device)
        total = None
        for model, row in zip(self.models, weights):
            est = model(mix) * row[None, :, None, None]
            total = est if total is None else total + est
        return total / weights.sum(0)[None, :, None, None]
