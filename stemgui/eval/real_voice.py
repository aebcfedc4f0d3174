"""The real-voice check: real singing over real karaoke accompaniment (MIR-1K's held-out singers).

Why: the synthetic test set shares its generator with the training data, so a model can score well there and
still fail on produced songs. MIR-1K clips of singers no training song uses (stemgui.data.mir1k) are a
two-stem check: the model's vocals stem against the voice, and the sum of its other stems against the
accompaniment. Scores are NSDR per clip (uSDR of the estimate minus uSDR of the mixture taken as the
estimate, stemgui.eval.metrics.nsdr) and their length-weighted mean, GNSDR, as in the MIR-1K literature
(where SDR is BSSEval's whole-clip SDR; here it is the plain SNR form, uSDR, like the MDX challenge).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stemgui.errors import ModelError
from stemgui.eval.metrics import gnsdr, nsdr, usdr

log = logging.getLogger(__name__)

REAL_VOICE_STEMS = ("vocals", "accompaniment")

SeparateFn = Callable[[np.ndarray], np.ndarray]
"""(channels, samples) mixture at the model's rate -> (sources, channels, samples) stems."""


@dataclass
class RealVoiceResult:
    """Per-clip NSDR and the GNSDR of both stems."""

    clips: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # samples at the model's rate
    nsdr: list[list[float]] = field(default_factory=list)  # clips x (vocals, accompaniment)
    sdr: list[list[float]] = field(default_factory=list)  # uSDR of the estimates, clips x 2
    samplerate: int = 44100

    def gnsdr(self) -> dict[str, float]:
        values = gnsdr(np.asarray(self.nsdr, dtype=np.float64), np.asarray(self.lengths, dtype=np.float64))
        return {name: round(float(v), 3) for name, v in zip(REAL_VOICE_STEMS, values)}

    def summary(self) -> dict:
        """What a log line and a card carry: GNSDR per stem, mean uSDR, clip count and seconds."""
        sdr = np.asarray(self.sdr, dtype=np.float64)
        return {
            "gnsdr": self.gnsdr(),
            "usdr_mean": {name: round(float(np.nanmean(sdr[:, i])), 3) for i, name in enumerate(REAL_VOICE_STEMS)},
            "clips": len(self.clips),
            "seconds": round(sum(self.lengths) / self.samplerate, 1),
        }


def has_vocals(sources: Sequence[str]) -> bool:
    return "vocals" in sources


def two_stem_estimate(stems: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """(vocals, accompaniment) from a model's stems: accompaniment is the sum of every non-vocal stem."""
    sources = list(sources)
    if "vocals" not in sources:
        raise ModelError(f"the model has no vocals stem (it has {', '.join(sources)}): no real-voice check")
    if "accompaniment" in sources:
        return np.stack([stems[sources.index("vocals")], stems[sources.index("accompaniment")]])
    rest = [i for i, name in enumerate(sources) if name != "vocals"]
    accompaniment = stems[rest].sum(axis=0) if rest else np.zeros_like(stems[0])
    return np.stack([stems[sources.index("vocals")], accompaniment])


def evaluate_real_voice(separate: SeparateFn, sources: Sequence[str], clips: Sequence[Path],
                        samplerate: int = 44100, channels: int = 2,
                        progress: Callable[[int, int], None] | None = None) -> RealVoiceResult:
    """Separate every clip's mixture with `separate` and score (vocals, accompaniment)."""
    from stemgui.data.mir1k import read_two_stem

    result = RealVoiceResult(samplerate=samplerate)
    for k, path in enumerate(clips):
        refs = read_two_stem(Path(path), samplerate, channels)
        mix = refs.sum(axis=0)
        stems = np.asarray(separate(mix), dtype=np.float32)[..., : mix.shape[-1]]
        if stems.shape[-1] < mix.shape[-1]:
            stems = np.pad(stems, [(0, 0), (0, 0), (0, mix.shape[-1] - stems.shape[-1])])
        est = two_stem_estimate(stems, sources)
        result.clips.append(Path(path).name)
        result.lengths.append(int(mix.shape[-1]))
        result.nsdr.append([round(float(v), 4) for v in nsdr(refs, est, mix)])
        result.sdr.append([round(float(v), 4) for v in usdr(refs, est)])
        if progress:
            progress(k + 1, len(clips))
    return result


def evaluate_separator(separator, clips: Sequence[Path], progress=None) -> RealVoiceResult:
    """The check for a stemgui.separate.Separator (any model or bag with a vocals stem)."""
    if not has_vocals(separator.sources):
        raise ModelError(f"{separator.name}: model has no vocals stem (it has {', '.join(separator.sources)})")
    return evaluate_real_voice(lambda mix: separator.separate(mix), separator.sources, clips,
                               separator.samplerate, separator.audio_channels, progress)


def clips_from(root: str | os.PathLike | None, limit: int = 0) -> list[Path]:
    from stemgui.data.mir1k import real_voice_clips

    return real_voice_clips(root, limit)


def per_clip_rows(result: RealVoiceResult) -> list[dict]:
    """One JSON-able row per clip (for the evaluate output folder)."""
    return [{"clip": c, "samples": n, "nsdr": dict(zip(REAL_VOICE_STEMS, v)), "usdr": dict(zip(REAL_VOICE_STEMS, s))}
            for c, n, v, s in zip(result.clips, result.lengths, result.nsdr, result.sdr)]
