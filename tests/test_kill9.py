"""Kill -9 anywhere: real child processes get SIGKILL at seeded random moments, and what they leave is checked.

(a) `python -m stemgui separate` with the bundled model: afterwards the song's folder is absent, the previous
    complete one byte for byte, or a complete new one; anything else it left is a hidden `.partial-`/`.old-`
    folder, and the next run cleans those up (restoring a previous folder a kill had moved aside).
(b) the app (offscreen, `--quit-when-done`) separating into a temporary cache: no half entry, `StemCache.get`
    of every entry is a miss or a whole entry (removed again, so that the next kill hits a separation too), and
    a rerun fills the cache (with the same stems) and removes the killed runs' staging folders.
(c) an export (stems and mix) overwriting an earlier one: each file is the previous export byte for byte or the
    complete new one, and a leftover temp file is one `remove_stale_temps` recognises.

Each kill waits for a phase of the child's work to begin (the CLI's staging folder or its first stem file; the
app's log lines for the song being opened, the separation starting, its first stems, the stems being saved to
the cache; the export's first temp file) and then a seeded random delay. The default run uses a few kill
moments (one to three per case); `-m slow` many more. The CLI runs with `--backend eager` where it has that option (what is under test is
the files; the ONNX backend first exports the model in every new process, ~20 s here under load).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

from helpers import make_stems

SEED = 14
SR = 44100
SONG_SECONDS = 4.0
REPO = Path(__file__).resolve().parents[1]
STEM_NAMES = ("drums", "bass", "other", "vocals")
CHILD_TIMEOUT = 600  # seconds: generous, the machine is shared
SLOW_TIMEOUT = 3600  # the many-kills tests start dozens of processes


@dataclass
class Kill:
    """One kill moment: wait for `phase` to begin, then a delay drawn from [0, `spread`) seconds."""

    phase: str
    spread: float


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    """A child's environment: one thread, offscreen Qt, every user folder inside tmp_path."""
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", QT_QPA_PLATFORM="offscreen",
             STEMGUI_CACHE_DIR=str(tmp_path / "cache"), STEMGUI_DATA_DIR=str(tmp_path / "data"),
             STEMGUI_LOG_DIR=str(tmp_path / "logs"), XDG_CONFIG_HOME=str(tmp_path / "config"),
             PYTHONPATH=os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    return e


@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "songs" / "kill me.wav"
    path.parent.mkdir()
    sf.write(path, make_stems(np.random.default_rng(SEED), SONG_SECONDS).sum(0).T, SR, subtype="PCM_16")
    return path


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, began: Callable[[], bool], delay: float, timeout: float = CHILD_TIMEOUT) -> bool:
    """SIGKILL `proc` `delay` s after `began()` turns true; False when it exited on its own first."""
    deadline = time.monotonic() + timeout
    while not began():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the phase to kill in never began")
        time.sleep(0.003)
    end = time.monotonic() + delay
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return True


def finish(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=CHILD_TIMEOUT)
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def moments(case: str, kills: list[Kill]) -> list[tuple[Kill, float]]:
    rng = random.Random(f"{SEED}-{case}")
    return [(k, rng.uniform(0.0, k.spread)) for k in kills]


# ============================================================================================ (a) stemgui separate
CLI_KILLS = [Kill("staging", 1.5), Kill("stems", 0.15)]
CLI_KILLS_SLOW = [Kill("start", 12.0)] * 3 + [Kill("staging", 4.0)] * 6 + [Kill("stems", 0.4)] * 6


def fake_previous_stems(folder: Path) -> dict[str, bytes]:
    """An earlier, complete separation of the song (tiny, recognisable): what a kill must leave alone."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in STEM_NAMES:
        sf.write(folder / f"{name}.wav", 0.01 * rng.standard_normal((100, 2)), SR, subtype="PCM_16")
    (folder / "separation.json").write_text(json.dumps({"previous": True}))
    return snapshot(folder)


def is_complete_separation(folder: Path, frames: int) -> bool:
    sidecar = folder / "separation.json"
    if not sidecar.is_file() or "model" not in json.loads(sidecar.read_text()):
        return False
    return all((folder / f"{n}.wav").is_file() and sf.info(folder / f"{n}.wav").frames == frames
               for n in STEM_NAMES)


def check_cli_outcome(out: Path, name: str, previous: dict[str, bytes], frames: int) -> str:
    """What the killed run left: 'previous', 'new' or 'absent'; anything else fails the test."""
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert visible in ([], [name]), visible
    for leftover in hidden:  # never something that looks finished
        assert re.fullmatch(rf"\.{re.escape(name)}\.(partial-\d+-\w+|old-\d+)", leftover), leftover
    if not visible:
        assert any(".old-" in h for h in hidden) or not previous, hidden
        return "absent"
    folder = out / name
    if snapshot(folder) == previous:
        return "previous"
    assert is_complete_separation(folder, frames), sorted(p.name for p in folder.iterdir())
    return "new"


def quick_backend() -> list[str]:
    """`--backend eager` where the CLI has the option: what is tested is the files, and eager starts at once
    (the ONNX backend exports the model first in every new process)."""
    from stemgui.cli import build_parser

    parser = build_parser(["separate"])
    separate = parser._subparsers._group_actions[0].choices["separate"]  # noqa: SLF001 - argparse has no API
    return ["--backend", "eager"] if "--backend" in separate._option_string_actions else []  # noqa: SLF001


def run_cli_kills(tmp_path: Path, song: Path, env: dict[str, str], kills: list[Kill]) -> list[str]:
    from stemgui.cli import main as cli_main

    out = tmp_path / "separated"
    backend = quick_backend()
    name = song.stem
    previous = fake_previous_stems(out / name)
    frames = sf.info(song).frames

    def phase_began(phase: str) -> Callable[[], bool]:
        def staging() -> list[Path]:
            return [p for p in out.iterdir() if p.name.startswith(f".{name}.partial-")]

        if phase == "start":
            return lambda: True
        if phase == "staging":
            return lambda: bool(staging())
        return lambda: any(f.suffix == ".wav" and not f.name.startswith(".") for s in staging()
                           for f in (s.iterdir() if s.exists() else ()))

    outcomes = []
    for kill, delay in moments("cli", kills):
        proc = start(["-m", "stemgui", "separate", str(song), "-o", str(out), *backend], env, tmp_path)
        killed = kill_when(proc, phase_began(kill.phase), delay)
        err = "" if killed else finish(proc)
        assert killed or proc.returncode == 0, err
        outcome = check_cli_outcome(out, name, previous, frames)
        outcomes.append(f"{kill.phase}+{delay:.2f}s:{'killed' if killed else 'finished'}:{outcome}")
        if outcome == "new":  # the next kill must again find a previous folder it could damage
            previous = snapshot(out / name)
    # the next run after the kills cleans up and writes a complete folder
    assert cli_main(["separate", str(song), "-o", str(out), *backend]) == 0
    assert sorted(p.name for p in out.iterdir()) == [name]
    assert is_complete_separation(out / name, frames)
    print("stemgui separate, kill -9 outcomes:", outcomes)
    return outcomes


def test_kill9_separate_cli(tmp_path, song, env):
    outcomes = run_cli_kills(tmp_path, song, env, CLI_KILLS)
    assert any(":killed:" in o for o in outcomes)


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT)
def test_kill9_separate_cli_many(tmp_path, song, env):
    outcomes = run_cli_kills(tmp_path, song, env, CLI_KILLS_SLOW)
    assert sum(":killed:" in o for o in outcomes) >= len(CLI_KILLS_SLOW) // 2


# ============================================================================================ (b) the app
APP_KILLS = [Kill("first stems ready", 0.3)]  # a 4 s song: the rest takes ~1 s on a quiet machine
APP_KILLS_SLOW = ([Kill("opening", 6.0)] * 2 + [Kill("Separating on", 6.0)] * 2 + [Kill("first stems ready", 6.0)] * 4
                  + [Kill("Saving stems", 0.3)] * 4)


def entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.exists() else []


def run_app_kills(tmp_path: Path, song: Path, env: dict[str, str], kills: list[Kill]) -> list[str]:
    from stemgui.gui.cache import StemCache

    root = tmp_path / "cache" / "stems"
    log_file = tmp_path / "logs" / "stemgui.log"
    frames = sf.info(song).frames
    args = ["-m", "stemgui", "--quit-when-done", "--no-audio", str(song)]

    def logged(text: str) -> Callable[[], bool]:  # the app logs the song it opens and each separation stage
        def seen() -> bool:
            try:
                return text in log_file.read_text(errors="replace")
            except OSError:
                return False

        return seen

    outcomes, hits = [], {}
    for kill, delay in moments("app", kills):
        if log_file.exists():
            log_file.unlink()
        proc = start(args, env, tmp_path)
        killed = kill_when(proc, logged(kill.phase), delay)
        err = "" if killed else finish(proc)
        assert killed or proc.returncode == 0, err
        cache = StemCache(root)
        state = "miss"
        for key in entries(root):
            got = cache.get(key)
            if got is not None:  # a whole entry: every lane, the song's length (the kill came after the commit)
                assert got.stems.shape == (4, 2, frames), got.stems.shape
                hits[key], state = np.array(got.stems), "hit"
                del got
                shutil.rmtree(root / key)  # so that the next run separates (and can be killed doing it) again
        outcomes.append(f"{kill.phase}+{delay:.2f}s:{'killed' if killed else 'finished'}:{state}")
    # a rerun (some minutes later: a writer may leave a young staging folder alone, it could be starting up)
    # separates and fills the cache, and the killed runs' staging folders are gone
    later = time.time() - 600
    for leftover in root.iterdir() if root.exists() else ():
        if ".partial-" in leftover.name:
            for p in [leftover, *leftover.rglob("*")]:
                os.utime(p, (later, later))
    print("app kill -9 outcomes:", outcomes)
    proc = start(args, env, tmp_path)
    err = finish(proc)
    assert proc.returncode == 0, err
    keys = entries(root)
    assert len(keys) == 1, keys
    got = StemCache(root).get(keys[0])
    assert got is not None and got.stems.shape == (4, 2, frames)
    if keys[0] in hits:  # what an earlier run committed is what this run computed
        np.testing.assert_allclose(hits[keys[0]], got.stems, atol=1e-6)
    partial = sorted(p.name for p in root.iterdir() if ".partial-" in p.name)
    print("left in the cache after the rerun:", sorted(p.name for p in root.iterdir()))
    assert partial == [], f"staging folders of killed runs were left in the cache: {partial}"
    return outcomes


def test_kill9_app_separation(tmp_path, song, env):
    outcomes = run_app_kills(tmp_path, song, env, APP_KILLS)
    assert any(":killed:" in o for o in outcomes)


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT)
def test_kill9_app_separation_many(tmp_path, song, env):
    outcomes = run_app_kills(tmp_path, song, env, APP_KILLS_SLOW)
    assert sum(":killed:" in o for o in outcomes) >= len(APP_KILLS_SLOW) // 2


# ============================================================================================ (c) export
EXPORT_KILLS = [Kill("temp", 0.12)] * 3  # the five files of 20 s take ~0.2 s on a quiet machine
EXPORT_KILLS_SLOW = [Kill("start", 1.5)] * 4 + [Kill("temp", 1.5)] * 12
EXPORT_SECONDS = 20.0

EXPORT_CHILD = """
import sys
import numpy as np
from stemgui.gui import export
from stemgui.mix import LaneMix
stems = np.load(sys.argv[1])
folder = sys.argv[2]
names = ["drums", "bass", "other", "vocals"]
export.export_stems(stems, names, 44100, folder, "song", "wav", confirm_overwrite=lambda paths: True)
export.export_mix(stems, [LaneMix()] * 4, 44100, folder + "/song - mix.wav", confirm_overwrite=lambda paths: True)
"""


def run_export_kills(tmp_path: Path, env: dict[str, str], kills: list[Kill]) -> list[str]:
    from stemgui.gui import export
    from stemgui.mix import LaneMix

    stems = make_stems(np.random.default_rng(SEED), EXPORT_SECONDS)
    new = tmp_path / "new.npy"
    np.save(new, stems)
    names = list(STEM_NAMES)
    folder, reference = tmp_path / "exported", tmp_path / "reference"
    export.export_stems(0.5 * stems, names, SR, folder, "song", "wav")  # the earlier export
    export.export_mix(0.5 * stems, [LaneMix()] * 4, SR, folder / "song - mix.wav")
    export.export_stems(stems, names, SR, reference, "song", "wav")  # what the new export writes
    export.export_mix(stems, [LaneMix()] * 4, SR, reference / "song - mix.wav")
    previous, complete = snapshot(folder), snapshot(reference)
    assert previous.keys() == complete.keys() and all(previous[k] != complete[k] for k in previous)

    def temp_began() -> bool:
        return any(p.name.startswith(".") for p in folder.iterdir())

    outcomes = []
    for kill, delay in moments("export", kills):
        for f, data in previous.items():  # every kill overwrites the earlier export again
            (folder / f).write_bytes(data)
        for p in folder.iterdir():
            if p.name.startswith("."):
                p.unlink()
        proc = start(["-c", EXPORT_CHILD, str(new), str(folder)], env, tmp_path)
        killed = kill_when(proc, (lambda: True) if kill.phase == "start" else temp_began, delay)
        err = "" if killed else finish(proc)
        assert killed or proc.returncode == 0, err
        state = []
        for f in sorted(previous):
            data = (folder / f).read_bytes()
            assert data in (previous[f], complete[f]), f"{f}: neither the previous export nor the new one"
            state.append("new" if data == complete[f] else "old")
        hidden = [p for p in folder.iterdir() if p.name.startswith(".")]
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(previous)
        for leftover in hidden:  # a killed writer's temp file: the next export of that file removes it
            target = folder / re.sub(r"^\.(.*)\.tmp-[0-9a-f]{8}(\.wav)$", r"\1\2", leftover.name)
            assert target.name in previous, leftover.name
            assert export.remove_stale_temps(target, older_than=-1.0) == [leftover]
        outcomes.append(f"{kill.phase}+{delay:.2f}s:{'killed' if killed else 'finished'}:{','.join(state)}")
    print("export kill -9 outcomes:", outcomes)
    return outcomes


def test_kill9_export(tmp_path, env):
    outcomes = run_export_kills(tmp_path, env, EXPORT_KILLS)
    assert any(":killed:" in o for o in outcomes)


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT)
def test_kill9_export_many(tmp_path, env):
    outcomes = run_export_kills(tmp_path, env, EXPORT_KILLS_SLOW)
    assert sum(":killed:" in o for o in outcomes) >= len(EXPORT_KILLS_SLOW) // 2
