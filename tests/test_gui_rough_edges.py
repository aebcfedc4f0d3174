"""Rough edges of issue 13 item 10, each through what the user sees: the toolbar at 1024x700, the time label of a
new song, the status bar while separating, the elapsed time, Open recent, Separate again, Show in folder, a
steady toolbar on Play / Pause, export after Cancel, and notices for a 6-channel or an 8 kHz song."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pytestqt")

from fake_separator import stream_via_separate  # noqa: E402
from PySide6.QtCore import Qt, QUrl  # noqa: E402
from PySide6.QtWidgets import QToolButton, QWidget  # noqa: E402
from test_gui_app import SR, drop, separate, settings, songs, window, write_song  # noqa: E402,F401 - fixtures

from stemgui.gui import workers  # noqa: E402
from stemgui.gui.dialogs import ExportOptions  # noqa: E402
from stemgui.separate import Progress  # noqa: E402

TIMEOUT_MS = 120_000


class SlowSeparator:
    """Four chunks, `delay` seconds each; waits on `gate` before each chunk after the first when set."""

    device = "cpu"

    separate_stream = stream_via_separate  # the app streams from its mix lane

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.gate: threading.Event | None = None

    def separate(self, wav, progress=None, cancel=None, on_chunk=None):
        total = wav.shape[1]
        for k in range(4):
            if k and self.gate is not None:
                while not self.gate.wait(0.02):
                    cancel.check()
            time.sleep(self.delay)
            a, b = total * k // 4, total * (k + 1) // 4
            on_chunk(a, b, np.stack([wav[:, a:b] * 0.25] * 4))
            progress(Progress(b / total, 0.0, "separating"))


@pytest.fixture
def slow(monkeypatch):
    sep = SlowSeparator()
    monkeypatch.setattr(workers, "get_separator", lambda *_a: sep)
    return sep


def visible_in(bar, widget) -> bool:
    """Shown on the bar itself, not hidden in its overflow menu."""
    return widget.isVisible() and bar.rect().contains(widget.geometry())


def test_at_1024x700_presets_and_export_are_on_screen(qtbot, window, songs, slow):
    window.resize(1024, 700)
    separate(qtbot, window, songs["short"])  # a song's labels (length, tempo and key) make the bars wider
    qtbot.wait(100)
    bars = (window.transport_bar, window.mix_bar)
    for bar in bars:
        ext = bar.findChild(QToolButton, "qt_toolbar_ext_button")
        assert ext is None or not ext.isVisible(), f"{bar.objectName()} overflows"
    for b in window.preset_buttons.values():
        assert visible_in(window.mix_bar, b)
    assert visible_in(window.mix_bar, window.mix_bar.widgetForAction(window.export_action))
    assert visible_in(window.transport_bar, window.transport_bar.widgetForAction(window.play_action))
    for widget in window.transport_bar.findChildren(QWidget):  # everything another item put on the bar, too
        if widget.parent() is window.transport_bar and not widget.isWindow() and widget.objectName() != \
                "qt_toolbar_ext_button" and widget.isVisibleTo(window.transport_bar):
            assert window.transport_bar.rect().contains(widget.geometry()), widget
    window.resize(1600, 1000)  # room again: text beside the icons
    qtbot.waitUntil(lambda: window.transport_bar.toolButtonStyle() == Qt.ToolButtonTextBesideIcon, timeout=2000)


def test_play_and_pause_do_not_shift_the_toolbar(qtbot, window):
    button = window.transport_bar.widgetForAction(window.play_action)
    time_x = window.time_label.x()
    window.play_action.setText("Pause")
    qtbot.wait(20)
    assert window.time_label.x() == time_x and button.width() >= button.sizeHint().width()
    window.play_action.setText("Play")
    qtbot.wait(20)
    assert window.time_label.x() == time_x


def test_a_new_song_shows_its_own_length_with_the_playhead_at_zero(qtbot, window, songs, slow, tmp_path):
    separate(qtbot, window, songs["short"])
    assert window.time_label.text() == "0:00.0 / 0:03.0"
    separate(qtbot, window, write_song(tmp_path / "seven.wav", 7.0, 3))
    assert window.time_label.text() == "0:00.0 / 0:07.0"


def test_status_bar_follows_the_stages_and_the_elapsed_time_is_real(qtbot, window, songs, slow):
    slow.delay = 0.15
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    separate(qtbot, window, songs["short"])
    assert any("separating" in m.lower() for m in messages), messages
    assert any("loading model" in m.lower() for m in messages), messages
    final = window.statusBar().currentMessage()
    seconds = float(final.split(" in ")[1].split(" s")[0])
    assert "stems ready in" in final and seconds >= 0.5  # four 0.15 s chunks, not "0.0 s"


def test_a_file_that_failed_is_not_added_to_open_recent(qtbot, window, settings, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(200)))
    with qtbot.waitSignal(window.separation_done, timeout=60_000):
        drop(window, bad)
    assert str(bad.resolve()) not in settings.recent_files


def test_separate_again_is_disabled_without_a_song(qtbot, window, songs, slow):
    assert not window.rerun_action.isEnabled()
    assert window._rerun_buttons and not any(b.isEnabled() for b in window._rerun_buttons)
    separate(qtbot, window, songs["short"])
    assert window.rerun_action.isEnabled() and all(b.isEnabled() for b in window._rerun_buttons)


def test_export_offers_show_in_folder(qtbot, window, songs, slow, tmp_path, monkeypatch):
    from stemgui.gui import job_bar

    opened = []
    monkeypatch.setattr(job_bar.QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    separate(qtbot, window, songs["short"])
    worker = window.export(ExportOptions(folder=str(tmp_path / "out"), stems=("bass",)))
    qtbot.waitUntil(worker.isFinished, timeout=60_000)
    qtbot.waitUntil(lambda: window.job_bar.show_folder_button.isVisible(), timeout=5_000)
    assert "Exported 1 file(s)" in window.job_bar.stage_label.text()
    window.job_bar.show_folder_button.click()
    assert opened == [QUrl.fromLocalFile(str(tmp_path / "out"))]


def test_after_cancel_the_separated_part_can_be_exported(qtbot, window, songs, slow, tmp_path):
    slow.gate = threading.Event()
    with qtbot.waitSignal(window.separation_done, timeout=TIMEOUT_MS) as blocker:
        drop(window, songs["short"])
        qtbot.waitUntil(lambda: window.session is not None and window.session.available > 0, timeout=TIMEOUT_MS)
        window.job_bar.cancel_button.click()
    assert blocker.args == [False]
    part = window.session.available
    assert 0 < part < window.session.frames
    message = window.statusBar().currentMessage()
    assert "export the part" in message and "resumes" not in message
    assert window.export_action.isEnabled()
    worker = window.export(ExportOptions(folder=str(tmp_path / "part"), stems=("drums",), mix=True))
    qtbot.waitUntil(worker.isFinished, timeout=60_000)
    qtbot.wait(50)
    data, sr = sf.read(tmp_path / "part" / "short song - drums.wav", dtype="float32", always_2d=True)
    assert data.shape[0] == part
    np.testing.assert_allclose(data.T, window.session.audio[1, :, :part], atol=2.0 ** -22)
    mixes = list((tmp_path / "part").glob("short song - mix*.wav"))
    assert len(mixes) == 1 and sf.info(mixes[0]).frames == part


@pytest.mark.parametrize("kind", ["6-channel", "8 kHz"])
def test_a_downmixed_or_low_rate_song_gets_a_notice(qtbot, window, slow, tmp_path, kind):
    t = np.arange(int(2.0 * (8000 if kind == "8 kHz" else SR))) / (8000 if kind == "8 kHz" else SR)
    tone = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    if kind == "6-channel":
        path = tmp_path / "surround.wav"
        sf.write(path, np.stack([tone] * 6).T, SR)
    else:
        path = tmp_path / "phone.wav"
        sf.write(path, np.stack([tone, tone]).T, 8000)
    separate(qtbot, window, path)
    warnings = window.dialogs.of_kind("warning")
    assert len(warnings) == 1, warnings
    if kind == "6-channel":
        assert "6 channels" in warnings[0] and "downmixed to stereo" in warnings[0]
    else:
        assert "8000 Hz" in warnings[0] and "4 kHz" in warnings[0]
    assert window.session.notes == warnings
