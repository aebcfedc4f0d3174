"""Batch (issue 13 item 6): several songs or a folder dropped on the window go to a queue separated one after
another into the cache, with per-song progress, cancel per song and for all, File > Open several, and a
finished song opened from the queue at once (from the cache)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from test_gui_app import settings, window, write_song  # noqa: E402,F401 - fixtures

from stemgui.gui import workers  # noqa: E402
from stemgui.gui.batch import BatchModel, JobState, audio_files  # noqa: E402
from stemgui.separate import Progress  # noqa: E402

TIMEOUT_MS = 120_000


class GatedSeparator:
    """Separates in 4 chunks; each chunk waits for `gate` when one is set (so a test can hold a song running)."""

    device = "cpu"

    def __init__(self):
        self.gate: threading.Event | None = None
        self.free_calls = 0  # this many separations run without waiting for the gate
        self.calls = []

    def separate(self, wav, progress=None, cancel=None, on_chunk=None):
        self.calls.append(wav.shape[1])
        held = len(self.calls) > self.free_calls
        total = wav.shape[1]
        for k in range(4):
            if self.gate is not None and held:
                while not self.gate.wait(0.02):
                    cancel.check()
            a, b = total * k // 4, total * (k + 1) // 4
            on_chunk(a, b, np.stack([wav[:, a:b] * 0.25] * 4))
            progress(Progress(b / total, 0.0, "separating"))
        return None


@pytest.fixture
def fake(monkeypatch):
    sep = GatedSeparator()
    monkeypatch.setattr(workers, "get_separator", lambda *_a: sep)
    return sep


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "album"
    (d / "disc 2").mkdir(parents=True)
    write_song(d / "01 first.wav", 1.0, 1)
    write_song(d / "02 second.flac", 1.0, 2)
    write_song(d / "disc 2" / "03 third.wav", 1.0, 3)
    (d / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (d / "notes.txt").write_text("liner notes")
    return d


def drop_many(window, paths) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    window.dropEvent(QDropEvent(QPointF(300, 300), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))


def states(window):
    return [j.state for j in window.batch.model.jobs]


def test_audio_files_finds_songs_in_folders_sorted_and_once(folder):
    found = audio_files([folder, folder / "01 first.wav"])
    assert [p.name for p in found] == ["01 first.wav", "02 second.flac", "03 third.wav"]


def test_a_dropped_folder_is_queued_separated_into_the_cache_and_opened_from_the_queue(qtbot, window, fake, folder):
    with qtbot.waitSignal(window.batch.all_finished, timeout=TIMEOUT_MS):
        drop_many(window, [folder])
        assert window.batch_dock.isVisible()
        model = window.batch_panel.table.model()
        assert isinstance(model, BatchModel) and model.rowCount() == 3
        assert model.index(0, 0).data() == "01 first.wav"
    assert states(window) == [JobState.DONE] * 3
    assert window.session is None  # the queue does not change the open song
    model = window.batch.model
    assert [model.index(r, 2).data() for r in range(3)] == ["100%"] * 3
    assert model.index(0, 1).data().startswith("Done")
    assert len(fake.calls) == 3
    # open the second one from the queue: instant, from the cache, no new separation
    window.batch_panel.select_row(1)
    assert window.batch_panel.open_button.isEnabled()
    with qtbot.waitSignal(window.separation_done, timeout=TIMEOUT_MS) as blocker:
        window.batch_panel.open_button.click()
    assert blocker.args == [True]
    assert window.session.path.name == "02 second.flac" and window.session.from_cache
    assert len(fake.calls) == 3


def test_per_song_progress_cancel_one_and_cancel_all(qtbot, window, fake, tmp_path):
    songs = [write_song(tmp_path / f"song{i}.wav", 1.0, 20 + i) for i in range(4)]
    fake.gate = threading.Event()
    seen_progress = []
    window.batch.model.dataChanged.connect(
        lambda a, _b: seen_progress.append((a.row(), window.batch.model.jobs[a.row()].progress)))
    drop_many(window, songs)
    model = window.batch.model
    qtbot.waitUntil(lambda: states(window)[0] is JobState.RUNNING, timeout=TIMEOUT_MS)
    assert states(window)[1:] == [JobState.QUEUED] * 3
    # cancel a queued song: it is skipped
    window.batch_panel.select_row(2)
    window.batch_panel.cancel_button.click()
    assert states(window)[2] is JobState.CANCELLED
    # let the first song finish, progress reported per song
    fake.gate.set()
    qtbot.waitUntil(lambda: states(window)[0] is JobState.DONE, timeout=TIMEOUT_MS)
    assert any(row == 0 and 0 < p < 1 for row, p in seen_progress)
    fake.gate.clear()
    qtbot.waitUntil(lambda: states(window)[1] is JobState.RUNNING, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(window.batch.all_finished, timeout=TIMEOUT_MS):
        window.batch_panel.cancel_all_button.click()  # the running one stops, the queued one is skipped
    assert states(window) == [JobState.DONE, JobState.CANCELLED, JobState.CANCELLED, JobState.CANCELLED]
    assert model.index(1, 1).data() == "Cancelled"
    # only the finished song is in the cache
    assert len([p for p in window.cache.root.iterdir() if (p / "manifest.json").is_file()]) == 1
    window.batch_panel.select_row(1)
    assert not window.batch_panel.open_button.isEnabled()  # a cancelled song cannot be opened
    window.batch_panel.clear_button.click()
    assert model.rowCount() == 0


def test_file_open_several_queues_the_chosen_songs(qtbot, window, fake, tmp_path):
    songs = [write_song(tmp_path / f"pick{i}.wav", 1.0, 40 + i) for i in range(2)]
    window.dialogs.next_songs = [str(p) for p in songs]
    with qtbot.waitSignal(window.batch.all_finished, timeout=TIMEOUT_MS):
        window.open_several_action.trigger()
    assert [j.path for j in window.batch.model.jobs] == songs
    assert states(window) == [JobState.DONE] * 2


def test_a_song_can_be_opened_while_the_rest_of_the_queue_runs(qtbot, window, fake, tmp_path):
    songs = [write_song(tmp_path / f"q{i}.wav", 1.0, 60 + i) for i in range(2)]
    fake.gate, fake.free_calls = threading.Event(), 1  # the first song runs through, the second is held running
    drop_many(window, songs)
    qtbot.waitUntil(lambda: states(window)[0] is JobState.DONE, timeout=TIMEOUT_MS)
    with qtbot.waitSignal(window.separation_done, timeout=TIMEOUT_MS) as blocker:
        window.batch_panel.table.doubleClicked.emit(window.batch.model.index(0, 0))
    assert blocker.args == [True] and window.session.from_cache and window.session.path == songs[0]
    assert window.batch.running
    fake.gate.set()
    qtbot.waitUntil(lambda: not window.batch.running, timeout=TIMEOUT_MS)


def test_a_failing_song_does_not_stop_the_queue(qtbot, window, fake, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + bytes(range(100)))
    good = write_song(tmp_path / "good.wav", 1.0, 80)
    with qtbot.waitSignal(window.batch.all_finished, timeout=TIMEOUT_MS):
        drop_many(window, [bad, good])
    assert states(window) == [JobState.FAILED, JobState.DONE]
    assert "broken.wav" in window.batch.model.index(0, 0).data(Qt.ToolTipRole)
    assert not window.dialogs.of_kind("error")  # failures are shown in the queue, not as a dialog per song


def test_delete_on_the_queue_cancels_the_selected_song(qtbot, window, fake, tmp_path):
    songs = [write_song(tmp_path / f"d{i}.wav", 1.0, 90 + i) for i in range(3)]
    fake.gate = threading.Event()
    drop_many(window, songs)
    qtbot.waitUntil(lambda: states(window)[0] is JobState.RUNNING, timeout=TIMEOUT_MS)
    table = window.batch_panel.table
    window.batch_panel.select_row(1)
    table.setFocus()
    qtbot.keyClick(table, Qt.Key_Delete)
    assert states(window)[1] is JobState.CANCELLED and states(window)[2] is JobState.QUEUED
    with qtbot.waitSignal(window.batch.all_finished, timeout=TIMEOUT_MS):
        fake.gate.set()
    assert states(window) == [JobState.DONE, JobState.CANCELLED, JobState.DONE]
