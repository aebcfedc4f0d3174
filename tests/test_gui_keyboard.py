"""Keyboard (issue 13 item 8): Tab / Shift+Tab between lanes with a visible focus ring, M / S on the focused lane,
arrows seek, Shift+arrows nudge the loop, and a Help > Keyboard shortcuts sheet that lists what is bound."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QKeySequence  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402
from test_gui_app import separate, settings, songs, window  # noqa: E402,F401 - fixtures


def focused(window) -> int:
    return next(i for i, lane in enumerate(window.lanes) if lane.property("focused"))


def test_tab_moves_between_lanes_with_a_focus_ring_and_m_s_act_on_it(qtbot, window, songs):
    separate(qtbot, window, songs["short"])
    window.activateWindow()
    window.lanes[1].setFocus()
    qtbot.waitUntil(lambda: window.lanes[1].hasFocus(), timeout=2000)
    assert focused(window) == 1 and window.focused_lane == 1
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Tab)
    assert window.focused_lane == 2 and window.lanes[2].hasFocus() and focused(window) == 2
    assert [bool(l.property("focused")) for l in window.lanes] == [False, False, True, False, False]
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Backtab, Qt.ShiftModifier)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Backtab, Qt.ShiftModifier)
    assert window.focused_lane == 0 and window.lanes[0].hasFocus()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Backtab, Qt.ShiftModifier)  # wraps to the last lane
    assert window.focused_lane == 4 and window.lanes[4].hasFocus()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_M)
    assert window.mixes[4].mute and window.lanes[4].mute_button.isChecked()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Tab)  # wraps to the first lane
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Tab)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_S)
    assert window.mixes[1].solo and not window.mixes[4].solo
    # the ring is drawn (with the app's theme): the focused lane's top border is the accent blue, the others' not
    from stemgui.gui.theme import apply_dark_theme

    apply_dark_theme(QApplication.instance())
    qtbot.wait(20)
    ring = window.lanes[1].grab().toImage().pixelColor(window.lanes[1].width() // 2, 1)
    plain = window.lanes[3].grab().toImage().pixelColor(window.lanes[3].width() // 2, 1)
    assert ring.blue() > 200 and ring.blue() > ring.red() + 60, ring.name()
    assert plain.blue() < 120, plain.name()


def test_arrows_seek_and_shift_arrows_nudge_the_loop(qtbot, window, songs):
    separate(qtbot, window, songs["short"])
    qtbot.keyClick(window, Qt.Key_Right)
    assert window.position_seconds() == pytest.approx(1.0)
    qtbot.keyClick(window, Qt.Key_Right)
    qtbot.keyClick(window, Qt.Key_Left)
    assert window.position_seconds() == pytest.approx(1.0)
    qtbot.keyClick(window, Qt.Key_Right, Qt.ControlModifier)  # 10 s: stops at the song's end
    assert window.position_seconds() == pytest.approx(3.0)
    qtbot.keyClick(window, Qt.Key_Left, Qt.ShiftModifier)  # no loop yet: a hint, nothing moves
    assert window.loop_seconds is None and "No loop" in window.statusBar().currentMessage()
    window.set_loop(1.0, 2.0)
    step = window.time_view.nudge_step  # 1 % of the 3 s song on screen
    assert step == pytest.approx(0.03)
    qtbot.keyClick(window, Qt.Key_Right, Qt.ShiftModifier)
    lo, hi = window.loop_seconds
    assert lo == pytest.approx(1.03, abs=1e-4) and hi == pytest.approx(2.03, abs=1e-4)
    for _ in range(100):  # the loop stops at the song's end, keeping its length
        qtbot.keyClick(window, Qt.Key_Right, Qt.ShiftModifier)
    lo, hi = window.loop_seconds
    assert hi == pytest.approx(3.0, abs=1e-4) and hi - lo == pytest.approx(1.0, abs=1e-3)


def test_help_sheet_lists_every_bound_key(qtbot, window):
    sheet = window.show_shortcuts()
    assert sheet.isVisible() and not sheet.isModal()
    assert window.shortcuts_action in window.help_menu.actions()
    rows = sheet.descriptions()
    for label in ("Space", "← / →", "Shift+← / →", "Tab / Shift+Tab", "M", "S", "L", "+ / Ctrl++", "Ctrl+wheel"):
        assert label in rows, label
    assert "focused lane" in rows["M"]
    # every key the window binds is on the sheet, and every menu shortcut too
    for binding in window.keys.bindings:
        assert binding.label in rows
        for sc in binding.shortcuts:
            assert sc.key().toString() in " ".join(binding.keys) or sc.key() == QKeySequence(binding.keys[0])
    for action in window.actions():
        if not action.shortcut().isEmpty():
            assert any(action.shortcut().toString(QKeySequence.NativeText) in keys for keys in rows), action.text()
    assert sheet.table.rowCount() > len(window.keys.bindings)  # plus group headings and menu commands
    qtbot.keyClick(window, Qt.Key_F1)
    assert sheet.isVisible()


def test_single_keys_do_not_steal_from_focused_fields(qtbot, window, songs):
    """←/→, Space, M and friends go to a focused text field, spin box or combo box, not to the window's shortcuts;
    once a lane has the focus again the same keys seek and mute."""
    separate(qtbot, window, songs["short"])
    window.settings_dock.show()
    window.activateWindow()
    panel = window.settings_panel

    def focus(widget) -> None:
        widget.setFocus()
        qtbot.waitUntil(widget.hasFocus, timeout=2000)

    field = panel.folder_edit
    field.setText("abc")
    focus(field)
    field.setCursorPosition(0)
    qtbot.keyClick(field, Qt.Key_Right)
    assert field.cursorPosition() == 1 and window.position_seconds() == pytest.approx(0.0)
    qtbot.keyClick(field, Qt.Key_Space)
    qtbot.keyClick(field, Qt.Key_M)
    assert field.text() == "a mbc" and not any(m.mute for m in window.mixes[1:])
    assert not window.player.playing
    qtbot.keyClick(field, Qt.Key_Right, Qt.ShiftModifier)  # selects in the field, does not nudge a loop
    assert field.selectedText() == "b" and "No loop" not in window.statusBar().currentMessage()

    spin = panel.shifts_spin
    focus(spin)
    before = spin.value()
    qtbot.keyClick(spin, Qt.Key_Up)
    qtbot.keyClick(spin, Qt.Key_Left)
    qtbot.keyClick(spin, Qt.Key_Home)
    assert spin.value() == before + 1 and window.position_seconds() == pytest.approx(0.0)

    combo = panel.format_combo
    focus(combo)
    combo.setCurrentText("wav")
    qtbot.keyClick(combo, Qt.Key_M)  # keyboard search: the item starting with "m"
    assert combo.currentText() == "mp3" and not any(m.mute for m in window.mixes[1:])
    qtbot.keyClick(combo, Qt.Key_Right)
    assert window.position_seconds() == pytest.approx(0.0)

    # the window's own keys still work from a field: F1 (a menu command) opens the sheet
    qtbot.keyClick(combo, Qt.Key_F1)
    assert window.shortcuts_sheet.isVisible()
    window.shortcuts_sheet.close()

    # the practice bar's tempo box: type a value, Enter hands the keys back to the window
    window.activateWindow()
    tempo = window.practice.tempo_spin
    focus(tempo)
    tempo.selectAll()
    qtbot.keyClicks(tempo, "90")
    qtbot.keyClick(tempo, Qt.Key_Right)
    assert window.position_seconds() == pytest.approx(0.0)
    qtbot.keyClick(tempo, Qt.Key_Return)
    assert tempo.value() == 90 and not tempo.hasFocus()
    qtbot.keyClick(window, Qt.Key_Right)
    assert window.position_seconds() == pytest.approx(1.0)

    focus(window.lanes[1])
    qtbot.keyClick(window.lanes[1], Qt.Key_Right)
    assert window.position_seconds() == pytest.approx(2.0)
    qtbot.keyClick(window.lanes[1], Qt.Key_M)
    assert window.mixes[1].mute
