"""The "Get models…" dialog, driven as a user would: pick a catalog model, confirm the licence, watch the
download (worker thread) finish, see it marked installed; a failed download is a dialog; cancel resumes."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from stemgui.gui.dialogs import RecordingDialogs  # noqa: E402
from stemgui.gui.models_dialog import ModelsDialog  # noqa: E402

from http_server import server  # noqa: F401,E402 - a pytest fixture
from published_fixtures import published  # noqa: F401,E402 - a pytest fixture


def _dialog(qtbot, confirm=True):
    dialogs = RecordingDialogs(confirm_answer=confirm)
    dialog = ModelsDialog(dialogs)
    qtbot.addWidget(dialog)
    return dialog, dialogs


def test_download_installs_and_marks_the_model(qtbot, published):
    dialog, dialogs = _dialog(qtbot)
    dialog.select("pair")
    assert dialog.download_button.isEnabled() and dialog.download_button.text() == "Download"
    assert "A pair" in dialog.details.text() and "test licence" in dialog.licence.text()
    with qtbot.waitSignal(dialog.installed, timeout=60_000) as installed:
        dialog.download_button.click()
        assert dialog.busy and not dialog.download_button.isEnabled() and dialog.cancel_button.isEnabled()
    assert installed.args == ["pair"]
    qtbot.waitUntil(lambda: not dialog.busy, timeout=10_000)
    assert dialog.download_button.text() == "Installed" and not dialog.download_button.isEnabled()
    row = [e.name for e in dialog.catalog.entries].index("pair")
    assert dialog.table_model.index(row, 5).data() == "Installed"
    assert [m[:2] for m in dialogs.messages] == [("confirm", "Download model")]
    assert "test licence" in dialogs.messages[0][2], "the licence is shown before downloading"
    from stemgui.models.registry import resolve_model

    assert resolve_model("pair").is_file()


def test_declining_the_licence_downloads_nothing(qtbot, published, server):
    dialog, _ = _dialog(qtbot, confirm=False)
    dialog.select("pair")
    dialog.download_button.click()
    assert not dialog.busy and server.requests == []


def test_failed_download_is_a_dialog(qtbot, published):
    dialog, dialogs = _dialog(qtbot)
    dialog.select("missing")
    dialog.download_button.click()
    qtbot.waitUntil(lambda: not dialog.busy, timeout=30_000)
    errors = [m for m in dialogs.messages if m[0] != "confirm"]
    assert [m[:2] for m in errors] == [("error", "Download failed")]
    assert "HTTP error 404" in errors[0][2]
    assert dialog.download_button.isEnabled()


def test_cancel_stops_and_keeps_the_partial_download(qtbot, published, server, tmp_path):
    import time

    from stemgui.models import download as download_module

    original = download_module._open

    def slow_open(*args, **kwargs):  # give the user time to press Cancel
        time.sleep(0.3)
        return original(*args, **kwargs)

    download_module._open = slow_open
    try:
        dialog, dialogs = _dialog(qtbot)
        dialog.select("pair")
        dialog.download_button.click()
        dialog.cancel_download()
        qtbot.waitUntil(lambda: not dialog.busy, timeout=30_000)
    finally:
        download_module._open = original
    assert "Cancelled" in dialog.status.text()
    assert [m[0] for m in dialogs.messages] == ["confirm"]
    assert not (tmp_path / "data" / "models" / "pair.json").exists()


def test_main_window_downloads_and_selects_the_model(qtbot, published, tmp_path):
    from PySide6.QtCore import QSettings

    from stemgui.gui.cache import StemCache
    from stemgui.gui.main_window import MainWindow
    from stemgui.gui.settings import AppSettings

    dialogs = RecordingDialogs()
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    window = MainWindow(settings, dialogs, StemCache(tmp_path / "cache"), enable_audio=False)
    qtbot.addWidget(window)
    menus = {a.text(): a.menu() for a in window.menuBar().actions()}
    assert [a.text() for a in menus["&Models"].actions()] == ["Get models…"]
    assert "one click away" in window.settings_panel.card_label.text(), "the bundled model says what it is"
    window.settings_panel.get_models_button.click()
    dialog = window.models_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.select("pair")
    with qtbot.waitSignal(dialog.installed, timeout=60_000):
        dialog.download_button.click()
    assert window.current_model_path().stem == "pair"
    assert "bag of 2 models" in window.settings_panel.card_label.text()
    qtbot.waitUntil(lambda: not dialog.busy, timeout=10_000)
    window.shutdown()
