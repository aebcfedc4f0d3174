"""Keyboard shortcuts: one registry the window binds its keys through, and the Help > Keyboard shortcuts sheet.

The sheet is built from what is actually bound (the registry's keys and every menu action with a shortcut),
so it can never list a key that does nothing or miss one that was added.

Single keys must not steal typing: while a text field, spin box, combo box, slider or list of the window has
the keyboard focus, every key the registry binds goes to that widget (Space types a space, ← moves the caret,
"M" selects the combo item starting with M); the window's shortcut acts again once a lane or the window has
the focus. `EditingKeyGuard` does this by accepting Qt's ShortcutOverride event for those widgets, which is
Qt's own way for a widget to claim a key before a shortcut sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)


@dataclass
class KeyBinding:
    keys: tuple[str, ...]  # QKeySequence strings, e.g. ("Shift+Left", "Shift+Right")
    label: str  # how the sheet shows the keys, e.g. "Shift+← / →"
    description: str
    group: str
    shortcuts: tuple[QShortcut, ...] = ()


# Widgets that use keys themselves: typing, caret and selection keys, stepping, item navigation.
EDITING_WIDGETS: tuple[type, ...] = (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox, QComboBox,
                                     QAbstractSlider, QAbstractItemView, QKeySequenceEdit)


def is_editing_widget(widget: QWidget | None) -> bool:
    """True for a widget (or a child of one, e.g. a combo box's line edit) that handles keys itself."""
    while widget is not None:
        if isinstance(widget, EDITING_WIDGETS):
            return True
        if widget.isWindow():
            return False
        widget = widget.parentWidget()
    return False


def _sequences(event: QKeyEvent) -> set[str]:
    """The event as key-sequence strings, with and without Shift (on most layouts "+" and "?" need Shift)."""
    key = event.keyCombination().key()
    mods = event.modifiers() & ~Qt.KeypadModifier
    return {QKeySequence(key | mods).toString(), QKeySequence(key | (mods & ~Qt.ShiftModifier)).toString()}


class EditingKeyGuard(QObject):
    """Lets a focused editing widget of `window` keep the keys the window binds as single-key shortcuts.

    Installed on the application (ShortcutOverride is sent to the focus widget, which may be any child of any
    dock), it only ever claims keys for widgets inside `window`, and only keys in `keys()` (the registry's), so
    Ctrl+O and other menu commands keep working from a field.
    """

    def __init__(self, window: QWidget, keys):
        super().__init__(window)
        self.window = window
        self.keys = keys  # callable -> set of QKeySequence strings

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        if event.type() == QEvent.ShortcutOverride and isinstance(obj, QWidget) and is_editing_widget(obj) \
                and obj.window() is self.window and obj.isEnabled():
            if _sequences(event) & self.keys():
                event.accept()  # the key goes to the widget as a KeyPress; the shortcut does not fire
                return True
        return False


class KeyRegistry:
    """Binds single keys on a window (window-wide QShortcuts) and remembers what each does, for the sheet.

    Keys bound here give way to a focused editing widget of the window (see `EditingKeyGuard`).
    """

    def __init__(self, window: QWidget):
        self.window = window
        self.bindings: list[KeyBinding] = []
        self.guard = EditingKeyGuard(window, self.bound_keys)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self.guard)  # removed by Qt when the guard (a child of the window) dies

    def bound_keys(self) -> set[str]:
        """Every key sequence bound here, as QKeySequence strings."""
        return {QKeySequence(k).toString() for b in self.bindings for k in b.keys}

    def bind(self, keys: str | Sequence[str], slots: Callable[[], object] | Sequence[Callable[[], object]],
             description: str, group: str, label: str | None = None) -> KeyBinding:
        """`keys` (one or several) each call the slot at the same position in `slots` (or the one slot)."""
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        slots = list(slots) if isinstance(slots, (list, tuple)) else [slots] * len(keys)
        made = []
        for key, slot in zip(keys, slots):
            sc = QShortcut(QKeySequence(key), self.window)
            sc.setContext(Qt.WindowShortcut)
            sc.setAutoRepeat(True)
            sc.activated.connect(slot)
            sc.setWhatsThis(description)
            made.append(sc)
        binding = KeyBinding(keys, label or " / ".join(keys), description, group, tuple(made))
        self.bindings.append(binding)
        return binding

    def describe(self, label: str, description: str, group: str) -> KeyBinding:
        """A key or gesture some widget handles itself (Tab on a lane, Ctrl+wheel): listed, not bound here."""
        binding = KeyBinding((), label, description, group)
        self.bindings.append(binding)
        return binding

    def for_key(self, key: str) -> KeyBinding | None:
        seq = QKeySequence(key).toString()
        return next((b for b in self.bindings if any(QKeySequence(k).toString() == seq for k in b.keys)), None)


def action_rows(actions: Sequence[QAction]) -> list[tuple[str, str, str]]:
    """(group, keys, description) for every action that has a shortcut (menu commands)."""
    rows = []
    for a in actions:
        seqs = [s.toString(QKeySequence.NativeText) for s in a.shortcuts() if not s.isEmpty()]
        if seqs:
            text = a.text().replace("&", "").rstrip("…").rstrip(".")
            rows.append(("Commands", " / ".join(seqs), a.statusTip() or a.toolTip() or text))
    return rows


def sheet_rows(registry: KeyRegistry, actions: Sequence[QAction]) -> list[tuple[str, str, str]]:
    rows = [(b.group, b.label, b.description) for b in registry.bindings]
    seen = {r[1] for r in rows}
    return rows + [r for r in action_rows(actions) if r[1] not in seen]


class ShortcutsSheet(QDialog):
    """A non-modal sheet of every key, grouped; stays open beside the window while the user tries them."""

    def __init__(self, rows: list[tuple[str, str, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setObjectName("shortcutsSheet")
        self.resize(560, 620)
        layout = QVBoxLayout(self)
        intro = QLabel("Keys act on the whole window; M and S act on the focused lane (the one with the blue "
                       "ring: click it, or move with Tab / Shift+Tab). While a text field, number box, list or "
                       "slider has the focus, keys go to it: click a lane (or press Enter in the tempo / transpose boxes) "
                       "to give them back to the window.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["Keys", "What it does"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.setFocusPolicy(Qt.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setWordWrap(True)
        group = None
        for g, keys, what in rows:
            if g != group:
                group = g
                self._add_row(g, "", heading=True)
            self._add_row(keys, what)
        self.table.resizeRowsToContents()
        layout.addWidget(self.table, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        layout.addWidget(buttons)
        self.rows = rows

    def _add_row(self, keys: str, what: str, heading: bool = False) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        k = QTableWidgetItem(keys)
        w = QTableWidgetItem(what)
        if heading:
            font = k.font()
            font.setBold(True)
            k.setFont(font)
            self.table.setSpan(r, 0, 1, 2)
        else:
            font = k.font()
            font.setFamily("monospace")
            k.setFont(font)
        self.table.setItem(r, 0, k)
        self.table.setItem(r, 1, w)

    def descriptions(self) -> dict[str, str]:
        """keys label -> description, for tests and for anyone who wants the sheet as data."""
        return {keys: what for _g, keys, what in self.rows}
