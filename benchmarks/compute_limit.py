"""How far each model is from what the arithmetic allows on this machine.

For each architecture: the FLOPs of one segment (torch's FlopCounterMode, plus CPU fused attention, which it
does not count by itself; one convolution is checked against the textbook formula 2·Cout·Cin/groups·K·Lout),
turned into GFLOP per second of audio at the engine's 25 % overlap. Then every distinct heavy operation of that
forward (convolution, matmul/linear, attention: the shapes that make up >= 99 % of the FLOPs) is replayed alone
on random tensors of the same shapes, single-threaded, to measure the sustained GFLOP/s this CPU gives those
exact shapes. The compute limit of a separation is the sum over operations of FLOPs / sustained rate (one core;
halved for two cores working on different segments), set against the time one segment forward takes here in
eager torch (and in each other available backend of stemgui.backends) on the same core. A second, harder
bound: the same FLOPs at the core's large-sgemm peak (`peak_floor_seconds_*`), below which no fp32 engine goes.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compute_limit.py                 # all models
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compute_limit.py --models bundled --backends eager onnx

Writes benchmarks/results/compute_limit.json. The machine is shared: the load average is recorded per model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results" / "compute_limit.json"
SR = 44100
OVERLAP = 0.25
aten = torch.ops.aten

if aten._scaled_dot_product_flash_attention_for_cpu not in flop_registry:
    @register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
    def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        """CPU fused attention: Q·Kᵀ and P·V, as for the CUDA kernels torch already counts."""
        return sdpa_flop_count(query_shape, key_shape, value_shape)

HEAVY = {aten.convolution, aten.addmm, aten.mm, aten.bmm, aten._scaled_dot_product_flash_attention_for_cpu}
KIND = {aten.convolution: "conv", aten.addmm: "matmul", aten.mm: "matmul", aten.bmm: "matmul",
        aten._scaled_dot_product_flash_attention_for_cpu: "attention"}


def _recording_counter(calls: dict[str, dict]) -> FlopCounterMode:
    """A FlopCounterMode that also records every heavy op's arguments (tensors as shapes) and FLOPs in `calls`."""

    def recording(packet):
        base = flop_registry[packet]

        def formula(*args, out_val=None, **kwargs):
            flops = base(*args, out_val=out_val, **kwargs)
            spec = [("T", tuple(a.shape), str(a.dtype)) if torch.is_tensor(a) else a for a in args]
            entry = calls.setdefault(f"{packet.__name__}{spec}", {"op": packet, "kind": KIND[packet], "args": spec,
                                                                  "count": 0, "flops_each": int(flops)})
            entry["count"] += 1
            return flops

        formula._get_raw = True  # FlopCounterMode passes the tensors themselves, not their shapes
        return formula

    return FlopCounterMode(display=False, custom_mapping={packet: recording(packet) for packet in HEAVY})


def _replay_rate(entry: dict, min_seconds: float = 0.3) -> float:
    """Sustained GFLOP/s of one op shape alone, one thread, random inputs (best of several timed runs)."""
    gen = torch.Generator().manual_seed(0)
    args = [torch.randn(a[1], generator=gen) if isinstance(a, tuple) and a and a[0] == "T" else a
            for a in entry["args"]]
    func = entry["op"].default
    with torch.inference_mode():
        func(*args)
        best = math.inf
        spent, runs = 0.0, 0
        while spent < min_seconds or runs < 3:
            started = time.perf_counter()
            func(*args)
            took = time.perf_counter() - started
            best, spent, runs = min(best, took), spent + took, runs + 1
    return entry["flops_each"] / best / 1e9


def check_conv_by_hand() -> dict:
    """One Conv1d of the HDemucs time branch counted by FlopCounterMode and by 2·Cout·(Cin/groups)·K·Lout."""
    conv = torch.nn.Conv1d(48, 96, 8, stride=4, padding=2)
    x = torch.randn(1, 48, 44100)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        y = conv(x)
    by_hand = 2 * conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel_size[0] * y.shape[-1]
    counted = counter.get_total_flops()
    if counted != by_hand:
        raise SystemExit(f"flop counter {counted} != hand count {by_hand} for {conv}")
    return {"layer": str(conv), "input": list(x.shape), "counted": counted, "by_hand": by_hand}


def model_specs(names: list[str]) -> dict[str, dict]:
    """name -> {spec for separate_speed.build_model, members, segment seconds}."""
    from separate_speed import PUBLISHED_HTDEMUCS, default_spec

    bundled = default_spec()
    wide = {**bundled, "args": {**bundled["args"], "channels": 48}, "weights": None,
            "name": "HDemucs bundled layout at channels 48 (random weights)"}
    ht = {"architecture": "htdemucs", "sources": ["drums", "bass", "other", "vocals"],
          "args": dict(PUBLISHED_HTDEMUCS), "weights": None, "name": "HTDemucs, published size (random weights)"}
    table = {"bundled": (bundled, 1, 10.0), "hdemucs48": (wide, 1, 10.0), "htdemucs": (ht, 1, 7.8),
             "htdemucs_ft": (ht, 4, 7.8)}
    return {n: {"spec": table[n][0], "members": table[n][1], "segment": table[n][2]} for n in names}


def measure_model(name: str, entry: dict, backends: list[str], audio_seconds: float) -> dict:
    from separate_speed import build_model

    from stemgui.backends import prepare_runner

    model = build_model(entry["spec"])
    segment = entry["segment"]
    x = torch.randn(1, 2, int(round(segment * SR)), generator=torch.Generator().manual_seed(1))
    recorded: dict[str, dict] = {}
    counter = _recording_counter(recorded)
    with torch.inference_mode(), counter:
        reference = model(x)
    total = counter.get_total_flops()
    by_kind: dict[str, int] = defaultdict(int)
    for call in recorded.values():
        by_kind[call["kind"]] += call["flops_each"] * call["count"]
    # per second of audio, at the engine's overlap: each sample is computed 1 / (1 - overlap) times
    per_audio_second = total / segment / (1 - OVERLAP)
    calls = sorted(recorded.values(), key=lambda c: -c["flops_each"] * c["count"])
    covered, limit_seconds, shapes = 0, 0.0, []
    for call in calls:
        if covered >= 0.99 * total:
            break
        rate = _replay_rate(call)
        flops = call["flops_each"] * call["count"]
        covered += flops
        limit_seconds += flops / (rate * 1e9)
        shapes.append({"kind": call["kind"], "args": str(call["args"])[:160], "count": call["count"],
                       "gflop": round(flops / 1e9, 3), "sustained_gflops": round(rate, 1)})
    limit_seconds *= total / covered  # the uncovered <= 1 % at the covered ops' mean rate
    timings = {}
    with torch.inference_mode():
        for backend in backends:
            runner = prepare_runner(model, backend, "fp32", threads=1, device=torch.device("cpu"))
            started = time.perf_counter()
            out = runner(x, 1)  # warm-up: compiles / exports this shape
            warm_up = time.perf_counter() - started
            if runner.backend != backend:
                timings[backend] = {"unavailable": runner.notice}
                continue
            best = math.inf
            for _ in range(2):
                started = time.perf_counter()
                out = runner(x, 1)
                best = min(best, time.perf_counter() - started)
            timings[backend] = {"segment_seconds": round(best, 3), "first_call_seconds": round(warm_up, 1),
                                "max_abs_diff_vs_eager": float((out - reference).abs().max())}
    members = entry["members"]
    segments_per_audio_second = 1 / segment / (1 - OVERLAP)
    row = {
        "model": entry["spec"]["name"] + (f" x {members} (bag)" if members > 1 else ""),
        "segment_seconds": segment, "members": members,
        "gflop_per_segment": round(total / 1e9, 3),
        "gflop_per_audio_second": round(members * per_audio_second / 1e9, 3),
        "gflop_by_kind_per_segment": {k: round(v / 1e9, 3) for k, v in by_kind.items()},
        "uncounted_gflop_per_segment": round((total - sum(by_kind.values())) / 1e9, 3),
        "arithmetic_seconds_per_segment_1core": round(limit_seconds, 3),
        "mean_sustained_gflops_1core": round(total / limit_seconds / 1e9, 1),
        "heavy_shapes": shapes,
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
    seconds = audio_seconds
    row[f"limit_seconds_{int(seconds)}s_audio_2cores"] = round(
        members * limit_seconds * seconds * segments_per_audio_second / 2, 2)
    for backend, timing in timings.items():
        if "segment_seconds" in timing:
            timing[f"seconds_{int(seconds)}s_audio_2cores"] = round(
                members * timing["segment_seconds"] * seconds * segments_per_audio_second / 2, 2)
            timing["over_limit"] = round(timing["segment_seconds"] / limit_seconds, 2)
    row["backends"] = timings
    row["eager_time_by_kind"] = time_by_kind(model, x)
    return row


# Which profiler op names are which work; the first matching prefix wins, anything else is "elementwise/norm".
KIND_OF_OP = (
    ("conv", ("aten::mkldnn_convolution", "aten::_slow_conv2d", "aten::_convolution", "aten::convolution",
              "aten::slow_conv", "aten::thnn_conv", "aten::_nnpack")),
    ("matmul", ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::matmul", "aten::linear")),
    ("attention", ("aten::_scaled_dot_product", "aten::_softmax")),
    ("lstm", ("aten::mkldnn_rnn", "aten::lstm", "aten::_thnn_fused_lstm")),
    ("stft/istft", ("aten::_fft_", "aten::unfold_backward", "aten::stft", "aten::istft", "aten::reflection_pad")),
    ("copies/fills", ("aten::copy_", "aten::cat", "aten::fill_", "aten::zero_", "aten::constant_pad",
                      "aten::clone", "aten::contiguous", "aten::empty")),
)


def time_by_kind(model: torch.nn.Module, x: torch.Tensor) -> dict[str, dict]:
    """Where one eager segment forward's time goes (torch profiler, self CPU time, one thread): the FLOP count
    covers conv / matmul / attention / lstm only, so the other kinds are what the compute limit leaves out."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(x)
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        kind = next((k for k, prefixes in KIND_OF_OP if event.key.startswith(prefixes)), "elementwise/norm")
        totals[kind] += event.self_cpu_time_total / 1e3
    whole = sum(totals.values())
    return {kind: {"ms": round(ms, 1), "share": round(ms / whole, 3)}
            for kind, ms in sorted(totals.items(), key=lambda item: -item[1])}


def add_peak_floor(row: dict, peak_gflops_1core: float, audio_seconds: float) -> None:
    """The time the counted FLOPs need at the core's large-sgemm peak on both cores: no fp32 engine that does
    this arithmetic can be faster here, whatever its kernels (a bound, not an estimate)."""
    row[f"peak_floor_seconds_{int(audio_seconds)}s_audio_2cores"] = round(
        row["gflop_per_audio_second"] * audio_seconds / (2 * peak_gflops_1core), 2)


def peak_matmul_gflops() -> float:
    """One thread, a large square sgemm: the most this core gives any shape."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * 2048**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bundled", "hdemucs48", "htdemucs", "htdemucs_ft"],
                        choices=["bundled", "hdemucs48", "htdemucs", "htdemucs_ft"])
    parser.add_argument("--backends", nargs="+", default=["eager", "compile", "onnx"])
    parser.add_argument("--audio-seconds", type=float, default=60.0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0] if Path("/proc/cpuinfo").exists() else ""
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu_count": os.cpu_count(),
              "cpu_flags": sorted(f for f in flags.split() if f.startswith(("avx", "amx", "fma", "f16c"))),
              "torch": torch.__version__, "conv_check": check_conv_by_hand(),
              "peak_matmul_gflops_1core": round(peak_matmul_gflops(), 1), "models": {}}
    print(json.dumps({k: v for k, v in report.items() if k != "models"}), flush=True)
    done: dict[str, dict] = {}
    for name, entry in model_specs(args.models).items():
        key = (json.dumps(entry["spec"], sort_keys=True), entry["segment"])
        base = next((row for k, row in done.items() if k == key), None)
        if base is not None:  # a bag of identical-size members: scale the single member's figures
            row = json.loads(json.dumps(base))
            row = _scale_bag(row, entry["members"], args.audio_seconds)
        else:
            row = measure_model(name, entry, args.backends, args.audio_seconds)
            done[key] = row
        add_peak_floor(row, report["peak_matmul_gflops_1core"], args.audio_seconds)
        report["models"][name] = row
        print(json.dumps({k: v for k, v in row.items() if k != "heavy_shapes"}), flush=True)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    from stemgui.atomic import atomic_write_text

    atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


def _scale_bag(row: dict, members: int, audio_seconds: float) -> dict:
    """A bag of `members` copies of one measured member: every per-audio figure times `members`."""
    row["model"] = row["model"] + f" x {members} (bag)"
    row["members"] = members
    row["gflop_per_audio_second"] = round(row["gflop_per_audio_second"] * members, 3)
    key = f"limit_seconds_{int(audio_seconds)}s_audio_2cores"
    row[key] = round(row[key] * members, 2)
    for timing in row["backends"].values():
        k = f"seconds_{int(audio_seconds)}s_audio_2cores"
        if k in timing:
            timing[k] = round(timing[k] * members, 2)
    row["loadavg_1min"] = round(os.getloadavg()[0], 2)
    return row


if __name__ == "__main__":
    main()
