"""Rubber Band through pylibrb (live, block by block) vs pedalboard.time_stretch (whole buffer): CPU and quality.

Signal: 20 s stereo, a harmonic tone (220 Hz, 8 partials, 1/k amplitudes). Target: tempo 0.8 and +2 semitones.
Quality: the tone's measured fundamental (should be 220 * 2**(2/12) = 246.94 Hz), the harmonic-to-residual ratio
(energy within 4 bins of the partials vs the rest of 100 Hz-4 kHz: smearing and artefacts lower it), the partials'
level error against 1/k (pedalboard preserves formants by default, which reshapes them) and the length error
(the real-time stretcher's unflushed tail). CPU: process time per second of audio (single thread). Writes benchmarks/results/stretch_compare.json.
pedalboard is not a dependency of StemGUI: `.venv/bin/pip install pedalboard==0.9.26` to rerun this comparison.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

SR = 44100
SECONDS = 20
TEMPO = 0.8
SEMITONES = 2.0


def tone(f0: float, seconds: float, clicks: bool) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 9)) * 0.2
    if clicks:
        x[(np.arange(len(t)) % (SR // 2)) < 64] += 0.5
    return np.stack([x, 0.8 * x]).astype(np.float32)


def spectrum(x: np.ndarray) -> np.ndarray:
    n = 8192
    frames = [x[0, i:i + n] * np.hanning(n) for i in range(SR, x.shape[1] - n - SR, n // 2)]
    return np.mean([np.abs(np.fft.rfft(f)) for f in frames], axis=0) + 1e-6


def quality(out: np.ndarray, expected_len: int) -> dict:
    """f0, harmonic-to-residual ratio (energy within 4 bins of k*f0 vs the rest of 100-4000 Hz), partial levels."""
    s = spectrum(out) ** 2
    res = SR / 8192
    f0_bin = np.argmax(s[int(150 / res):int(350 / res)]) + int(150 / res)
    target = 220 * 2 ** (SEMITONES / 12)
    band = np.zeros_like(s, bool)
    band[int(100 / res):int(4000 / res)] = True
    harm = np.zeros_like(s, bool)
    levels = []
    for k in range(1, 9):
        c = int(round(k * target / res))
        harm[c - 4:c + 5] = True
        levels.append(10 * np.log10(s[c - 4:c + 5].sum()))
    hrr = 10 * np.log10(s[harm & band].sum() / s[~harm & band].sum())
    ideal_levels = [20 * np.log10(1 / k) for k in range(1, 9)]
    partial_err = np.abs((np.array(levels) - levels[0]) - np.array(ideal_levels)).mean()
    return {"f0_hz": round(float(f0_bin * res), 2), "harmonic_to_residual_db": round(float(hrr), 1),
            "partial_level_error_db": round(float(partial_err), 2),
            "length_error": round(out.shape[1] / expected_len - 1, 4)}


def pylibrb_live(x: np.ndarray, engine: str) -> np.ndarray:
    import pylibrb
    opt = pylibrb.Option
    options = opt.PROCESS_REALTIME | (opt.ENGINE_FASTER if engine == "faster" else opt.ENGINE_FINER) | opt.THREADING_NEVER
    st = pylibrb.RubberBandStretcher(SR, 2, options, 1 / TEMPO, 2 ** (SEMITONES / 12))
    st.set_max_process_size(4096)
    pad = st.get_preferred_start_pad()
    delay = st.get_start_delay()
    st.process(np.zeros((2, pad), np.float32))
    out, pos = [], 0
    while pos < x.shape[1]:
        need = max(1, min(4096, st.get_samples_required()))
        st.process(np.ascontiguousarray(x[:, pos:pos + need]), final=pos + need >= x.shape[1])
        pos += need
        if st.available() > 0:
            out.append(st.retrieve_available())
    while st.available() > 0:
        out.append(st.retrieve_available())
    y = np.concatenate(out, axis=1)
    return y[:, delay:]


def pedalboard_offline(x: np.ndarray, hq: bool) -> np.ndarray:
    import pedalboard
    return pedalboard.time_stretch(x, SR, stretch_factor=TEMPO, pitch_shift_in_semitones=SEMITONES, high_quality=hq)


def main() -> None:
    x = tone(220, SECONDS, clicks=False)  # quality on the steady tone; CPU is about the same with clicks
    expected = int(x.shape[1] / TEMPO)
    rows = {}
    for name, fn in (("pylibrb R2 (faster) realtime", lambda: pylibrb_live(x, "faster")),
                     ("pylibrb R3 (finer) realtime", lambda: pylibrb_live(x, "finer")),
                     ("pedalboard time_stretch high_quality", lambda: pedalboard_offline(x, True)),
                     ("pedalboard time_stretch fast", lambda: pedalboard_offline(x, False))):
        t0 = time.process_time()
        y = fn()
        cpu = time.process_time() - t0
        rows[name] = {"cpu_s_per_audio_s": round(cpu / SECONDS, 4), **quality(y, expected)}
        print(name, rows[name])
    out = Path(__file__).parent / "results" / "stretch_compare.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"tempo": TEMPO, "semitones": SEMITONES, "seconds": SECONDS,
                               "expected_f0_hz": round(220 * 2 ** (SEMITONES / 12), 2), "results": rows}, indent=1))


if __name__ == "__main__":
    main()
