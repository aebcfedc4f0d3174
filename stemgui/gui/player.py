"""Live playback of the lanes through a sounddevice OutputStream callback.

Qt-free: the GUI polls `position`, `levels` and `state` from a timer. The callback mixes the lanes with the
current gains (ramped by `mixer.GainRamp`, so mute/solo/volume changes never click), honours a loop region,
and while a separation is still running it waits at the edge of the separated part instead of playing
silence as if it were music ("play while separating").
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence

import numpy as np

from stemgui.gui.mixer import DEFAULT_RAMP_SECONDS, GainRamp, LaneMix, lane_gains

log = logging.getLogger(__name__)
NO_DEVICE_MESSAGE = "No audio output device was found, so playback is disabled; everything else still works."


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
    """Plays an (lanes, channels, samples) float32 array; lanes flagged `complete` never wait for separation."""

    def __init__(self, samplerate: int = 44100, blocksize: int = 1024, ramp_seconds: float = DEFAULT_RAMP_SECONDS):
        self.samplerate = int(samplerate)
        self.blocksize = int(blocksize)
        self.ramp_samples = max(1, int(round(ramp_seconds * samplerate)))
        self._lock = threading.Lock()
        self._audio: np.ndarray | None = None
        self._complete = np.zeros(0, dtype=bool)
        self._lanes: list[LaneMix] = []
        self._ramp = GainRamp(0, self.ramp_samples)
        self._position = 0
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
        self._stream = None
        self._render_failed = False

    # ---- content -------------------------------------------------------------------------------------------
    def load(self, audio: np.ndarray, lanes: Sequence[LaneMix], complete: Sequence[bool] | None = None,
             available: int | None = None) -> None:
        """Swap in new lanes (stops playback, rewinds, no loop). `available`: samples of the incomplete lanes done."""
        with self._lock:
            self._audio = audio
            n = audio.shape[0]
            self._complete = np.ones(n, bool) if complete is None else np.asarray(complete, dtype=bool)
            self._available = audio.shape[2] if available is None else int(available)
            self._lanes = list(lanes)
            self._ramp = GainRamp(n, self.ramp_samples, lane_gains(self._lanes))
            self._position = 0
            self._playing = self._stopping = self._waiting = False
            self._loop = None
            self.loop_enabled = False
            self.levels = np.zeros(n, dtype=np.float32)

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

    def set_lanes(self, lanes: Sequence[LaneMix]) -> None:
        """New lane settings; gains glide to them over the ramp while playing."""
        self._lanes = list(lanes)
        gains = lane_gains(self._lanes)
        if self._playing:
            self._ramp.set_target(gains)
        else:
            self._ramp.jump(gains)

    # ---- transport -----------------------------------------------------------------------------------------
    @property
    def position(self) -> int:
        return self._position

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def waiting(self) -> bool:
        """True while playback is held at the edge of the part separated so far."""
        return self._playing and self._waiting

    def seek(self, sample: int) -> None:
        with self._lock:
            self._position = int(np.clip(sample, 0, self.length))

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
            if self._position >= self.length:
                self._position = self._loop[0] if (self._loop and self.loop_enabled) else 0
            self._ramp.jump(np.zeros_like(lane_gains(self._lanes)))
            self._ramp.set_target(lane_gains(self._lanes))
            self._playing = True
            self._stopping = False

    def pause(self) -> None:
        """Stop after a short fade-out (done by the next audio block)."""
        if self._playing:
            if self._stream is None:
                self._playing = False
            else:
                self._stopping = True

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

    def render(self, frames: int) -> np.ndarray:
        """The next `frames` stereo samples (2, frames); advances the position. Called by the audio callback."""
        out = np.zeros((2, frames), dtype=np.float32)
        with self._lock:
            audio = self._audio
            if audio is None or not self._playing:
                self.levels = self.levels * 0.5
                self.master_levels = self.master_levels * 0.5
                return out
            written = 0
            peaks = np.zeros(audio.shape[0], dtype=np.float32)
            self._waiting = False
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
                        self._playing = False
                    else:
                        self._waiting = True
                    break
                block = audio[:, :, pos:pos + n]
                out[:, written:written + n] = self._ramp.process(block)
                peaks = np.maximum(peaks, np.abs(block).max(axis=(1, 2)))
                self._position = pos + n
                written += n
            if self._stopping:
                fade = np.clip(1.0 - np.arange(frames) / self.ramp_samples, 0.0, 1.0).astype(np.float32)
                out *= fade
                self._playing = False
                self._stopping = False
            gains = np.abs(self._ramp.current).max(axis=1).astype(np.float32)
            self.levels = np.maximum(peaks * gains, self.levels * 0.7)
            self.master_levels = np.maximum(np.abs(out).max(axis=1), self.master_levels * 0.7)
            self.frames_rendered += frames
        return out

    # ---- the audio device ----------------------------------------------------------------------------------
    def _callback(self, outdata, frames, _time, _status) -> None:
        self.callback_count += 1
        try:
            outdata[:] = self.render(frames).T
        except Exception:  # noqa: BLE001 - never raise into PortAudio: output silence instead
            if not self._render_failed:  # once per stream: the callback runs ~40 times a second
                self._render_failed = True
                log.exception("rendering an audio block failed; playing silence")
            outdata.fill(0)

    def open_stream(self) -> None:
        """Open and start the output stream (idempotent). Raises RuntimeError with a clear sentence on failure."""
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
        """Stop and close the stream; safe to call twice."""
        stream, self._stream = self._stream, None
        self._playing = False
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception as exc:  # noqa: BLE001 - closing a broken stream must not stop the app closing
                log.warning("closing the audio stream failed: %s", exc)
