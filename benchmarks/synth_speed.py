"""How fast `stemgui synth-dataset` renders, as a multiple of real time (target: >= 10x on 2 cores).

Renders the same songs with 1 and with 2 processes into a temporary folder and writes
benchmarks/results/synth_speed.json. The machine's load average is recorded too: on a shared machine the
figure is a lower bound.

    .venv/bin/python benchmarks/synth_speed.py --songs 6 --seconds 30 --jobs 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from stemgui.data.synth import SynthSettings, synth_dataset

RESULTS = Path(__file__).resolve().parent / "results" / "synth_speed.json"


def measure(songs: int, seconds: float, jobs: int, seed: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="stemgui-synth-bench-"))
    try:
        load_before = os.getloadavg()[0]
        cpu0 = os.times()
        start = time.perf_counter()
        synth_dataset(out, songs, SynthSettings(seconds=seconds, seed=seed), jobs=jobs, progress=False)
        wall = time.perf_counter() - start
        cpu1 = os.times()
        cpu = (cpu1.user + cpu1.system + cpu1.children_user + cpu1.children_system) - (
            cpu0.user + cpu0.system + cpu0.children_user + cpu0.children_system)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    audio = songs * seconds
    return {
        "jobs": jobs, "songs": songs, "seconds_per_song": seconds, "audio_seconds": audio,
        "wall_seconds": round(wall, 2), "realtime_factor": round(audio / wall, 2),
        "cpu_seconds": round(cpu, 2), "realtime_factor_per_cpu_second": round(audio / max(cpu, 1e-9), 2),
        "loadavg_1min_before": round(load_before, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = [measure(args.songs, args.seconds, j, args.seed) for j in args.jobs]
    result = {
        "benchmark": "synth_speed", "target": ">= 10x real time on 2 cores",
        "cpus": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.output)
    for r in runs:
        print(f"jobs={r['jobs']}: {r['audio_seconds']:.0f} s of audio in {r['wall_seconds']:.1f} s = "
              f"{r['realtime_factor']:.1f}x real time ({r['realtime_factor_per_cpu_second']:.1f}x per CPU second, "
              f"load {r['loadavg_1min_before']:.1f})")


if __name__ == "__main__":
    main()
