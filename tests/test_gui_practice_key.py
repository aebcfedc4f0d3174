"""The practice bar's key (issue 13 leftover a): estimated from the mix when a song opens, then again from the
separated pitched stems once they are complete, with the runner-up named when it is nearly as likely."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from test_gui_app import separate, settings, songs, window  # noqa: E402,F401 - fixtures

from stemgui.audio.analysis import Key  # noqa: E402


def test_the_key_is_estimated_again_from_the_stems_and_shown_with_its_runner_up(qtbot, window, songs):
    separate(qtbot, window, songs["short"])
    p = window.practice
    qtbot.waitUntil(lambda: p.analysis is not None and p.analysis.key_source == "stems", timeout=30_000)
    a = p.analysis
    assert p.key_label.text() == a.describe()
    assert "separated stems without drums" in p.key_label.toolTip()
    assert f"{a.key.confidence:.0%}" in p.key_label.toolTip()
    # a runner-up is shown beside the key, and both follow a transposition
    p.key_ready.emit(p._generation, Key(9, "minor", 0.55, Key(0, "major", 0.4)))  # as the key thread does
    qtbot.waitUntil(lambda: p.key_label.text().endswith("A minor (or C major)"), timeout=2000)
    p.semitones_spin.setValue(2)
    assert p.key_label.text().endswith("B minor (or D major)")
    assert "nearly as likely: C major (40%)" in p.key_label.toolTip()
    # a stale result (an earlier song's) is ignored
    p.key_ready.emit(p._generation - 1, Key(4, "major", 0.9))
    qtbot.wait(50)
    assert p.analysis.key.name == "A minor"


def test_an_estimate_that_finishes_after_the_controls_were_deleted_is_dropped(qtbot, caplog):
    import logging

    import shiboken6
    from PySide6.QtCore import QObject, Signal

    from stemgui.gui.practice import PracticeControls

    class Holder(QObject):
        ready = Signal(int, object)

    holder = Holder()
    signal = holder.ready
    shiboken6.delete(holder)  # the window closed while the analysis thread ran
    with caplog.at_level(logging.DEBUG, logger="stemgui.gui.practice"):
        PracticeControls._deliver(signal, 1, None)  # no "Signal source has been deleted" escapes the thread
    assert "after its controls were deleted" in caplog.text
