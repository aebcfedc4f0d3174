"""The whole app on a real song: event-loop stalls and underruns while it separates, plays stretched, and both.

Phases, each measured with a 10 ms heartbeat on the GUI thread (longest gap, the GUI thread's own CPU time in it):
1. `separate`: the bundled model separates SONG in the window (fresh cache), nothing playing.
2. `stretch`: the stems play looped into JACK at 80 % tempo and -3 semitones, the tempo dragged every 100 ms.
3. `stretch+separate`: the same playback while a second model (the bundled weights, nudged so the cache misses)
   separates the song for A/B.
Also the audio thread's CPU share, the process's CPU time and peak RSS. Needs the JACK dummy device (design.md, "Headless audio"); run by hand:

    jackd --no-realtime -d dummy -r 44100 -p 1024 &
    .venv/bin/python benchmarks/app_stall.py [SONG]

Writes benchmarks/results/app_stall.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402
from PySide6.QtCore import QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from stemgui.gui.cache import StemCache  # noqa: E402
from stemgui.gui.dialogs import RecordingDialogs  # noqa: E402
from stemgui.gui.main_window import MainWindow  # noqa: E402
from stemgui.gui.settings import AppSettings  # noqa: E402
from stemgui.models.card import load_model, save_model  # noqa: E402
from stemgui.models.registry import resolve_model  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "app_stall.json"
DEFAULT_SONG = Path(__file__).resolve().parents[1].parent / "shared" / "examples" / "karissa-hobbs-lets-go-fishin.ogg"


class Heartbeat:
    """Longest gap between 10 ms ticks, and the most GUI-thread CPU time spent between two ticks."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self.ends: list[float] = []  # when each gap ended, seconds after start()
        self.busy = 0.0

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.gaps.append(now - self.last)
        self.ends.append(now - self.t0)
        self.busy = max(self.busy, cpu - self.last_cpu)
        self.last, self.last_cpu = now, cpu

    def start(self) -> None:
        self.last, self.last_cpu = time.perf_counter(), time.thread_time()
        self.t0 = self.last
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        gaps = sorted(self.gaps)
        worst = max(range(len(self.gaps)), key=self.gaps.__getitem__) if self.gaps else None
        return {"longest_gap_ms": round(gaps[-1] * 1000, 1) if gaps else None,
                "longest_gap_ended_at_s": round(self.ends[worst], 2) if worst is not None else None,
                "p99_gap_ms": round(gaps[int(0.99 * (len(gaps) - 1))] * 1000, 1) if gaps else None,
                "gaps_over_50ms": sum(g > 0.05 for g in gaps), "gaps_over_100ms": sum(g > 0.1 for g in gaps),
                "gui_busy_max_ms": round(self.busy * 1000, 1), "ticks": len(gaps)}


def wait(app: QApplication, predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        app.processEvents()
        time.sleep(0.002)


def nudged_copy(folder: Path) -> Path:
    """The bundled model with its weights changed by 1e-7 (same cost, another cache key)."""
    model, card = load_model(resolve_model("default"))
    with torch.no_grad():
        next(model.parameters()).add_(1e-7)
    card = {k: v for k, v in card.items() if k not in ("args", "architecture")}
    card["name"] = "default-nudged"
    return save_model(model, folder / "default_nudged.safetensors", card)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("song", nargs="?", default=str(DEFAULT_SONG))
    parser.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval (experiment)")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    tmp = Path(tempfile.mkdtemp(prefix="stemgui-app-stall-"))
    try:
        settings = AppSettings(QSettings(str(tmp / "settings.ini"), QSettings.IniFormat))
        win = MainWindow(settings, RecordingDialogs(), StemCache(tmp / "cache"), model="default")
        win.resize(1360, 860)
        win.show()
        if not win.audio_ok:
            sys.exit(f"app_stall: no audio device ({win.audio_reason}); start jackd (see the docstring)")
        result: dict = {"song": Path(args.song).name, "device": "cpu", "threads": torch.get_num_threads()}
        cpu0 = time.process_time()

        beat = Heartbeat()
        beat.start()
        t0 = time.monotonic()
        win.open_song(Path(args.song))
        wait(app, lambda: win.session is not None and win.session.complete and win.worker is not None
             and win.worker.isFinished(), 900)
        wait(app, lambda: all(l.columns_done >= l.layout_info.columns for l in win.lanes), 120)
        result["separate"] = {"seconds": round(time.monotonic() - t0, 1), **beat.stop()}
        result["song_seconds"] = round(win.session.duration, 1)

        win.set_loop(0.0, win.session.duration)
        win.enable_loop(True)
        win.practice.tempo_spin.setValue(80)
        win.practice.semitones_spin.setValue(-3)
        under0, starved0 = win.player.underruns, win.player.starved
        win.toggle_play()
        wait(app, lambda: win.player.stretching, 10)
        cb0, w0 = win.player.callback_cpu_seconds, time.monotonic()
        beat = Heartbeat()
        beat.start()
        step = [0]

        def drag() -> None:  # a tempo slider being dragged
            step[0] += 1
            win.practice.tempo_spin.setValue(60 + 5 * (step[0] % 9))

        dragger = QTimer()
        dragger.timeout.connect(drag)
        dragger.start(100)
        wait(app, lambda: time.monotonic() - w0 > 15, 30)
        dragger.stop()
        result["stretch"] = {"seconds": 15, **beat.stop(),
                             "underruns": win.player.underruns - under0, "starved": win.player.starved - starved0,
                             "audio_thread_cpu_percent": round(100 * (win.player.callback_cpu_seconds - cb0)
                                                               / (time.monotonic() - w0), 1)}

        other = nudged_copy(tmp)
        under0, starved0 = win.player.underruns, win.player.starved
        beat = Heartbeat()
        beat.start()
        dragger.start(100)
        t0 = time.monotonic()
        worker = win.compare_with_model(other)
        wait(app, worker.isFinished, 900)
        dragger.stop()
        result["stretch+separate"] = {"seconds": round(time.monotonic() - t0, 1), **beat.stop(),
                                      "underruns": win.player.underruns - under0,
                                      "starved": win.player.starved - starved0}
        result["process_cpu_seconds"] = round(time.process_time() - cpu0, 1)
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        result["loadavg"] = round(os.getloadavg()[0], 2)
        result["date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        win.shutdown()
        print(json.dumps(result, indent=1))
        RESULT.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
