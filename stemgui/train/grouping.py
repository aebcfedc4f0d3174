"""Training a four-stem model on two-stem material: group its stems the way the material is split.

Why: real singing over real accompaniment (MIR-1K) exists only as (accompaniment, vocals); the synthetic songs
have four stems but synthetic production. A model with drums, bass, other and vocals can still learn from the
real pairs if the loss compares its vocals with the voice and the sum of its other stems with the
accompaniment. `TwoStemSteps` decides which training steps read which data, so a step's batch is a pure
function of the step number (resume and DDP stay exact).
"""

from __future__ import annotations

import torch

from stemgui.data.layout import ACCOMPANIMENT, MIR1K_SOURCES
from stemgui.errors import ConfigError

VOCALS = "vocals"
TWO_STEM_SOURCES = list(MIR1K_SOURCES)  # (accompaniment, vocals): the order a two-stem batch's stems come in

__all__ = ["TWO_STEM_SOURCES", "TwoStemSteps", "grouping_matrix", "group_stems"]


def grouping_matrix(sources: list[str], groups: list[str] = TWO_STEM_SOURCES) -> torch.Tensor:
    """(groups, sources) 0/1 matrix: row `vocals` picks the model's vocals, row `accompaniment` sums the rest.

    Raises ConfigError when the model has no vocals stem or nothing besides it.
    """
    if VOCALS not in sources:
        raise ConfigError(f"two-stem training needs a model with a vocals stem; this one has {', '.join(sources)}")
    if len(sources) < 2:
        raise ConfigError("two-stem training needs a model with stems besides vocals")
    matrix = torch.zeros(len(groups), len(sources))
    for g, group in enumerate(groups):
        if group == VOCALS:
            matrix[g, sources.index(VOCALS)] = 1.0
        elif group == ACCOMPANIMENT:
            for s, source in enumerate(sources):
                matrix[g, s] = float(source != VOCALS)
        else:  # pragma: no cover - TWO_STEM_SOURCES is fixed
            raise ConfigError(f"unknown two-stem group '{group}'")
    return matrix


def group_stems(estimate: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """(batch, sources, channels, time) -> (batch, groups, channels, time): each group the sum of its stems."""
    return torch.einsum("gs,bsct->bgct", matrix.to(estimate.device, estimate.dtype), estimate)


class TwoStemSteps:
    """Every `every`-th step (steps every-1, 2·every-1, ...) is a two-stem step; 0 switches it off."""

    def __init__(self, every: int) -> None:
        if every < 0 or every == 1:
            raise ConfigError(f"data.two_stem_every must be 0 (off) or >= 2, not {every}")
        self.every = every

    def __call__(self, step: int) -> bool:
        return self.every > 0 and step % self.every == self.every - 1

    def count(self, steps: int) -> int:
        """How many of steps [0, steps) are two-stem steps."""
        return steps // self.every if self.every else 0
