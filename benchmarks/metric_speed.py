"""BSSEval speed: ours vs museval on a 3-minute 4-stem stereo track (goal: >= 10x faster, within 0.01 dB).

Run by hand: `.venv/bin/python benchmarks/metric_speed.py [--seconds 180]`; writes
benchmarks/results/metric_speed.json. museval takes a few minutes here.

The track is synthetic but recording-like (drum hits, bass line, chords, vibrato voice, each stem with its own
stereo room and a -80 dB noise floor); estimates leak the other stems and add noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stemgui.eval import bsseval  # noqa: E402

SR = 44100


def make_track(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(references, estimates) float32 (4, samples, 2), museval's layout."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    drums = np.zeros(n)
    for start in range(0, n, SR // 4):
        k = min(4000, n - start)
        drums[start : start + k] += rng.standard_normal(k) * np.exp(-np.arange(k) / 600)
    notes = 55 * 2 ** (rng.integers(0, 12, size=int(seconds) + 1) / 12)
    bass = np.sin(2 * np.pi * np.cumsum(notes[(t // 1).astype(int)]) / SR) * (0.6 + 0.4 * np.sin(4 * np.pi * t))
    chords = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((261.6, 329.6, 392.0, 523.2)))
    voice = np.sin(2 * np.pi * 440 * t + 3 * np.sin(10 * np.pi * t)) * (np.sin(1.4 * np.pi * t) > -0.3)
    dry = np.stack([drums, bass, 0.3 * chords, 0.5 * voice])
    refs = np.empty((4, n, 2))
    for s in range(4):
        for c in range(2):
            room = np.zeros(2000)
            room[0] = 0.5 + 0.3 * rng.random()
            room[rng.integers(100, 2000, 30)] = 0.05 * rng.standard_normal(30)
            refs[s, :, c] = fftconvolve(dry[s], room)[:n]
    refs += 1e-4 * rng.standard_normal(refs.shape)
    mix = refs.sum(axis=0)
    ests = 0.7 * refs + 0.3 * mix[None] / 4 + 0.01 * rng.standard_normal(refs.shape)
    return refs.astype(np.float32), ests.astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "metric_speed.json"))
    parser.add_argument("--skip-museval", action="store_true", help="time ours only")
    args = parser.parse_args()

    refs, ests = make_track(args.seconds)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    ours = bsseval.evaluate(refs, ests)
    ours_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast_sdr = bsseval.framewise_sdr(refs, ests)
    fast_time = time.perf_counter() - t0
    print(f"ours: {ours_time:.2f} s (SDR only: {fast_time:.2f} s)", flush=True)

    result = {
        "track": {"seconds": args.seconds, "sources": 4, "channels": 2, "samplerate": SR},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "load_average_before": [round(x, 2) for x in load_before],
        "ours_seconds": round(ours_time, 3),
        "ours_sdr_only_seconds": round(fast_time, 3),
        "fast_sdr_max_abs_diff_db": float(np.nanmax(np.abs(fast_sdr - ours[0]))),
    }
    if not args.skip_museval:
        import museval

        t0 = time.perf_counter()
        ref_scores = museval.evaluate(refs, ests)
        museval_time = time.perf_counter() - t0
        diffs = {}
        nan_agree = True
        for name, a, b in zip(("SDR", "ISR", "SIR", "SAR"), ours, ref_scores):
            b = np.asarray(b)
            nan_agree &= bool(np.array_equal(np.isnan(a), np.isnan(b)))
            diffs[name] = float(np.nanmax(np.abs(a - b)))
        result.update(
            museval_seconds=round(museval_time, 3),
            speedup=round(museval_time / ours_time, 2),
            max_abs_diff_db=diffs,
            max_abs_diff_db_all=max(diffs.values()),
            nan_frames_agree=nan_agree,
            median_sdr_db={n: float(np.nanmedian(x)) for n, x in zip(("drums", "bass", "other", "vocals"), ours[0])},
            goal_met=bool(museval_time / ours_time >= 10 and max(diffs.values()) <= 0.01 and nan_agree),
        )
        print(f"museval: {museval_time:.2f} s, speed-up {museval_time / ours_time:.1f}x, max |diff| {diffs}")
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".metric_speed.", suffix=".json", dir=out.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(result, handle, indent=2)
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
