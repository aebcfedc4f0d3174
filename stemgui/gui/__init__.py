"""stemgui.gui: the PySide6 desktop app, a thin layer over the Qt-free core library."""

import sys


def _pin_singletons() -> None:
    """Work around PySide6 6.12 wheels on CPython 3.11.

    These abi3 wheels treat None, True and False as immortal (as CPython >= 3.12 does) and drop references to
    them that they never took, e.g. once per bool passed through a signal. On 3.11 the count eventually hits
    zero and the interpreter aborts ("Fatal Python error: bool_dealloc: deallocating True or False"), after a
    few thousand clicks or at exit. Giving the singletons a practically infinite count, which is exactly what
    3.12 does, makes that harmless.
    """
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return
    import ctypes

    for obj in (None, True, False, Ellipsis, NotImplemented):
        ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40


_pin_singletons()
