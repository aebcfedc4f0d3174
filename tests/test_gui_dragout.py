"""Drag stems out (issue 13 item 7): dragging a lane's name exports the stem on the fly to the configured folder
and format with ordinary file permissions, and hands the file to the drop target as a URL.

The last test drags for real: under Xvfb, the app window and a separate drop-target process, the mouse driven
by xdotool, the file URL delivered by X11's drag-and-drop protocol (XDND) between the two processes."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtGui import QDrag  # noqa: E402
from test_gui_app import SR, separate, settings, songs, window, write_song  # noqa: E402,F401 - fixtures

TESTS = Path(__file__).parent


@pytest.fixture
def drags(monkeypatch):
    """QDrag.exec would wait for a real drop: record what would be dragged and answer "copied"."""
    seen = []

    def fake_exec(self, *args, **kwargs):
        seen.append([u.toLocalFile() for u in self.mimeData().urls()])
        return Qt.CopyAction

    monkeypatch.setattr(QDrag, "exec", fake_exec)
    return seen


def drag_title(qtbot, lane) -> None:
    """Press on the lane's name and move the mouse well past the drag distance, as a user drags it out."""
    start = lane.title.mapTo(lane, lane.title.rect().center())
    qtbot.mousePress(lane, Qt.LeftButton, pos=start)
    for dx in (4, 10, 30, 60):
        qtbot.mouseMove(lane, QPoint(start.x() + dx, start.y()))
    qtbot.mouseRelease(lane, Qt.LeftButton, pos=QPoint(start.x() + 60, start.y()))


def ordinary_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_dragging_a_stem_out_exports_it_in_the_configured_format(qtbot, window, songs, drags, tmp_path):
    out = tmp_path / "exports"
    window.settings.output_folder, window.settings.output_format = str(out), "flac"
    separate(qtbot, window, songs["short"])
    drag_title(qtbot, window.lanes[4])
    assert drags == [[str(out / "short song - vocals.flac")]]
    path = Path(drags[0][0])
    assert path.is_file() and (path.stat().st_mode & 0o777) == ordinary_mode()  # not 0600
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == SR and data.shape == (3 * SR, 2)
    np.testing.assert_allclose(data.T, window.session.audio[4], atol=2.0 ** -22)  # 24-bit FLAC
    assert "vocals.flac" in window.statusBar().currentMessage()
    # a second drag of the same stem reuses the file (nothing is written again)
    mtime = path.stat().st_mtime_ns
    drag_title(qtbot, window.lanes[4])
    assert drags[1] == drags[0] and path.stat().st_mtime_ns == mtime


def test_a_drag_never_replaces_an_unrelated_file(qtbot, window, songs, drags, tmp_path):
    out = tmp_path / "exports"
    out.mkdir()
    (out / "short song - drums.wav").write_bytes(b"somebody else's file")
    window.settings.output_folder, window.settings.output_format = str(out), "wav"
    separate(qtbot, window, songs["short"])
    drag_title(qtbot, window.lanes[1])
    assert drags == [[str(out / "short song (2) - drums.wav")]]
    assert (out / "short song - drums.wav").read_bytes() == b"somebody else's file"
    assert sf.info(drags[0][0]).frames == 3 * SR


def test_the_window_stays_responsive_while_the_file_is_written(qtbot, window, songs, drags, tmp_path):
    """The export runs in a worker; the GUI thread keeps handling timers meanwhile (an mp3 takes a while)."""
    from PySide6.QtCore import QTimer

    window.settings.output_folder, window.settings.output_format = str(tmp_path / "mp3s"), "mp3"
    separate(qtbot, window, songs["short"])
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    path = window.drag_stem_out(2)
    timer.stop()
    assert path is not None and path.suffix == ".mp3" and path.is_file()
    assert ticks  # the event loop ran while the stem was encoded
    assert (path.stat().st_mode & 0o777) == ordinary_mode()


def test_the_mix_lane_is_not_a_drag_source_and_nothing_is_dragged_before_separation(qtbot, window, drags):
    drag_title(qtbot, window.lanes[0])
    drag_title(qtbot, window.lanes[1])  # blank lanes: no song yet
    assert drags == []


# ---- a real drag between two X11 processes
class LineReader:
    """Collects a child process's stdout lines in a thread, so the test can wait for one with a timeout."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines = proc, queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, prefix: str, timeout: float) -> str | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    return None
                continue
            if line.startswith(prefix):
                return line
        return None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def xvfb(tmp_path):
    """A private X server (the first free display from :97), stopped by pid afterwards."""
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install xvfb xdotool)")
    number = next(n for n in range(97, 140) if not Path(f"/tmp/.X11-unix/X{n}").exists()
                  and not Path(f"/tmp/.X{n}-lock").exists())
    log = open(tmp_path / "xvfb.log", "w")
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                              stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if server.poll() is not None or time.monotonic() > deadline:
            stop(server)
            pytest.skip(f"Xvfb :{number} did not start: {(tmp_path / 'xvfb.log').read_text()[-300:]}")
        time.sleep(0.05)
    yield f":{number}"
    stop(server)
    log.close()


@pytest.mark.slow
def test_a_real_drag_to_another_process_delivers_a_readable_0644_stem_file(tmp_path, xvfb, tiny_model_path):
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb", OMP_NUM_THREADS="1")
    env.pop("WAYLAND_DISPLAY", None)
    work = tmp_path / "work"
    work.mkdir()
    song = write_song(tmp_path / "drag me.wav", 3.0, 7)
    target_box = (900, 250, 300, 300)
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("app", "target")}
    app = subprocess.Popen([sys.executable, str(TESTS / "x11_drag_app.py"), str(tiny_model_path), str(song),
                            str(work)], env=env, stdout=subprocess.PIPE, stderr=logs["app"], text=True)
    target = subprocess.Popen([sys.executable, str(TESTS / "x11_drop_target.py"), *map(str, target_box)], env=env,
                              stdout=subprocess.PIPE, stderr=logs["target"], text=True)
    try:
        app_out, target_out = LineReader(app), LineReader(target)
        ready_target = target_out.wait_for("READY", 60)
        if ready_target is None and "platform plugin" in (tmp_path / "target.log").read_text():
            pytest.skip("Qt's xcb platform plugin cannot start here: " + (tmp_path / "target.log").read_text()[-300:])
        assert ready_target, (tmp_path / "target.log").read_text()[-2000:]
        ready = app_out.wait_for("READY", 120)
        assert ready, (tmp_path / "app.log").read_text()[-2000:]
        _, x, y, stem = ready.split()
        x, y = int(x), int(y)
        tx, ty = target_box[0] + target_box[2] // 2, target_box[1] + target_box[3] // 2

        def xdo(*args) -> None:
            subprocess.run(["xdotool", *map(str, args)], env=env, check=True, timeout=10)

        xdo("mousemove", x, y)
        time.sleep(0.3)
        xdo("mousedown", 1)
        for dx in (3, 8, 16, 30, 45):  # past the drag distance: the lane exports the stem, then the drag starts
            xdo("mousemove", x + dx, y)
            time.sleep(0.05)
        exported = work / "exports" / f"drag me - {stem}.wav"
        deadline = time.monotonic() + 30
        while not exported.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert exported.is_file(), (tmp_path / "app.log").read_text()[-2000:]
        time.sleep(0.7)  # the export worker hands over; QDrag.exec grabs the pointer
        for k in range(1, 16):
            xdo("mousemove", x + 45 + (tx - x - 45) * k // 15, y + (ty - y) * k // 15)
            time.sleep(0.05)
        time.sleep(0.4)
        xdo("mouseup", 1)
        dropped = target_out.wait_for("DROP", 20)
        assert dropped, "the drop target received nothing:\n" + (tmp_path / "target.log").read_text()[-1000:] \
            + (tmp_path / "app.log").read_text()[-1000:]
    finally:
        stop(app)
        stop(target)
        for f in logs.values():
            f.close()
    path = Path(dropped[len("DROP "):])
    assert path == exported and path.is_file()
    assert (path.stat().st_mode & 0o777) == 0o644  # ordinary permissions under the default umask, not 0600
    assert os.access(path, os.R_OK)
    info = sf.info(path)
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    reference = np.load(work / "vocals.npy")
    assert sr == SR and data.shape == (reference.shape[1], 2)
    step = {"PCM_16": 2.0 ** -15, "PCM_24": 2.0 ** -23, "FLOAT": 1e-7}.get(info.subtype, 2.0 ** -15)
    assert np.abs(reference).max() > 10 * step  # the stem is not silence: equality below means something
    np.testing.assert_allclose(data.T, np.clip(reference, -1, 1), atol=step)
