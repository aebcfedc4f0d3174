"""Batch (issue 13 item 6): several songs or a folder dropped on the window go to a queue separated one after
another into the cache, with per-song progress, cancel per song and for all, File > Open several, and a
finished song opened from the queue at once (from the cache)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402
from test_gui_app import settings, window, write_song  # noqa: E402,F401 - fixtures

from stemgui.errors import Cancelled  # noqa: E402
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
        self.stop_delay = 0.0  # seconds a held separation goes on after it was cancelled
        self.calls = []

    def separate(self, wav, progress=None, cancel=None, on_chunk=None):
        gate = self.gate  # the gate of this call: a test can open it and hold the next song on a new one
        self.calls.append(wav.shape[1])  # after the gate is read: a test that saw the call may swap the gate
        held = len(self.calls) > self.free_calls
        total = wav.shape[1]
        for k in range(4):
            if gate is not None and held:
                while not gate.wait(0.02):
                    if cancel.is_cancelled:
                        time.sleep(self.stop_delay)  # a forward that runs on a while after the cancel
                    cancel.check()
            a, b = total * k // 4, total * (k + 1) // 4
            on_chunk(a, b, np.stack([wav[:, a:b] * 0.25] * 4))
            progress(Progress(b / total, 0.0, "separating"))
        return None

    def separate_stream(self, blocks, total_length, progress=None, cancel=None, on_chunk=None):
        """The worker's streaming entry point: the same gated chunks over the concatenated blocks."""
        blocks = blocks() if callable(blocks) else blocks
        wav = np.concatenate(list(blocks), axis=1)[:, :total_length]
        return self.separate(wav, progress, cancel, on_chunk)


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
    # the song is RUNNING while it is still decoded: swap the gate only once the separator holds the first one
    qtbot.waitUntil(lambda: len(fake.calls) == 1, timeout=TIMEOUT_MS)
    # cancel a queued song: it is skipped
    window.batch_panel.select_row(2)
    window.batch_panel.cancel_button.click()
    assert states(window)[2] is JobState.CANCELLED
    # let the first song finish, progress reported per song; the next song waits on a new gate from its start
    first_gate, fake.gate = fake.gate, threading.Event()
    first_gate.set()
    qtbot.waitUntil(lambda: states(window)[0] is JobState.DONE, timeout=TIMEOUT_MS)
    assert any(row == 0 and 0 < p < 1 for row, p in seen_progress)
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


# ---- one separation scheduler for the queue and the window (issue 13 leftover c)
class TimelineSeparator(GatedSeparator):
    """A GatedSeparator that records (frames, event) in order, to tell which song computed when."""

    def __init__(self):
        super().__init__()
        self.events: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def separate(self, wav, progress=None, cancel=None, on_chunk=None):
        frames = wav.shape[1]
        with self.lock:
            self.events.append((frames, "start"))

        def chunk(a, b, stems):
            with self.lock:
                self.events.append((frames, "chunk"))
            on_chunk(a, b, stems)

        try:
            return super().separate(wav, progress, cancel, chunk)
        finally:
            with self.lock:
                self.events.append((frames, "end"))


@pytest.fixture
def timeline(monkeypatch):
    sep = TimelineSeparator()
    monkeypatch.setattr(workers, "get_separator", lambda *_a: sep)
    return sep


def frames_of(seconds: float) -> int:
    return int(round(seconds * 44100))


def test_opening_a_song_separating_in_the_queue_waits_for_it_and_opens_from_the_cache(qtbot, window, timeline,
                                                                                      tmp_path):
    songs = [write_song(tmp_path / "run.wav", 1.0, 101), write_song(tmp_path / "later.wav", 1.5, 102)]
    timeline.gate = threading.Event()
    drop_many(window, songs)
    qtbot.waitUntil(lambda: states(window)[0] is JobState.RUNNING, timeout=TIMEOUT_MS)
    window.batch_panel.select_row(1)
    assert window.open_song(songs[0])  # the song the queue is separating: not started a second time
    assert window.worker is None and window.batch.direct is None
    assert window.batch_panel.selected_jobs() == [window.batch.model.jobs[0]]  # jumped to its entry
    assert window.batch.model.index(0, 1).data() == "Separating (opens when done)"
    assert "batch queue" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.separation_done, timeout=TIMEOUT_MS) as blocker:
        timeline.gate.set()
    assert blocker.args == [True]
    assert window.session.path == songs[0] and window.session.from_cache
    qtbot.waitUntil(lambda: not window.batch.running, timeout=TIMEOUT_MS)
    assert [f for f, e in timeline.events if e == "start"] == [frames_of(1.0), frames_of(1.5)]  # each once


def test_opening_a_queued_song_runs_it_next_then_opens_it(qtbot, window, timeline, tmp_path):
    songs = [write_song(tmp_path / f"n{i}.wav", 1.0 + 0.25 * i, 110 + i) for i in range(3)]
    timeline.gate = threading.Event()
    drop_many(window, songs)
    qtbot.waitUntil(lambda: states(window)[0] is JobState.RUNNING, timeout=TIMEOUT_MS)
    assert window.open_song(songs[2])
    assert window.batch.model.index(2, 1).data() == "Next (opens when done)"
    assert window.batch_panel.selected_jobs() == [window.batch.model.jobs[2]]
    with qtbot.waitSignal(window.separation_done, timeout=TIMEOUT_MS) as blocker:
        timeline.gate.set()
    assert blocker.args == [True] and window.session.path == songs[2] and window.session.from_cache
    qtbot.waitUntil(lambda: not window.batch.running and states(window)[1] is JobState.DONE, timeout=TIMEOUT_MS)
    assert [f for f, e in timeline.events if e == "start"] == [frames_of(1.0), frames_of(1.5), frames_of(1.25)]
    # opening another song drops the wish: a song asked for earlier does not open by itself later
    assert window.batch.model.jobs[2].open_when_done is False


def test_a_song_opened_directly_pauses_the_queue_and_runs_alone(qtbot, window, timeline, tmp_path):
    queued = [write_song(tmp_path / f"b{i}.wav", 1.0 + 0.25 * i, 120 + i) for i in range(2)]
    direct = write_song(tmp_path / "direct.wav", 2.0, 130)
    timeline.gate = threading.Event()
    drop_many(window, queued)
    b0 = frames_of(1.0)
    qtbot.waitUntil(lambda: (b0, "start") in timeline.events, timeout=TIMEOUT_MS)  # mid-separation, not loading
    assert window.open_song(direct)
    # the queue's song is paused (back in the queue, not cancelled) and nothing else starts while direct runs
    qtbot.waitUntil(lambda: not window.batch.running, timeout=TIMEOUT_MS)
    assert states(window) == [JobState.QUEUED, JobState.QUEUED]
    assert "Paused for direct.wav" in window.batch.model.index(0, 0).data(Qt.ToolTipRole)
    assert window.batch.direct is window.worker and window.worker.isRunning()
    with qtbot.waitSignal(window.separation_done, timeout=TIMEOUT_MS) as blocker:
        timeline.gate.set()
    assert blocker.args == [True] and window.session.path == direct and not window.session.from_cache
    with qtbot.waitSignal(window.batch.all_finished, timeout=TIMEOUT_MS):
        pass  # the queue resumes by itself once the window's song is done
    assert states(window) == [JobState.DONE, JobState.DONE]
    d, b1 = frames_of(2.0), frames_of(1.25)
    starts = [f for f, e in timeline.events if e == "start"]
    assert starts == [b0, d, b0, b1]  # the paused song is separated again after the window's one
    # the paused song had stopped before the window's song began to compute (one separation at a time)
    first_direct = timeline.events.index((d, "start"))
    assert timeline.events.index((b0, "end")) < first_direct
    assert timeline.events[first_direct:timeline.events.index((d, "end"))] == [(d, "start")] + [(d, "chunk")] * 4


def test_the_windows_song_computes_only_after_a_paused_queue_song_has_stopped(qtbot, window, timeline, tmp_path):
    queued = [write_song(tmp_path / f"s{i}.wav", 1.0 + 0.25 * i, 125 + i) for i in range(2)]
    direct = write_song(tmp_path / "now.wav", 2.0, 135)
    timeline.gate, timeline.stop_delay = threading.Event(), 0.5  # the queue's forward runs on 0.5 s after Cancel
    drop_many(window, queued)
    b0, d = frames_of(1.0), frames_of(2.0)
    qtbot.waitUntil(lambda: (b0, "start") in timeline.events, timeout=TIMEOUT_MS)
    assert window.open_song(direct)
    qtbot.waitUntil(lambda: not window.batch.running, timeout=TIMEOUT_MS)  # paused: its worker has ended
    assert "Paused for now.wav" in window.batch.model.index(0, 0).data(Qt.ToolTipRole)
    with qtbot.waitSignal(window.separation_done, timeout=TIMEOUT_MS):
        timeline.gate.set()
    assert timeline.events.index((b0, "end")) < timeline.events.index((d, "start"))
    qtbot.waitUntil(lambda: states(window) == [JobState.DONE] * 2, timeout=TIMEOUT_MS)
    assert [f for f, e in timeline.events if e == "start"] == [b0, d, b0, frames_of(1.25)]


def test_a_song_done_in_the_queue_opened_from_file_open_comes_from_the_cache(qtbot, window, timeline, tmp_path):
    song = write_song(tmp_path / "done.wav", 1.0, 140)
    with qtbot.waitSignal(window.batch.all_finished, timeout=TIMEOUT_MS):
        drop_many(window, [song, write_song(tmp_path / "other.wav", 1.5, 141)])
    with qtbot.waitSignal(window.separation_done, timeout=TIMEOUT_MS) as blocker:
        window.open_song(song)
    assert blocker.args == [True] and window.session.from_cache
    assert len([e for e in timeline.events if e[1] == "start"]) == 2


def test_queueing_the_song_being_separated_in_the_window_does_not_separate_it_again(qtbot, window, timeline,
                                                                                    tmp_path):
    song, other = write_song(tmp_path / "open.wav", 1.0, 150), write_song(tmp_path / "next.wav", 1.5, 151)
    timeline.gate = threading.Event()
    assert window.open_song(song)
    qtbot.waitUntil(lambda: any(e == "start" for _f, e in timeline.events), timeout=TIMEOUT_MS)
    drop_many(window, [song, other])
    qtbot.wait(200)
    assert states(window) == [JobState.QUEUED, JobState.QUEUED] and not window.batch.running  # it waits
    with qtbot.waitSignal(window.batch.all_finished, timeout=TIMEOUT_MS):
        timeline.gate.set()
    assert states(window) == [JobState.DONE, JobState.DONE]
    # the window's separation filled the cache: the queue's entry for the same song came from there
    assert [f for f, e in timeline.events if e == "start"] == [frames_of(1.0), frames_of(1.5)]


def test_a_separation_waits_for_the_compute_slot_and_can_be_cancelled_while_it_waits():
    flag, waited, outcome = workers.CancelFlag(), threading.Event(), []

    def take():
        try:
            workers.hold_compute_slot(flag, waited.set)
            outcome.append("held")
            workers._COMPUTE_SLOT.release()
        except Cancelled:
            outcome.append("cancelled")

    with workers._COMPUTE_SLOT:  # another separation computes
        thread = threading.Thread(target=take)
        thread.start()
        assert waited.wait(5) and not outcome  # told the user it waits, and still waits
        flag.cancel()
        thread.join(5)
    assert outcome == ["cancelled"]
    thread = threading.Thread(target=take)  # a free slot is taken at once, without the waiting message
    waited.clear()
    flag = workers.CancelFlag()
    thread.start()
    thread.join(5)
    assert outcome == ["cancelled", "held"] and not waited.is_set() and not workers._COMPUTE_SLOT.locked()
