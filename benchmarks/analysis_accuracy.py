"""Accuracy of the tempo and key estimates (stemgui.audio.analysis) on synthetic songs whose truth is known.

    .venv/bin/stemgui synth-dataset data/synth-eval --songs 16 --seconds 15 --seed 5 --subset test
    .venv/bin/python benchmarks/analysis_accuracy.py data/synth-eval/test

Reads each song's mixture and the tempo/key in its synth.json; counts a tempo within 4 % (and within 4 % of
half or double: the usual octave ambiguity), the key exact, and the key "close" (relative major/minor or a fifth
away, the MIREX weighting's neighbours). Writes benchmarks/results/analysis_accuracy.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stemgui.audio import load_audio
from stemgui.audio.analysis import NOTE_NAMES, analyse


def close_keys(tonic: int, mode: str, est_tonic: int, est_mode: str) -> bool:
    if est_mode == mode:
        return (est_tonic - tonic) % 12 in (5, 7)
    relative = (tonic + 9) % 12 if mode == "major" else (tonic + 3) % 12
    return est_tonic == relative


def main() -> None:
    root = Path(sys.argv[1])
    rows = []
    for song in sorted(p for p in root.iterdir() if p.is_dir()):
        meta = json.loads((song / "synth.json").read_text())["arrangement"]
        mix = next(song / n for n in ("mixture.wav", "mixture.flac") if (song / n).exists())
        x, sr = load_audio(mix)
        a = analyse(x, sr)
        tempo, key, mode = float(meta["tempo"]), int(meta["key"]), str(meta["mode"])
        ok = abs(a.bpm / tempo - 1) < 0.04
        octave = any(abs(a.bpm / (tempo * f) - 1) < 0.04 for f in (0.5, 1, 2))
        exact = a.key.tonic == key and a.key.mode == mode
        rows.append({"song": song.name, "tempo": tempo, "bpm": a.bpm, "tempo_ok": ok, "tempo_octave_ok": octave,
                     "key": f"{NOTE_NAMES[key]} {mode}", "estimated_key": a.key.name, "key_ok": exact,
                     "key_close": exact or close_keys(key, mode, a.key.tonic, a.key.mode)})
        print(rows[-1])
    n = len(rows)
    summary = {k: f"{sum(r[k] for r in rows)}/{n}" for k in ("tempo_ok", "tempo_octave_ok", "key_ok", "key_close")}
    print(summary)
    out = Path(__file__).parent / "results" / "analysis_accuracy.json"
    out.write_text(json.dumps({"summary": summary, "songs": rows}, indent=1))


if __name__ == "__main__":
    main()
