"""Peak RSS of `stemgui separate` (the streaming CLI) with a published-size HTDemucs (random weights) on a long
song (issue 12: a 10-minute song under 2.5 GB).

The song is benchmarks/memory.py's synthetic 48 kHz FLAC; the CLI runs in a child under /usr/bin/time -v, whose
"Maximum resident set size" is the figure. Slow: about 20 CPU-minutes for 10 minutes of audio. Writes
benchmarks/results/memory_htdemucs_<N>min.json. Run by hand:

    nice .venv/bin/python benchmarks/memory_htdemucs.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]


def main() -> None:
    import torch
    from memory import write_song
    from separate_speed import PUBLISHED_HTDEMUCS

    from stemgui.models.architectures import build_model
    from stemgui.models.card import save_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "stemgui-bench-htd")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    card = args.work / "htdemucs_random.safetensors"
    if not card.exists():
        torch.manual_seed(0)
        model = build_model("htdemucs", ["drums", "bass", "other", "vocals"], dict(PUBLISHED_HTDEMUCS))
        save_model(model, card, {"name": "htdemucs_random"})
    song = args.work / f"song_{args.minutes:g}min.flac"
    if not song.exists():
        write_song(song, args.minutes)
    out = args.work / f"out_{args.minutes:g}_{int(time.time())}"
    load_before, started = os.getloadavg(), time.time()
    child = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "stemgui", "separate", str(song),
                            "--model", str(card), "-o", str(out), "--backend", "eager"],
                           capture_output=True, text=True, cwd=str(ROOT))
    lines = child.stderr.splitlines()
    result = {"minutes": args.minutes, "rc": child.returncode, "wall_s": round(time.time() - started, 1),
              "max_rss": [line for line in lines if "Maximum resident" in line],
              "cpu": [line for line in lines if "User time" in line or "System time" in line],
              "load_before": load_before, "load_after": os.getloadavg(),
              "stderr_tail": child.stderr[-1500:] if child.returncode else ""}
    print(json.dumps(result, indent=1))
    path = ROOT / "benchmarks" / "results" / f"memory_htdemucs_{args.minutes:g}min.json"
    path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
