"""Engine backends: how one model call of the separation engine is executed (eager torch, compiled, ONNX Runtime).

Every backend runs the same numbers: the STFT, the standardisation and the inverse STFT always stay in torch
(`model.forward(mix, network=...)`), and a backend only replaces the model's `network(x, xt)`, the learned part
on real tensors of fixed shapes. `prepare_runner` turns a model into a `Runner` for the backend and precision
asked; what is unavailable here (no C++ compiler for torch.compile, no onnxruntime, an export that fails, a
precision the CPU lacks) falls back to eager fp32 with one logged notice, and the runner says what it really
runs, so `separation.json` records it.

Precisions: fp32 (all backends); int8 = dynamic int8 weights for the Linear and LSTM layers (eager, CPU);
fp16 / bf16 = autocast (CUDA; bf16 on a CPU only with native bf16 instructions).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
import io
import json
import logging
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from stemgui.errors import StemGUIError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "eager", "compile", "onnx")
PRECISIONS = ("auto", "fp32", "int8", "fp16", "bf16")
ONNX_OPSET = 17

Network = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def validate(backend: str, precision: str) -> None:
    if backend not in BACKENDS:
        raise StemGUIError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise StemGUIError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")


def onnxruntime_module():
    """The onnxruntime module, or None when it is not installed (it is optional)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None (blocked)
        return False


def has_compiler() -> bool:
    """torch.compile's CPU code generation needs a C++ compiler."""
    return any(shutil.which(name) for name in ("g++", "c++", "clang++"))


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX): without it bf16 is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _supports_network(model: nn.Module) -> bool:
    """Only models that expose `network(x, xt)` and take `forward(mix, network=...)` can swap their network."""
    if not callable(getattr(model, "network", None)):
        return False
    try:
        return "network" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def auto_choice(model: nn.Module, device: torch.device) -> tuple[str, str]:
    """(backend, precision) that `auto` means for this model on this device: eager fp32, as measured.

    Measured here (benchmarks/results/compute_limit.json, separate_speed_backends*.json, a shared 2-core
    machine): ONNX Runtime separates with the bundled HDemucs in ~0.7x eager's time and CPU (load 2; 0.76x at
    load 7) and runs an HDemucs channels-48 segment in 0.70x, once exported; but the export takes 20-70 s on
    first use (cached per model and shape after that), the peak RSS grows 25-35 % (already above the
    reference's with eager), and onnxruntime + onnx would become runtime dependencies. For HTDemucs it gave
    0.8-1.07x wall, 1.13x CPU and a 5.9 GB peak RSS. torch.compile took 200 s to compile a tiny HTDemucs and
    did not finish the bundled model in 8 minutes on two loaded cores; dynamic int8 gave 0.91-1.27x. So `auto`
    stays eager fp32 (off the CPU too: AMP and torch.compile only when asked) and the options are opt-in; ONNX
    for HDemucs on a CPU is the candidate default, and this is the one place to switch it on.
    """
    return "eager", "fp32"


def auto_summary(architecture: str, device: str = "auto") -> str:
    """What `auto` runs for a model of this architecture on this device setting, in words (the card panel)."""
    from stemgui.devices import pick_device

    try:
        kind = pick_device(device).type
    except Exception:  # noqa: BLE001 - an unavailable device is reported where it is used, not here
        kind = "cpu"
    backend, precision = auto_choice(nn.Module(), torch.device(kind))
    names = {"eager": "eager torch", "onnx": "ONNX Runtime", "compile": "torch.compile"}
    return f"{names[backend]}, {precision} on the {kind.upper()}"


_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_network(network: Network, precision: str, device: torch.device) -> Network:
    """`network` under autocast (AMP), its outputs back in fp32: the STFT and its inverse stay fp32 around it."""

    def run(x: torch.Tensor, xt: torch.Tensor | None):
        with torch.autocast(device.type, dtype=_DTYPES[precision]):
            y, yt = network(x, xt)
        return y.float(), (yt.float() if yt is not None else None)

    return run


@dataclass
class Runner:
    """One member's model call: `runner(inputs, threads)` -> what `model(inputs)` returns, on the backend."""

    model: nn.Module
    backend: str
    precision: str
    device: torch.device
    notice: str = ""  # why it runs something else than was asked ("" when it runs what was asked)
    call: Callable[[torch.Tensor, int], torch.Tensor] | None = None

    def __call__(self, inputs: torch.Tensor, threads: int = 1) -> torch.Tensor:
        if self.call is None or self.backend == "eager":
            return self._eager(inputs)
        try:
            return self.call(inputs, threads)
        except Exception as exc:  # noqa: BLE001 - any failure of the fast path: eager from now on
            from stemgui.separate import is_out_of_memory

            if is_out_of_memory(exc):
                raise
            self._fall_back(f"{self.backend} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
            return self._eager(inputs)

    def _eager(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.precision in ("fp16", "bf16"):
            if _supports_network(self.model):
                return self.model(inputs, network=autocast_network(self.model.network, self.precision, inputs.device))
            with torch.autocast(inputs.device.type, dtype=_DTYPES[self.precision]):
                return self.model(inputs).float()
        return self.model(inputs)

    def _fall_back(self, why: str) -> None:
        self.notice = f"{why}; using eager torch"
        log.warning("separation backend: %s", self.notice)
        self.backend = "eager"
        self.call = None

    def set_main_length(self, length: int | None) -> None:
        """The engine's full-segment input length: the one shape a backend with per-shape cost is used for."""
        if isinstance(self.call, _OnnxNetwork):
            self.call.main_length = length

    def describe(self) -> dict:
        return {"backend": self.backend, "precision": self.precision, "notice": self.notice}


def prepare_runner(model: nn.Module, backend: str = "auto", precision: str = "auto", *,
                   device: torch.device, threads: int = 1) -> Runner:
    """A `Runner` for `model` (already on `device`, in eval mode); `runner.describe()` says what it runs.

    Never raises for an unavailable option: the runner falls back to eager fp32 and logs one notice.
    `threads` is only a hint for the first ONNX session; each call passes its own.
    """
    validate(backend, precision)
    auto_backend, auto_precision = auto_choice(model, device)
    want_backend = auto_backend if backend == "auto" else backend
    want_precision = auto_precision if precision == "auto" else precision
    notes: list[str] = []

    if want_precision == "int8" and (device.type != "cpu" or want_backend != "eager"):
        notes.append(f"int8 runs with the eager backend on a CPU only (asked: {want_backend} on {device.type})")
        want_precision = "fp32"
    if want_precision in ("fp16", "bf16") and device.type == "cpu" and not (want_precision == "bf16" and cpu_has_bf16()):
        notes.append(f"{want_precision} needs native support this CPU lacks")
        want_precision = "fp32"
    if want_precision in ("fp16", "bf16") and want_backend == "onnx":
        notes.append(f"{want_precision} is not exported to ONNX")
        want_precision = "fp32"

    run_model = model
    if want_precision == "int8":
        run_model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear, nn.LSTM},
                                                           dtype=torch.qint8)
    runner = Runner(run_model, "eager", want_precision, device)

    if want_backend != "eager":
        if not _supports_network(model):
            notes.append(f"{want_backend} needs a model with a swappable network (this is "
                         f"{getattr(model, 'architecture', type(model).__name__)})")
        elif want_backend == "onnx":
            if device.type != "cpu":
                notes.append("the ONNX backend runs on the CPU only")
            elif not getattr(model, "hybrid", True):
                notes.append("the ONNX backend needs a hybrid model")
            elif onnxruntime_module() is None:
                notes.append("onnxruntime is not installed")
            elif not _importable("onnx"):
                notes.append("onnx (torch's ONNX exporter needs it) is not installed")
            else:
                runner.backend, runner.call = "onnx", _OnnxNetwork(model, threads)
        elif want_backend == "compile":
            if device.type == "cpu" and not has_compiler():
                notes.append("torch.compile needs a C++ compiler (g++) on the CPU")
            else:
                runner.backend, runner.call = "compile", _CompiledNetwork(model, runner)
    if notes:
        runner.notice = "; ".join(notes) + f"; using {runner.backend} {runner.precision}"
        log.warning("separation backend: %s", runner.notice)
    return runner


class _OnnxNetwork:
    """The model's network exported to ONNX per input shape, run by ONNX Runtime (CPU).

    Exporting costs 10-70 s (measured), so an export is written to the user cache dir under a key of the
    weights, the model's source files, the shapes and the versions, and reused by every later run. With `main_length` set (the engine
    sets it to its full-segment input length) only inputs of that length run in ONNX Runtime and others (a
    song's shorter last segment, different for every song) in eager torch, the same way on every run, so a
    result does not depend on what happens to be cached. One session per (shapes, threads) is shared by the
    engine's workers (`run` is thread-safe and frees the GIL).
    """

    def __init__(self, model: nn.Module, threads: int) -> None:
        self.model = model
        self.sessions: dict[tuple, object] = {}
        self.lock = threading.Lock()
        self.threads = threads
        self.main_length: int | None = None
        self._weights_key: str | None = None

    def __call__(self, inputs: torch.Tensor, threads: int) -> torch.Tensor:
        return self.model(inputs, network=lambda x, xt: self._run(x, xt, threads))

    def _session(self, x: torch.Tensor, xt: torch.Tensor, threads: int):
        """The session for these shapes, or None where this call runs eager (not the main segment length)."""
        if self.main_length is not None and xt.shape[-1] != self.main_length:
            return None
        key = (tuple(x.shape), tuple(xt.shape), threads)
        with self.lock:
            session = self.sessions.get(key)
            if session is None:
                path = self._cache_path(x, xt)
                if not path.is_file():
                    self._export(x, xt, path)
                session = self._open(path, threads)
                self.sessions[key] = session
        return session

    def _cache_path(self, x: torch.Tensor, xt: torch.Tensor) -> Path:
        from stemgui.paths import user_cache_dir

        if self._weights_key is None:
            digest = hashlib.sha256()
            digest.update(json.dumps([type(self.model).__name__, getattr(self.model, "init_kwargs", {}),
                                      list(getattr(self.model, "sources", []))], sort_keys=True,
                                     default=str).encode())
            for module_name in sorted({type(m).__module__ for m in self.model.modules()}):  # the code, too
                source = getattr(sys.modules.get(module_name), "__file__", None)
                if source and Path(source).is_file():
                    digest.update(Path(source).read_bytes())
            for name, tensor in self.model.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._weights_key = digest.hexdigest()
        ort = onnxruntime_module()
        key = hashlib.sha256(f"{self._weights_key} {tuple(x.shape)} {tuple(xt.shape)} {torch.__version__} "
                             f"{ort.__version__} {ONNX_OPSET}".encode()).hexdigest()[:32]
        return user_cache_dir() / "onnx" / f"{type(self.model).__name__.lower()}-{key}.onnx"

    def _export(self, x: torch.Tensor, xt: torch.Tensor, path: Path) -> None:
        from stemgui.atomic import atomic_write_bytes

        buffer = io.BytesIO()
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(_NetworkModule(self.model), (x.clone(), xt.clone()), buffer, dynamo=False,
                              opset_version=ONNX_OPSET, input_names=["x", "xt"], output_names=["y", "yt"])
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
        log.info("exported the network for shapes %s / %s to %s (%.1f MB)", tuple(x.shape), tuple(xt.shape),
                 path, buffer.tell() / 1e6)

    @staticmethod
    def _open(path: Path, threads: int):
        ort = onnxruntime_module()
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = False  # the arena keeps every call's peak activations: +0.8 GB measured
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def _run(self, x: torch.Tensor, xt: torch.Tensor, threads: int) -> tuple[torch.Tensor, torch.Tensor]:
        session = self._session(x, xt, threads)
        if session is None:
            return self.model.network(x, xt)
        y, yt = session.run(None, {"x": x.contiguous().numpy(), "xt": xt.contiguous().numpy()})
        return torch.from_numpy(y), torch.from_numpy(yt)


class _CompiledNetwork:
    """The model's network through torch.compile (inductor), shapes static; the first call per shape compiles."""

    def __init__(self, model: nn.Module, runner: Runner) -> None:
        self.model = model
        self.compiled: Network | None = None  # made on the first call (importing the compiler takes seconds)
        self.lock = threading.Lock()
        self.warm: set[tuple] = set()
        self.runner = runner

    def __call__(self, inputs: torch.Tensor, threads: int) -> torch.Tensor:
        key = tuple(inputs.shape)
        if key in self.warm:
            return self._call(inputs)
        with self.lock:  # compile each shape once, not concurrently from two workers
            if self.compiled is None:
                self.compiled = torch.compile(self.model.network, dynamic=False)
            out = self._call(inputs)
            self.warm.add(key)
        return out

    def _call(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.runner.precision in ("fp16", "bf16"):
            return self.model(inputs, network=autocast_network(self.compiled, self.runner.precision, inputs.device))
        return self.model(inputs, network=self.compiled)


class _NetworkModule(nn.Module):
    """`model.network` as a module's forward, for the ONNX exporter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.network(x, xt)


__all__ = ["BACKENDS", "PRECISIONS", "Runner", "auto_choice", "auto_summary", "has_compiler", "onnxruntime_module",
           "prepare_runner", "validate"]
