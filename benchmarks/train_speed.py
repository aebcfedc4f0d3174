"""Training speed on the CPU: steps/s and samples/s per architecture and size with each loss preset.

Times `Trainer.train_step` on one fixed batch (data loading excluded), after one warm-up step, with the
discriminator active from step 0 for the GAN preset. Without `--arch` it times the default model (HDemucs at
`--channels`) and writes benchmarks/results/train_speed.json; with `--arch NAME[,NAME...]` it times each
registered architecture at the `--sizes` below (or `default`: the class's own, i.e. the paper's, settings) and
writes benchmarks/results/train_speed_arch.json, with the load average before and after (the machine is shared).

    .venv/bin/python benchmarks/train_speed.py --dataset /work/data/synth
    .venv/bin/python benchmarks/train_speed.py --dataset DIR --threads 2 --steps 3 --presets l1,l1+stft
    .venv/bin/python benchmarks/train_speed.py --dataset DIR --arch waveunet,demucs1,convtasnet --sizes tiny,small
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "train_speed.json"
ARCH_RESULTS = RESULTS.with_name("train_speed_arch.json")

# Constructor arguments per architecture and size (model.extra; HDemucs's width goes through model.channels).
# tiny: a smoke-test size; small: a size that trains in hours on 2 CPU cores; default: the class defaults.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "hdemucs": {"tiny": {"channels": 8}, "small": {"channels": 16}},
    "demucs": {"tiny": {"channels": 8, "depth": 4}, "small": {"channels": 16, "depth": 6}},
    "demucs1": {"tiny": {"channels": 8, "depth": 4}, "small": {"channels": 16, "depth": 6}},
    "waveunet": {"tiny": {"levels": 6, "features": 8}, "small": {"levels": 12, "features": 12}},
    "convtasnet": {"tiny": {"N": 64, "B": 32, "H": 64, "X": 4, "R": 1},
                   "small": {"N": 128, "B": 128, "H": 256, "X": 8, "R": 2}},
    # the masking models: `small` is the size the MIR-1K run used (drnn) or half the paper's width (unet)
    "drnn": {"tiny": {"hidden": 64}, "small": {"hidden": 500}},
    "unet": {"tiny": {"channels": 4}, "small": {"channels": 8}},
    "nmf": {"tiny": {"components": 8, "fit_iterations": 10}, "small": {"components": 32}},
}


def time_preset(dataset: str, preset: str, args: argparse.Namespace, workdir: Path, arch: str = "hdemucs",
                extra: dict[str, Any] | None = None) -> dict:
    from stemgui.train.config import Config
    from stemgui.train.data import SegmentDataset
    from stemgui.train.trainer import Trainer

    cfg = Config()
    cfg.data.dataset = dataset
    cfg.data.segment = args.segment
    cfg.data.valid_fraction = 0.0
    cfg.model.architecture = arch
    extra = dict(extra or {})
    if arch == "hdemucs":
        cfg.model.channels, cfg.model.depth = int(extra.pop("channels", args.channels)), 6
    cfg.model.extra = extra
    cfg.loss.preset = preset
    cfg.discriminator.d_warmup_steps = 0
    cfg.train.batch_size = args.batch_size
    cfg.train.steps = args.steps + 1
    cfg.train.progress = False
    name = f"{arch}-{preset}"
    cfg.train.out = str(workdir / f"{name}.safetensors")
    cfg.train.run_dir = str(workdir / f"{name}.run")
    trainer = Trainer(cfg)
    data = SegmentDataset(trainer.train_tracks, trainer.sources, cfg, args.batch_size)
    items = [data[i] for i in range(args.batch_size)]
    mix = torch.stack([item[0] for item in items])
    stems = torch.stack([item[1] for item in items])
    # NMF is trained by fitting its dictionaries, not by gradient steps: time one `fit` on the batch instead
    step = (lambda: trainer.G.fit(stems)) if trainer.opt_g is None else (lambda: trainer.train_step(mix, stems))
    step()  # warm-up (allocations, D start)
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    per_step = sorted(times)[len(times) // 2]
    return {"s_per_step_median": round(per_step, 3), "steps_per_s": round(1 / per_step, 4),
            "samples_per_s": round(args.batch_size / per_step, 3),
            "audio_seconds_per_s": round(args.batch_size * args.segment / per_step, 3),
            "parameters": int(sum(p.numel() for p in trainer.G.parameters())),
            "all_step_times": [round(t, 3) for t in times]}


def _write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_path, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="MUSDB18-HQ layout folder (e.g. a synth-dataset)")
    parser.add_argument("--presets", default="l1,l1+stft,l1+stft+gan")
    parser.add_argument("--channels", type=int, default=16, help="generator width (default model: 16)")
    parser.add_argument("--arch", default="", help="comma-separated architectures to time at --sizes "
                        f"({', '.join(SIZES)}); default: only the default HDemucs")
    parser.add_argument("--sizes", default="tiny,small", help="comma-separated: tiny, small, default")
    parser.add_argument("--segment", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per preset (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None,
                        help=f"result file (default {RESULTS.name}, or {ARCH_RESULTS.name} with --arch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    presets = args.presets.split(",")
    if not args.arch:
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for preset in presets:
                results[preset] = time_preset(args.dataset, preset, args, Path(tmp))
                print(preset, json.dumps(results[preset]), flush=True)
        report = {"model": f"HDemucs channels={args.channels} depth=6", "segment": args.segment,
                  "batch_size": args.batch_size, "threads": args.threads, "cpu_count": os.cpu_count(),
                  "load_average": os.getloadavg(), "presets": results, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write(args.out or RESULTS, report)
        print(json.dumps(report, indent=2))
        return

    load_before = os.getloadavg()
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in [a.strip() for a in args.arch.split(",") if a.strip()]:
            for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
                extra = {} if size == "default" else SIZES.get(arch, {}).get(size)
                if extra is None:
                    raise SystemExit(f"no '{size}' size for {arch} (known: {', '.join(SIZES.get(arch, {}))})")
                entry: dict[str, Any] = {"architecture": arch, "size": size, "args": extra, "presets": {},
                                         "load_average_start": os.getloadavg()}
                for preset in presets:
                    entry["presets"][preset] = time_preset(args.dataset, preset, args, Path(tmp), arch, extra)
                    print(arch, size, preset, json.dumps(entry["presets"][preset]), flush=True)
                entry["load_average_end"] = os.getloadavg()
                runs[f"{arch}/{size}"] = entry
    report = {"segment": args.segment, "batch_size": args.batch_size, "threads": args.threads,
              "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "runs": runs, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write(args.out or ARCH_RESULTS, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
