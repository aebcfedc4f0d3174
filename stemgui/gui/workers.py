"""Long jobs off the GUI thread: separating a song, drawing spectrograms, exporting files.

Each job is a QThread that only talks to the window through queued signals. The separation worker decodes the
song block by block into the mix lane of a new cache entry's lanes file (memory-mapped, `lane_file`), streams
it through the engine as the CLI does (`Separator.separate_stream`, the CLI's batch size), writes finished
regions straight into the stem lanes (nobody else writes there) and then signals the region, so lanes and
player can show and play the part that is done while the rest is computed. Memory does not grow with the song.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PySide6.QtCore import QThread, Signal

from stemgui.audio import audio_info, count_frames, iter_blocks
from stemgui.devices import pick_device
from stemgui.errors import AudioError, Cancelled, StemGUIError
from stemgui.gui.cache import MIX_NAME, StemCache, cache_key, file_digest
from stemgui.gui.export import OverwriteDeclined
from stemgui.gui.lane_file import is_mapped, lane_blocks, release_all
from stemgui.gui.spectrogram import SpectrogramLayout, compute_columns
from stemgui.gui.waveform import peak_envelope
from stemgui.models.card import read_card
from stemgui.refine import RULES_VERSION, resolve_mode
from stemgui.separate import CancelToken, Progress, SeparationSettings, Separator, is_out_of_memory

log = logging.getLogger(__name__)
BACKGROUND_NICENESS = 4
"""Workers' niceness: the GUI and audio threads still get ~2.4x a worker's CPU share when all want it, but on a
busy machine a separation is not starved as at 10 (the app took twice the CLI's wall time under load 10)."""
READ_BLOCK = 1 << 16  # frames decoded, resampled and handed to the engine at a time (as the CLI streams)
LOW_RATE = 22050  # inputs below this rate get a notice: the stems have nothing above half of it
_COMPUTE_SLOT = threading.Lock()
"""Held by the separation worker that is running the model: the queue's scheduler starts one separation at a
time, but a queue song paused for the window's song needs a moment to stop, and the window's song must not
compute beside it on the same cores (nor the two share the memory of two forwards)."""


def hold_compute_slot(flag: CancelToken, on_wait: Callable[[], None] | None = None) -> None:
    """Take `_COMPUTE_SLOT`, checking `flag` while another separation still holds it (cancel stays instant)."""
    if _COMPUTE_SLOT.acquire(blocking=False):
        return
    if on_wait is not None:
        on_wait()
    while not _COMPUTE_SLOT.acquire(timeout=0.05):
        flag.check()


def lower_thread_priority(niceness: int = BACKGROUND_NICENESS) -> None:
    """Make the calling thread (and threads it starts, e.g. torch's pool) yield the CPU to the GUI thread.

    On Linux `setpriority(PRIO_PROCESS, 0, ...)` applies to the calling thread only; elsewhere it is skipped.
    """
    if not hasattr(os, "setpriority") or not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness))
    except OSError as exc:
        log.debug("cannot lower the priority of a worker thread: %s", exc)


def single_threaded_blas() -> None:
    """Keep numpy's and scipy's BLAS (OpenBLAS, MKL, ...) to one thread in this process.

    The app's BLAS calls are small (the key's pitch filterbank, a downmix) and run beside a separation that
    already uses every core: a BLAS pool's threads were created by the GUI thread at normal priority and spin
    while they wait (measured: the longest event-loop gaps of four separations were 51-108 ms with the pool,
    35-67 ms with one BLAS thread).
    torch's own thread pool is not affected.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a runtime dependency; an app without it only stalls more
        log.warning("threadpoolctl is missing: numpy's BLAS keeps its thread pool")
        return
    threadpool_limits(limits=1, user_api="blas")


class CancelFlag(CancelToken):
    """The engine's cancel token, also callable (`flag() -> bool`) as the cache and the export expect."""

    def __call__(self) -> bool:
        return self.is_cancelled

    def check(self) -> None:
        if self.is_cancelled:
            raise Cancelled("Separation cancelled.")


def is_fallback_notice(progress: Progress) -> bool:
    """The engine's out-of-memory fallback (a retry with shorter segments or on the CPU), by its typed flag."""
    return bool(progress.fallback)


@dataclass
class Session:
    """One opened song: the lanes' audio (mix first, then stems) at one sample rate, and how far it is done."""

    path: Path
    names: list[str]
    audio: np.ndarray  # (lanes, 2, samples) float32, lane 0 the original mix: mapped from the cache entry's file
    samplerate: int
    model_name: str = ""
    from_cache: bool = False
    available: int = 0  # stems are final before this sample
    complete: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return self.audio.shape[2]

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate

    @property
    def stems(self) -> np.ndarray:
        return self.audio[1:]

    @property
    def stem_names(self) -> list[str]:
        return self.names[1:]


_separators: dict[tuple, Separator] = {}


def engine_settings(settings: SeparationSettings) -> SeparationSettings:
    """The settings the engine runs with: the panel's, with the batch size the CLI's schedule needs.

    On a CPU the engine's batch size caps how many segments it computes at once, one thread each; with the
    panel's 1 it ran one segment on all of torch's threads, which spend most of their time spinning at barriers
    (3x the CPU time of `stemgui separate`, and many times its wall time on a busy machine). One segment per
    torch thread is the CLI's schedule (its batch of 4 gives the same on up to 4 threads) while keeping a
    cancel within one segment. Off the CPU it is the segments per forward: the CLI's default. It does not
    change the stems (not in the cache key).
    """
    on_cpu = pick_device(settings.device).type == "cpu"
    batch = torch.get_num_threads() if on_cpu else SeparationSettings().batch_size
    return dataclasses.replace(settings, batch_size=max(settings.batch_size, batch))


def get_separator(model_path: Path, settings: SeparationSettings) -> Separator:
    """Load a model once per (path, settings) and reuse it for every song of the session."""
    settings = engine_settings(settings)
    key = (str(model_path), tuple(sorted(settings.to_dict().items())))
    if key not in _separators:
        _separators.clear()  # one model in memory at a time
        _separators[key] = Separator.from_path(model_path, settings)
    return _separators[key]


def cache_settings(settings: SeparationSettings, card: dict | None = None) -> dict:
    """The settings that change the stems (not the device or batch size); with the model's `card`, the
    refinement that will run rather than "auto" (a card that changes its recommendation misses the cache), and
    with any refinement the version of its rules (stems cached under older rules miss it too)."""
    d = settings.to_dict()
    keys = ("segment", "overlap", "shifts", "seed", "exact_sum", "transition_power", "refine")
    out = {k: d[k] for k in keys if k in d}
    if card is not None:
        out["refine"] = resolve_mode(settings.refine, card, list(card.get("sources") or []))
    if out.get("refine", "off") != "off":
        out["refine_rules"] = RULES_VERSION
    return out


def input_notes(song: Path, model_rate: int) -> list[str]:
    """Sentences about what the conversion to the model's stereo / rate does to this input (may be none)."""
    try:
        info = audio_info(song)
    except (StemGUIError, OSError, ValueError) as exc:  # load_audio reports an unreadable file in a moment
        log.debug("no input notes for %s: %s", song, exc)
        return []
    notes = []
    if info.channels > 2:
        notes.append(f"{song.name} has {info.channels} channels; they were downmixed to stereo for separation, "
                     "so the stems and the exports are stereo.")
    if info.samplerate < LOW_RATE:
        notes.append(f"{song.name} is sampled at {info.samplerate} Hz: it holds nothing above "
                     f"{info.samplerate // 2000} kHz, so the stems will sound dull and separate less well "
                     f"(the model works at {model_rate / 1000:g} kHz).")
    return notes


class SeparationWorker(QThread):
    """Reads the song, loads the model, looks in the cache, separates in time order and fills the cache."""

    stage = Signal(str)
    progress = Signal(float, object, str)  # fraction, eta seconds or None, message
    prepared = Signal(object)  # Session: lanes can be built
    chunk = Signal(int, int)  # stems final in [start, end)
    notice = Signal(str)  # e.g. an out-of-memory fallback
    finished_ok = Signal(object)  # Session
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, song: Path, model_path: Path, settings: SeparationSettings, cache: StemCache | None = None,
                 parent=None):
        super().__init__(parent)
        self.song = Path(song)
        self.model_path = Path(model_path)
        self.settings = settings
        self.cache = cache if cache is not None else StemCache()
        self.flag = CancelFlag()
        self.session: Session | None = None
        self._t0: float | None = None
        self._t1: float | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the job started (final once it ended); valid inside its own finished signals."""
        if self._t0 is None:
            return 0.0
        return (self._t1 if self._t1 is not None else time.monotonic()) - self._t0

    def cancel(self) -> None:
        self.flag.cancel()

    def run(self) -> None:  # noqa: D401 - QThread entry point
        self._t0, self._t1 = time.monotonic(), None
        lower_thread_priority()
        try:
            self._run()
        except Cancelled:
            self.cancelled.emit()
        except StemGUIError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - the window must survive anything a job raises
            if isinstance(exc, MemoryError) or is_out_of_memory(exc):
                self.failed.emit(f"{self.song.name}: there is not enough memory to separate this song; "
                                 "try a smaller segment or close other programs.")
            else:
                log.exception("separating %s failed", self.song)
                self.failed.emit(f"{self.song.name}: separation failed ({type(exc).__name__}: {exc}).")
        finally:
            self._t1 = time.monotonic()

    def _run(self) -> None:
        flag = self.flag
        self.stage.emit("Reading model card")
        card = read_card(self.model_path)  # a missing or broken card is a ModelError naming the file
        samplerate = int(card.get("samplerate", 44100))
        sources = list(card.get("sources") or [])
        self.stage.emit(f"Reading {self.song.name}")
        if not self.song.is_file():
            raise AudioError(f"{self.song}: no such file.")
        if self.song.stat().st_size == 0:
            raise AudioError(f"{self.song.name}: the file is empty.")
        notes = input_notes(self.song, samplerate)
        key = cache_key(file_digest(self.song), file_digest(self.model_path), cache_settings(self.settings, card))
        cached = self.cache.get(key)  # checks every lane's checksum: a damaged entry is a miss
        flag.check()
        if cached is not None and cached.samplerate == samplerate and cached.audio.shape[1] == 2:
            session = Session(self.song, [MIX_NAME] + list(cached.sources), cached.audio, samplerate,
                              str(card.get("name", self.model_path.stem)), from_cache=True, notes=list(notes))
            session.available, session.complete = session.frames, True
            self.session = session
            for note in notes:
                self.notice.emit(note)
            self.prepared.emit(session)
            self.chunk.emit(0, session.frames)
            self.progress.emit(1.0, 0.0, "Loaded from cache")
            self.finished_ok.emit(session)
            return
        frames = count_frames(self.song, samplerate)  # exact (headers can lie); a corrupt file fails here
        if frames == 0:
            raise AudioError(f"{self.song.name}: the file holds no audio samples.")
        names = [MIX_NAME] + sources
        writer, audio = self._lanes((len(names), 2, frames), samplerate, sources, key)
        try:
            self._separate(writer, audio, names, samplerate, card, notes)
        except BaseException:
            if writer is not None:
                writer.abort()  # nothing half-written stays in the cache; the open lanes stay readable
            raise

    def _lanes(self, shape: tuple[int, int, int], samplerate: int, sources: list[str], key: str):
        """(cache writer, its mapped lanes), or (None, lanes in RAM) when the cache cannot hold them."""
        try:
            writer = self.cache.writer(key, shape, samplerate, sources)
        except OSError as exc:  # e.g. a full cache disk: the song still opens, its lanes live in RAM
            self.notice.emit(f"The stems cannot be cached ({exc.strerror or exc}); they are kept in memory.")
            return None, np.zeros(shape, dtype=np.float32)
        return writer, writer.audio

    def _separate(self, writer, audio: np.ndarray, names: list[str], samplerate: int, card: dict,
                  notes: list[str]) -> None:
        flag = self.flag
        frames = audio.shape[2]
        pos = 0
        for block in iter_blocks(self.song, READ_BLOCK, samplerate=samplerate, channels=2):
            n = min(block.shape[1], frames - pos)
            if not np.isfinite(block[:, :n]).all():
                raise AudioError(f"{self.song.name}: the audio contains invalid (NaN or infinite) samples.")
            audio[0, :, pos:pos + n] = block[:, :n]
            pos += n
            flag.check()
        session = Session(self.song, names, audio, samplerate, str(card.get("name", self.model_path.stem)),
                          notes=list(notes))
        self.session = session
        for note in notes:
            self.notice.emit(note)
        self.prepared.emit(session)
        self.stage.emit(f"Loading model {session.model_name}")
        separator = get_separator(self.model_path, self.settings)
        flag.check()

        def on_progress(p: Progress) -> None:
            flag.check()
            if is_fallback_notice(p):
                session.notes.append(p.message)
                self.notice.emit(f"{p.message[0].upper()}{p.message[1:]}.")
            self.progress.emit(float(p.fraction), p.eta, p.message)

        def on_chunk(start: int, end: int, stems: np.ndarray) -> None:
            audio[1:, :, start:end] = stems  # a mono model's stems fill both channels of a lane
            session.available = max(session.available, end)
            self.chunk.emit(start, end)
            flag.check()

        channels = int(getattr(separator, "audio_channels", 2))

        def mix_blocks():  # the engine reads the song from the mix lane, as the CLI streams it from the file
            for block in lane_blocks(audio, 0, READ_BLOCK):
                yield block.mean(axis=0, keepdims=True) if channels == 1 else block[:channels]

        hold_compute_slot(flag, lambda: self.stage.emit("Waiting for the other separation to stop"))
        try:
            flag.check()
            self.stage.emit(f"Separating on {separator.device}")
            separator.separate_stream(mix_blocks, frames, progress=on_progress, cancel=flag, on_chunk=on_chunk)
        finally:
            _COMPUTE_SLOT.release()
        flag.check()
        session.complete = True
        self.progress.emit(1.0, 0.0, "Separated")
        if writer is not None:
            self.stage.emit("Saving stems to the cache")
            try:
                writer.commit({"song": str(self.song), "model": session.model_name})
            except OSError as exc:  # a full cache disk must not lose the stems the user is looking at
                writer.abort()
                self.notice.emit(f"The stems could not be cached ({exc.strerror or exc}); they are still open.")
        self.finished_ok.emit(session)


class SpectrogramWorker(QThread):
    """Computes spectrogram columns for (lane, region) requests in order; results go back by signal."""

    columns_ready = Signal(int, int, int, object)  # generation, lane, first column, image (rows, n)
    waveform_ready = Signal(int, int, object, object)  # generation, lane, x seconds, y (interleaved min/max)
    idle = Signal(int)  # generation: queue drained

    def __init__(self, parent=None):
        super().__init__(parent)
        self._queue: queue.Queue = queue.Queue()
        self.generation = 0

    def request(self, generation: int, lane: int, audio: np.ndarray, layout: SpectrogramLayout,
                first: int, stop: int) -> None:
        """Columns [first, stop) of `audio` (channels, samples) for `lane` (stale generations are dropped)."""
        if stop > first:
            self._queue.put((generation, lane, audio, layout, first, stop))

    def request_waveform(self, generation: int, lane: int, audio: np.ndarray, samplerate: int, upto: int) -> None:
        """The peak envelope of `audio`'s first `upto` samples for `lane`'s waveform view."""
        self._queue.put((generation, lane, audio, samplerate, None, upto))

    def stop(self) -> None:
        """Drop what is queued (a long song's pictures can be many seconds of work) and end the thread."""
        self.generation = -1  # every queued job is now stale: skipped, and a running one stops after its piece
        self._queue.put(None)
        self.wait(5000)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def run(self) -> None:
        lower_thread_priority()
        while True:
            job = self._queue.get()
            if job is None:
                return
            generation, lane, audio, layout, first, stop = job
            if generation == self.generation and first is None:  # a waveform: `layout` is the sample rate
                try:
                    x, y = peak_envelope(audio, layout, stop)
                    self.waveform_ready.emit(generation, lane, x, y)
                except Exception:  # noqa: BLE001 - a picture failing must never take the app down
                    log.exception("waveform of lane %d failed", lane)
            elif generation == self.generation:
                try:
                    step = 128  # small pieces: the lane fills in visibly, the queue stays responsive
                    for c0 in range(first, stop, step):
                        if generation != self.generation:
                            break
                        c1 = min(stop, c0 + step)
                        self.columns_ready.emit(generation, lane, c0, compute_columns(audio, layout, c0, c1))
                        if is_mapped(audio):  # a long lane's frames are spread over GBs: drop the pages read
                            release_all()
                except Exception:  # noqa: BLE001 - a picture failing must never take the app down
                    log.exception("spectrogram columns %d-%d of lane %d failed", first, stop, lane)
            if self._queue.empty():
                self.idle.emit(generation)


class ExportWorker(QThread):
    """Runs one export function (stems or mix) with progress and cancel."""

    progress = Signal(float, str)
    finished_ok = Signal(object)  # list of written paths
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, job: Callable[..., object], parent=None):
        super().__init__(parent)
        self.job = job
        self.flag = CancelFlag()

    def cancel(self) -> None:
        self.flag.cancel()

    def run(self) -> None:
        try:
            result = self.job(progress=lambda f, m: self.progress.emit(float(f), m), cancel=self.flag)
        except OverwriteDeclined as exc:  # nothing was replaced: say why, it was not the user's Cancel
            self.failed.emit(str(exc))
        except Cancelled:
            self.cancelled.emit()
        except StemGUIError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - the window must survive anything a job raises
            log.exception("export failed")
            self.failed.emit(f"Export failed ({type(exc).__name__}: {exc}).")
        else:
            self.finished_ok.emit(result if isinstance(result, list) else [result])
