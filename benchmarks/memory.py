"""Peak memory of `stemgui separate` and of the app against the song's length (issue 14: constant memory).

For each length a synthetic stereo song (decaying tones and noise bursts, seeded, 48 kHz so the resampling
streams are exercised too) is written block by block to a temporary 16-bit FLAC, then handled in a fresh child
process, whose peak RSS (ru_maxrss), wall and CPU time are reported with the 1-minute load average before and
after (the machine is shared):
- `--engine stream` (default): the CLI separates it with the bundled default model;
- `--engine whole`: the old CLI path for comparison (the whole song decoded, then `Separator.separate`);
- `--engine app`: the app (offscreen, no audio device) opens the song and separates it, draws every lane, plays
  it through (every block the audio device would pull, rendered as fast as possible), and exports the four
  stems (FLAC) and the mix as heard (WAV) through its Export; peak RSS is also given after each phase;
- `--engine app-cached`: the same, but the song's cache entry is written first by another child (stems made
  from the song, not separated), so the app opens it from the cache: the lanes' memory without the model's,
  and a 1-hour case that does not take a 10-minute separation.
Writes benchmarks/results/memory.json (merged by length and engine). Run by hand:

    .venv/bin/python benchmarks/memory.py                        # 1 and 10 minutes, streaming CLI
    .venv/bin/python benchmarks/memory.py --minutes 60           # the 1-hour case (about 10 min on 2 cores)
    .venv/bin/python benchmarks/memory.py --minutes 1 10 --engine whole
    .venv/bin/python benchmarks/memory.py --minutes 1 10 60 --engine app-cached
    .venv/bin/python benchmarks/memory.py --minutes 1 --engine app
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
TARGET_APP_MB = 2560  # the app opens, plays and exports a 1-hour DJ mix under 2.5 GB


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


APP_CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
mode, song, out = sys.argv[1:4]
load_before = os.getloadavg()[0]
started, cpu0 = time.perf_counter(), time.process_time()
def peak_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
from PySide6.QtWidgets import QApplication
app = QApplication([])
from stemgui.gui.dialogs import ExportOptions, RecordingDialogs
from stemgui.gui.main_window import MainWindow
win = MainWindow(dialogs=RecordingDialogs(confirm_answer=True), enable_audio=False)
if mode == "prefill":  # the cache entry the app would write, with stems made from the song (not separated)
    import numpy as np
    from stemgui.audio import count_frames, iter_blocks
    from stemgui.gui.cache import cache_key, file_digest
    from stemgui.gui.workers import cache_settings
    from stemgui.models.card import read_card
    model = win.current_model_path()
    card = read_card(model)
    rate, sources = int(card.get("samplerate", 44100)), list(card["sources"])
    key = cache_key(file_digest(song), file_digest(model), cache_settings(win.separation_settings()))
    frames = count_frames(song, rate)
    writer = win.cache.writer(key, (1 + len(sources), 2, frames), rate, sources)
    share = np.linspace(0.4, 0.1, len(sources), dtype=np.float32)
    pos = 0
    for block in iter_blocks(song, 1 << 16, samplerate=rate, channels=2):
        n = block.shape[1]
        writer.audio[0, :, pos:pos + n] = block
        writer.audio[1:, :, pos:pos + n] = block[None] * share[:, None, None] / share.sum()
        pos += n
    writer.commit({"song": song, "model": "prefilled by benchmarks/memory.py"})
    os._exit(0)
win.resize(1400, 860)
win.show()
phases = {}
done = []
win.separation_done.connect(done.append)
win.open_song(song)
while not done or win.is_busy() or not win.pictures_complete():
    app.processEvents()
    time.sleep(0.005)
if done != [True]:
    raise SystemExit(f"opening failed: {win.dialogs.messages}")
phases["open"] = {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": peak_mb(),
                  "from_cache": win.session.from_cache}
t = time.perf_counter()
player = win.player
player.play()
blocks = 0
while player.playing and player.position < player.length:  # every block the device would pull
    player.render(player.blocksize)
    blocks += 1
    if blocks % 4000 == 0:
        app.processEvents()
phases["play"] = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": peak_mb(), "blocks": blocks}
t = time.perf_counter()
worker = win.export(ExportOptions(folder=out, fmt="flac", stems=tuple(win.session.stem_names), mix=True))
ended = []
for sig in (worker.finished_ok, worker.failed, worker.cancelled):
    sig.connect(lambda *a, sig=sig: ended.append(a))
while not ended:
    app.processEvents()
    time.sleep(0.01)
worker.wait()
phases["export"] = {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb": peak_mb(),
                    "files": len(list(Path(out).glob("*.flac")))}
print(json.dumps({"rc": 0, "seconds_wall": round(time.perf_counter() - started, 1),
                  "seconds_cpu": round(time.process_time() - cpu0, 1), "peak_rss_mb": peak_mb(), "phases": phases,
                  "loadavg_1min_before": round(load_before, 2), "loadavg_1min_after": round(os.getloadavg()[0], 2)}))
os._exit(0)
"""


def run_app(song: Path, work: Path, prefill: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               QT_QPA_PLATFORM="offscreen", STEMGUI_CACHE_DIR=str(work / "cache"),
               STEMGUI_DATA_DIR=str(work / "data"), XDG_CONFIG_HOME=str(work / "config"))
    (work / "out").mkdir()
    for mode in (["prefill"] if prefill else []) + ["measure"]:
        done = subprocess.run([sys.executable, "-c", APP_CHILD, mode, str(song), str(work / "out")],
                              capture_output=True, text=True, env=env, cwd=work)
        if done.returncode != 0:
            raise SystemExit(f"app child ({mode}) failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(minutes: float, engine: str) -> dict:
    work = Path(tempfile.mkdtemp(prefix="stemgui-memory-"))
    try:
        song = work / f"song-{minutes:g}min.flac"
        write_song(song, minutes)
        if engine.startswith("app"):
            row = run_app(song, work, prefill=engine == "app-cached")
        else:
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
    ap.add_argument("--engine", choices=("stream", "whole", "app", "app-cached"), default="stream")
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
    results["target_app_mb_1h"] = TARGET_APP_MB
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
