"""Tempo and pitch changes with Rubber Band (through `pylibrb`), streaming, for the live player and the export.

`Stretcher` wraps one real-time `RubberBandStretcher`: the tempo (1.0 = the song's speed; 0.9 = 90 %, so 1/0.9
as long) and the transpose (semitones, fractional for cents) can change between any two blocks without a
reset, so a slider moved while playing glides instead of clicking. The player and `stemgui.mix.render_mix` use
the same class with the same options, so an export sounds as the playback did.

Why pylibrb and not pedalboard (both are Rubber Band; benchmarks/stretch_compare.py): pedalboard's
`time_stretch` takes a whole buffer per call and cannot be fed block by block with a ratio that changes
mid-stream, which live playback needs; pylibrb exposes the real-time stretcher itself (same library, same
quality: pedalboard's high-quality mode is the R3 engine too). Engine R3 ("finer") is far cleaner than R2
("faster") on a harmonic tone (harmonic-to-residual 52 vs 22 dB) at 2.7x the CPU (0.20 vs 0.074 s per second of
stereo audio on one core), but while a slider sweeps tempo and pitch every block R3's blocks reach 22 ms at the
99th percentile (49 ms at worst) against a 23 ms audio period, R2's 10 ms (13 ms worst). So the live player runs
R2 (`LIVE_ENGINE`: no dropouts on 2 cores) and exports render with R3 (`DEFAULT_ENGINE`), offline, where time
is no object. Either way the mix is stretched (one stereo stretcher), not every lane.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

ENGINES = ("finer", "faster")
DEFAULT_ENGINE = "finer"  # exports and `stemgui remix`
LIVE_ENGINE = "faster"  # the live player
MAX_PROCESS = 4096


def pitch_scale(semitones: float) -> float:
    """Frequency ratio of a transposition in semitones (cents as the fraction: 1.5 = a semitone and 50 cents)."""
    return float(2.0 ** (float(semitones) / 12.0))


def available() -> bool:
    """Whether the Rubber Band bindings can be imported."""
    try:
        import pylibrb  # noqa: F401
    except ImportError:
        return False
    return True


class Stretcher:
    """A streaming stereo (or any channel count) time-stretcher and pitch-shifter."""

    def __init__(self, samplerate: int, channels: int = 2, tempo: float = 1.0, semitones: float = 0.0,
                 engine: str = DEFAULT_ENGINE, realtime: bool = True):
        import pylibrb

        if engine not in ENGINES:
            raise ValueError(f"unknown Rubber Band engine {engine!r}; choose one of {', '.join(ENGINES)}")
        opt = pylibrb.Option
        options = (opt.PROCESS_REALTIME | (opt.ENGINE_FINER if engine == "finer" else opt.ENGINE_FASTER)
                   | opt.THREADING_NEVER | opt.PitchHighConsistency)  # consistent: pitch may change while playing
        self.samplerate = int(samplerate)
        self.channels = int(channels)
        self.engine = engine
        self._rb = pylibrb.RubberBandStretcher(self.samplerate, self.channels, options, 1.0 / float(tempo),
                                               pitch_scale(semitones))
        self._rb.set_max_process_size(MAX_PROCESS)
        self._tempo = float(tempo)
        self._semitones = float(semitones)
        self._discard = 0
        self.prime(None)

    # ---- settings (between blocks, no reset) -------------------------------------------------------------
    @property
    def tempo(self) -> float:
        return self._tempo

    @tempo.setter
    def tempo(self, value: float) -> None:
        value = float(value)
        if value != self._tempo:
            self._tempo = value
            self._rb.time_ratio = 1.0 / value

    @property
    def semitones(self) -> float:
        return self._semitones

    @semitones.setter
    def semitones(self, value: float) -> None:
        value = float(value)
        if value != self._semitones:
            self._semitones = value
            self._rb.pitch_scale = pitch_scale(value)

    @property
    def latency(self) -> int:
        """Output samples between feeding a sample and hearing it (the stretcher's own start delay)."""
        return int(self._rb.get_start_delay())

    # ---- streaming ---------------------------------------------------------------------------------------
    def prime(self, history: np.ndarray | None) -> None:
        """Start afresh so that the next sample fed is the first one output (after the stretcher's delay).

        `history`: the audio just before that sample (channels, n); its tail fills the stretcher's start pad,
        so a stretch that begins mid-song starts on real signal instead of fading in from silence.
        """
        self._rb.reset()
        pad = int(self._rb.get_preferred_start_pad())
        block = np.zeros((self.channels, pad), np.float32)
        if history is not None and history.shape[1] and pad:
            tail = history[:, -pad:]
            block[:, pad - tail.shape[1]:] = tail
        if pad:
            self._feed_raw(block)
        self._discard = int(self._rb.get_start_delay())

    def _feed_raw(self, x: np.ndarray, final: bool = False) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        for a in range(0, max(1, x.shape[1]), MAX_PROCESS):
            piece = x[:, a:a + MAX_PROCESS]
            self._rb.process(piece, final=final and a + MAX_PROCESS >= x.shape[1])

    def _retrieve(self) -> np.ndarray:
        n = self._rb.available()
        if n <= 0:
            return np.zeros((self.channels, 0), np.float32)
        out = self._rb.retrieve(n)
        if self._discard:
            cut = min(self._discard, out.shape[1])
            self._discard -= cut
            out = out[:, cut:]
        return out

    def feed(self, x: np.ndarray, final: bool = False) -> np.ndarray:
        """Feed input (channels, n) and return whatever output is ready (channels, m); `final` flushes the tail."""
        self._feed_raw(x, final)
        pieces = [self._retrieve()]
        if final:
            while True:
                more = self._retrieve()
                if not more.shape[1]:
                    break
                pieces.append(more)
        return np.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0]

    def pull(self, frames: int, source: Callable[[int], np.ndarray],
             buffer: list[np.ndarray]) -> tuple[np.ndarray, int]:
        """(`frames` output samples, how many of them are real output), feeding `source(n) -> (channels, <= n)`.

        `buffer` keeps output made beyond `frames` for the next call. A source that returns nothing (waiting,
        or the end of the song) leaves the rest of the block silent.
        """
        have = sum(b.shape[1] for b in buffer)
        while have < frames:
            need = max(256, min(MAX_PROCESS, int(self._rb.get_samples_required()) or 256))
            x = source(need)
            if x.shape[1] == 0:
                break
            got = self.feed(x)
            if got.shape[1]:
                buffer.append(got)
                have += got.shape[1]
        out = np.zeros((self.channels, frames), np.float32)
        filled = 0
        while buffer and filled < frames:
            b = buffer[0]
            n = min(frames - filled, b.shape[1])
            out[:, filled:filled + n] = b[:, :n]
            filled += n
            if n == b.shape[1]:
                buffer.pop(0)
            else:
                buffer[0] = b[:, n:]
        return out, filled
