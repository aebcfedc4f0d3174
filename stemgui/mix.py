"""Mixing math for the lanes: gains, pan, DAW mute/solo semantics, click-free gain ramps, tempo and transpose.

Pure numpy (plus the Rubber Band stretcher of `stemgui.audio.stretch`), no Qt and no audio device, so the app's
player, its "mix as you hear it" export, `stemgui remix` and the tests all use the very same arithmetic. Lanes
are stacked as audio (lanes, channels, samples); output is stereo (2, samples). `render_mix` is the one offline
renderer: the app's export and `stemgui remix` both call it, so the same settings give the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

DEFAULT_RAMP_SECONDS = 0.005
"""Gain changes glide over 5 ms: long enough to avoid clicks, short enough to feel instant."""


@dataclass(frozen=True)
class LaneMix:
    """What the user set on one lane: linear volume, pan (-1 left .. +1 right), mute and solo."""

    gain: float = 1.0
    pan: float = 0.0
    mute: bool = False
    solo: bool = False

    def with_(self, **changes) -> "LaneMix":
        return replace(self, **changes)


def audible(lanes: Sequence[LaneMix]) -> list[bool]:
    """DAW semantics: if any lane is soloed only soloed lanes sound; a muted lane never sounds (mute wins)."""
    any_solo = any(lane.solo for lane in lanes)
    return [(not lane.mute) and (lane.solo or not any_solo) for lane in lanes]


def pan_gains(pan: float) -> tuple[float, float]:
    """Stereo balance: centre leaves both channels at unity, hard left silences the right channel and vice versa.

    A balance law (not constant power) because the lanes are already stereo: centre must reproduce the stem
    exactly so that all stems at unity sum back to the mix.
    """
    pan = float(np.clip(pan, -1.0, 1.0))
    return min(1.0, 1.0 - pan), min(1.0, 1.0 + pan)


def lane_gains(lanes: Sequence[LaneMix]) -> np.ndarray:
    """The (lanes, 2) matrix of left/right output gains, with mute/solo and pan applied."""
    gains = np.zeros((len(lanes), 2), dtype=np.float64)
    for i, (lane, sounds) in enumerate(zip(lanes, audible(lanes))):
        if sounds:
            left, right = pan_gains(lane.pan)
            gains[i] = (lane.gain * left, lane.gain * right)
    return gains


def as_stereo(audio: np.ndarray) -> np.ndarray:
    """(lanes, C, T) with C in (1, 2) -> (lanes, 2, T); mono is duplicated to both sides (a view when possible)."""
    if audio.shape[1] == 2:
        return audio
    if audio.shape[1] == 1:
        return np.broadcast_to(audio, (audio.shape[0], 2, audio.shape[2]))
    raise ValueError(f"expected 1 or 2 channels per lane, got {audio.shape[1]}")


def mix(audio: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Sum the lanes with constant gains: out[c, t] = sum_l gains[l, c] * audio[l, c, t]."""
    stereo = as_stereo(audio)
    out = np.einsum("lc,lct->ct", gains.astype(np.float32), stereo, dtype=np.float32, optimize=False)
    return np.ascontiguousarray(out, dtype=np.float32)


class GainRamp:
    """Per-lane, per-channel gains that move linearly to a new target over `ramp_samples` samples.

    The player calls `process` once per audio block from the audio thread; the GUI calls `set_target` from
    the GUI thread (a tuple swap, so no lock is needed). Sample n of a ramp that started at gain g0 towards g1
    has gain g0 + (g1 - g0) * min(n + 1, R) / R.
    """

    def __init__(self, n_lanes: int, ramp_samples: int, initial: np.ndarray | None = None):
        self.ramp_samples = max(1, int(ramp_samples))
        start = np.zeros((n_lanes, 2)) if initial is None else np.asarray(initial, dtype=np.float64)
        self._current = start.copy()
        self._start = start.copy()
        self._target = start.copy()
        self._done = self.ramp_samples  # samples elapsed in the current ramp
        self._pending: np.ndarray | None = None

    @property
    def current(self) -> np.ndarray:
        return self._current.copy()

    @property
    def target(self) -> np.ndarray:
        return (self._pending if self._pending is not None else self._target).copy()

    def set_target(self, gains: np.ndarray) -> None:
        """Ask for new gains; the audio thread picks them up at its next block."""
        self._pending = np.asarray(gains, dtype=np.float64).copy()

    def jump(self, gains: np.ndarray) -> None:
        """Set gains at once (before playback starts, where no click can be heard)."""
        gains = np.asarray(gains, dtype=np.float64)
        self._pending = None
        self._current = gains.copy()
        self._start = gains.copy()
        self._target = gains.copy()
        self._done = self.ramp_samples

    def gain_curve(self, n: int) -> np.ndarray:
        """The (lanes, 2, n) gains for the next n samples, advancing the ramp state."""
        pending = self._pending
        if pending is not None:
            self._pending = None
            self._start = self._current.copy()
            self._target = pending
            self._done = 0
        steps = np.minimum(np.arange(self._done + 1, self._done + n + 1), self.ramp_samples)
        frac = (steps / self.ramp_samples)[None, None, :]
        curve = self._start[:, :, None] + (self._target - self._start)[:, :, None] * frac
        self._done = min(self.ramp_samples, self._done + n)
        if n:
            self._current = curve[:, :, -1].copy()
        return curve

    def process(self, audio: np.ndarray) -> np.ndarray:
        """Mix one block (lanes, C, n) to (2, n) with the ramped gains."""
        n = audio.shape[2]
        if self._pending is None and self._done >= self.ramp_samples:
            return mix(audio, self._target) if n else np.zeros((2, 0), np.float32)
        curve = self.gain_curve(n).astype(np.float32)
        return (curve * as_stereo(audio)).sum(axis=0, dtype=np.float32)


def mix_as_heard(audio: np.ndarray, lanes: Sequence[LaneMix], start: int = 0, end: int | None = None) -> np.ndarray:
    """The stereo mix the listener hears with these lane settings, for samples [start, end)."""
    if len(lanes) != audio.shape[0]:
        raise ValueError(f"{len(lanes)} lane settings for {audio.shape[0]} lanes")
    return mix(audio[:, :, start:end], lane_gains(lanes))


PRESETS: dict[str, str] = {
    "All": "every stem",
    "Karaoke": "everything but the vocals",
    "Acapella": "the vocals only",
    "Drumless": "everything but the drums",
    "Bassless": "everything but the bass",
}
"""One-click mixes; the value is the tool tip."""


PRESET_ALIASES = {name.lower(): name for name in PRESETS}
"""Command-line spellings (`--preset karaoke`) of the presets."""


def apply_preset(preset: str, names: Sequence[str], lanes: Sequence[LaneMix], mix_name: str = "mix") -> list[LaneMix]:
    """Lane settings for a preset: clears solos, mutes the original mix and the excluded stems, keeps volumes."""
    excluded = {"All": set(), "Karaoke": {"vocals"}, "Acapella": None, "Drumless": {"drums"}, "Bassless": {"bass"}}
    if preset not in excluded:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    out = []
    for name, lane in zip(names, lanes):
        if name == mix_name:
            mute = True
        elif preset == "Acapella":
            mute = name != "vocals"
        else:
            mute = name in excluded[preset]
        out.append(lane.with_(mute=mute, solo=False))
    return out


@dataclass(frozen=True)
class Playback:
    """Tempo (1.0 = the song's speed, 0.5-1.5) and transpose (semitones, cents) applied to the whole mix."""

    tempo: float = 1.0
    semitones: float = 0.0  # may carry cents: -2.25 = two semitones and 25 cents down

    @property
    def is_identity(self) -> bool:
        return abs(self.tempo - 1.0) < 1e-9 and abs(self.semitones) < 1e-9

    def checked(self) -> "Playback":
        if not (MIN_TEMPO - 1e-9 <= self.tempo <= MAX_TEMPO + 1e-9):
            raise ValueError(f"tempo {self.tempo:g} is outside {MIN_TEMPO:g}-{MAX_TEMPO:g} (1 = the song's speed)")
        if abs(self.semitones) > MAX_SEMITONES + 1e-9:
            raise ValueError(f"transpose {self.semitones:g} is outside ±{MAX_SEMITONES} semitones")
        return self


MIN_TEMPO, MAX_TEMPO, MAX_SEMITONES = 0.5, 1.5, 12


def render_mix(audio: np.ndarray, lanes: Sequence[LaneMix], samplerate: int, playback: Playback | None = None,
               region: tuple[int, int] | None = None, progress=None, cancel=None) -> np.ndarray:
    """The stereo mix as heard, (2, samples), of audio (lanes, C, T) [region], with tempo and transpose applied.

    Without tempo or transpose this is exactly `mix_as_heard`. Otherwise the mix is rendered block by block
    through the same streaming Rubber Band stretcher the live player uses (the mix is stretched, not each lane:
    one stretcher whatever the number of lanes), and the result is 1/tempo as long as the region.
    """
    if len(lanes) != audio.shape[0]:
        raise ValueError(f"{len(lanes)} lane settings for {audio.shape[0]} lanes")
    start, end = region if region is not None else (0, audio.shape[2])
    gains = lane_gains(lanes)
    playback = (playback or Playback()).checked()
    if playback.is_identity:
        return mix(audio[:, :, start:end], gains)
    from stemgui.audio.stretch import Stretcher

    stretcher = Stretcher(samplerate, 2, tempo=playback.tempo, semitones=playback.semitones)
    block = 1 << 15
    pieces = []

    def source(a: int, b: int) -> np.ndarray:
        return mix(audio[:, :, start + a:start + b], gains)

    for a in range(0, end - start, block):
        if cancel is not None and cancel():
            from stemgui.errors import Cancelled

            raise Cancelled("Rendering the mix was cancelled.")
        b = min(end - start, a + block)
        pieces.append(stretcher.feed(source(a, b), final=b >= end - start))
        if progress is not None:
            progress(b / max(1, end - start))
    if end <= start:
        pieces.append(stretcher.feed(np.zeros((2, 0), np.float32), final=True))
    out = np.concatenate(pieces, axis=1) if pieces else np.zeros((2, 0), np.float32)
    expected = int(round((end - start) / playback.tempo))
    if out.shape[1] < expected:
        out = np.pad(out, ((0, 0), (0, expected - out.shape[1])))
    return np.ascontiguousarray(out[:, :expected], dtype=np.float32)
