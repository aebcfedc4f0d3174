"""The stem cache with two instances at once (lock, staging, checksums), a full disk, and the memory-mapped lanes
the app plays from (issue 14 items 1 and 4)."""

import errno
import logging
import multiprocessing
import os
import time

import numpy as np
import pytest

from stemgui.errors import Cancelled
from stemgui.gui import cache as cache_mod
from stemgui.gui import lane_file
from stemgui.gui.cache import LANES, MANIFEST, StemCache
from stemgui.gui.mixer import LaneMix
from stemgui.gui.player import Player

SR = 44100
NAMES = ["drums", "bass", "other", "vocals"]


def make_stems(seed: int, frames: int = 30_011) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.2 * rng.standard_normal((4, 2, frames))).astype(np.float32)


def leftovers(root) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def _writer(root: str, seed: int, start_at: float) -> None:
    stems = make_stems(seed, 400_000)  # ~13 MB per entry: both writers overlap for a while
    while time.time() < start_at:
        time.sleep(0.001)
    StemCache(root).put("same", stems, SR, NAMES, {"writer": seed})


def test_two_processes_writing_the_same_key_leave_one_whole_entry(tmp_path):
    root = tmp_path / "c"
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0  # both start writing at the same moment, after spawning
    procs = [ctx.Process(target=_writer, args=(str(root), seed, start_at)) for seed in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    got = StemCache(root).get("same")
    assert got is not None
    writer = got.manifest["writer"]
    assert writer in (1, 2)
    np.testing.assert_array_equal(got.stems, make_stems(writer, 400_000))  # all of one writer, none of the other
    np.testing.assert_array_equal(got.audio[0], make_stems(writer, 400_000).sum(axis=0))
    assert [p.name for p in root.iterdir() if p.is_dir()] == ["same"]  # no staging or old folders left


def test_a_flipped_byte_is_detected_logged_and_the_entry_recomputed(tmp_path, caplog):
    cache = StemCache(tmp_path / "c")
    stems = make_stems(3)
    folder = cache.put("k", stems, SR, NAMES)
    lanes = folder / LANES
    with open(lanes, "r+b") as f:
        f.seek(lanes.stat().st_size // 2 + 3)  # a byte inside the "bass" lane
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))
    with caplog.at_level(logging.WARNING, logger="stemgui.gui.cache"):
        assert cache.get("k") is None
    assert "damaged" in caplog.text and "bass" in caplog.text and str(folder) in caplog.text
    assert not folder.exists() and "k" not in cache
    cache.put("k", stems, SR, NAMES)  # separated again: a good entry
    np.testing.assert_array_equal(cache.get("k").stems, stems)


def test_a_truncated_lanes_file_is_a_miss(tmp_path, caplog):
    cache = StemCache(tmp_path / "c")
    folder = cache.put("k", make_stems(4), SR, NAMES)
    with open(folder / LANES, "r+b") as f:
        f.truncate(1000)
    with caplog.at_level(logging.WARNING, logger="stemgui.gui.cache"):
        assert cache.get("k") is None
    assert "damaged" in caplog.text and not folder.exists()


def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["allocating the lanes", "writing the manifest", "checksumming"])
def test_disk_full_during_a_cache_write_leaves_the_previous_entry_intact(tmp_path, monkeypatch, where):
    cache = StemCache(tmp_path / "c")
    old = make_stems(5)
    cache.put("k", old, SR, NAMES, {"which": "old"})
    if where == "allocating the lanes":
        monkeypatch.setattr(lane_file.os, "posix_fallocate", _no_space, raising=False)
        monkeypatch.setattr(lane_file.os, "ftruncate", _no_space)
    elif where == "writing the manifest":
        monkeypatch.setattr(cache_mod, "atomic_write_text", _no_space)
    else:
        monkeypatch.setattr(cache_mod, "lane_checksums", _no_space)
    with pytest.raises(OSError) as info:
        cache.put("k", make_stems(6), SR, NAMES, {"which": "new"})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    got = cache.get("k")
    assert got is not None and got.manifest["which"] == "old"
    np.testing.assert_array_equal(got.stems, old)
    assert leftovers(cache.root) == [".k.lock"] or leftovers(cache.root) == []


def test_cancel_mid_put_leaves_the_previous_entry(tmp_path):
    cache = StemCache(tmp_path / "c")
    old = make_stems(7)
    cache.put("k", old, SR, NAMES)
    calls = iter([False, True])
    with pytest.raises(Cancelled):
        cache.put("k", make_stems(8), SR, NAMES, cancel=lambda: next(calls))
    np.testing.assert_array_equal(cache.get("k").stems, old)


@pytest.mark.parametrize("next_use", ["put", "get"])
def test_a_killed_writers_staging_folder_is_removed_by_the_next_use(tmp_path, next_use):
    cache = StemCache(tmp_path / "c")
    cache.put("k", make_stems(9), SR, NAMES)
    dead = cache.root / ".k.partial-dead1234"
    dead.mkdir(parents=True)
    (dead / LANES).write_bytes(b"\0" * 4096)
    (dead / cache_mod.OWNER).touch()  # nobody holds its lock: its writer is gone (however young the folder)
    live = cache.writer("other", (5, 2, 100), SR, NAMES)  # holds its own lock while alive
    if next_use == "put":
        cache.put("k", make_stems(9), SR, NAMES)
    else:
        assert cache.get("k") is not None
    assert not dead.exists() and live.staging.exists()
    live.abort()
    assert not live.staging.exists()
    assert (cache.entry_dir("k") / MANIFEST).is_file()


# ---- memory-mapped lanes -----------------------------------------------------------------------------------
def test_mapped_lanes_play_the_same_blocks_as_in_ram(tmp_path):
    """The player renders identical blocks from the cache's mapped lanes and from the same lanes in RAM."""
    cache = StemCache(tmp_path / "c")
    stems = make_stems(10, 50_000)
    cache.put("k", stems, SR, NAMES)
    mapped = cache.get("k").audio
    assert lane_file.is_mapped(mapped) and not mapped.flags.writeable
    in_ram = np.array(mapped)
    lanes = [LaneMix(mute=True), LaneMix(gain=0.5), LaneMix(pan=-0.5), LaneMix(), LaneMix(solo=False, gain=2.0)]
    outs = []
    for audio in (mapped, in_ram):
        p = Player(SR, ramp_seconds=0.0, ahead_blocks=0)
        p.load(audio, lanes)
        p.set_loop(10_000, 30_000)
        p.loop_enabled = True
        p.seek(5_000)
        p.play()
        blocks = []
        for _ in range(40):
            blocks.append(p.render(1024))
            lane_file.release_all()  # pages dropped between blocks are read again from the file
        outs.append(np.concatenate(blocks, axis=1))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.abs(outs[0]).max() > 0


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's resident page counts")
def test_read_lanes_leave_the_resident_set(tmp_path, monkeypatch):
    """Pages of a mapped lanes file that were read count in RSS until released: release_all drops them, and the
    trimmer thread does by itself once they grow by TRIM_GROWTH."""
    shape = (5, 2, 2_000_000)  # 80 MB
    audio = lane_file.create_lanes(tmp_path / "lanes.f32", shape)
    audio[:] = 0.25
    step = 1 << 18

    def file_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[2]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    def read_all() -> float:
        return sum(float(audio[:, :, a:a + step].sum(dtype=np.float64)) for a in range(0, shape[2], step))

    monkeypatch.setattr(lane_file, "TRIM_GROWTH", 1 << 40)  # the trimmer holds off
    lane_file.release_all()
    base = file_mb()
    assert read_all() == pytest.approx(0.25 * audio.size)
    touched = file_mb() - base
    lane_file.release_all()
    assert touched > 40 and file_mb() - base < 8, (touched, file_mb() - base)
    monkeypatch.undo()  # the trimmer's threshold is back: it releases within a few intervals
    read_all()
    deadline = time.time() + 20 * lane_file.TRIM_SECONDS
    while file_mb() - base > lane_file.TRIM_GROWTH / 2 ** 20 + 8 and time.time() < deadline:
        time.sleep(lane_file.TRIM_SECONDS / 2)
    assert file_mb() - base <= lane_file.TRIM_GROWTH / 2 ** 20 + 8
    np.testing.assert_array_equal(audio[:, :, -5:], 0.25)  # the data is still there after the releases


def test_a_full_disk_when_creating_lanes_is_an_oserror_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setattr(lane_file.os, "posix_fallocate", _no_space, raising=False)
    monkeypatch.setattr(lane_file.os, "ftruncate", _no_space)
    with pytest.raises(OSError):
        lane_file.create_lanes(tmp_path / "lanes.f32", (5, 2, 1000))
    assert not (tmp_path / "lanes.f32").exists()


@pytest.mark.skipif(lane_file.MS_SYNC is None, reason="libc msync/madvise through ctypes on Linux and macOS only")
def test_syncing_and_releasing_lanes_let_other_threads_run(tmp_path):
    """mmap.flush()/madvise() hold the GIL for the whole system call (a 5-minute song's msync stopped the GUI
    thread for ~240 ms): the lanes file syncs and releases through libc with the GIL released, data intact."""
    import threading

    assert lane_file._libc is not None
    shape = (5, 2, 4_000_000)  # 160 MB dirty
    audio = lane_file.create_lanes(tmp_path / "lanes.f32", shape)
    audio[:] = 0.5
    audio[4, 1, -3:] = (1.0, 2.0, 3.0)
    in_call, ticks, stop = threading.Event(), [0], threading.Event()

    def tick():
        while not stop.is_set():
            time.sleep(0.0005)
            ticks[0] += in_call.is_set()

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        time.sleep(0.01)
        in_call.set()
        t0 = time.perf_counter()
        lane_file.flush(audio)
        took = time.perf_counter() - t0
        in_call.clear()
    finally:
        stop.set()
        ticker.join()
    if took > 0.03:  # a sync that took long enough to tell (not on tmpfs, where msync returns at once)
        assert ticks[0] >= 3, (ticks[0], took)
    with open(tmp_path / "lanes.f32", "rb") as f:  # what the file holds after the sync
        f.seek(lane_file.nbytes(shape) - 12)
        assert np.frombuffer(f.read(12), dtype=lane_file.DTYPE).tolist() == [1.0, 2.0, 3.0]
    lane_file.release_all()  # madvise through libc: the pages come back from the file on the next read
    assert float(audio[0, 0, :1000].sum()) == 500.0 and audio[4, 1, -1] == 3.0


def test_releasing_a_closed_mapping_is_logged_not_raised(tmp_path, caplog):
    import mmap

    with open(tmp_path / "f.bin", "wb") as f:
        f.truncate(mmap.PAGESIZE)
    with open(tmp_path / "f.bin", "r+b") as f:
        mm = mmap.mmap(f.fileno(), mmap.PAGESIZE)
    holder = lane_file._TrimmedMap(mm)
    mm.close()
    with caplog.at_level(logging.DEBUG, logger="stemgui.gui.lane_file"):
        holder.release()
    assert "madvise failed" in caplog.text
