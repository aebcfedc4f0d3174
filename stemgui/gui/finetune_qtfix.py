"""Work around PySide6 6.12.0 on Python 3.11: every call of a Qt method returning void drops a reference to None.

Measured here (PySide6_Essentials 6.12.0, CPython 3.11.7): `QLabel.setText`, `QPainter.drawLine`, `setPen` ...
each lower `sys.getrefcount(None)` by one, so after a few thousand calls CPython aborts with "Fatal Python
error: none_dealloc". A pyqtgraph plot repainting for ten minutes is enough (seen with the fine-tune panel).
PySide6 6.11.2 does not do this, and from Python 3.12 on None is immortal. Until the pin changes, giving None a
huge reference count makes the lost references harmless: None is never freed anyway.
"""

from __future__ import annotations

import ctypes
import platform
import sys

_RESERVE = 1 << 50  # lost references to absorb: more Qt calls than any session makes


def needs_none_guard() -> bool:
    """True on CPython < 3.12 with a PySide6 6.12 (the combination that leaks None references)."""
    if sys.version_info >= (3, 12) or platform.python_implementation() != "CPython":
        return False
    try:
        import PySide6
    except ImportError:
        return False
    return str(getattr(PySide6, "__version__", "")).startswith("6.12.")


def guard_none_refcount() -> bool:
    """Raise None's reference count far above what the leak can consume; idempotent. True when applied."""
    if not needs_none_guard():
        return False
    refcnt = ctypes.c_ssize_t.from_address(id(None))  # ob_refcnt is PyObject's first field (release builds)
    if refcnt.value < _RESERVE:
        refcnt.value += _RESERVE
    return True
