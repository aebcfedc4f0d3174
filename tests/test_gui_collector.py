"""Cyclic garbage is collected on the GUI thread only: a Qt object in a reference cycle is never destroyed by a
worker thread that happens to allocate (a separation worker once hung in QObject::~QObject under the GC)."""

import gc
import threading
import weakref

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject  # noqa: E402

from stemgui.gui.collector import collect_on_gui_thread  # noqa: E402


class Cyclic(QObject):
    def __init__(self):
        super().__init__()
        self.me = self  # only the cyclic collector can free it


def test_cyclic_qt_garbage_dies_on_the_gui_thread_not_in_a_worker(qtbot):
    collector = collect_on_gui_thread()
    assert collector is not None and not gc.isenabled()
    assert collect_on_gui_thread() is collector  # one per process
    died_on = []
    obj = Cyclic()
    weakref.finalize(obj, lambda: died_on.append(threading.get_ident()))
    del obj

    kept = []

    def allocate():  # far past every generation's threshold: automatic collection would run in this thread
        for _ in range(200_000):
            kept.append([[]])

    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    assert died_on == []  # nothing was collected on the worker
    qtbot.waitUntil(lambda: bool(died_on), timeout=5_000)
    assert died_on == [threading.get_ident()]  # the GUI thread's timer collected it
    assert sum(collector.collections) >= 1
    kept.clear()


def test_automatic_collection_switched_back_on_is_switched_off_again(qtbot):
    collector = collect_on_gui_thread()
    gc.enable()
    assert collect_on_gui_thread() is collector and not gc.isenabled()


def test_only_the_gui_thread_can_start_it(qtbot, caplog):
    got = []
    t = threading.Thread(target=lambda: got.append(collect_on_gui_thread()))
    t.start()
    t.join()
    assert got == [None] and "GUI thread" in caplog.text
