"""Exponential moving average of the generator's weights: the smoother model that gets validated and shipped."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps `shadow`, a copy of the model whose floating tensors track decay*shadow + (1-decay)*model.

    With `warmup` the decay of update n (0-based) is min(decay, (1 + n) / (10 + n)), as TensorFlow's
    ExponentialMovingAverage does with num_updates: without it a short run's shadow stays mostly the random
    initial weights (0.999 ** 300 = 74 % of them after 300 steps), and a study of 300-step runs scored silence.
    `updates` counts the updates; a resumed trainer sets it to its step.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.shadow = copy.deepcopy(model).eval()
        self.shadow.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for (name, avg), value in zip(self.shadow.state_dict().items(), model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.mul_(decay).add_(value.detach(), alpha=1 - decay)
            else:
                avg.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow.load_state_dict(state)
