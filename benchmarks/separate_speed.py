"""Separation speed and memory: our engine against the Demucs project's `apply_model`, same weights/settings.

Each measurement runs in a fresh child process so peak RSS is that run's alone. Writes
benchmarks/results/separate_speed.json. Run by hand (takes several minutes):

    .venv/bin/python benchmarks/separate_speed.py                 # 60 s and 10 min, both engines
    .venv/bin/python benchmarks/separate_speed.py --seconds 60    # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "separate_speed.json"
SR = 44100


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


def build_model(args_json: str):
    import torch

    from stemgui.models.hdemucs import HDemucs

    spec = json.loads(args_json)
    torch.manual_seed(0)
    model = HDemucs(spec["sources"], **spec["args"]).eval()
    if spec.get("weights"):
        from safetensors.torch import load_file

        model.load_state_dict(load_file(spec["weights"]))
    return model


def child(impl: str, seconds: float, args_json: str, segment: float, overlap: float, shifts: int,
          out: str | None) -> dict:
    import random

    import torch

    model = build_model(args_json)
    mix = make_input(seconds)
    started = time.perf_counter()
    if impl == "ours":
        from stemgui.separate import SeparationSettings, Separator

        settings = SeparationSettings(segment=segment, overlap=overlap, shifts=shifts, seed=7, batch_size=1,
                                      device="cpu")
        stems = Separator(model, settings).separate(mix)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from reference import import_demucs

        import_demucs()
        from demucs.apply import apply_model
        from demucs.hdemucs import HDemucs as RefHDemucs

        spec = json.loads(args_json)
        ref = RefHDemucs(spec["sources"], **spec["args"]).eval()
        ref.load_state_dict(model.state_dict())
        del model
        random.seed(7)
        started = time.perf_counter()
        with torch.no_grad():
            stems = apply_model(ref, torch.from_numpy(mix)[None], shifts=shifts, split=True, overlap=overlap,
                                segment=segment)[0].numpy()
    elapsed = time.perf_counter() - started
    if out:
        np.save(out, stems[..., : SR * 60])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"impl": impl, "seconds_audio": seconds, "seconds_wall": round(elapsed, 2),
            "rtf": round(elapsed / seconds, 4), "peak_rss_mb": round(peak_mb, 1)}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[60, 600])
    parser.add_argument("--segment", type=float, default=None, help="default: the model's segment")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--shifts", type=int, default=0)
    parser.add_argument("--impl", choices=("ours", "demucs", "both"), default="both")
    parser.add_argument("--child", choices=("ours", "demucs"), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.seconds[0], args.spec, args.segment, args.overlap, args.shifts, args.out)
        print(json.dumps(result))
        return
    spec = default_spec()
    segment = args.segment or float(spec["args"].get("segment", 40.0))
    impls = ["ours", "demucs"] if args.impl == "both" else [args.impl]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            outs = {}
            row = {"seconds_audio": seconds}
            for impl in impls:
                out = os.path.join(tmp, f"{impl}-{seconds}.npy")
                cmd = [sys.executable, __file__, "--child", impl, "--seconds", str(seconds), "--spec",
                       json.dumps(spec), "--segment", str(segment), "--overlap", str(args.overlap),
                       "--shifts", str(args.shifts), "--out", out]
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                if proc.returncode:
                    raise SystemExit(f"{impl} {seconds}s failed:\n{proc.stderr[-3000:]}")
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                print(json.dumps(result), flush=True)
                row[impl] = result
                outs[impl] = out
            if len(outs) == 2:
                a, b = np.load(outs["ours"]), np.load(outs["demucs"])
                row["max_abs_diff_first_60s"] = float(np.abs(a - b).max())
                row["time_ratio_ours_over_demucs"] = round(row["ours"]["seconds_wall"] / row["demucs"]["seconds_wall"], 3)
            runs.append(row)
    report = {"model": spec["name"], "args": spec["args"], "segment": segment, "overlap": args.overlap,
              "shifts": args.shifts, "threads": __import__("torch").get_num_threads(), "cpu_count": os.cpu_count(),
              "runs": runs, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
