"""Statistics of a listening test: post-screening, means with 95 % confidence intervals, correlations.

Follows ITU-R BS.1534-3: listeners who rate the hidden reference below 90 in more than 15 % of the trials are
excluded before any statistic (§4.1.2, post-screening); each condition's mean is over all remaining ratings
(listeners x trials) with a Student-t confidence interval mean ± t(0.975, n-1)·s/√n. Subjective scores are set
beside BSSEval's SDR/SIR/SAR of the same excerpts, and the agreement of the two is measured per (trial, system)
with Pearson's r and Spearman's ρ.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import scipy.stats

from stemgui.listening.manifest import HIDDEN_REFERENCE, Manifest
from stemgui.listening.store import Rating

SCREEN_THRESHOLD = 90.0
SCREEN_MAX_FRACTION = 0.15
CONFIDENCE = 0.95
ALL_STEMS = "all"
OBJECTIVE = ("SDR", "SIR", "SAR")


@dataclass(frozen=True)
class Observation:
    """One rating joined with what it rated."""

    listener: str
    trial: str
    song: str
    stem: str
    condition: str
    kind: str
    label: str
    rating: float
    objective: dict | None


def observations(ratings: list[Rating], manifest: Manifest) -> list[Observation]:
    out = []
    for r in ratings:
        trial = manifest.trial(r.trial)
        cond = trial.condition(r.condition)
        out.append(Observation(r.listener, r.trial, trial.song, trial.stem, r.condition, cond.kind, cond.label,
                               float(r.rating), cond.objective))
    return out


@dataclass
class Screening:
    """Post-screening: per listener the fraction of trials with the hidden reference rated below threshold."""

    fractions: dict[str, float | None]
    excluded: list[str]
    threshold: float = SCREEN_THRESHOLD
    max_fraction: float = SCREEN_MAX_FRACTION

    @property
    def kept(self) -> list[str]:
        return [name for name in self.fractions if name not in self.excluded]


def post_screen(obs: list[Observation], threshold: float = SCREEN_THRESHOLD,
                max_fraction: float = SCREEN_MAX_FRACTION) -> Screening:
    """Exclude a listener whose hidden-reference rating is < `threshold` in more than `max_fraction` of the
    trials that had one. Listeners who rated no hidden reference are kept (fraction None)."""
    low: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    names: list[str] = []
    for o in obs:
        if o.listener not in names:
            names.append(o.listener)
        if o.condition == HIDDEN_REFERENCE:
            total[o.listener] += 1
            low[o.listener] += o.rating < threshold
    fractions = {n: (low[n] / total[n] if total[n] else None) for n in names}
    excluded = [n for n, f in fractions.items() if f is not None and f > max_fraction]
    return Screening(fractions, excluded, threshold, max_fraction)


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    std: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def mean_ci(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval; NaN bounds for fewer than two values."""
    x = np.asarray(list(values), dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, math.nan)
    std = float(x.std(ddof=1))
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2.0, n - 1)) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, std)


@dataclass
class ConditionRow:
    """One line of the summary: a condition (system, hidden reference, anchor) on one stem or all of them."""

    stem: str
    condition: str
    kind: str
    label: str
    interval: Interval
    objective: dict[str, float | None] = field(default_factory=dict)


def _order_key(kind: str, label: str) -> tuple:
    return ({"reference": 0, "system": 1, "anchor": 2}.get(kind, 3), label)


def summarize(obs: list[Observation], kept: list[str], stems: list[str]) -> list[ConditionRow]:
    """Mean and CI per condition over all stems, then per stem, on the kept listeners' ratings; systems get
    the mean of their per-excerpt objective scores over the same trials."""
    kept_set = set(kept)
    use = [o for o in obs if o.listener in kept_set]
    rows: list[ConditionRow] = []
    groups = [ALL_STEMS] + (list(stems) if len(stems) > 1 else [])
    for group in groups:
        by_cond: dict[str, list[Observation]] = defaultdict(list)
        for o in use:
            if group == ALL_STEMS or o.stem == group:
                by_cond[o.condition].append(o)
        for cid, items in sorted(by_cond.items(), key=lambda kv: _order_key(kv[1][0].kind, kv[1][0].label)):
            objective: dict[str, float | None] = {}
            if items[0].kind == "system":
                per_trial = {o.trial: o.objective for o in items if o.objective}
                for metric in OBJECTIVE:
                    vals = [v[metric] for v in per_trial.values() if v.get(metric) is not None]
                    objective[metric] = float(np.mean(vals)) if vals else None
            rows.append(ConditionRow(group, cid, items[0].kind, items[0].label, mean_ci(o.rating for o in items),
                                     objective))
    return rows


@dataclass(frozen=True)
class Correlation:
    metric: str
    n: int
    pearson: float | None
    pearson_p: float | None
    spearman: float | None
    spearman_p: float | None


def correlations(obs: list[Observation], kept: list[str]) -> list[Correlation]:
    """Subjective vs objective per (trial, system): the kept listeners' mean rating against the excerpt's
    SDR/SIR/SAR. None where fewer than three pairs exist or one side is constant."""
    kept_set = set(kept)
    ratings: dict[tuple[str, str], list[float]] = defaultdict(list)
    objective: dict[tuple[str, str], dict] = {}
    for o in obs:
        if o.kind == "system" and o.listener in kept_set and o.objective:
            ratings[(o.trial, o.condition)].append(o.rating)
            objective[(o.trial, o.condition)] = o.objective
    out = []
    for metric in OBJECTIVE:
        pairs = [(float(np.mean(r)), objective[k][metric]) for k, r in ratings.items()
                 if objective[k].get(metric) is not None]
        n = len(pairs)
        if n < 3:
            out.append(Correlation(metric, n, None, None, None, None))
            continue
        subj, obj = np.array(pairs).T
        if np.ptp(subj) == 0 or np.ptp(obj) == 0:
            out.append(Correlation(metric, n, None, None, None, None))
            continue
        pr = scipy.stats.pearsonr(subj, obj)
        sr = scipy.stats.spearmanr(subj, obj)
        out.append(Correlation(metric, n, float(pr.statistic), float(pr.pvalue), float(sr.statistic),
                               float(sr.pvalue)))
    return out


@dataclass
class ListenerRow:
    listener: str
    trials: int
    excluded: bool
    reference_below: float | None
    means: dict[str, float]


def listener_table(obs: list[Observation], screening: Screening) -> list[ListenerRow]:
    """Per listener: trials rated, post-screening outcome and their mean rating of each condition."""
    by_listener: dict[str, list[Observation]] = defaultdict(list)
    for o in obs:
        by_listener[o.listener].append(o)
    rows = []
    for name, items in by_listener.items():
        per_cond: dict[str, list[float]] = defaultdict(list)
        for o in items:
            per_cond[o.label].append(o.rating)
        rows.append(ListenerRow(name, len({o.trial for o in items}), name in screening.excluded,
                                screening.fractions.get(name), {k: float(np.mean(v)) for k, v in per_cond.items()}))
    return rows
