"""Timeline (issue 13 item 5): zoom and scroll (Ctrl+wheel, + / −, the scroll bar) on a 5-minute song, the
waveform view, and a loop set to the beat by keyboard nudges. A fake instant separator keeps a 5-minute song
fast; the timeline does not care what separated it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from fake_separator import stream_via_separate  # noqa: E402
from PySide6.QtCore import QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QWheelEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from test_gui_app import SR, drop, settings, window  # noqa: E402,F401 - fixtures

from stemgui.gui import workers  # noqa: E402
from stemgui.gui.timeline import MIN_SPAN, TimeView  # noqa: E402


class InstantSeparator:
    """Stems = quarter of the mix, reported in 10 s chunks (no model: a 5-minute song separates at once)."""

    device = "cpu"

    separate_stream = stream_via_separate  # the app streams from its mix lane

    def separate(self, wav, progress=None, cancel=None, on_chunk=None):
        total = wav.shape[1]
        for start in range(0, total, 10 * SR):
            end = min(total, start + 10 * SR)
            on_chunk(start, end, np.stack([wav[:, start:end] * 0.25] * 4))
            if progress is not None:
                from stemgui.separate import Progress

                progress(Progress(end / total, 0.0, "separating"))
        return None


@pytest.fixture
def instant(monkeypatch):
    monkeypatch.setattr(workers, "get_separator", lambda *_a: InstantSeparator())


def click_song(path, seconds: float, bpm: float = 120.0):
    """A click track: a 5 ms burst on every beat, so the waveform shows where the beats are."""
    import soundfile as sf

    n = int(seconds * SR)
    mono = np.zeros(n, np.float32)
    beat = int(round(SR * 60 / bpm))
    for b in range(0, n - 220, beat):
        mono[b:b + 220] = 0.8
    sf.write(path, np.stack([mono, mono]).T, SR)
    return path


@pytest.fixture
def long_song(qtbot, window, instant, tmp_path):  # noqa: F811 - fixture
    path = click_song(tmp_path / "five minutes.wav", 300.0)
    with qtbot.waitSignal(window.separation_done, timeout=120_000) as blocker:
        drop(window, path)
    assert blocker.args == [True], window.dialogs.messages
    return window


def wheel(widget, pos: QPointF, notches: float, modifiers) -> None:
    global_pos = widget.mapToGlobal(pos.toPoint())
    event = QWheelEvent(pos, QPointF(global_pos), QPoint(0, 0), QPoint(0, int(120 * notches)), Qt.NoButton,
                        modifiers, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def lane_pixel(lane, seconds: float) -> QPointF:
    scene = lane.view.mapViewToScene(QPointF(seconds, lane.layout_info.rows / 2))
    return QPointF(lane.plot.mapFromScene(scene))


def test_time_view_zoom_keeps_its_anchor_and_stays_inside_the_song():
    view = TimeView(300.0)
    view.zoom_by(10.0, anchor=150.0)
    assert view.span == pytest.approx(30.0) and view.start == pytest.approx(135.0)
    view.zoom_by(4.0, anchor=140.0)  # the anchor stays at the same place on screen
    assert (140.0 - view.start) / view.span == pytest.approx((140.0 - 135.0) / 30.0)
    for _ in range(40):
        view.zoom_in()
    assert view.span == pytest.approx(MIN_SPAN)
    view.scroll_to(1000.0)
    assert view.end == pytest.approx(300.0)
    view.fit()
    assert (view.start, view.end) == (0.0, 300.0) and not view.zoomed
    view.zoom_by(100.0, anchor=0.0)
    assert view.nudge_step == pytest.approx(0.03)  # 1 % of a 3 s view


def test_ctrl_wheel_zooms_on_every_lane_and_the_scroll_bar_follows(qtbot, long_song):
    window = long_song
    lane = window.lanes[2]
    anchor = lane_pixel(lane, 100.0)
    wheel(lane.plot.viewport(), anchor, 3, Qt.ControlModifier)  # three notches in, around 1:40
    span = window.time_view.span
    assert span == pytest.approx(300.0 / 1.5 ** 3, rel=1e-3)
    for other in window.lanes:  # every lane shows the same range
        x0, x1 = other.view.viewRange()[0]
        assert x0 == pytest.approx(window.time_view.start, abs=1e-3) and x1 == pytest.approx(window.time_view.end, abs=1e-3)
    assert window.time_view.start < 100.0 < window.time_view.end
    bar = window.time_scroll
    assert bar.isEnabled() and bar.pageStep() == pytest.approx(span * 1000, abs=2)
    bar.setValue(bar.maximum())  # scrolled to the song's end
    assert window.time_view.end == pytest.approx(300.0)
    assert lane.view.viewRange()[0][1] == pytest.approx(300.0, abs=1e-3)
    wheel(lane.plot.viewport(), lane_pixel(lane, 280.0), 1, Qt.ShiftModifier)  # Shift+wheel up scrolls back
    assert window.time_view.end < 300.0
    qtbot.keyClick(window, Qt.Key_0)
    assert not window.time_view.zoomed and not bar.isEnabled()


def test_zoomed_lanes_get_a_sharper_picture_of_the_visible_range(qtbot, long_song):
    window = long_song
    qtbot.waitUntil(window.pictures_complete, timeout=60_000)
    coarse = window.lanes[1].layout_info.columns  # the whole song: ~0.4 s per column
    window.time_view.set_range(30.0, 40.0)
    qtbot.waitUntil(lambda: all(l.detail.isVisible() for l in window.lanes), timeout=60_000)
    for lane in window.lanes:
        rect = lane.detail.boundingRect()
        assert lane.detail_layout.columns == lane.plot_width() > 200
        assert lane.detail_layout.duration == pytest.approx(10.0, abs=1e-3)
        assert lane.detail.mapRectToParent(rect).left() == pytest.approx(30.0, abs=1e-3)
        assert np.isfinite(lane.detail_spec).all() and lane.detail_spec.max() > -100
    assert window.lanes[1].detail_layout.columns / 10.0 > 20 * coarse / 300.0  # 30x zoom: ~30x the columns/s
    window.time_view.fit()
    qtbot.waitUntil(lambda: not any(l.detail.isVisible() for l in window.lanes), timeout=5_000)


def test_plus_and_minus_zoom_around_the_playhead(qtbot, long_song):
    window = long_song
    window.seek(200.0)
    for _ in range(6):
        qtbot.keyClick(window, Qt.Key_Plus)
    assert window.time_view.span == pytest.approx(300.0 / 1.5 ** 6, rel=1e-3)
    assert window.time_view.start <= 200.0 <= window.time_view.end
    qtbot.keyClick(window, Qt.Key_Minus)
    assert window.time_view.span == pytest.approx(300.0 / 1.5 ** 5, rel=1e-3)
    window.zoom_buttons["Fit"].click()
    assert not window.time_view.zoomed


def test_a_loop_set_to_the_beat_by_keyboard_on_a_five_minute_song(qtbot, long_song):
    """Beats every 0.5 s: zoom in, drag a rough loop, then nudge its start and end onto beats (±10 ms)."""
    window = long_song
    window.time_view.show_region(60.0, 62.0, margin=0.25)  # 3 s on screen: nudges are 30 ms
    window.set_loop(60.13, 61.93)
    step = window.time_view.nudge_step
    assert 0.01 < step < 0.05
    moves = int(round(0.13 / step))
    for _ in range(moves):
        qtbot.keyClick(window, Qt.Key_Left, Qt.ShiftModifier)
    lo, hi = window.loop_seconds
    assert lo == pytest.approx(60.0, abs=step) and hi - lo == pytest.approx(1.8, abs=1e-3)
    for _ in range(int(round(0.2 / step))):
        qtbot.keyClick(window, Qt.Key_Right, Qt.ControlModifier | Qt.ShiftModifier)  # only the end moves
    lo2, hi2 = window.loop_seconds
    assert lo2 == pytest.approx(lo) and hi2 == pytest.approx(62.0, abs=step)
    assert window.player.loop == (round(lo2 * SR), round(hi2 * SR))
    assert all(l.loop_region.getRegion()[1] == pytest.approx(hi2) for l in window.lanes)
    # [ and ] put the loop's edges at the playhead
    window.seek(61.0)
    qtbot.keyClick(window, Qt.Key_BracketLeft)
    assert window.loop_seconds[0] == pytest.approx(61.0, abs=1e-4)
    qtbot.keyClick(window, Qt.Key_Z)  # zoom to the loop
    assert window.time_view.start < 61.0 and window.time_view.end > hi2 and window.time_view.span < 2.0


def test_the_waveform_view_shows_the_beats(qtbot, long_song):
    window = long_song
    qtbot.keyClick(window, Qt.Key_W)
    assert window.waveform_action.isChecked()
    qtbot.waitUntil(lambda: all(l.waveform_points > 0 for l in window.lanes), timeout=30_000)
    lane = window.lanes[1]
    assert lane.waveform.isVisible() and lane.image.opacity() < 1.0
    x, y = lane.waveform_data  # (what is drawn is clipped to the view and downsampled by pyqtgraph)
    assert x[-1] == pytest.approx(300.0, abs=0.01) and len(x) == 2 * (300 * SR // 64)
    rows = lane.layout_info.rows
    loud = x[np.abs(y - rows / 2) > rows * 0.05]  # strokes away from the centre line: the clicks
    beats = np.unique(np.round(loud * 2) / 2)
    assert len(beats) == pytest.approx(600, abs=2)  # one every 0.5 s
    qtbot.keyClick(window, Qt.Key_W)
    assert not lane.waveform.isVisible() and lane.image.opacity() == 1.0


def test_the_view_follows_the_playhead_when_zoomed(qtbot, long_song):
    window = long_song
    window.time_view.set_range(0.0, 10.0)
    qtbot.keyClick(window, Qt.Key_Right, Qt.ControlModifier)  # 10 s forward: leaves the view, which turns the page
    assert window.position_seconds() == pytest.approx(10.0)
    qtbot.keyClick(window, Qt.Key_Right, Qt.ControlModifier)
    assert window.position_seconds() == pytest.approx(20.0)
    assert window.time_view.start <= 20.0 <= window.time_view.end
