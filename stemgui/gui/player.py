"""Live playback of the lanes through a sounddevice OutputStream callback.

Qt-free: the GUI polls `position`, `levels` and `state` from a timer. The callback mixes the lanes with the
current gains (ramped by `mix.GainRamp`, so mute/solo/volume changes never click), honours a loop region,
changes tempo and key through Rubber Band (`stemgui.audio.stretch`) while the playhead, loop and seek stay in
song time, switches A/B (original mix, a second model's separation) at a block edge with a crossfade, and
while a separation is still running it waits at the edge of the separated part instead of playing silence as
if it were music ("play while separating").
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Sequence

import numpy as np

from stemgui.audio.stretch import LIVE_ENGINE, Stretcher
from stemgui.audio.stretch import available as stretch_available
from stemgui.mix import (
    DEFAULT_RAMP_SECONDS,
    MAX_SEMITONES,
    MAX_TEMPO,
    MIN_TEMPO,
    GainRamp,
    LaneMix,
    Playback,
    as_stereo,
    lane_gains,
    mix,
)

log = logging.getLogger(__name__)
NO_DEVICE_MESSAGE = "No audio output device was found, so playback is disabled; everything else still works."
AHEAD_BLOCKS = 2
"""Blocks rendered ahead of the device by a feeder thread: the callback only copies one, so a GIL wait or a
slow stretcher block (up to ~2 periods) never makes the device run dry. Changes reach the ear that much later."""
MAX_AHEAD_BLOCKS = 12
"""After a dropout the queue doubles, up to this (280 ms at 1024/44.1 kHz: a loaded machine, a separation's
thread holding the GIL), and shrinks back by one block per RELAX_BLOCKS blocks played without one."""
RELAX_BLOCKS = 430  # ~10 s


def audio_output_status() -> tuple[bool, str]:
    """(True, device name) when PortAudio has a default output device, else (False, a sentence saying why)."""
    try:
        import sounddevice as sd
    except OSError:  # the PortAudio library itself is missing
        return False, "The PortAudio library is not installed, so playback is disabled; everything else still works."
    try:
        info = sd.query_devices(kind="output")
    except Exception as exc:  # noqa: BLE001 - PortAudioError or ValueError: no default output
        log.info("no default audio output device: %s", exc)
        return False, NO_DEVICE_MESSAGE
    return True, str(info.get("name", "default output"))


class Player:
    """Plays an (lanes, channels, samples) float32 array; lanes flagged `complete` never wait for separation.

    Tempo and transpose: the lanes are mixed first and the stereo mix goes through one streaming Rubber Band
    stretcher (`stemgui.audio.stretch`), so six lanes cost what one does. At tempo 1 and no transpose the
    stretcher is bypassed (bit-exact output); once engaged while playing it stays engaged until the next pause
    or seek, so going back to 100 % never jumps by the stretcher's latency. `position` is in song time (what is
    heard now), the read head runs ahead of it by the stretcher's latency.

    A/B: `set_original(True)` hears lane 0 (the original mix) alone, `set_alternate(audio)` holds a second
    separation of the same song (same lanes and length) and `use_alternate(True)` plays it with the same lane
    settings. Both switch at the next block with a `ramp_seconds` crossfade: instant and without a click.
    """

    def __init__(self, samplerate: int = 44100, blocksize: int = 1024, ramp_seconds: float = DEFAULT_RAMP_SECONDS,
                 engine: str = LIVE_ENGINE, ahead_blocks: int = AHEAD_BLOCKS):
        self.samplerate = int(samplerate)
        self.blocksize = int(blocksize)
        self.ahead_blocks = int(ahead_blocks)
        # the render-ahead queue between the feeder thread and the device callback (see _feed_loop)
        self._cond = threading.Condition()
        self._stream_lock = threading.Lock()  # open_stream may run on a helper thread (opening can block 100 ms)
        stretch_available()  # imports Rubber Band now, not inside the first song's load (8 ms on the GUI thread)
        self._queue: collections.deque = collections.deque()
        self._queue_generation = 0
        self._feeder: threading.Thread | None = None
        self._feeder_stop = False
        self._heard: int | None = None  # song position at the end of the block the device last took
        self.starved = 0  # blocks the device asked for while playing and none was ready
        self._flowing = False  # a block was played since the last flush (an empty queue now is a dropout)
        self._ahead = self.ahead_blocks  # the adaptive queue depth
        self._since_dropout = 0
        self.ramp_samples = max(1, int(round(ramp_seconds * samplerate)))
        self.engine = engine
        self._lock = threading.Lock()
        self._audio: np.ndarray | None = None
        self._alternate: np.ndarray | None = None
        self._use_alternate = False
        self._xfade_from: np.ndarray | None = None  # the source being crossfaded away from
        self._xfade_done = 0
        self._original = False
        self._complete = np.zeros(0, dtype=bool)
        self._lanes: list[LaneMix] = []
        self._ramp = GainRamp(0, self.ramp_samples)
        self._position = 0  # the read head (song samples fed to the output or the stretcher)
        self._available = 0
        self._playing = False
        self._stopping = False
        self._waiting = False
        self._loop: tuple[int, int] | None = None
        self.loop_enabled = False
        self.levels = np.zeros(0, dtype=np.float32)
        self.master_levels = np.zeros(2, dtype=np.float32)
        self.callback_count = 0
        self.frames_rendered = 0
        self.underruns = 0
        self.callback_seconds_max = 0.0
        self.callback_cpu_seconds = 0.0
        self._stream = None
        self._render_failed = False
        # tempo / transpose
        self._tempo = 1.0
        self._semitones = 0.0
        self._stretcher = None
        self._engaged = False
        self._reprime = False
        self._out_buffer: list[np.ndarray] = []
        self._lag = 0.0  # song samples fed to the stretcher and not yet heard
        self._tail = 0  # silent samples fed past the song's end to flush the stretcher
        self._peaks = np.zeros(0, dtype=np.float32)

    # ---- content -------------------------------------------------------------------------------------------
    def load(self, audio: np.ndarray, lanes: Sequence[LaneMix], complete: Sequence[bool] | None = None,
             available: int | None = None) -> None:
        """Swap in new lanes (stops playback, rewinds, no loop, no alternate). `available`: samples done."""
        with self._lock:
            self._audio = audio
            self._alternate = None
            self._use_alternate = False
            self._xfade_from = None
            n = audio.shape[0]
            self._complete = np.ones(n, bool) if complete is None else np.asarray(complete, dtype=bool)
            self._available = audio.shape[2] if available is None else int(available)
            self._lanes = list(lanes)
            self._ramp = GainRamp(n, self.ramp_samples, self._gains())
            self._position = 0
            self._playing = self._stopping = self._waiting = False
            self._engaged = False
            self._flush(0)
            self._loop = None
            self.loop_enabled = False
            self.levels = np.zeros(n, dtype=np.float32)
        self.prepare_stretcher()

    def prepare_stretcher(self) -> bool:
        """Build the stretcher now (outside the audio callback: building one allocates); False without Rubber Band."""
        if self._stretcher is None or self._stretcher.samplerate != self.samplerate:
            try:
                self._stretcher = Stretcher(self.samplerate, 2, self._tempo, self._semitones, engine=self.engine)
            except ImportError as exc:
                log.warning("Rubber Band (pylibrb) is not available, so tempo and transpose are off: %s", exc)
                return False
        return True

    def set_available(self, samples: int) -> None:
        """The separation has finished everything before `samples` (monotonic)."""
        self._available = max(self._available, int(samples))

    def mark_complete(self) -> None:
        """Every lane is final: never wait again."""
        self._complete[:] = True
        self._available = self.length

    @property
    def length(self) -> int:
        return 0 if self._audio is None else self._audio.shape[2]

    @property
    def available(self) -> int:
        return self._available

    @property
    def target_gains(self) -> np.ndarray:
        """(lanes, 2) gains the output is at or gliding to: what the lanes' settings sound like."""
        return self._ramp.target

    def _gains(self) -> np.ndarray:
        gains = lane_gains(self._lanes)
        if self._original and len(gains):
            gains = np.zeros_like(gains)
            gains[0] = 1.0
        return gains

    def _push_gains(self) -> None:
        if self._playing:
            self._ramp.set_target(self._gains())
        else:
            self._ramp.jump(self._gains())

    def set_lanes(self, lanes: Sequence[LaneMix]) -> None:
        """New lane settings; gains glide to them over the ramp while playing."""
        self._lanes = list(lanes)
        self._push_gains()

    # ---- A/B -----------------------------------------------------------------------------------------------
    @property
    def original(self) -> bool:
        return self._original

    def set_original(self, on: bool) -> None:
        """A/B against the song: True hears the original mix (lane 0) alone, False the lanes as set."""
        self._original = bool(on)
        self._push_gains()

    @property
    def alternate_loaded(self) -> bool:
        return self._alternate is not None

    @property
    def using_alternate(self) -> bool:
        return self._use_alternate and self._alternate is not None

    def set_alternate(self, audio: np.ndarray | None) -> None:
        """A second separation of the same song (same lanes, channels and length as the loaded audio), or None."""
        with self._lock:
            if audio is not None and (self._audio is None or audio.shape != self._audio.shape):
                raise ValueError(f"the comparison has shape {None if audio is None else audio.shape}, the song "
                                 f"{None if self._audio is None else self._audio.shape}")
            if audio is None and self._use_alternate:
                self._start_xfade(self._alternate)
            self._alternate = audio
            if audio is None:
                self._use_alternate = False

    def use_alternate(self, on: bool) -> None:
        """Switch between the two separations at the next block (crossfaded over the ramp)."""
        with self._lock:
            on = bool(on) and self._alternate is not None
            if on != self._use_alternate:
                self._start_xfade(self._source_audio())
                self._use_alternate = on

    def _start_xfade(self, old: np.ndarray | None) -> None:
        if self._playing and old is not None:
            self._xfade_from, self._xfade_done = old, 0

    @property
    def heard_audio(self) -> np.ndarray | None:
        """The lanes being played: the loaded audio, or the second separation while A/B is on it."""
        return self._source_audio()

    def _source_audio(self) -> np.ndarray | None:
        return self._alternate if (self._use_alternate and self._alternate is not None) else self._audio

    # ---- tempo and transpose ------------------------------------------------------------------------------
    @property
    def tempo(self) -> float:
        return self._tempo

    @property
    def semitones(self) -> float:
        return self._semitones

    def set_tempo(self, tempo: float) -> None:
        """Playback speed, 0.5-1.5 (1 = the song's); pitch stays. Takes effect at the next block."""
        self._tempo = float(np.clip(tempo, MIN_TEMPO, MAX_TEMPO))

    def set_transpose(self, semitones: float) -> None:
        """Transpose by semitones (cents as the fraction), -12..12; tempo stays. Takes effect at the next block."""
        self._semitones = float(np.clip(semitones, -MAX_SEMITONES, MAX_SEMITONES))

    @property
    def playback(self) -> Playback:
        return Playback(self._tempo, self._semitones)

    @property
    def stretching(self) -> bool:
        """Whether the stretcher is in the signal path now."""
        return self._engaged

    def _wants_stretch(self) -> bool:
        return not self.playback.is_identity

    # ---- transport -----------------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        """The song sample being heard now (song time, whatever the tempo)."""
        heard = self._heard
        if heard is not None:
            return heard
        return self._render_position()

    def _render_position(self) -> int:
        """The song time of the renderer (ahead of the device by the queued blocks)."""
        if not self._engaged:
            return self._position
        pos = self._position + self._tail - self._lag
        loop = self._loop
        if self.loop_enabled and loop is not None and self._position <= loop[1] and pos < loop[0] <= self._position:
            pos += loop[1] - loop[0]
        return int(np.clip(round(pos), 0, self.length))

    @property
    def playing(self) -> bool:
        return self._playing or bool(self._queue)  # the blocks rendered ahead still sound after a pause

    @property
    def waiting(self) -> bool:
        """True while playback is held at the edge of the part separated so far."""
        return self._playing and self._waiting

    def _flush(self, heard: int | None) -> None:
        """Drop the blocks rendered ahead (a seek, a new song, play): the device hears the change next block."""
        with self._cond:
            self._queue_generation += 1
            self._queue.clear()
            self._flowing = False
            if self._heard is not None:
                self._heard = heard
            self._cond.notify_all()

    def seek(self, sample: int) -> None:
        with self._lock:
            self._position = int(np.clip(sample, 0, self.length))
            self._flush(self._position)
            self._tail = 0
            if self._engaged:
                if self._playing and self._wants_stretch():
                    self._reprime = True
                else:
                    self._engaged = False

    def set_loop(self, start: int | None, end: int | None = None) -> None:
        """Set (or with None clear) the loop region in samples."""
        with self._lock:
            if start is None or end is None or int(end) - int(start) < 1:
                self._loop = None
            else:
                lo, hi = sorted((int(start), int(end)))
                self._loop = (max(0, lo), min(self.length, hi))

    @property
    def loop(self) -> tuple[int, int] | None:
        return self._loop

    def play(self) -> None:
        """Start from the current position with a short fade-in; opens the audio stream on first use."""
        if self._audio is None:
            return
        with self._lock:
            heard = self.position
            if self._engaged:  # resume from what was heard, not from the read head
                self._position = heard
                self._engaged = False
            elif self._heard is not None and self._queue:
                self._position = heard
            self._flush(self._position)
            self._tail = 0
            if self._position >= self.length:
                self._position = self._loop[0] if (self._loop and self.loop_enabled) else 0
            self._ramp.jump(np.zeros_like(self._gains()))
            self._ramp.set_target(self._gains())
            self._playing = True
            self._stopping = False
            self._xfade_from = None

    def pause(self) -> None:
        """Stop after a short fade-out (done by the next audio block)."""
        if self._playing:
            if self._stream is None:
                self._stop_now()
            else:
                self._stopping = True

    def _stop_now(self) -> None:
        if self._engaged:
            self._position = self._render_position()
            self._engaged = False
            self._tail = 0
        self._playing = False

    def toggle(self) -> None:
        if self._playing and not self._stopping:
            self.pause()
        else:
            self.play()

    # ---- rendering -----------------------------------------------------------------------------------------
    def _must_wait(self) -> bool:
        """Playback holds at `available` only if an audible lane is still being separated."""
        gains = self._ramp.target
        audible_incomplete = (np.abs(gains).sum(axis=1) > 0) & ~self._complete
        return bool(audible_incomplete.any()) and self._available < self.length

    def _mix_block(self, pos: int, n: int) -> np.ndarray:
        """Mix song samples [pos, pos + n) with the ramped gains, crossfading from a switched-away source."""
        audio = self._source_audio()
        block = audio[:, :, pos:pos + n]
        self._peaks = np.maximum(self._peaks, np.abs(block).max(axis=(1, 2)))
        old = self._xfade_from
        if old is None:
            return self._ramp.process(block)
        curve = self._ramp.gain_curve(n).astype(np.float32)
        new_out = (curve * as_stereo(block)).sum(axis=0, dtype=np.float32)
        old_out = (curve * as_stereo(old[:, :, pos:pos + n])).sum(axis=0, dtype=np.float32)
        w = (np.minimum(np.arange(self._xfade_done + 1, self._xfade_done + n + 1), self.ramp_samples)
             / self.ramp_samples).astype(np.float32)
        self._xfade_done += n
        if self._xfade_done >= self.ramp_samples:
            self._xfade_from = None
        return old_out + (new_out - old_out) * w

    def _read(self, frames: int, pad_end: bool = False) -> np.ndarray:
        """Up to `frames` mixed song samples from the read head, honouring the loop, the wait and the end.

        Returns fewer when waiting for the separation or at the end (then, with `pad_end`, silence to flush
        the stretcher, counted in `_tail`).
        """
        audio = self._audio
        out = np.zeros((2, frames), dtype=np.float32)
        written = 0
        while written < frames:
            pos = self._position
            looping = self.loop_enabled and self._loop is not None
            if looping and pos == self._loop[1]:  # reached the loop's end: wrap (started past it: play on)
                pos = self._position = self._loop[0]
            limit = audio.shape[2]
            if looping and pos < self._loop[1]:
                limit = self._loop[1]
            if self._must_wait():
                limit = min(limit, self._available)
            n = min(frames - written, limit - pos)
            if n <= 0:
                if pos >= audio.shape[2]:
                    if pad_end:
                        self._tail += frames - written
                        written = frames
                    else:
                        self._playing = False
                else:
                    self._waiting = True
                break
            out[:, written:written + n] = self._mix_block(pos, n)
            self._position = pos + n
            written += n
        return out[:, :written]

    def _history(self, n: int) -> np.ndarray:
        """The mix of the `n` song samples before the read head (for priming the stretcher)."""
        pos = self._position
        a = max(0, pos - n)
        audio = self._source_audio()
        return mix(audio[:, :, a:pos], self._ramp.current) if pos > a else np.zeros((2, 0), np.float32)

    def _engage(self) -> None:
        if not self.prepare_stretcher():
            self._tempo, self._semitones = 1.0, 0.0
            return
        st = self._stretcher
        st.tempo, st.semitones = self._tempo, self._semitones
        st.prime(self._history(4096))
        self._out_buffer = []
        self._lag = 0.0
        self._tail = 0
        self._engaged = True
        self._reprime = False

    def _render_stretched(self, frames: int) -> np.ndarray:
        st = self._stretcher
        st.tempo, st.semitones = self._tempo, self._semitones
        fed = [0]

        def source(n: int) -> np.ndarray:
            x = self._read(n, pad_end=True)
            fed[0] += x.shape[1]
            return x

        out, filled = st.pull(frames, source, self._out_buffer)
        self._lag = max(0.0, self._lag + fed[0] - filled * self._tempo)
        if self._tail > 0 and self._render_position() >= self.length:
            self._engaged = False
            self._position = self.length
            self._playing = False
            self._tail = 0
        return out

    def render(self, frames: int) -> np.ndarray:
        """The next `frames` stereo samples (2, frames); advances the position. Called by the audio callback."""
        out = np.zeros((2, frames), dtype=np.float32)
        with self._lock:
            audio = self._audio
            if audio is None or not self._playing:
                self.levels = self.levels * 0.5
                self.master_levels = self.master_levels * 0.5
                return out
            self._peaks = np.zeros(audio.shape[0], dtype=np.float32)
            self._waiting = False
            crossfade_from = None
            if self._wants_stretch() and not self._engaged:
                if self.frames_rendered and self._ramp.current.any():  # engaging mid-song: crossfade into it
                    crossfade_from = mix(audio[:, :, self._position:self._position + frames], self._ramp.current)
                self._engage()
            elif self._engaged and self._reprime:
                self._engage()
            if self._engaged:
                out = self._render_stretched(frames)
                if crossfade_from is not None:
                    n = min(frames, crossfade_from.shape[1], self.ramp_samples)
                    w = (np.arange(1, n + 1) / n).astype(np.float32)
                    out[:, :n] = crossfade_from[:, :n] * (1 - w) + out[:, :n] * w
            else:
                block = self._read(frames)
                out[:, :block.shape[1]] = block
            if self._stopping:
                fade = np.clip(1.0 - np.arange(frames) / self.ramp_samples, 0.0, 1.0).astype(np.float32)
                out *= fade
                self._stop_now()
                self._stopping = False
            gains = np.abs(self._ramp.current).max(axis=1).astype(np.float32)
            self.levels = np.maximum(self._peaks * gains, self.levels * 0.7)
            self.master_levels = np.maximum(np.abs(out).max(axis=1), self.master_levels * 0.7)
            self.frames_rendered += frames
        return out

    # ---- the audio device ----------------------------------------------------------------------------------
    def _callback(self, outdata, frames, _time, status) -> None:
        t0, c0 = time.perf_counter(), time.thread_time()
        self.callback_count += 1
        if status and status.output_underflow:
            self.underruns += 1
        try:
            if self.ahead_blocks > 0 and frames == self.blocksize:
                self._play_queued(outdata)
            else:  # no feeder (or an odd block size): render here
                outdata[:] = self.render(frames).T
        except Exception:  # noqa: BLE001 - never raise into PortAudio: output silence instead
            if not self._render_failed:  # once per stream: the callback runs ~40 times a second
                self._render_failed = True
                log.exception("rendering an audio block failed; playing silence")
            outdata.fill(0)
        self.callback_cpu_seconds += time.thread_time() - c0
        self.callback_seconds_max = max(self.callback_seconds_max, time.perf_counter() - t0)

    def _play_queued(self, outdata) -> None:
        if self._feeder is None:
            self._start_feeder()
        with self._cond:
            item = self._queue.popleft() if self._queue else None
            if item is not None:
                self._heard = item[1]
                self._flowing = True
            self._cond.notify_all()
        if item is None:
            outdata.fill(0)
            if self._playing and self._flowing:  # not the first block after play or a seek: a dropout
                self.starved += 1
                self._ahead = min(MAX_AHEAD_BLOCKS, max(self._ahead + 1, 2 * self._ahead))
                self._since_dropout = 0
            else:
                self.levels = self.levels * 0.5
                self.master_levels = self.master_levels * 0.5
            return
        outdata[:] = item[0].T
        self._since_dropout += 1
        if self._since_dropout >= RELAX_BLOCKS and self._ahead > self.ahead_blocks:
            self._ahead -= 1
            self._since_dropout = 0

    @property
    def queue_blocks(self) -> int:
        """How many blocks the feeder keeps ready now (grows after a dropout, relaxes after ~10 s)."""
        return self._ahead

    def _start_feeder(self) -> None:
        self._feeder_stop = False
        self._ahead = max(1, self.ahead_blocks)
        self._heard = self._render_position()
        self._feeder = threading.Thread(target=self._feed_loop, name="stemgui-audio-feeder", daemon=True)
        self._feeder.start()

    def _feed_loop(self) -> None:
        """Keep `ahead_blocks` rendered blocks queued for the device while playing."""
        while True:
            with self._cond:
                while not self._feeder_stop and (len(self._queue) >= self._ahead or not self._playing):
                    self._cond.wait(0.05)
                if self._feeder_stop:
                    return
                generation = self._queue_generation
            c0 = time.thread_time()
            try:
                block = self.render(self.blocksize)
            except Exception:  # noqa: BLE001 - the feeder must keep running: output silence instead
                if not self._render_failed:
                    self._render_failed = True
                    log.exception("rendering an audio block failed; playing silence")
                block = np.zeros((2, self.blocksize), np.float32)
            heard = self._render_position()
            self.callback_cpu_seconds += time.thread_time() - c0
            with self._cond:
                if generation == self._queue_generation:
                    self._queue.append((block, heard))

    def open_stream(self) -> None:
        """Open and start the output stream (idempotent). Raises RuntimeError with a clear sentence on failure."""
        with self._stream_lock:
            if self._stream is not None:
                return
            try:
                import sounddevice as sd

                stream = sd.OutputStream(samplerate=self.samplerate, channels=2, dtype="float32",
                                         blocksize=self.blocksize, callback=self._callback)
                stream.start()
            except Exception as exc:  # noqa: BLE001 - PortAudioError, OSError
                raise RuntimeError(f"The audio output could not be opened ({exc}); playback is disabled.") from exc
            self._render_failed = False
            self._stream = stream

    @property
    def stream_open(self) -> bool:
        return self._stream is not None

    def close(self) -> None:
        """Stop and close the stream; safe to call twice (and while a helper thread is opening it)."""
        with self._stream_lock:
            stream, self._stream = self._stream, None
        self._playing = False
        feeder, self._feeder = self._feeder, None
        with self._cond:
            self._feeder_stop = True
            self._queue.clear()
            self._cond.notify_all()
        self._engaged = False
        self._stretcher = None  # free Rubber Band's buffers (built again by the next load)
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken stream must not stop the app closing
                log.warning("closing the audio stream failed: %s", exc)
        if feeder is not None:
            feeder.join(2.0)
        self._heard = None
