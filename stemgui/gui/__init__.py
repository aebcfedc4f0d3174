"""stemgui.gui: the PySide6 desktop app, a thin layer over the Qt-free core library.

PySide6 is pinned below 6.12: its 6.12.0 wheels drop references to None/True/False on CPython 3.11 and abort
the interpreter after a few thousand Qt calls (measured here; see tests/test_gui_finetune.py).
"""
