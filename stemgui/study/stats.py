"""Is one system better than another on these songs? The paired bootstrap over songs.

Each held-out song is scored by both systems, so the question is about the per-song differences d_i. Resampling
the songs with replacement (seeded, so a report is reproducible) and taking the mean difference each time gives
the bootstrap distribution of the mean difference; its 2.5th and 97.5th percentiles are the 95 % confidence
interval. An interval that includes 0 is reported as "no difference": at this number of songs the data cannot
tell the two apart, whatever the sign of the mean. So is an interval within the rounding of the stored scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

NO_DIFFERENCE = "no difference"
RESOLUTION_DB = 0.001
"""Scores are stored as museval stores them, to 5 decimals of a dB, and then averaged: an interval that lies wholly
within +-0.001 dB is rounding, not a difference."""


@dataclass(frozen=True)
class Interval:
    """The mean per-song difference (system minus baseline) and its bootstrap confidence interval, in dB."""

    mean: float
    low: float
    high: float
    songs: int
    confidence: float = 0.95

    @property
    def verdict(self) -> str:
        """"higher", "lower" or "no difference" (the interval includes 0, lies within the scores' rounding
        (RESOLUTION_DB), or there is nothing to compare)."""
        if self.songs == 0 or not (math.isfinite(self.low) and math.isfinite(self.high)):
            return NO_DIFFERENCE
        if max(abs(self.low), abs(self.high)) < RESOLUTION_DB:
            return NO_DIFFERENCE
        if self.low > 0:
            return "higher"
        if self.high < 0:
            return "lower"
        return NO_DIFFERENCE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def paired_bootstrap(system: Sequence[float], baseline: Sequence[float], *, resamples: int = 10000, seed: int = 0,
                     confidence: float = 0.95) -> Interval:
    """The mean of system - baseline over songs with a percentile bootstrap interval; a song where either value is
    not finite (a silent stem's NaN) is left out of both."""
    a = np.asarray(system, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two equal-length lists, got shapes {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    diffs = a[ok] - b[ok]
    if diffs.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, confidence)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, diffs.size, size=(resamples, diffs.size))
    means = diffs[picks].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(diffs.mean()), float(low), float(high), int(diffs.size), confidence)


def db(value: float) -> str:
    """A signed dB figure that never shows a real difference as 0.00 (tiny ones get an exponent)."""
    if not math.isfinite(value):
        return "nan"
    return f"{value:+.2f}" if value == 0 or abs(value) >= 0.005 else f"{value:+.1e}"


def describe(interval: Interval, what: str, baseline: str) -> str:
    """One sentence for a newcomer, e.g. "SDR 0.41 dB higher than l1 (95 % CI +0.12 to +0.70 dB, 8 songs)"."""
    if interval.songs == 0:
        return f"{what}: nothing to compare with {baseline} (no song scored by both)"
    ci = f"95 % CI {db(interval.low)} to {db(interval.high)} dB, {interval.songs} songs"
    if interval.verdict == NO_DIFFERENCE:
        why = "" if interval.low <= 0 <= interval.high else f"; within the scores' {RESOLUTION_DB:g} dB rounding"
        return f"{what}: no difference from {baseline} (mean {db(interval.mean)} dB, {ci}{why})"
    return f"{what}: {db(abs(interval.mean)).lstrip('+')} dB {interval.verdict} than {baseline} ({ci})"
