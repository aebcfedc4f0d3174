"""The dark look: Fusion style, a dark palette, and a small style sheet for lanes and buttons."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

BACKGROUND = "#181a20"
PANEL = "#1f222a"
RAISED = "#2a2e38"
TEXT = "#e4e6eb"
MUTED_TEXT = "#9aa0ab"
ACCENT = "#5aa9ff"
# message lines (the Fine-tune panel's status and dataset check)
ERROR_STYLE = "color: #ff8a80;"
OK_STYLE = "color: #9be39b;"
INFO_STYLE = "color: #c9cdd6;"

STYLE_SHEET = f"""
QMainWindow, QDialog {{ background: {BACKGROUND}; }}
QToolBar {{ background: {PANEL}; border: none; border-bottom: 1px solid #2c303a; spacing: 6px; padding: 4px 8px; }}
QToolBar QToolButton {{ color: {TEXT}; padding: 4px 9px; border-radius: 5px; }}
QToolBar QToolButton:hover {{ background: {RAISED}; }}
QToolBar QToolButton:checked {{ background: #33507a; }}
QToolButton#preset {{ border: 1px solid #3a3f4b; border-radius: 11px; padding: 2px 10px; color: {TEXT}; }}
QToolButton#preset:hover {{ background: #33507a; border-color: {ACCENT}; }}
QLabel#timeLabel {{ color: {TEXT}; font-family: monospace; font-size: 13pt; padding: 0 10px; }}
QLabel#songLabel {{ color: {MUTED_TEXT}; padding: 0 8px; }}
QFrame#lane {{ background: {PANEL}; border: 1px solid #262a33; border-radius: 6px; }}
QFrame#lane[focused="true"] {{ border: 2px solid {ACCENT}; }}
QFrame#lane[focused="true"] QLabel#laneTitle {{ text-decoration: underline; }}
QToolButton#zoomButton {{ border: 1px solid #3a3f4b; border-radius: 5px; padding: 2px 8px; color: {TEXT};
    min-width: 14px; }}
QToolButton#zoomButton:hover {{ background: {RAISED}; }}
QScrollBar#timeScroll:horizontal {{ height: 10px; background: {BACKGROUND}; }}
QScrollBar#timeScroll::handle:horizontal {{ background: #4a4f5c; border-radius: 4px; min-width: 24px; }}
QScrollBar#timeScroll::handle:horizontal:disabled {{ background: #2a2e38; }}
QScrollBar#timeScroll::add-line, QScrollBar#timeScroll::sub-line {{ width: 0px; }}
QWidget#laneHeader {{ background: transparent; }}
QLabel#laneTitle {{ font-weight: 600; font-size: 11pt; }}
QLabel#small {{ color: {MUTED_TEXT}; font-size: 8pt; }}
QToolButton#muteButton, QToolButton#soloButton {{ background: {RAISED}; color: {TEXT}; border: none;
    border-radius: 4px; font-weight: 700; }}
QToolButton#muteButton:checked {{ background: #e0603f; color: #111; }}
QToolButton#soloButton:checked {{ background: #f2c94c; color: #111; }}
QSlider::groove:horizontal {{ height: 4px; background: #3a3f4b; border-radius: 2px; }}
QSlider::handle:horizontal {{ background: {TEXT}; width: 10px; margin: -5px 0; border-radius: 5px; }}
QSlider::sub-page:horizontal {{ background: #4a6fa5; border-radius: 2px; }}
QProgressBar {{ background: {RAISED}; border: none; border-radius: 4px; height: 10px; text-align: center;
    color: {TEXT}; }}
QProgressBar::chunk {{ background: {ACCENT}; border-radius: 4px; }}
QWidget#jobBar {{ background: {PANEL}; border-top: 1px solid #2c303a; }}
QLabel#dropHint {{ color: {TEXT}; font-size: 18pt; background: rgba(16, 18, 24, 190); }}
QDockWidget {{ color: {TEXT}; }}
QDockWidget::title {{ background: {PANEL}; padding: 6px; }}
QGroupBox {{ border: 1px solid #2c303a; border-radius: 6px; margin-top: 14px; padding-top: 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; color: {MUTED_TEXT}; }}
QStatusBar {{ color: {MUTED_TEXT}; }}
QScrollArea {{ border: none; background: {BACKGROUND}; }}
"""


def apply_dark_theme(app: QApplication) -> None:
    app.setStyle("Fusion")
    pal = QPalette()
    colours = {
        QPalette.Window: BACKGROUND, QPalette.WindowText: TEXT, QPalette.Base: "#14161b",
        QPalette.AlternateBase: PANEL, QPalette.ToolTipBase: RAISED, QPalette.ToolTipText: TEXT,
        QPalette.Text: TEXT, QPalette.Button: RAISED, QPalette.ButtonText: TEXT, QPalette.BrightText: "#ff5252",
        QPalette.Highlight: ACCENT, QPalette.HighlightedText: "#0b0c10", QPalette.Link: ACCENT,
        QPalette.PlaceholderText: MUTED_TEXT,
    }
    for role, colour in colours.items():
        pal.setColor(role, QColor(colour))
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        pal.setColor(QPalette.Disabled, role, QColor("#5d636e"))
    app.setPalette(pal)
    font = QFont(app.font())
    font.setPointSize(max(9, font.pointSize()))
    app.setFont(font)
    app.setStyleSheet(STYLE_SHEET)
    pg.setConfigOptions(antialias=True, background=BACKGROUND, foreground=MUTED_TEXT, imageAxisOrder="row-major")
