"""The device menu of both separation settings and the Fine-tune form, filled from `stemgui.devices` in one way."""

from __future__ import annotations

from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QComboBox

from stemgui.devices import device_choices


def fill_device_combo(combo: QComboBox, selected: str = "auto") -> None:
    """Auto, each CUDA GPU, MPS and the CPU; unusable ones stay listed but disabled, with the reason.

    Each item's data is the id `pick_device` takes; `selected` is chosen when it is listed and usable.
    """
    model = QStandardItemModel(combo)
    combo.blockSignals(True)
    combo.clear()
    combo.setModel(model)
    for choice in device_choices():
        combo.addItem(choice.label if choice.enabled else f"{choice.label} — {choice.reason}", choice.id)
        item = model.item(combo.count() - 1)
        item.setEnabled(choice.enabled)
        item.setToolTip(choice.reason or choice.label)
    combo.setCurrentIndex(0)
    combo.blockSignals(False)
    select_device(combo, selected)


def select_device(combo: QComboBox, device: str) -> bool:
    """Choose `device` (an id such as "cpu" or "cuda:0") when it is listed and usable; False otherwise."""
    index = combo.findData(device)
    model = combo.model()
    if index < 0 or not (isinstance(model, QStandardItemModel) and model.item(index).isEnabled()):
        return False
    combo.setCurrentIndex(index)
    return True
