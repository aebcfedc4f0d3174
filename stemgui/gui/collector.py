"""Python's cyclic garbage collector, run on the GUI thread only.

The collector runs in whichever thread happens to allocate when a generation's threshold is crossed. When that is
a worker (separation, spectrograms, analysis) and the garbage holds a Qt object, the object's C++ destructor runs
in that worker: PySide's destructor hooks then wait for a GIL the thread already holds, and the app hangs (seen in
the test suite: a separation worker stuck in `QObject::~QObject` under `gc_collect_main`). Qt objects must die
on the thread that owns them, so automatic collection is switched off and a GUI-thread timer collects instead,
generation by generation with Python's own thresholds (the approach pyqtgraph's GarbageCollector takes).
"""

from __future__ import annotations

import gc
import logging

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer

log = logging.getLogger(__name__)
INTERVAL_MS = 500

_collector: "MainThreadCollector | None" = None


class MainThreadCollector(QObject):
    """Disables automatic collection and collects on a GUI-thread timer with the interpreter's thresholds."""

    def __init__(self, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__()
        self.thresholds = gc.get_threshold()
        self.collections = [0, 0, 0]
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.check)
        gc.disable()
        self.timer.start()

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds (what automatic collection would do)."""
        g0, g1, g2 = gc.get_count()
        t0, t1, t2 = self.thresholds
        if g0 <= t0:
            return
        generation = 2 if (g1 > t1 and g2 > t2) else 1 if g1 > t1 else 0
        gc.collect(generation)
        self.collections[generation] += 1


def collect_on_gui_thread() -> MainThreadCollector | None:
    """Start the process's collector once, from the GUI thread; later calls return the same one."""
    global _collector
    app = QCoreApplication.instance()
    if app is None or QThread.currentThread() is not app.thread():
        log.warning("the garbage collector can only be moved to the GUI thread from the GUI thread")
        return None
    if _collector is None:
        _collector = MainThreadCollector()
    elif gc.isenabled():  # someone turned automatic collection back on: keep it off
        gc.disable()
    return _collector
