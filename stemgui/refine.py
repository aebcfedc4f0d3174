"""Mixture refinement: the song's own spectrogram shared out by the model's stems (a post-filter).

A waveform model's stems do not sum to the song, and each keeps faint traces of the others (drum hits between
the phrases of a vocals stem). Refinement takes the short-time Fourier transform of the song, X, and of every
stem estimate, S_j, and gives stem j the part M_j·X of each time-frequency bin, with masks that sum to one:

- ``ratio``:  M_j = |S_j| / Σ_k |S_k|          (magnitude shares; the stems sum to the song)
- ``wiener``: M_j = |S_j|² / Σ_k |S_k|²        (single-channel Wiener filter: a weak trace in a bin that another
  stem owns is pushed down quadratically)
- ``vocals``: the voice against the accompaniment by the Wiener rule, M_v = |S_v|² / (|S_v|² + B²) with
  B = Σ_{k≠v} |S_k| (the instruments' magnitudes added: no cancellation between their estimates can hand a bin to
  the voice) plus, in the treble, the part of the song that no stem explains (see ``vocals-strict``), fading in
  from 2 to 4 kHz; the rest, 1 - M_v, shared among the instruments by magnitude. Cleans the vocals stem the most
  (karaoke) and keeps the instruments' own balance. On the bundled model it scored best of the four on real
  singing and on the vocals stem's interference (a complex sum for the accompaniment did slightly worse on both).
  Why the treble term: a model that explains little of the top octave (the bundled one: its vocals carry 0.04 dB
  uSDR above 4 kHz on synthetic songs) leaves the masks to share it by ratios of small numbers, which on an
  instrumental handed the vocals stem the hi-hats (-7.2 dB of the song's treble, against -28.8 with the term), for
  no measurable loss on the sung tests (synthetic vocals uSDR 3.15 with it against 3.16 without).
- ``vocals-strict``: as ``vocals``, but the part of the song that no stem explains, max(|X| - Σ_k |S_k|, 0), counts
  as accompaniment: the voice gets only what its own estimate claims. The cleanest vocals stem (drum hits between
  phrases gone, no treble of the instruments), at a cost in fullness: lower SDR than ``vocals``.

Which helps is measured per model (`stemgui evaluate --refine`); a model card may recommend one
(`separation.refine`), which the "auto" setting follows. Refinement streams: `StreamingRefiner` takes the
engine's finished regions in time order and returns refined regions a fraction of a second behind, exactly
what a whole-song transform would give (frames as torch.stft's center=True with zero padding).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from stemgui.errors import StemGUIError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads REFINE_CHOICES without it
    import torch

log = logging.getLogger(__name__)

REFINE_MODES = ("off", "ratio", "wiener", "vocals", "vocals-strict")
"""What `refine` accepts besides "auto" (the model card's recommendation, else off)."""
REFINE_CHOICES = ("auto",) + REFINE_MODES
RULES_VERSION = 2
"""Raised whenever a mode's rule changes (2: the treble term of `vocals`): part of the app's stem cache key and of
separation.json, so stems cached under an older rule are not served as this one's."""
TREBLE_HZ = (2000.0, 4000.0)
"""`vocals` counts the unexplained part of the song as accompaniment from the first frequency on, fully from the
second (linear in log-frequency between): measured on the bundled model (its card's metrics.refine)."""
DEFAULT_NFFT = 8192
"""Transform size at 44.1 kHz (186 ms; hop a quarter of it): chosen by measurement (see the bundled card)."""
MAX_FRAMES = 64  # frames transformed at once (bounds the memory of a long region)
_EPS = 1e-10  # added to every weight: where all stems are silent the song is shared equally, never lost


def resolve_mode(requested: str, card: dict | None, sources: Sequence[str]) -> str:
    """The mode that runs: `requested`, or with "auto" the card's `separation.refine` (else "off").

    Raises StemGUIError for an unknown mode or a vocals mode on a model without a vocals stem.
    """
    if requested not in REFINE_CHOICES:
        raise StemGUIError(f"refine must be one of {', '.join(REFINE_CHOICES)}, got {requested!r}")
    mode = requested
    if mode == "auto":
        mode = str(((card or {}).get("separation") or {}).get("refine") or "off")
        if mode not in REFINE_MODES:
            log.warning("model card recommends an unknown refinement %r; running without", mode)
            mode = "off"
    if mode.startswith("vocals") and "vocals" not in sources:
        if requested == "auto":  # a card's advice that does not fit its own stems: ignored
            return "off"
        raise StemGUIError(f"refine '{mode}' needs a vocals stem; the model has {', '.join(sources)}")
    if mode != "off" and len(sources) < 2:
        mode = "off"  # one stem: it is the song's only owner, nothing to share
    return mode


def treble_weight(nfft: int, samplerate: int) -> torch.Tensor:
    """(nfft // 2 + 1,) share of the unexplained part that `vocals` counts as accompaniment, per frequency bin."""
    import torch

    freqs = torch.fft.rfftfreq(nfft, 1.0 / samplerate)
    low, high = TREBLE_HZ
    return ((freqs.clamp_min(1.0).log2() - np.log2(low)) / (np.log2(high) - np.log2(low))).clamp(0.0, 1.0)


def masks(specs: torch.Tensor, mode: str, vocals: int | None = None,
          mix_spec: torch.Tensor | None = None, treble: torch.Tensor | None = None) -> torch.Tensor:
    """Masks (sources, ...) that sum to one over sources, from stem spectra `specs` (sources, ...) complex.

    The vocals modes also need the song's spectrum `mix_spec` (...), and `vocals` the `treble_weight` shaped to
    broadcast against it (its frequency axis where the spectra have theirs).
    """
    import torch

    if mode == "ratio":
        weight = specs.abs() + _EPS
        return weight / weight.sum(dim=0)
    if mode == "wiener":
        weight = specs.abs().square() + _EPS
        return weight / weight.sum(dim=0)
    if mode in ("vocals", "vocals-strict"):
        if vocals is None:
            raise StemGUIError(f"refine '{mode}' needs a vocals stem")
        if mix_spec is None or (mode == "vocals" and treble is None):
            needs = "the song's spectrum and the treble weight" if mode == "vocals" else "the song's spectrum"
            raise StemGUIError(f"refine '{mode}' needs {needs}")
        rest = [k for k in range(specs.shape[0]) if k != vocals]
        mags = specs.abs()
        voice = mags[vocals].square() + _EPS
        unexplained = (mix_spec.abs() - mags.sum(dim=0)).clamp_min(0.0)  # what no stem explains
        backing = mags[rest].sum(dim=0) + (unexplained if mode == "vocals-strict" else treble * unexplained)
        backing = backing.square() + _EPS
        share = voice / (voice + backing)
        out = torch.empty(mags.shape, dtype=mags.dtype, device=mags.device)
        out[vocals] = share
        weight = mags[rest] + _EPS
        out[rest] = (1.0 - share) * weight / weight.sum(dim=0)
        return out
    raise StemGUIError(f"unknown refinement {mode!r}")


class StreamingRefiner:
    """Refines (sources, channels, n) regions of stems, given in time order with the song's matching region.

    `push` returns the regions that are final so far as (start, end, stems); `finish` returns the rest. The
    output lags the input by at most `nfft` samples. Frame t covers song samples [t·hop - nfft/2, t·hop +
    nfft/2) with zeros outside the song; `length` (the whole song's) fixes the last frame, as torch.stft's
    center=True does, so a streamed result equals the whole-song one.
    """

    def __init__(self, mode: str, sources: Sequence[str], channels: int, length: int,
                 nfft: int = DEFAULT_NFFT, samplerate: int = 44100) -> None:
        import torch

        if mode not in REFINE_MODES or mode == "off":
            raise StemGUIError(f"no refinement to stream for mode {mode!r}")
        if nfft < 16 or nfft % 4:
            raise StemGUIError(f"refinement transform size must be a multiple of 4 (>= 16), got {nfft}")
        self.mode = mode
        self.vocals = list(sources).index("vocals") if "vocals" in sources else None
        self.n_src = len(sources)
        self.channels = channels
        self.length = int(length)
        self.nfft = nfft
        self.hop = nfft // 4
        self.frames = self.length // self.hop + 1  # torch.stft(center=True)
        self.window = torch.hann_window(nfft)
        self.treble = treble_weight(nfft, samplerate)  # (F,): frequency is the spectra's last axis here
        half = nfft // 2
        # Input buffers from absolute sample `_in_start` (negative: the zero padding before the song).
        self._in_start = -half
        self._mix = torch.zeros(channels, half)
        self._stems = torch.zeros(self.n_src, channels, half)
        # Overlap-add accumulators from absolute sample `_out_start`.
        self._out_start = -half
        self._acc = torch.zeros(self.n_src, channels, 0)
        self._env = torch.zeros(0)
        self._next_frame = 0
        self._received = 0
        self._emitted = 0

    def push(self, stems: np.ndarray | torch.Tensor, mix: np.ndarray | torch.Tensor) -> list[tuple[int, int, np.ndarray]]:
        """Add the next region (its start is where the previous one ended); return what became final."""
        import torch

        stems = torch.as_tensor(np.asarray(stems, dtype=np.float32))
        mix = torch.as_tensor(np.asarray(mix, dtype=np.float32))
        n = stems.shape[-1]
        if stems.shape[:2] != (self.n_src, self.channels) or mix.shape != (self.channels, n):
            raise StemGUIError(f"refinement got stems {tuple(stems.shape)} and song {tuple(mix.shape)} that do not match")
        if self._received + n > self.length:
            raise StemGUIError(f"refinement got {self._received + n} samples of a {self.length}-sample song")
        self._received += n
        self._stems = torch.cat([self._stems, stems], dim=-1)
        self._mix = torch.cat([self._mix, mix], dim=-1)
        return self._advance(final=False)

    def finish(self) -> list[tuple[int, int, np.ndarray]]:
        """The remaining regions once the whole song has been pushed."""
        import torch

        if self._received != self.length:
            raise StemGUIError(f"refinement ended after {self._received} of {self.length} samples")
        pad = (self.frames - 1) * self.hop + self.nfft // 2 - (self._in_start + self._mix.shape[-1])
        if pad > 0:
            self._mix = torch.nn.functional.pad(self._mix, (0, pad))
            self._stems = torch.nn.functional.pad(self._stems, (0, pad))
        return self._advance(final=True)

    def _advance(self, final: bool) -> list[tuple[int, int, np.ndarray]]:
        half = self.nfft // 2
        available = self._in_start + self._mix.shape[-1]  # absolute end of the buffered input
        last = min(self.frames, (available - half) // self.hop + 1)  # frames whose input is all here
        out: list[tuple[int, int, np.ndarray]] = []
        while self._next_frame < last:
            count = min(MAX_FRAMES, last - self._next_frame)
            self._frames(self._next_frame, count)
            self._next_frame += count
            ready = self.length if self._next_frame >= self.frames else self._next_frame * self.hop - half
            ready = min(ready, self.length)
            if ready > self._emitted:
                out.append(self._emit(ready))
        if final and self._emitted < self.length:
            out.append(self._emit(self.length))
        return out

    def _frames(self, first: int, count: int) -> None:
        """Transform, mask and overlap-add frames first .. first+count-1."""
        import torch

        nfft, hop, half = self.nfft, self.hop, self.nfft // 2
        lo = first * hop - half - self._in_start
        span = (count - 1) * hop + nfft
        mix = self._mix[:, lo:lo + span].unfold(-1, nfft, hop) * self.window  # (C, T, N)
        stems = self._stems[..., lo:lo + span].unfold(-1, nfft, hop) * self.window  # (S, C, T, N)
        mix_spec = torch.fft.rfft(mix)  # (C, T, F)
        mask = masks(torch.fft.rfft(stems), self.mode, self.vocals, mix_spec, self.treble)  # (S, C, T, F)
        frames = torch.fft.irfft(mask * mix_spec, n=nfft) * self.window  # (S, C, T, N)
        start = first * hop - half  # absolute position of the first frame
        end = start + span
        need = end - self._out_start
        if need > self._acc.shape[-1]:
            grow = need - self._acc.shape[-1]
            self._acc = torch.nn.functional.pad(self._acc, (0, grow))
            self._env = torch.nn.functional.pad(self._env, (0, grow))
        base = start - self._out_start
        # overlap-add: with hop = nfft / 4, quarter q of frame t lands on hop-sized block t + q of the span
        quarters = frames.reshape(self.n_src, self.channels, count, 4, hop)
        added = torch.zeros(self.n_src, self.channels, count + 3, hop)
        env = torch.zeros(count + 3, hop)
        window_sq = self.window.square().reshape(4, hop)
        for q in range(4):
            added[:, :, q:q + count] += quarters[:, :, :, q]
            env[q:q + count] += window_sq[q]
        self._acc[..., base:base + span] += added.reshape(self.n_src, self.channels, span)
        self._env[base:base + span] += env.reshape(span)
        # input before the next frame's start is no longer needed
        drop = (first + count) * hop - half - self._in_start
        if drop > 0:
            self._mix = self._mix[:, drop:]
            self._stems = self._stems[..., drop:]
            self._in_start += drop

    def _emit(self, ready: int) -> tuple[int, int, np.ndarray]:
        lo, hi = self._emitted - self._out_start, ready - self._out_start
        region = (self._acc[..., lo:hi] / self._env[lo:hi]).numpy()
        start = self._emitted
        self._acc = self._acc[..., hi:]
        self._env = self._env[hi:]
        self._out_start = ready
        self._emitted = ready
        return start, ready, region


def refine_batch(stems: torch.Tensor, mix: torch.Tensor, mode: str, vocals: int | None,
                 nfft: int = DEFAULT_NFFT, samplerate: int = 44100) -> torch.Tensor:
    """Refinement of a training batch, differentiable: stems (batch, sources, channels, time) against the
    mixes (batch, channels, time), whole segments at once (what `refine` gives each one, to float rounding)."""
    import torch

    batch, n_src, channels, length = stems.shape
    window = torch.hann_window(nfft, device=stems.device, dtype=stems.dtype)

    def stft(x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x.reshape(-1, length), nfft, nfft // 4, window=window, center=True,
                          pad_mode="constant", return_complex=True)

    specs = stft(stems)
    freqs, frames = specs.shape[-2:]
    specs = specs.reshape(batch, n_src, channels, freqs, frames).transpose(0, 1)  # (S, B, C, F, N)
    mix_spec = stft(mix).reshape(batch, channels, freqs, frames)
    treble = treble_weight(nfft, samplerate).to(device=stems.device, dtype=stems.dtype)[:, None]  # (F, 1)
    shared = masks(specs, mode, vocals, mix_spec, treble) * mix_spec  # (S, B, C, F, N)
    out = torch.istft(shared.transpose(0, 1).reshape(-1, freqs, frames), nfft, nfft // 4, window=window,
                      center=True, length=length)
    return out.reshape(batch, n_src, channels, length)


def refine(stems: np.ndarray, mix: np.ndarray, mode: str, sources: Sequence[str],
           nfft: int = DEFAULT_NFFT, samplerate: int = 44100) -> np.ndarray:
    """Whole-song refinement of stems (sources, channels, samples) against the song (channels, samples)."""
    stems = np.asarray(stems, dtype=np.float32)
    if mode == "off":
        return stems
    refiner = StreamingRefiner(mode, sources, stems.shape[1], stems.shape[-1], nfft, samplerate)
    out = np.empty_like(stems)
    for start, end, region in refiner.push(stems, mix) + refiner.finish():
        out[..., start:end] = region
    return out
