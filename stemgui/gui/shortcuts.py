"""Keyboard shortcuts: one registry the window binds its keys through, and the Help > Keyboard shortcuts sheet.

The sheet is built from what is actually bound (the registry's keys and every menu action with a shortcut),
so it can never list a key that does nothing or miss one that was added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
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


class KeyRegistry:
    """Binds single keys on a window (window-wide QShortcuts) and remembers what each does, for the sheet."""

    def __init__(self, window: QWidget):
        self.window = window
        self.bindings: list[KeyBinding] = []

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
                       "ring: click it, or move with Tab / Shift+Tab).")
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
