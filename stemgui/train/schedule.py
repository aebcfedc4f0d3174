"""The generator's learning rate as a pure function of the step.

A pure function (no scheduler object with state) so that a resumed run, a DDP rank and a test all compute the
same rate for the same step, and a run can be continued with a longer `train.steps` (the cosine then stretches
to the new end: a warm restart, stated in the log's `lr` column).
"""

from __future__ import annotations

import math

LR_DECAYS = ("none", "cosine")


def learning_rate(base: float, step: int, *, total_steps: int, warmup_steps: int = 0, decay: str = "none",
                  decay_start: int = 0, min_ratio: float = 0.05) -> float:
    """Rate for 0-based `step`: linear warm-up over `warmup_steps`, then constant or (decay="cosine") a half
    cosine from `base` at `decay_start` down to `base * min_ratio` at the last step (`total_steps - 1`)."""
    if decay not in LR_DECAYS:
        raise ValueError(f"unknown learning-rate decay '{decay}' (one of {', '.join(LR_DECAYS)})")
    rate = base * min(1.0, (step + 1) / warmup_steps) if warmup_steps else base
    if decay == "cosine" and step > decay_start:
        span = max(1, total_steps - 1 - decay_start)
        progress = min(1.0, (step - decay_start) / span)
        rate *= min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return rate
