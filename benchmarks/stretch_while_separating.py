"""Six stretched lanes playing into JACK while the bundled model separates 150 s in a worker thread.

Tempo and transpose change every 100 ms (a dragged slider); counts underruns, blocks not ready in time and the
longest Qt event-loop gap. Run by hand with the JACK dummy device up (design.md, "Headless audio"):

    jackd --no-realtime -d dummy -r 44100 -p 1024 &
    .venv/bin/python benchmarks/stretch_while_separating.py

Writes benchmarks/results/stretch_while_separating.json.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QElapsedTimer, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from stemgui.gui.mixer import LaneMix  # noqa: E402
from stemgui.gui.player import Player  # noqa: E402
from stemgui.separate import SeparationSettings, Separator  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "stretch_while_separating.json"


def main() -> None:
    app = QApplication([])
    rng = np.random.default_rng(0)
    lanes = (0.05 * rng.standard_normal((6, 2, 44100 * 60))).astype(np.float32)
    player = Player(44100, blocksize=1024)
    player.load(lanes, [LaneMix()] * 6)
    player.set_tempo(0.9)
    player.open_stream()
    player.play()
    separator = Separator.from_path("default", SeparationSettings(device="cpu"))
    song = (0.1 * rng.standard_normal((2, 44100 * 150))).astype(np.float32)
    done = threading.Event()
    took: list[float] = []

    def separate() -> None:
        start = time.monotonic()
        separator.separate(song)
        took.append(time.monotonic() - start)
        done.set()

    gaps, clock, steps = [0.0], QElapsedTimer(), [0]
    clock.start()

    def tick() -> None:
        gaps.append(clock.restart() / 1000)
        steps[0] += 1
        if steps[0] % 10 == 0:
            player.set_tempo(0.5 + (steps[0] // 10 % 11) * 0.1)
            player.set_transpose(-12 + (steps[0] // 10 % 25))

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    threading.Thread(target=separate, daemon=True).start()
    underruns, starved = player.underruns, player.starved
    started = time.monotonic()
    while not done.is_set() and time.monotonic() - started < 300:
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    result = {
        "separation_seconds": round(took[0], 1) if took else None,
        "underruns": player.underruns - underruns, "starved": player.starved - starved,
        "longest_gap_ms": round(max(gaps[1:]) * 1000, 1), "gaps_over_50ms": sum(g > 0.05 for g in gaps),
        "ticks": len(gaps), "loadavg": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    player.close()
    print(json.dumps(result))
    RESULT.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
