"""Separation speed and memory: our engine against the Demucs project's `apply_model`, same weights/settings.

Both get the same model weights, segment, overlap and shifts, and the same torch thread count. Each measurement
runs in a fresh child process (so peak RSS is that run's alone) that first warms up on 2 s of audio, then
times one whole separation: wall time, CPU time of all threads, and the 1-minute load average before and after
(the machines we measure on are shared: a wall time means little without the load next to it). The two
engines run interleaved (ours, demucs, demucs, ours, ...) `--repeats` times; medians are reported. The
outputs are compared on their first and last minute (the whole output for inputs up to 2 minutes).
Writes benchmarks/results/separate_speed.json. Run by hand (the 10-minute input takes a long time):

    .venv/bin/python benchmarks/separate_speed.py                          # 60 s and 10 min, both engines
    .venv/bin/python benchmarks/separate_speed.py --seconds 60 --repeats 3
    .venv/bin/python benchmarks/separate_speed.py --arch htdemucs --seconds 60 --repeats 1   # published size
    .venv/bin/python benchmarks/separate_speed.py --seconds 20 --repeats 1 --backend eager onnx eager:int8
    .venv/bin/python benchmarks/separate_speed.py --impl ours --seconds 180 --repeats 3 --refine off vocals

`--backend` takes one or more engine options (BACKEND or BACKEND:PRECISION, see stemgui/backends.py); each is
a separate "ours" run in the same interleaved order, reported with its ratio to demucs, to the first option
and its max abs difference to both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "separate_speed.json"
SR = 44100
COMPARE_SECONDS = 60  # compared at the start and at the end of the output


def make_input(seconds: float, seed: int = 0) -> np.ndarray:
    """Music-like test signal: decaying tones and noise bursts, seeded."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    wav = np.zeros((2, n), np.float32)
    for f in (55, 110, 220, 330, 440, 660):
        wav += (0.05 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) * (0.6 + 0.4 * np.sin(t * rng.uniform(0.2, 2)))
                ).astype(np.float32)
    wav += (0.02 * rng.standard_normal((2, n)) * (np.sin(2 * np.pi * 2 * t) > 0.9)).astype(np.float32)
    return wav


PUBLISHED_HTDEMUCS = {"depth": 4, "channels": 48, "dconv_mode": 3, "dconv_comp": 8, "bottom_channels": 512,
                      "t_layers": 5, "t_heads": 8, "segment": 7.8}


def build_model(spec: dict):
    import torch

    from stemgui.models.architectures import build_model as build

    torch.manual_seed(0)
    model = build(spec.get("architecture", "hdemucs"), spec["sources"], spec["args"]).eval()
    if spec.get("weights"):
        from safetensors.torch import load_file

        model.load_state_dict(load_file(spec["weights"]))
    return model


def reference_class(architecture: str):
    """The `demucs` package's class for our architecture name (test/benchmark environment only)."""
    if architecture == "htdemucs":
        from demucs.htdemucs import HTDemucs

        return HTDemucs
    from demucs.hdemucs import HDemucs

    return HDemucs


def child(opts: argparse.Namespace) -> dict:
    """One timed separation in this (fresh) process; saves the compared parts of the output to `opts.out`."""
    import random

    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    threads = torch.get_num_threads()
    spec = json.loads(opts.spec)
    seconds = opts.seconds[0]
    model = build_model(spec)
    mix = make_input(seconds)
    warm = make_input(2.0, seed=1)
    if opts.child == "ours":
        from stemgui.separate import SeparationSettings, Separator

        settings = SeparationSettings(segment=opts.segment, overlap=opts.overlap, shifts=opts.shifts, seed=7,
                                      batch_size=opts.batch_size, device="cpu", refine=opts.refine[0])
        backend, _, precision = opts.backend[0].partition(":")
        separator = Separator(model, settings, workers=opts.workers, backend=backend, precision=precision or "auto")
        separator.separate(warm)
        warm_started = time.perf_counter()
        if separator.engine()["backend"] != "eager":  # export / compile the full-segment shapes before timing
            separator.separate(mix[:, : int(SR * min(seconds, 2 * separator.segment_seconds))])
        warm_seconds = time.perf_counter() - warm_started

        def run() -> np.ndarray:
            return separator.separate(mix)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from reference import import_demucs

        import_demucs()
        from demucs.apply import apply_model

        ref = reference_class(spec.get("architecture", "hdemucs"))(spec["sources"], **spec["args"]).eval()
        ref.load_state_dict(model.state_dict())
        del model

        warm_seconds = 0.0

        def run() -> np.ndarray:
            random.seed(7)
            with torch.no_grad():
                return apply_model(ref, torch.from_numpy(mix)[None], shifts=opts.shifts, split=True,
                                   overlap=opts.overlap, segment=opts.segment)[0].numpy()

        run_warm = apply_model(ref, torch.from_numpy(warm)[None], shifts=opts.shifts, split=True,
                               overlap=opts.overlap, segment=opts.segment)
        del run_warm
    load_before = os.getloadavg()[0]
    rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started, cpu_started = time.perf_counter(), time.process_time()
    stems = run()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    load_after = os.getloadavg()[0]
    n = SR * COMPARE_SECONDS
    compared = stems if stems.shape[-1] <= 2 * n else np.concatenate([stems[..., :n], stems[..., -n:]], axis=-1)
    np.save(opts.out, compared)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine = separator.engine() if opts.child == "ours" else {"backend": "demucs apply_model", "precision": "fp32"}
    return {"impl": opts.child, "engine": engine, "warm_up_seconds": round(warm_seconds, 2), "seconds_audio": seconds, "seconds_wall": round(elapsed, 2),
            "seconds_cpu": round(cpu, 2), "rtf": round(elapsed / seconds, 4), "peak_rss_mb": round(peak_mb, 1),
            "peak_rss_before_run_mb": round(rss_before_mb, 1),
            "torch_threads": threads, "loadavg_1min_before": round(load_before, 2),
            "loadavg_1min_after": round(load_after, 2)}


def arch_spec(arch: str) -> dict:
    if arch == "htdemucs":
        return {"architecture": "htdemucs", "sources": ["drums", "bass", "other", "vocals"],
                "args": dict(PUBLISHED_HTDEMUCS), "weights": None,
                "name": "HTDemucs, published htdemucs size (random weights)"}
    return default_spec()


def default_spec() -> dict:
    """The bundled default model's architecture and weights, or the published channels=16 size."""
    card = ROOT / "resources" / "models" / "default.json"
    if card.is_file():
        data = json.loads(card.read_text())
        args = {k: v for k, v in data["args"].items() if k != "sources"}
        return {"sources": data["sources"], "args": args, "weights": str(card.with_suffix(".safetensors")),
                "name": "default (bundled)"}
    return {"sources": ["drums", "bass", "other", "vocals"], "args": {"channels": 16}, "weights": None,
            "name": "HDemucs channels=16 (random weights)"}


def median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[60, 600])
    parser.add_argument("--arch", choices=("hdemucs", "htdemucs"), default="hdemucs",
                        help="hdemucs: the bundled default; htdemucs: the published htdemucs size")
    parser.add_argument("--segment", type=float, default=None,
                        help="seconds per segment, both engines (default: 10 for hdemucs, the model's 7.8 for htdemucs)")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--shifts", type=int, default=0)
    parser.add_argument("--repeats", type=int, nargs="+", default=[3, 1],
                        help="timed runs per engine, per --seconds entry (last value repeats)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in both engines (0: torch default)")
    parser.add_argument("--batch-size", type=int, default=4, help="ours: segments in flight (engine default 4)")
    parser.add_argument("--workers", type=int, default=None, help="ours: concurrent CPU segments (default: threads)")
    parser.add_argument("--impl", choices=("ours", "demucs", "both"), default="both")
    parser.add_argument("--refine", nargs="+", default=["off"],
                        help="ours: mixture refinement modes (stemgui.refine), each a separate 'ours' run per "
                        "backend, named ours:BACKEND+MODE (default: off, as demucs has none)")
    parser.add_argument("--backend", nargs="+", default=["auto"],
                        help="ours: engine option(s), BACKEND[:PRECISION] (default: auto)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=("ours", "demucs"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    spec = arch_spec(args.arch)
    if args.segment is None:
        args.segment = 10.0 if args.arch == "hdemucs" else None
    if args.output == RESULTS and args.arch != "hdemucs":
        args.output = RESULTS.with_name(f"separate_speed_{args.arch}.json")
    ours = ([f"ours:{b}" + ("" if r == "off" else f"+{r}") for b in args.backend for r in args.refine]
            if args.impl != "demucs" else [])
    impls = ours + (["demucs"] if args.impl != "ours" else [])
    report = {"model": spec["name"], "args": spec["args"], "segment": args.segment, "overlap": args.overlap,
              "shifts": args.shifts, "batch_size": args.batch_size, "workers": args.workers,
              "threads": args.threads or __import__("torch").get_num_threads(), "cpu_count": os.cpu_count(),
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "runs": [],
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    with tempfile.TemporaryDirectory() as tmp:
        for number, seconds in enumerate(args.seconds):
            repeats = args.repeats[min(number, len(args.repeats) - 1)]
            rows: dict[str, list[dict]] = {impl: [] for impl in impls}
            outs: dict[str, str] = {}
            for rep in range(repeats):
                order = impls if rep % 2 == 0 else impls[::-1]
                for impl in order:
                    out = os.path.join(tmp, f"{impl}-{seconds}.npy")
                    kind, _, option = impl.partition(":")
                    option, _, refine = option.partition("+")
                    cmd = [sys.executable, __file__, "--child", kind, "--seconds", str(seconds), "--spec",
                           json.dumps(spec), "--overlap", str(args.overlap),
                           "--shifts", str(args.shifts), "--threads", str(args.threads),
                           "--batch-size", str(args.batch_size), "--out", out]
                    if args.segment is not None:
                        cmd += ["--segment", str(args.segment)]
                    if args.workers:
                        cmd += ["--workers", str(args.workers)]
                    if option:
                        cmd += ["--backend", option]
                    if refine:
                        cmd += ["--refine", refine]
                    env = {**os.environ, "PYTHONPATH": str(ROOT)}
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if proc.returncode:
                        raise SystemExit(f"{impl} {seconds}s failed:\n{proc.stderr[-3000:]}")
                    result = json.loads(proc.stdout.strip().splitlines()[-1])
                    print(json.dumps(result), flush=True)
                    rows[impl].append(result)
                    outs[impl] = out
            row: dict = {"seconds_audio": seconds, "repeats": repeats, "runs": rows}
            for impl in impls:
                row[impl] = {key: median(rows[impl], key)
                             for key in ("seconds_wall", "seconds_cpu", "rtf", "peak_rss_mb", "loadavg_1min_before")}
            first = ours[0] if ours else None
            for impl in ours:
                a = np.load(outs[impl])
                row[impl]["engine"] = rows[impl][-1]["engine"]
                row[impl]["compared_seconds"] = round(a.shape[-1] / SR, 1)
                if impl != first:
                    row[impl]["max_abs_diff_vs_first"] = float(np.abs(a - np.load(outs[first])).max())
                    row[impl]["time_ratio_over_first"] = round(
                        row[impl]["seconds_wall"] / row[first]["seconds_wall"], 3)
                if "demucs" in outs:
                    row[impl]["max_abs_diff_vs_demucs"] = float(np.abs(a - np.load(outs["demucs"])).max())
                    row[impl]["time_ratio_over_demucs"] = round(
                        row[impl]["seconds_wall"] / row["demucs"]["seconds_wall"], 3)
                    row[impl]["cpu_ratio_over_demucs"] = round(
                        row[impl]["seconds_cpu"] / row["demucs"]["seconds_cpu"], 3)
            print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
            report["runs"].append(row)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = args.output.with_suffix(".json.tmp")
    tmp_path.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_path, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
