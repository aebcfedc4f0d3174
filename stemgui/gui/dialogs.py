"""Dialogs: message boxes behind one small interface (tests swap in a recorder), and the export dialog."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from stemgui.models.card import headline_score

AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.oga *.mp3 *.m4a *.aac *.opus *.mp4 *.aiff *.aif);;All files (*)"


class Dialogs:
    """Everything the window asks the user; replace it (e.g. `RecordingDialogs`) to test without blocking."""

    def __init__(self, parent: QWidget | None = None):
        self.parent = parent

    def error(self, title: str, text: str) -> None:
        QMessageBox.critical(self.parent, title, text)

    def warning(self, title: str, text: str) -> None:
        QMessageBox.warning(self.parent, title, text)

    def info(self, title: str, text: str) -> None:
        QMessageBox.information(self.parent, title, text)

    def confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self.parent, title, text, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def open_song(self, folder: str = "") -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open a song", folder, AUDIO_FILTER)
        return path or None

    def open_songs(self, folder: str = "") -> list[str]:
        paths, _ = QFileDialog.getOpenFileNames(self.parent, "Open several songs (they are queued)", folder,
                                                AUDIO_FILTER)
        return list(paths)

    def choose_folder(self, folder: str = "") -> str | None:
        return QFileDialog.getExistingDirectory(self.parent, "Choose the output folder", folder) or None

    def export_options(self, stems: Sequence[str], defaults: "ExportOptions", has_loop: bool) -> "ExportOptions | None":
        dialog = ExportDialog(stems, defaults, has_loop, self.parent)
        return dialog.options() if dialog.exec() == QDialog.Accepted else None


class RecordingDialogs(Dialogs):
    """Non-blocking dialogs for tests and scripted runs: records every message, answers from presets."""

    def __init__(self, parent: QWidget | None = None, confirm_answer: bool = True):
        super().__init__(parent)
        self.messages: list[tuple[str, str, str]] = []  # (kind, title, text)
        self.confirm_answer = confirm_answer
        self.next_song: str | None = None
        self.next_songs: list[str] = []
        self.next_export: ExportOptions | None = None

    def error(self, title: str, text: str) -> None:
        self.messages.append(("error", title, text))

    def warning(self, title: str, text: str) -> None:
        self.messages.append(("warning", title, text))

    def info(self, title: str, text: str) -> None:
        self.messages.append(("info", title, text))

    def confirm(self, title: str, text: str) -> bool:
        self.messages.append(("confirm", title, text))
        return self.confirm_answer

    def open_song(self, folder: str = "") -> str | None:
        return self.next_song

    def open_songs(self, folder: str = "") -> list[str]:
        return list(self.next_songs)

    def choose_folder(self, folder: str = "") -> str | None:
        return None

    def export_options(self, stems, defaults, has_loop):
        return self.next_export

    def of_kind(self, kind: str) -> list[str]:
        return [text for k, _, text in self.messages if k == kind]


@dataclass
class ExportOptions:
    """What to export: which stems as files, and/or the mix as heard (optionally only the loop region)."""

    folder: str
    fmt: str = "wav"
    stems: tuple[str, ...] = ()
    mix: bool = False
    loop_only: bool = False


class ExportDialog(QDialog):
    def __init__(self, stems: Sequence[str], defaults: ExportOptions, has_loop: bool, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setMinimumWidth(440)
        layout = QVBoxLayout(self)
        group = QGroupBox("Stems as separate files")
        gl = QVBoxLayout(group)
        self.stem_boxes = {}
        for name in stems:
            box = QCheckBox(name.capitalize())
            box.setChecked(not defaults.stems or name in defaults.stems)
            gl.addWidget(box)
            self.stem_boxes[name] = box
        layout.addWidget(group)
        mix_group = QGroupBox("Mix")
        ml = QVBoxLayout(mix_group)
        self.mix_box = QCheckBox("The mix as you hear it (volumes, pans, mutes, solos)")
        self.mix_box.setChecked(defaults.mix)
        self.loop_box = QCheckBox("Only the loop region")
        self.loop_box.setEnabled(has_loop)
        self.loop_box.setChecked(has_loop and defaults.loop_only)
        ml.addWidget(self.mix_box)
        ml.addWidget(self.loop_box)
        layout.addWidget(mix_group)
        form = QFormLayout()
        self.format = QComboBox()
        self.format.addItems(["wav", "flac", "mp3"])
        self.format.setCurrentText(defaults.fmt)
        form.addRow("Format", self.format)
        folder_row = QHBoxLayout()
        self.folder = QLineEdit(defaults.folder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(browse)
        form.addRow("Folder", folder_row)
        layout.addLayout(form)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export to", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def options(self) -> ExportOptions:
        return ExportOptions(folder=self.folder.text() or str(Path.home()), fmt=self.format.currentText(),
                             stems=tuple(n for n, b in self.stem_boxes.items() if b.isChecked()),
                             mix=self.mix_box.isChecked(), loop_only=self.loop_box.isChecked())


def model_purpose(card: dict) -> str:
    """What a model is good for, in words: its catalog description, or what we know of how it was made."""
    if card.get("description"):
        return str(card["description"])
    training = card.get("training") or {}
    if card.get("name") == "default":
        return ("A small, fast separator trained here on synthetic songs and real singing: it works offline and "
                "is fine for practice and karaoke mixes (bass and drums clean enough to mute or solo, the vocal line "
                "to follow; its Clean-up keeps the drum hits out of the vocals between phrases), but the vocals stem "
                "is dull and takes some melody on instrumentals: not a clean a cappella. "
                "Much better models are one click away: Models ▸ Get models…")
    if isinstance(training, dict) and training.get("base_model_name"):
        return f"Fine-tuned from '{training['base_model_name']}' on your own stems."
    if isinstance(training, dict) and training.get("imported_from"):
        return f"Imported from {training['imported_from']}."
    return ""


def card_html(card: dict) -> str:
    """A model card in a few readable lines for the settings panel."""
    if not card:
        return "<i>No model card.</i>"
    from html import escape

    members = (card.get("args") or {}).get("members") if card.get("architecture") == "bag" else None
    kind = f"bag of {len(members)} models" if members else card.get("architecture", "hdemucs")
    lines = [f"<b>{escape(str(card.get('title') or card.get('name', 'model')))}</b> · {escape(str(kind))}"]
    purpose = model_purpose(card)
    if purpose:
        lines.append(escape(purpose))
    sources = card.get("sources")
    if sources:
        lines.append("Stems: " + ", ".join(sources))
    if card.get("parameters"):
        lines.append(f"{card['parameters'] / 1e6:.1f} M parameters")
    score = headline_score(card)
    if score:
        lines.append(score)
    training = card.get("training") or {}
    if isinstance(training, dict):
        for key in ("dataset", "preset", "steps", "note"):
            if training.get(key) is not None:
                lines.append(f"{key.capitalize()}: {training[key]}")
    if card.get("licence"):
        lines.append("Licence: " + escape(str(card["licence"]).split(". ")[0].rstrip(".")) + ".")
    if card.get("created"):
        lines.append(f"Created {str(card['created'])[:10]}")
    return "<br>".join(lines)
