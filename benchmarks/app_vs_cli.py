"""The app against the CLI on the same song (issue 14 item 7: the app within 1.2x the CLI's wall time).

Each run is a fresh child process with a fresh stem cache, settings and output folder:
- CLI: `stemgui separate SONG -o OUT --device cpu` with the bundled default model;
- app: `stemgui --screenshot SHOT --quit-when-done SONG`, offscreen (QT_QPA_PLATFORM=offscreen), which separates,
  draws every lane and exits, so its time includes the lanes, spectrograms, the cache write and the picture.
Wall time, CPU time (user + system of the child, from wait4) and peak RSS are recorded with the 1-minute load
average before and after (the machine is shared), plus the CPU seconds of each thread of the child by name
(sampled from /proc every 0.2 s, named as Python knows them, `native:COMM` for threads Python never saw,
such as torch's OpenMP pool: where the extra work goes). The two run interleaved (cli, app, app, cli, ...)
`--repeats` times each. Writes benchmarks/results/app_vs_cli.json. Run by hand:

    .venv/bin/python benchmarks/app_vs_cli.py                       # "Let's Go Fishin'", twice each
    .venv/bin/python benchmarks/app_vs_cli.py --song SONG --repeats 1 --only app
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "app_vs_cli.json"
DEFAULT_SONG = ROOT.parent / "shared" / "examples" / "karissa-hobbs-lets-go-fishin.ogg"
TARGET_RATIO = 1.2

# Runs the stemgui command line in this process while a thread samples every thread's CPU time from /proc.
CHILD = r"""
import atexit, json, os, sys, threading, time
report, argv = sys.argv[1], sys.argv[2:]
tick = os.sysconf("SC_CLK_TCK")
seen = {}
def sample():
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        py = names.get(tid, "")
        py = "" if py.startswith("Dummy-") else py  # a QThread: its native name says which
        name = py or seen.get(tid, ("",))[0] or "native:" + text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        seen[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
def loop():
    while True:
        sample()
        time.sleep(0.2)
threading.Thread(target=loop, name="bench-sampler", daemon=True).start()
def dump():
    sample()
    by_name = {}
    for name, cpu in seen.values():
        name = name.rstrip("0123456789_-") or name
        by_name[name] = round(by_name.get(name, 0.0) + cpu, 2)
    with open(report, "w") as f:
        json.dump(dict(sorted(by_name.items(), key=lambda kv: -kv[1])), f)
atexit.register(dump)
from stemgui.cli import main
code = main(argv)
dump()
os._exit(code)  # the report is written; skip interpreter teardown (not part of either's work)
"""


def run_once(kind: str, song: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"stemgui-{kind}-"))
    try:
        env = dict(os.environ, STEMGUI_CACHE_DIR=str(work / "cache"), STEMGUI_DATA_DIR=str(work / "data"),
                   XDG_CONFIG_HOME=str(work / "config"), QT_QPA_PLATFORM="offscreen",
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if kind == "cli":
            argv = ["separate", str(song), "-o", str(work / "out"), "--device", "cpu"]
        else:
            argv = ["--screenshot", str(work / "shot.png"), "--quit-when-done", str(song)]
        report = work / "threads.json"
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(report), *argv], env=env, cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err = proc.stderr.read() if proc.stderr else ""
        rc = os.waitstatus_to_exitcode(status)
        if rc != 0:
            raise SystemExit(f"{kind} failed ({rc}):\n{err[-3000:]}")
        threads = json.loads(report.read_text()) if report.exists() else {}
        return {"kind": kind, "seconds_wall": round(wall, 1), "seconds_cpu": round(usage.ru_utime + usage.ru_stime, 1),
                "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "loadavg_1min_before": round(load_before, 2),
                "loadavg_1min_after": round(os.getloadavg()[0], 2), "thread_cpu_seconds": threads,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--song", type=Path, default=DEFAULT_SONG)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", choices=("cli", "app"), default=None, help="measure one side only")
    ap.add_argument("--out", type=Path, default=RESULTS)
    opts = ap.parse_args()
    if not opts.song.is_file():
        raise SystemExit(f"{opts.song}: no such file")
    order = []
    for r in range(opts.repeats):
        order += ["cli", "app"] if r % 2 == 0 else ["app", "cli"]
    if opts.only:
        order = [k for k in order if k == opts.only]
    runs = []
    for kind in order:
        row = run_once(kind, opts.song)
        print(json.dumps(row), flush=True)
        runs.append(row)
    summary = {}
    for kind in ("cli", "app"):
        mine = [r for r in runs if r["kind"] == kind]
        if mine:
            summary[kind] = {k: statistics.median(r[k] for r in mine) for k in ("seconds_wall", "seconds_cpu",
                                                                                "peak_rss_mb")}
    if "cli" in summary and "app" in summary:
        summary["ratio_wall"] = round(summary["app"]["seconds_wall"] / summary["cli"]["seconds_wall"], 2)
        summary["ratio_cpu"] = round(summary["app"]["seconds_cpu"] / summary["cli"]["seconds_cpu"], 2)
        summary["target_ratio_wall"] = TARGET_RATIO
    result = {"song": opts.song.name, "model": "bundled default", "device": "cpu", "runs": runs, "median": summary}
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
