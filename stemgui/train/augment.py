"""Demucs-style data augmentation: remix across songs, time shift, channel swap, sign flip, random gain; and
DRNN's circular shift of the voice against the accompaniment; loud-source and solo-source segments.

Everything is drawn from a numpy Generator that the dataset seeds from (seed, sample index), so a training
sample is a pure function of its index: resume and DDP see exactly the same data without saving loader state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stemgui.train.config import AugmentConfig


def plan_segment(rng: np.random.Generator, track_frames: Sequence[int], n_sources: int, frames: int,
                 shift: int, remix: bool) -> list[tuple[int, int]]:
    """(track index, start frame at model rate) for each source.

    Without remix every source comes from one track at one offset (plus its own shift); with remix each source
    picks its own track, which creates new mixtures the model has never heard. `frames` is the segment length
    and `shift` the maximum extra delay drawn per source, both at the model rate.
    """
    def pick_track() -> int:
        return int(rng.integers(len(track_frames)))

    def pick_start(track: int) -> int:
        room = track_frames[track] - frames - shift
        return int(rng.integers(0, room + 1)) if room > 0 else 0

    plan = []
    if remix:
        for _ in range(n_sources):
            track = pick_track()
            plan.append((track, pick_start(track)))
    else:
        track = pick_track()
        start = pick_start(track)
        plan = [(track, start)] * n_sources
    if shift > 0:
        plan = [(track, start + int(rng.integers(0, shift + 1))) for track, start in plan]
    return plan


def augment_stems(stems: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Per-source channel swap, sign flip and gain on float32 (sources, channels, time), in place."""
    sources, channels, _ = stems.shape
    for s in range(sources):
        if cfg.channel_swap and channels == 2 and rng.random() < 0.5:
            stems[s] = stems[s, ::-1].copy()
        if cfg.sign_flip and rng.random() < 0.5:
            stems[s] *= -1.0
        if cfg.gain:
            stems[s] *= np.float32(rng.uniform(cfg.gain_min, cfg.gain_max))
    return stems


def boost_source(stems: np.ndarray, rng: np.random.Generator, sources: Sequence[str], cfg: AugmentConfig) -> np.ndarray:
    """In `cfg.boost_share` of the segments, `cfg.boost_source` up by 0..boost_db dB, in place.

    Mixes where one source dominates teach the other estimates to reject it: the bundled model's vocals keep
    faint drum hits (issue 16), and loud-drum mixes are where those hits are loudest against the voice.
    """
    if cfg.boost_share > 0 and cfg.boost_source in sources and rng.random() < cfg.boost_share:
        stems[list(sources).index(cfg.boost_source)] *= np.float32(10 ** (rng.uniform(0, cfg.boost_db) / 20))
    return stems


def solo_sources(stems: np.ndarray, rng: np.random.Generator, sources: Sequence[str], cfg: AugmentConfig) -> np.ndarray:
    """In `cfg.solo_share` of the segments, every source but `cfg.solo_keep` silenced, in place.

    A mix of the drums alone, with silent targets for the rest, says in so many words that drum hits are not
    voice: the bundled model's vocals keep faint drum hits (issue 16), on real songs most audibly between the
    phrases, where the drums play without a voice. Data without any of those sources (the two-stem real
    singing beside a four-stem model) is left alone, and nothing is drawn for it.
    """
    keep = set(cfg.solo_keep)
    if cfg.solo_share > 0 and keep & set(sources) and rng.random() < cfg.solo_share:
        for s, name in enumerate(sources):
            if name not in keep:
                stems[s] = 0.0
    return stems


def circular_shift(stems: np.ndarray, rng: np.random.Generator, sources: Sequence[str],
                   voice: str = "vocals") -> np.ndarray:
    """Rotate the voice (the `voice` source, else every source after the first) by a random offset within the
    segment, in place: new voice/accompaniment pairings from the same segment (Huang et al. 2014)."""
    frames = stems.shape[-1]
    targets = [list(sources).index(voice)] if voice in sources else list(range(1, stems.shape[0]))
    for s in targets:
        stems[s] = np.roll(stems[s], int(rng.integers(frames)), axis=-1)
    return stems
