"""A full disk during an export or `stemgui separate`: one clear line naming the file, nothing half-written,
the previous file (or folder of stems) untouched. An injected ENOSPC, and a real tiny tmpfs when mounting is
allowed (root in a container); leftovers of a killed run are cleaned by the next one."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemgui import diskspace
from stemgui.cli import main as cli_main
from stemgui.errors import AudioError
from stemgui.gui import export

SR = 44100
NAMES = ["drums", "bass", "other", "vocals"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) by relative path: what a full disk must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def stems() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.2 * rng.standard_normal((4, 2, 3 * SR))).astype(np.float32)


@pytest.fixture
def enospc_after(monkeypatch):
    """Make libsndfile's writes fail with ENOSPC after `n` successful blocks (the writer every path uses)."""

    def arm(n: int) -> dict:
        state = {"left": n, "raised": 0}
        real = sf.SoundFile.write

        def write(self, data):
            if state["left"] <= 0:
                state["raised"] += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            state["left"] -= 1
            return real(self, data)

        monkeypatch.setattr(sf.SoundFile, "write", write)
        return state

    return arm


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), or a skip where mounting is not permitted."""
    mount = shutil.which("mount")
    if os.name != "posix" or mount is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    target = tmp_path / "tiny"
    target.mkdir()
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


# ---------------------------------------------------------------------------------------------- export
def test_export_enospc_mid_file_keeps_the_previous_file(tmp_path, stems, enospc_after):
    previous = export.export_stems(stems, NAMES, SR, tmp_path, "song", "wav", selected=["vocals"])[0]
    before = snapshot(tmp_path)
    state = enospc_after(2)
    with pytest.raises(AudioError) as info:
        export.export_stems(2 * stems, NAMES, SR, tmp_path, "song", "wav", selected=["vocals"],
                            confirm_overwrite=lambda paths: True)
    assert state["raised"] == 1
    message = str(info.value)
    assert message == f"{previous}: the disk is full; nothing was written (the previous file is unchanged)."
    assert snapshot(tmp_path) == before  # no temp file, the old export byte for byte


def test_export_of_several_stems_stops_at_the_full_one(tmp_path, stems, enospc_after):
    enospc_after(3 + 1)  # drums: 3 blocks of 64 k frames fit; bass fails in its second block
    with pytest.raises(AudioError, match="song - bass.flac: the disk is full; nothing was written"):
        export.export_stems(stems, NAMES, SR, tmp_path, "song", "flac")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song - drums.flac"]  # complete, and nothing else
    assert sf.info(tmp_path / "song - drums.flac").frames == stems.shape[2]


def test_export_mix_on_a_real_full_disk(tiny_disk, stems, monkeypatch):
    from stemgui.mix import LaneMix

    stems = np.concatenate([stems] * 3, axis=2)  # 9 s of 24-bit stereo: 2.4 MB, more than the disk holds
    previous = tiny_disk / "mix.wav"
    sf.write(previous, stems[0, :, : SR // 4].T, SR, subtype="PCM_16")  # ~88 kB of an earlier export
    before = snapshot(tiny_disk)
    lanes = [LaneMix()] * 4
    with pytest.raises(AudioError, match=r"the disk is full \(\d+ MB free, about \d+ MB needed\)"):
        export.export_mix(stems, lanes, SR, previous, confirm_overwrite=lambda paths: True)
    assert snapshot(tiny_disk) == before
    # past the free-space check (another program filled the disk meanwhile): libsndfile's bare "System error"
    monkeypatch.setattr(export, "check_free_space", lambda folder, needed: None)
    with pytest.raises(AudioError) as info:
        export.export_mix(stems, lanes, SR, previous, confirm_overwrite=lambda paths: True)
    assert str(info.value) == f"{previous}: the disk is full; nothing was written (the previous file is unchanged)."
    assert snapshot(tiny_disk) == before


def test_a_killed_exports_temp_file_is_removed_by_the_next_export(tmp_path, stems):
    target = tmp_path / "song - drums.wav"
    stale = tmp_path / ".song - drums.tmp-0123abcd.wav"
    fresh = tmp_path / ".song - drums.tmp-89abcdef.wav"  # another export writing right now: kept
    other = tmp_path / ".unrelated.tmp-0123abcd.wav"
    for p in (stale, fresh, other):
        p.write_bytes(b"half a file")
    old = time.time() - 2 * export.STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    export.export_stems(stems, NAMES, SR, tmp_path, "song", "wav", selected=["drums"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, fresh.name, other.name])


def test_disk_full_is_recognised_only_for_write_errors(tmp_path, monkeypatch):
    assert diskspace.is_disk_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    wrapped = AudioError("x: writing failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert diskspace.is_disk_full(wrapped, tmp_path)
    assert not diskspace.is_disk_full(OSError(errno.EACCES, "Permission denied"), tmp_path)
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(diskspace.shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 10))
    assert diskspace.is_disk_full(OSError(errno.EIO, "Input/output error"), tmp_path)
    assert not diskspace.is_disk_full(AudioError("song.mp3: not an audio file"), tmp_path)  # a bad input


# ---------------------------------------------------------------------------------------------- stemgui separate
@pytest.fixture
def song(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path / "in" / "tune.wav"
    path.parent.mkdir()
    sf.write(path, (0.1 * rng.standard_normal((2 * SR, 2))).astype(np.float32), SR, subtype="PCM_16")
    return path


@pytest.fixture
def previous_stems(tmp_path, song, tiny_model_path) -> Path:
    out = tmp_path / "out"
    assert cli_main(["separate", str(song), "-o", str(out), "--model", str(tiny_model_path)]) == 0
    return out


@pytest.mark.parametrize("clip", ["rescale", "clamp"])
def test_separate_enospc_keeps_the_previous_stems(previous_stems, song, tiny_model_path, enospc_after, capsys,
                                                  clip):
    out = previous_stems
    before = snapshot(out)
    capsys.readouterr()
    state = enospc_after(2)
    rc = cli_main(["separate", str(song), "-o", str(out), "--model", str(tiny_model_path), "--clip", clip])
    err = capsys.readouterr().err
    assert rc == 1 and state["raised"] == 1
    lines = [line for line in err.splitlines() if line.startswith("stemgui: error")]
    assert lines == [f"stemgui: error: {out / 'tune'}: the disk is full; nothing was written "
                     "(the previous stems there are unchanged)."]
    assert "Traceback" not in err
    assert snapshot(out) == before  # no staging folder, no temp file, the earlier stems byte for byte


def test_separate_on_a_real_full_disk(tiny_disk, song, tiny_model_path, capsys, monkeypatch):
    out = tiny_disk / "separated"
    rc = cli_main(["separate", str(song), "-o", str(out), "--model", str(tiny_model_path)])
    err = capsys.readouterr().err
    assert rc == 1 and f"stemgui: error: {out / 'tune'}: the disk is full (" in err and "MB needed" in err
    assert list(out.iterdir()) == []
    # past the up-front check (the disk filled during the run): the spool or a stem hits the real limit
    from stemgui.cli import separate as cli_separate

    monkeypatch.setattr(cli_separate, "_check_space_for", lambda *a, **k: None)
    rc = cli_main(["separate", str(song), "-o", str(out), "--model", str(tiny_model_path)])
    err = capsys.readouterr().err
    assert rc == 1 and f"stemgui: error: {out / 'tune'}: the disk is full; nothing was written." in err
    assert "Traceback" not in err and list(out.iterdir()) == []
    assert diskspace.free_bytes(tiny_disk) > 900 * 1024  # everything it wrote was removed


def test_separate_cleans_up_after_a_killed_run(previous_stems, song, tiny_model_path):
    out = previous_stems
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    staging = out / f".tune.partial-{dead.pid}-abcd1234"
    staging.mkdir()
    (staging / "vocals.wav").write_bytes(b"half")
    alive = out / f".tune.partial-{os.getpid()}-ffff0000"  # a run still going (this process): left alone
    alive.mkdir()
    other_song = out / f".other.partial-{dead.pid}-abcd1234"  # another song's: not this run's business
    other_song.mkdir()
    assert cli_main(["separate", str(song), "-o", str(out), "--model", str(tiny_model_path)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["tune", alive.name, other_song.name])
    # killed between moving the old folder aside and moving the new one in: the old one comes back
    shutil.rmtree(alive)
    moved = out / f".tune.old-{dead.pid}"
    os.replace(out / "tune", moved)
    kept = snapshot(moved)
    from stemgui.cli.separate import _recover_interrupted

    _recover_interrupted(out, "tune")
    assert snapshot(out / "tune") == kept and not moved.exists()
    assert oct((out / "tune").stat().st_mode & 0o777) != oct(0o700)  # as readable as any folder
