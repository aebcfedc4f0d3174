"""The separation engine: a model applied to a whole song by overlapping segments.

The song is cut into segments of `segment` seconds that overlap by `overlap`; each segment's estimate is
weighted by a triangular transition window and overlap-added, so seams are invisible. With `shifts` > 0 the
song is also offset by random amounts (up to 0.5 s) and the estimates averaged, which makes the result more
time-equivariant. The numbers match the reference `apply_model` of the Demucs project for the same settings.

Segments are processed in time order and a region is handed to `on_chunk` as soon as no later segment can
touch it: the GUI plays what is finished while the rest computes, and long songs stream to disk without the
engine ever holding more than a few segments of estimates (`keep_output=False`).

With a mixture refinement (`refine`, stemgui.refine) each finished region goes through a streaming STFT post-filter
that shares the song's own spectrogram out by the stems; refined regions follow a fraction of a second behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import numpy as np
import torch
from torch import nn

from stemgui.allocator import share_malloc_arena
from stemgui.devices import pick_device
from stemgui.errors import Cancelled, StemGUIError
from stemgui.models.bag import is_bag
from stemgui.refine import REFINE_CHOICES, RULES_VERSION, StreamingRefiner, resolve_mode

_T = TypeVar("_T")
MAX_SHIFT_SECONDS = 0.5
MAX_INFLIGHT_SECONDS = 30.0  # audio seconds processed at once on a CPU (bounds the activation memory)
WIDE_MODEL_PARAMETERS = 10_000_000  # above this a model runs one segment at a time on a CPU (Separator._wide)
MIN_MODEL_INPUT = 1024  # samples: shorter jobs are run with the audio around them (see Separator._input_length)


@dataclass
class SeparationSettings:
    """What a user can tune; recorded in every output's sidecar so a result can be reproduced."""

    segment: float | None = None  # seconds; None = the model's own training segment
    overlap: float = 0.25
    shifts: int = 0
    batch_size: int = 4
    device: str = "auto"
    seed: int = 0
    exact_sum: bool = False  # stems sum exactly to the input: the residual goes to "other"
    transition_power: float = 1.0
    refine: str = "auto"  # mixture refinement (stemgui.refine): auto = what the model card recommends, else off

    def validate(self) -> None:
        if self.segment is not None and self.segment <= 0:
            raise StemGUIError(f"segment must be positive seconds, got {self.segment}")
        if not 0.0 <= self.overlap < 1.0:
            raise StemGUIError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.shifts < 0:
            raise StemGUIError(f"shifts must be >= 0, got {self.shifts}")
        if self.batch_size < 1:
            raise StemGUIError(f"batch size must be >= 1, got {self.batch_size}")
        if self.transition_power < 1.0:
            raise StemGUIError("transition power must be >= 1")
        if self.refine not in REFINE_CHOICES:
            raise StemGUIError(f"refine must be one of {', '.join(REFINE_CHOICES)}, got {self.refine!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Progress:
    """One progress report: how far, how long still, and what is happening (e.g. a device fallback)."""

    fraction: float
    eta: float | None = None
    message: str = ""
    fallback: bool = False  # an out-of-memory retry (shorter segments, or the CPU): the message says which


class CancelToken:
    """Set from any thread; the engine checks it between batches and raises `Cancelled`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def is_cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("separation cancelled")


@dataclass
class SeparationResult:
    """Stems of one input at the input's sample rate, plus what is needed to trace how they were made."""

    stems: np.ndarray  # (sources, channels, samples)
    samplerate: int
    sources: list[str]
    info: object = None
    elapsed: float = 0.0
    sidecar: dict = field(default_factory=dict)


ProgressFn = Callable[[Progress], None]
ChunkFn = Callable[[int, int, np.ndarray], None]


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device (or host) allocation failure, whatever the backend calls it."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@dataclass
class _Job:
    shift: int  # index of the pass (one per member and shift)
    start: int  # start in original-signal coordinates (may be negative inside the shift padding)
    length: int


class _Pass:
    """One member's shifted pass: its own overlap-add accumulator over the not-yet-final region."""

    def __init__(self, origin: int, end: int, member: int = 0, segment_length: int = 0) -> None:
        self.origin = origin  # original coordinate of this pass's first sample
        self.end = end  # original coordinate after its last sample
        self.member = member  # index of the model (bag member) this pass runs
        self.segment_length = segment_length
        self.out: torch.Tensor | None = None
        self.weight: torch.Tensor | None = None
        self.base = origin  # original coordinate of out[..., 0]


class _Done:
    """An already computed result with the `result()` of a future (the single-worker path)."""

    def __init__(self, value: torch.Tensor) -> None:
        self.value = value

    def result(self) -> torch.Tensor:
        return self.value


def transition_window(length: int, power: float = 1.0) -> torch.Tensor:
    """Triangle rising to 1 at the middle of a segment: neighbours cross-fade linearly at 25% overlap."""
    half = length // 2
    weight = torch.cat([torch.arange(1, half + 1), torch.arange(length - half, 0, -1)]).float()
    return (weight / weight.max()) ** power


class Separator:
    """A loaded model plus settings: separates waveforms and files, reporting progress, honouring cancel."""

    def __init__(self, model: nn.Module, settings: SeparationSettings | None = None, card: dict | None = None,
                 model_path: str | os.PathLike | None = None, *, workers: int | None = None,
                 backend: str = "auto", precision: str = "auto") -> None:
        """`workers`: segments computed concurrently on the CPU, one thread each (default: torch's thread count).

        On a CPU, running whole segments in parallel single-threaded is several times faster than one segment
        on all cores: the small convolutions and the LSTM steps of Hybrid Demucs spend most of a multi-threaded
        run waiting at thread barriers (benchmarks/separate_speed.py measures it). Per-sample results do not
        depend on it beyond float rounding.

        `backend` / `precision`: how each model call runs (stemgui/backends.py: "auto", "eager", "compile",
        "onnx"; "auto", "fp32", "int8", "fp16", "bf16"). "auto" is the fastest valid path on the device; an
        option that is unavailable falls back to eager fp32 with a logged notice, and the sidecar records what ran.
        """
        from stemgui.backends import validate

        validate(backend, precision)
        self.backend = backend
        self.precision = precision
        self._runners: dict[tuple[int, str], object] = {}
        self._runners_lock = threading.Lock()
        self.settings = settings or SeparationSettings()
        self.settings.validate()
        if workers is not None and workers < 1:
            raise StemGUIError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.card = dict(card or {})
        self.model_path = Path(model_path) if model_path else None
        self.device = pick_device(self.settings.device)
        if self.device.type == "cpu":
            share_malloc_arena()  # concurrent segments reuse each other's freed activations (stemgui/allocator.py)
        self.model = model.to(self.device).eval()
        self.sources: list[str] = list(getattr(model, "sources"))
        # A bag runs each member over the song and averages with per-source weights (see models/bag.py).
        if is_bag(model):
            self.members: list[nn.Module] = list(model.models)
            self.member_weights = model.weight_matrix()
        else:
            self.members = [model]
            self.member_weights = torch.ones(1, len(self.sources))
        self.samplerate: int = int(getattr(model, "samplerate", 44100))
        self.audio_channels: int = int(getattr(model, "audio_channels", 2))
        self.name: str = str(self.card.get("name") or (self.model_path.stem if self.model_path else "model"))
        self.refine_mode: str = resolve_mode(self.settings.refine, self.card, self.sources)

    @classmethod
    def from_path(cls, path: str | os.PathLike, settings: SeparationSettings | None = None, *,
                  backend: str = "auto", precision: str = "auto") -> "Separator":
        from stemgui.models.card import load_model, weights_path
        from stemgui.models.registry import resolve_model

        resolved = resolve_model(path)
        model, card = load_model(resolved, device="cpu")
        return cls(model, settings, card, model_path=weights_path(resolved), backend=backend, precision=precision)

    # ------------------------------------------------------------------ waveform API
    @property
    def segment_seconds(self) -> float:
        """The segment of the first member (what the user sees as "the model's segment")."""
        return self.member_segments(1.0)[0]

    def member_segments(self, scale: float = 1.0) -> list[float]:
        """Seconds per model call for each member: the user's segment or the member's own, times `scale`.

        A model that can only run up to its training length (HTDemucs: `use_train_segment`) is capped at it.
        """
        out = []
        for member in self.members:
            own = float(getattr(member, "segment", 10.0))
            seg = float(self.settings.segment or own) * scale
            if scale < 1.0:
                seg = max(seg, min(1.0, own))
            if getattr(member, "use_train_segment", False):
                seg = min(seg, own)
            out.append(seg)
        return out

    def separate(self, wav: np.ndarray | torch.Tensor, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None, on_chunk: ChunkFn | None = None,
                 keep_output: bool = True) -> np.ndarray | None:
        """Stems (sources, channels, samples) of `wav` (channels, samples) at the model's rate.

        `on_chunk(start, end, stems)` receives finished regions in time order. With `keep_output=False` the
        full result is not assembled (for streaming to disk) and None is returned. On an out-of-memory error the
        segment is halved once, then the CPU is used; `progress` says so and regions restart from 0.
        """
        mix = torch.as_tensor(np.asarray(wav, dtype=np.float32) if not torch.is_tensor(wav) else wav)
        mix = mix.float()
        if mix.dim() != 2 or mix.shape[0] != self.audio_channels:
            raise StemGUIError(f"expected audio shaped (channels={self.audio_channels}, samples), got {tuple(mix.shape)}")
        if mix.shape[-1] == 0:
            raise StemGUIError("the audio is empty (0 samples)")
        if not torch.isfinite(mix).all():
            raise StemGUIError("the audio contains NaN or infinite samples")
        return self._with_memory_fallback(
            lambda scale: self._run(mix, self.member_segments(scale), progress, cancel, on_chunk, keep_output),
            progress)

    def _with_memory_fallback(self, attempt: Callable[[float], _T], progress: ProgressFn | None,
                              can_retry: bool = True) -> _T:
        """Run `attempt(segment_scale)`; on out-of-memory retry once with half the segment, then on the CPU.

        Each retry is announced through `progress` (a `Progress` with `fallback=True`); anything else is raised.
        """
        plan = [(self.device, 1.0), (self.device, 0.5)]
        if self.device.type != "cpu":
            plan.append((torch.device("cpu"), 0.5))
        for index, (device, scale) in enumerate(plan):
            if device != self.device:
                self._empty_cache()
                self.device = device
                self.model.to(device)
            try:
                return attempt(scale)
            except Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not is_out_of_memory(exc) or index == len(plan) - 1 or not can_retry:
                    raise
                self._empty_cache()
                nxt_device, nxt_scale = plan[index + 1]
                nxt_segment = self.member_segments(nxt_scale)[0]
                note = (f"out of memory on {self.device}; retrying with {nxt_segment:.1f} s segments"
                        + ("" if nxt_device == self.device else f" on the {nxt_device.type.upper()}"))
                if progress:
                    progress(Progress(0.0, None, note, fallback=True))
        raise AssertionError("unreachable")

    def _empty_cache(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _jobs(self, length: int, segment_lengths: list[int]) -> tuple[list[_Pass], list[_Job]]:
        """All segment jobs of all members' shifted passes, in time order.

        Shift offsets are drawn member by member, pass by pass, from one generator seeded by `seed`: the order
        in which the reference `apply_model` draws them for a bag, so results match it.
        """
        s = self.settings
        passes: list[_Pass] = []
        rng = random.Random(s.seed)
        max_shift = int(MAX_SHIFT_SECONDS * self.samplerate)
        for member, seg_len in enumerate(segment_lengths):
            if s.shifts:
                for _ in range(s.shifts):
                    offset = rng.randint(0, max_shift)
                    passes.append(_Pass(offset - max_shift, length, member, seg_len))
            else:
                passes.append(_Pass(0, length, member, seg_len))
        per_pass: list[list[_Job]] = []
        for index, p in enumerate(passes):
            stride = max(1, int((1 - s.overlap) * p.segment_length))
            span = p.end - p.origin
            per_pass.append([_Job(index, p.origin + v, min(p.segment_length, span - v))
                             for v in range(0, span, stride)])
        if len({p.segment_length for p in passes}) == 1:  # the j-th segment of every pass together
            jobs = [x[j] for j in range(max(len(x) for x in per_pass)) for x in per_pass if j < len(x)]
        else:
            jobs = sorted((job for x in per_pass for job in x), key=lambda job: (job.start, job.shift))
        return passes, jobs

    def _schedule(self, segment: float) -> tuple[int, int]:
        """(concurrent workers, segments per forward). Off the CPU: one worker, the whole batch per forward.

        On a CPU each worker runs one segment single-threaded, one worker per torch thread; the audio in
        flight is capped at MAX_INFLIGHT_SECONDS because every segment holds its own activations (measured
        40-60 MB per second of audio for channels 16-48), so a long segment falls back to one at a time.
        """
        if self.device.type != "cpu":
            return 1, self.settings.batch_size
        if self.workers is None and self._wide():
            return 1, 1
        in_flight = max(1, min(self.settings.batch_size, int(MAX_INFLIGHT_SECONDS // max(segment, 1e-9))))
        workers = max(1, min(self.workers or torch.get_num_threads(), in_flight))
        return workers, (1 if workers > 1 else in_flight)

    def _wide(self) -> bool:
        """Whether a member is wide enough to keep all CPU threads busy inside each layer on one segment.

        Such a model gains little from concurrent segments or batches but pays their activations twice
        (published HTDemucs, 60 s on 2 cores: 31 s and 2.0 GB peak RSS two single-threaded segments at a time,
        34.7 s and 1.2 GB one at a time on both threads; after the inference-memory changes of issue 15 one at
        a time takes 29.7-31.3 s and 1.07-1.10 GB, the demucs package 36 s and 1.29-1.47 GB), so it runs one
        segment at a time on all threads.
        """
        return any(sum(p.numel() for p in member.parameters()) > WIDE_MODEL_PARAMETERS for member in self.members)

    def _forward(self, member: int, inputs: torch.Tensor, threads: int | None = None) -> torch.Tensor:
        """One batch through member `member`; `threads` (worker threads only) sets that thread's intra-op threads."""
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            return self.runner(member)(inputs.to(self.device), threads or torch.get_num_threads()).float().cpu()

    def runner(self, member: int = 0):
        """The `stemgui.backends.Runner` of member `member` on the current device (made on first use)."""
        key = (member, str(self.device))
        with self._runners_lock:  # two worker threads may ask for the first time together
            runner = self._runners.get(key)
            if runner is None:
                from stemgui.backends import prepare_runner

                runner = prepare_runner(self.members[member], self.backend, self.precision, device=self.device,
                                        threads=torch.get_num_threads())
                self._runners[key] = runner
        return runner

    def engine(self) -> dict:
        """What runs the model calls: {"backend", "precision", "notice", "requested"} (the first member's)."""
        return {**self.runner(0).describe(), "requested": {"backend": self.backend, "precision": self.precision}}

    def _model_input(self, mix: torch.Tensor, member: int, job: _Job, segment_length: int) -> tuple[torch.Tensor, int]:
        """The input of one job and the offset of the job's first sample in the model's output.

        A model with `valid_length` gets its segment padded to that length with the audio around it (zeros
        beyond the song), centred, like the reference `TensorChunk.padded`; the output is centre-trimmed back.
        A fixed-segment model (HTDemucs) is padded to the engine's segment length.
        """
        target = self._input_length(member, job.length, segment_length)
        delta = target - job.length
        if delta <= 0:
            return self._slice(mix, job.start, job.start + job.length), 0
        start = job.start - delta // 2
        return self._slice(mix, start, start + target), delta // 2

    def _input_length(self, member: int, length: int, segment_length: int) -> int:
        """Samples member `member` is given for a job of `length` samples (see `_model_input`)."""
        model = self.members[member]
        if getattr(model, "use_train_segment", False):
            return segment_length
        # a last job of a few samples (the song's length just past a stride) gets the audio around it too:
        # a small model's deepest layer would otherwise normalise a single value
        length = max(length, min(MIN_MODEL_INPUT, segment_length))
        if hasattr(model, "valid_length"):
            return int(model.valid_length(length))
        return length

    def _run(self, mix: torch.Tensor, segments: list[float], progress: ProgressFn | None,
             cancel: CancelToken | None, on_chunk: ChunkFn | None, keep_output: bool) -> np.ndarray | None:
        channels, length = mix.shape
        n_src = len(self.sources)
        segment_lengths = [int(round(seg * self.samplerate)) for seg in segments]
        passes, jobs = self._jobs(length, segment_lengths)
        windows = {n: transition_window(n, self.settings.transition_power) for n in set(segment_lengths)}
        for member, seg_len in enumerate(segment_lengths):  # the input length of a full segment, per member
            self.runner(member).set_main_length(self._input_length(member, seg_len, seg_len))
        output = np.zeros((n_src, channels, length), dtype=np.float32) if keep_output else None
        workers, per_forward = self._schedule(max(segments))
        batches: list[list[_Job]] = []
        index = 0
        while index < len(jobs):
            batch = [jobs[index]]
            member = passes[batch[0].shift].member
            while (len(batch) < per_forward and index + len(batch) < len(jobs)
                   and jobs[index + len(batch)].length == batch[0].length
                   and passes[jobs[index + len(batch)].shift].member == member):
                batch.append(jobs[index + len(batch)])
            index += len(batch)
            batches.append(batch)
        refiner = (StreamingRefiner(self.refine_mode, self.sources, channels, length, samplerate=self.samplerate)
                   if self.refine_mode != "off" else None)

        def hand_over(start: int, end: int, region: np.ndarray) -> None:
            if output is not None:
                output[..., start:end] = region
            if on_chunk:
                on_chunk(start, end, region)

        def deliver(start: int, end: int, region: np.ndarray) -> None:
            """A finished region of model stems: refined (a little later) or handed over as it is."""
            if refiner is None:
                hand_over(start, end, region)
                return
            for piece in refiner.push(region, mix[..., start:end]):
                hand_over(*piece)

        emitted = 0
        total_work = sum(j.length for j in jobs)
        done_work = 0
        started = time.perf_counter()
        pass_starts: list[list[int]] = [[] for _ in passes]  # start of every job of each pass, in order
        for job in jobs:
            pass_starts[job.shift].append(job.start)
        consumed = [0] * len(passes)
        if progress:
            what = f"{len(self.members)} models" if len(self.members) > 1 else ""
            progress(Progress(0.0, None, f"separating on {self.device}"
                              + (f" ({workers} segments at a time)" if workers > 1 else "")
                              + (f", a bag of {what}" if what else "")))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="stemgui-separate") if workers > 1 else None
        main_threads = torch.get_num_threads()
        pending: deque = deque()
        submitted = 0
        try:
            while submitted < len(batches) or pending:
                while submitted < len(batches) and len(pending) < workers:
                    if cancel:
                        cancel.check()
                    batch = batches[submitted]
                    member = passes[batch[0].shift].member
                    seg_len = passes[batch[0].shift].segment_length
                    prepared = [self._model_input(mix, member, j, seg_len) for j in batch]
                    inputs = torch.stack([x for x, _ in prepared])
                    trims = [t for _, t in prepared]
                    if pool is None:
                        pending.append((batch, trims, _Done(self._forward(member, inputs))))
                    else:
                        pending.append((batch, trims, pool.submit(self._forward, member, inputs, 1)))
                    submitted += 1
                batch, trims, future = pending.popleft()
                estimates = future.result()
                if cancel:
                    cancel.check()
                for job, trim, est in zip(batch, trims, estimates):
                    p = passes[job.shift]
                    self._accumulate(p, job, est[..., trim:trim + job.length], windows[p.segment_length])
                    consumed[job.shift] += 1
                    done_work += job.length
                del estimates
                frontier = length
                for i, starts in enumerate(pass_starts):
                    if consumed[i] < len(starts):
                        frontier = min(frontier, starts[consumed[i]])
                frontier = min(max(0, frontier), length)
                if frontier > emitted:
                    deliver(emitted, frontier, self._finish(passes, mix, emitted, frontier))
                    emitted = frontier
                if progress:
                    elapsed = time.perf_counter() - started
                    frac = done_work / total_work
                    eta = elapsed * (1 - frac) / frac if frac > 0 else None
                    progress(Progress(frac, eta, ""))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                torch.set_num_threads(main_threads)  # the workers' setting also changed torch's global default
        if emitted < length:  # only reachable for degenerate inputs; keep the contract anyway
            deliver(emitted, length, self._finish(passes, mix, emitted, length))
        if refiner is not None:
            for start, end, region in refiner.finish():
                hand_over(start, end, region)
        return output

    @staticmethod
    def _slice(mix: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """mix[..., start:end] with zeros outside the signal (the shift padding)."""
        length = mix.shape[-1]
        lo, hi = max(start, 0), min(end, length)
        piece = mix[..., lo:hi]
        if lo - start or end - hi:
            piece = torch.nn.functional.pad(piece, (lo - start, end - hi))
        return piece

    @staticmethod
    def _accumulate(p: _Pass, job: _Job, est: torch.Tensor, window: torch.Tensor) -> None:
        weight = window[: job.length]
        end = job.start + job.length
        if p.out is None:
            p.base = job.start
            p.out = torch.zeros(est.shape[0], est.shape[1], 0)
            p.weight = torch.zeros(0)
        need = end - p.base
        if need > p.out.shape[-1]:
            grow = need - p.out.shape[-1]
            p.out = torch.cat([p.out, torch.zeros(*p.out.shape[:-1], grow)], dim=-1)
            p.weight = torch.cat([p.weight, torch.zeros(grow)])
        lo = job.start - p.base
        p.out[..., lo:lo + job.length].addcmul_(est, weight)  # in place: no segment-sized temporary
        p.weight[lo:lo + job.length] += weight

    def _finish(self, passes: list[_Pass], mix: torch.Tensor, start: int, end: int) -> np.ndarray:
        """Combine the passes over [start, end) (all final) and drop that region from their buffers.

        Each member's shifted passes are averaged, then members are mixed with the bag weights per source:
        sum_k w[k, s] * est_k[s] / sum_k w[k, s] (a single model: weight 1).
        """
        per_member: dict[int, list[torch.Tensor]] = {}
        for p in passes:
            lo, hi = start - p.base, end - p.base
            per_member.setdefault(p.member, []).append(p.out[..., lo:hi] / p.weight[lo:hi])
            # everything before `end` is final: trim it away to keep the buffer short
            p.out = p.out[..., hi:]
            p.weight = p.weight[hi:]
            p.base = end
        total = None
        for member, regions in per_member.items():
            mean = regions[0]
            for extra in regions[1:]:
                mean = mean + extra
            if len(regions) > 1:
                mean = mean / len(regions)
            if len(self.members) > 1:
                mean = mean * self.member_weights[member][:, None, None]
            total = mean if total is None else total + mean
        if len(self.members) > 1:
            total = total / self.member_weights.sum(0)[:, None, None]
        if self.settings.exact_sum:
            residual = mix[..., start:end] - total.sum(dim=0)
            target = self.sources.index("other") if "other" in self.sources else len(self.sources) - 1
            total[target] += residual
        return total.numpy()

    # ------------------------------------------------------------------ provenance
    def sidecar(self, input_path: str | os.PathLike | None, elapsed: float) -> dict:
        """What produced a result: model and its hash, settings, seed, input hash, version, time taken."""
        from stemgui import __version__

        return {
            "stemgui_version": __version__,
            "model": {"name": self.name, "path": str(self.model_path) if self.model_path else None,
                      "sha256": self.card.get("sha256")},
            "settings": self.settings.to_dict(),
            "refine": self.refine_mode,
            "refine_rules": RULES_VERSION if self.refine_mode != "off" else None,
            "device": str(self.device),
            "engine": self.engine(),
            "input": {"path": str(input_path) if input_path else None,
                      "sha256": file_sha256(input_path) if input_path else None},
            "sources": list(self.sources),
            "seconds": round(elapsed, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    # ------------------------------------------------------------------ streaming input
    def separate_stream(self, blocks: Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]], total_length: int,
                        progress: ProgressFn | None = None, cancel: CancelToken | None = None,
                        on_chunk: ChunkFn | None = None, *, with_mix: bool = False) -> None:
        """Separate a song that arrives as consecutive (channels, n) blocks at the model's rate, `total_length`
        samples in all, without ever holding the whole song: input is read on demand and dropped once no
        segment can need it (a look-behind of two segments plus the largest shift), and finished regions go to
        `on_chunk(start, end, stems)` in time order (`on_chunk(start, end, stems, mix)` with `with_mix`, `mix`
        being the input over the same region). Results equal `separate()` on the concatenated blocks.

        `blocks` may be a zero-argument callable returning a fresh iterable: then an out-of-memory retry (half
        segment, then the CPU) re-reads the input from the start, as `separate()` does; with a plain iterable
        an out-of-memory error is raised. Samples after `total_length` are ignored; a stream that ends early,
        or a block with the wrong channel count or NaN/inf samples, raises StemGUIError.
        """
        total_length = int(total_length)
        if total_length <= 0:
            raise StemGUIError("the audio is empty (0 samples)")
        reopen = blocks if callable(blocks) else None

        def attempt(scale: float) -> None:
            segments = self.member_segments(scale)
            source = reopen() if reopen is not None else blocks
            max_segment = max(int(round(seg * self.samplerate)) for seg in segments)
            behind = 2 * max_segment + int(MAX_SHIFT_SECONDS * self.samplerate) + self.samplerate
            mix = _StreamedMix(source, self.audio_channels, total_length, behind)

            def emit(start: int, end: int, region: np.ndarray) -> None:
                if on_chunk is not None:
                    if with_mix:
                        on_chunk(start, end, region, mix[..., start:end].numpy())
                    else:
                        on_chunk(start, end, region)
                mix.release(end - mix.behind)

            try:
                self._run(mix, segments, progress, cancel, emit, False)
            finally:
                mix.close()

        self._with_memory_fallback(attempt, progress, can_retry=reopen is not None)
        return None


class _StreamedMix:
    """The input of `Separator.separate_stream`: looks like a (channels, length) tensor to the engine, but holds
    only a window of it, read from the block stream on demand and dropped from the front by `release`.

    The engine only ever slices it as `mix[..., a:b]` with 0 <= a <= b <= length (its `_slice` pads outside the
    signal) and reads `mix.shape`; both work here, so `_run` needs no streaming-specific code.
    """

    def __init__(self, blocks: Iterable[np.ndarray], channels: int, length: int, behind: int) -> None:
        self.shape = (int(channels), int(length))
        self.behind = int(behind)
        self._iter = iter(blocks)
        self._buf = np.zeros((channels, 0), dtype=np.float32)
        self._lo = 0  # absolute index of _buf[:, 0]
        self._released = 0  # nothing before this may be asked for again
        self.peak_buffer = 0  # largest window held, in samples (tests and benchmarks read it)

    @property
    def _hi(self) -> int:
        return self._lo + self._buf.shape[1]

    def _read_until(self, end: int) -> None:
        channels, length = self.shape
        pieces = [self._buf[:, max(0, self._released - self._lo):]]
        lo = max(self._lo, self._released)
        have = lo + pieces[0].shape[1]
        while have < end:
            try:
                block = next(self._iter)
            except StopIteration:
                raise StemGUIError(f"the audio stream ended after {have} of the {length} samples it announced"
                                   ) from None
            block = np.asarray(block, dtype=np.float32)
            if block.ndim != 2 or block.shape[0] != channels:
                raise StemGUIError(f"expected audio blocks shaped (channels={channels}, samples), got "
                                   f"{tuple(block.shape)}")
            if not np.isfinite(block).all():
                raise StemGUIError("the audio contains NaN or infinite samples")
            block = block[:, : length - have]
            pieces.append(block)
            have += block.shape[1]
        self._buf = np.ascontiguousarray(np.concatenate(pieces, axis=1)) if len(pieces) > 1 else pieces[0]
        self._lo = lo
        self.peak_buffer = max(self.peak_buffer, self._buf.shape[1])

    def __getitem__(self, key) -> torch.Tensor:
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] is Ellipsis and isinstance(key[1], slice)
                and key[1].step in (None, 1)):
            raise TypeError(f"a streamed input is sliced as mix[..., a:b], not {key!r}")
        start, stop, _ = key[1].indices(self.shape[1])
        stop = max(start, stop)
        if start < self._released:
            raise AssertionError(f"streamed input: samples from {start} requested after release up to "
                                 f"{self._released} (look-behind of {self.behind} too short)")
        if stop > self._hi:
            self._read_until(stop)
        return torch.from_numpy(self._buf[:, start - self._lo:stop - self._lo].copy())

    def release(self, position: int) -> None:
        """Samples before `position` will not be asked for again (dropped at the next read)."""
        self._released = max(self._released, min(int(position), self.shape[1]))

    def close(self) -> None:
        close = getattr(self._iter, "close", None)
        if close is not None:
            close()
        self._buf = np.zeros((self.shape[0], 0), dtype=np.float32)


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = [
    "CancelToken", "Progress", "SeparationResult", "SeparationSettings", "Separator",
    "pick_device", "transition_window",
]
