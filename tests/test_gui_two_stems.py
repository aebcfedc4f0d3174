"""The app with a two-stem spectrogram model at its own rate (DRNN, 16 kHz mono): a 44.1 kHz stereo song
separates into two lanes (plus the mix)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402
from test_gui_app import separate, write_song  # noqa: E402

from stemgui.gui.cache import StemCache  # noqa: E402
from stemgui.gui.dialogs import RecordingDialogs  # noqa: E402
from stemgui.gui.main_window import MainWindow  # noqa: E402
from stemgui.gui.settings import AppSettings  # noqa: E402


def test_a_two_stem_drnn_model_shows_two_lanes(qtbot, tmp_path):
    import torch

    from stemgui.models.architectures import build_model
    from stemgui.models.card import save_model

    torch.manual_seed(0)
    model_path = save_model(build_model("drnn", ["vocals", "accompaniment"], {"hidden": 8, "nfft": 64}),
                            tmp_path / "drnn2")
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    dialogs = RecordingDialogs()
    win = MainWindow(settings, dialogs, StemCache(tmp_path / "cache"), model=str(model_path), enable_audio=False)
    dialogs.parent = win
    qtbot.addWidget(win)
    win.resize(1000, 700)
    win.show()
    try:
        separate(qtbot, win, write_song(tmp_path / "song.wav", 2.0))
        assert [lane.name for lane in win.lanes] == ["mix", "vocals", "accompaniment"]
        assert win.session.complete and abs(win.session.stems).max() > 0
    finally:
        win.shutdown()
