"""Drag stems out (issue 13 item 7): dragging a lane's name exports the stem on the fly to the configured folder
and format with ordinary file permissions, and hands the file to the drop target as a URL."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pytestqt")

from PySide6.QtCore import QPoint, Qt  # noqa: E402
from PySide6.QtGui import QDrag  # noqa: E402
from test_gui_app import SR, separate, settings, songs, window  # noqa: E402,F401 - fixtures


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
