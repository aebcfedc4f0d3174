"""BSSEval speed: ours vs museval, side by side in one process, on 4-stem stereo tracks of 20 s and 3 minutes
with one source silent at the start (goal: >= 10x faster at every length, within 0.01 dB, same NaN frames).

Run by hand: `.venv/bin/python benchmarks/metric_speed.py [--seconds 20 180]`; writes
benchmarks/results/metric_speed.json with, per length, both times, the differences, the load average, and
where our time goes (correlations, filter solve, framewise projections). museval takes minutes on 3 minutes.

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


SILENT_START = 5.0  # seconds of silence at the start of the vocals: NaN frames, as in many real songs


class _Phases:
    """Wall time spent in named functions of stemgui.eval.bsseval (wrapped for the duration of a run)."""

    NAMES = ("lagged_products", "_toeplitz_solve", "_solve")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.NAMES, 0.0)
        self._real = {}

    def __enter__(self):
        for name in self.NAMES:
            real = self._real[name] = getattr(bsseval, name)

            def timed(*a, _real=real, _name=name, **k):
                t = time.perf_counter()
                try:
                    return _real(*a, **k)
                finally:
                    self.seconds[_name] += time.perf_counter() - t
            setattr(bsseval, name, timed)
        return self

    def __exit__(self, *exc) -> None:
        for name, real in self._real.items():
            setattr(bsseval, name, real)


def measure(seconds: float, run_museval: bool) -> dict:
    refs, ests = make_track(seconds)
    refs[3, : int(SILENT_START * SR)] = 0.0
    ests[3, : int(SILENT_START * SR)] = 0.0
    load_before = os.getloadavg()
    with _Phases() as phases:
        t0 = time.perf_counter()
        ours = bsseval.evaluate(refs, ests)
        ours_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    fast_sdr = bsseval.framewise_sdr(refs, ests)
    fast_time = time.perf_counter() - t0
    solve = phases.seconds["_toeplitz_solve"]
    where = {"correlations (lagged_products)": round(phases.seconds["lagged_products"], 3),
             "filter solve (block Levinson + residual check)": round(solve, 3),
             "of which dense fallback": round(phases.seconds["_solve"], 3),
             "framewise projections and the rest": round(ours_time - solve - phases.seconds["lagged_products"], 3)}
    print(f"{seconds:g} s: ours {ours_time:.2f} s (SDR only: {fast_time:.2f} s) {where}", flush=True)
    result = {
        "track": {"seconds": seconds, "sources": 4, "channels": 2, "samplerate": SR,
                  "silent_start_seconds": {"vocals": SILENT_START}},
        "load_average_before": [round(x, 2) for x in load_before],
        "ours_seconds": round(ours_time, 3),
        "ours_where_the_time_goes": where,
        "ours_sdr_only_seconds": round(fast_time, 3),
        "fast_sdr_max_abs_diff_db": float(np.nanmax(np.abs(fast_sdr - ours[0]))),
        "nan_frames": int(np.isnan(ours[0]).any(axis=0).sum()),
    }
    if run_museval:
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
        print(f"{seconds:g} s: museval {museval_time:.2f} s, speed-up {museval_time / ours_time:.1f}x, "
              f"max |diff| {diffs}", flush=True)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[20.0, 180.0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "metric_speed.json"))
    parser.add_argument("--skip-museval", action="store_true", help="time ours only")
    args = parser.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    runs = {r["track"]["seconds"]: r for r in previous.get("runs", [])}
    for seconds in args.seconds:
        runs[seconds] = measure(seconds, not args.skip_museval)
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "runs": [runs[k] for k in sorted(runs)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".metric_speed.", suffix=".json", dir=out.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(result, handle, indent=2)
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
