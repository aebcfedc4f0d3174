"""Training speed on the CPU: steps/s and samples/s for the default model size with each loss preset.

Times `Trainer.train_step` on one fixed batch (data loading excluded), after one warm-up step, with the
discriminator active from step 0 for the GAN preset. Writes benchmarks/results/train_speed.json.

    .venv/bin/python benchmarks/train_speed.py --dataset /work/data/synth
    .venv/bin/python benchmarks/train_speed.py --dataset DIR --threads 2 --steps 3 --presets l1,l1+stft
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "train_speed.json"


def time_preset(dataset: str, preset: str, args: argparse.Namespace, workdir: Path) -> dict:
    from stemgui.train.config import Config
    from stemgui.train.data import SegmentDataset
    from stemgui.train.trainer import Trainer

    cfg = Config()
    cfg.data.dataset = dataset
    cfg.data.segment = args.segment
    cfg.data.valid_fraction = 0.0
    cfg.model.channels, cfg.model.depth = args.channels, 6
    cfg.loss.preset = preset
    cfg.discriminator.d_warmup_steps = 0
    cfg.train.batch_size = args.batch_size
    cfg.train.steps = args.steps + 1
    cfg.train.progress = False
    cfg.train.out = str(workdir / f"{preset}.safetensors")
    cfg.train.run_dir = str(workdir / f"{preset}.run")
    trainer = Trainer(cfg)
    data = SegmentDataset(trainer.train_tracks, trainer.sources, cfg, args.batch_size)
    items = [data[i] for i in range(args.batch_size)]
    mix = torch.stack([item[0] for item in items])
    stems = torch.stack([item[1] for item in items])
    trainer.train_step(mix, stems)  # warm-up (allocations, D start)
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        trainer.train_step(mix, stems)
        times.append(time.perf_counter() - started)
    per_step = sorted(times)[len(times) // 2]
    return {"s_per_step_median": round(per_step, 3), "steps_per_s": round(1 / per_step, 4),
            "samples_per_s": round(args.batch_size / per_step, 3),
            "audio_seconds_per_s": round(args.batch_size * args.segment / per_step, 3),
            "all_step_times": [round(t, 3) for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="MUSDB18-HQ layout folder (e.g. a synth-dataset)")
    parser.add_argument("--presets", default="l1,l1+stft,l1+stft+gan")
    parser.add_argument("--channels", type=int, default=16, help="generator width (default model: 16)")
    parser.add_argument("--segment", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per preset (median reported)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets.split(","):
            results[preset] = time_preset(args.dataset, preset, args, Path(tmp))
            print(preset, json.dumps(results[preset]), flush=True)
    report = {"model": f"HDemucs channels={args.channels} depth=6", "segment": args.segment,
              "batch_size": args.batch_size, "threads": args.threads, "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg(), "presets": results, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = RESULTS.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_path, RESULTS)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
