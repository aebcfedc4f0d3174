"""Peak memory of `stemgui separate` against the song's length (issue 14: constant memory at any length).

For each length a synthetic stereo song (decaying tones and noise bursts, seeded, 48 kHz so the resampling
streams are exercised too) is written block by block to a temporary 16-bit FLAC, then separated by the CLI
with the bundled default model in a fresh child process, whose peak RSS (ru_maxrss), wall and CPU time are
reported with the 1-minute load average before and after (the machine is shared). `--engine whole` measures
the old path for comparison (the whole song decoded, then `Separator.separate(keep_output=False)`).
Writes benchmarks/results/memory.json (merged by length and engine). Run by hand:

    .venv/bin/python benchmarks/memory.py                        # 1 and 10 minutes, streaming CLI
    .venv/bin/python benchmarks/memory.py --minutes 60           # the 1-hour case (about 10 min on 2 cores)
    .venv/bin/python benchmarks/memory.py --minutes 1 10 --engine whole
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "memory.json"
RATE = 48000
TARGET_MB = 1536  # a 1-hour stereo song under 1.5 GB with the bundled model


def write_song(path: Path, minutes: float, seed: int = 0) -> None:
    """Music-like signal written 10 s at a time (never held whole)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    freqs = (55, 110, 220, 330, 440, 660)
    phases = rng.uniform(0, 6, len(freqs))
    mods = rng.uniform(0.2, 2, len(freqs))
    n = int(minutes * 60 * RATE)
    block = 10 * RATE
    with sf.SoundFile(path, "w", samplerate=RATE, channels=2, format="FLAC", subtype="PCM_16") as f:
        for start in range(0, n, block):
            t = np.arange(start, min(start + block, n)) / RATE
            x = np.zeros((len(t), 2), np.float32)
            for fr, ph, mo in zip(freqs, phases, mods):
                x += (0.05 * np.sin(2 * np.pi * fr * t + ph) * (0.6 + 0.4 * np.sin(t * mo)))[:, None]
            x += 0.02 * rng.standard_normal((len(t), 2)) * (np.sin(2 * np.pi * 2 * t) > 0.9)[:, None]
            f.write(x)


CHILD = r"""
import json, os, resource, sys, time
engine, song, out = sys.argv[1:4]
load_before = os.getloadavg()[0]
started, cpu0 = time.perf_counter(), time.process_time()
if engine == "stream":
    from stemgui.cli import main
    rc = main(["separate", song, "-o", out, "--device", "cpu"])
else:
    from stemgui.audio import load_audio
    from stemgui.separate import SeparationSettings, Separator
    sep = Separator.from_path(None, SeparationSettings(device="cpu"))
    wav, _ = load_audio(song, samplerate=sep.samplerate, channels=2)
    sep.separate(wav, keep_output=False)
    rc = 0
print(json.dumps({"rc": rc, "seconds_wall": round(time.perf_counter() - started, 1),
                  "seconds_cpu": round(time.process_time() - cpu0, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "loadavg_1min_before": round(load_before, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2)}))
"""


def measure(minutes: float, engine: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="stemgui-memory-"))
    try:
        song = work / f"song-{minutes:g}min.flac"
        write_song(song, minutes)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        done = subprocess.run([sys.executable, "-c", CHILD, engine, str(song), str(work / "out")],
                              capture_output=True, text=True, env=env, cwd=work)
        if done.returncode != 0:
            raise SystemExit(f"child failed ({done.returncode}):\n{done.stderr[-3000:]}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row.update({"minutes": minutes, "engine": engine, "input": "48 kHz stereo 16-bit FLAC",
                    "input_mb": round(song.stat().st_size / 2 ** 20, 1), "model": "bundled default"})
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    ap.add_argument("--engine", choices=("stream", "whole"), default="stream")
    opts = ap.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": []}
    for minutes in opts.minutes:
        row = measure(minutes, opts.engine)
        row["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(json.dumps(row))
        results["runs"] = [r for r in results["runs"] if (r["minutes"], r["engine"]) != (minutes, opts.engine)]
        results["runs"].append(row)
    results["runs"].sort(key=lambda r: (r["engine"], r["minutes"]))
    results["target_mb_1h"] = TARGET_MB
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
