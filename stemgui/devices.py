"""Compute devices: the one device picker and the one list of device choices (CLI, trainer, both GUI combos).

`auto` prefers CUDA, then Apple MPS, then the CPU, everywhere: separation, training and fine-tuning agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stemgui.errors import StemGUIError

__all__ = ["DeviceChoice", "device_choices", "mps_available", "pick_device"]


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(requested: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch device for `requested` (auto, cpu, cuda, cuda:N, mps); an unavailable choice is an error.

    `local_rank` (distributed training) picks that rank's GPU for `auto` and for a bare `cuda`.
    """
    requested = (requested or "auto").strip().lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise StemGUIError(f"unknown device '{requested}' (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise StemGUIError(f"device '{requested}' is not available (no CUDA GPU found)")
        if device.index is None and local_rank is not None:
            device = torch.device("cuda", local_rank)
        elif device.index is not None and device.index >= torch.cuda.device_count():
            raise StemGUIError(f"device '{requested}' is not available ({torch.cuda.device_count()} CUDA GPUs found)")
    elif device.type == "mps" and not mps_available():
        raise StemGUIError("device 'mps' is not available (needs Apple silicon and a Metal-enabled torch)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise StemGUIError(f"unknown device '{requested}' (use auto, cpu, cuda, cuda:N or mps)")
    return device


@dataclass(frozen=True)
class DeviceChoice:
    """One entry of a device menu: `id` is what `pick_device` takes."""

    id: str
    label: str
    enabled: bool = True
    reason: str = ""


def device_choices() -> list[DeviceChoice]:
    """Auto, every CUDA GPU by name, Apple MPS and the CPU; unusable ones disabled with a one-line reason."""
    choices = [DeviceChoice("auto", "Auto (best available)")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            choices.append(DeviceChoice(f"cuda:{i}", f"CUDA {i}: {torch.cuda.get_device_name(i)}"))
    else:
        reason = ("this PyTorch build has no CUDA support" if torch.version.cuda is None
                  else "no CUDA GPU or driver was found")
        choices.append(DeviceChoice("cuda", "CUDA GPU", False, reason))
    mps = getattr(torch.backends, "mps", None)
    if mps_available():
        choices.append(DeviceChoice("mps", "Apple GPU (MPS)"))
    else:
        built = mps is not None and mps.is_built()
        choices.append(DeviceChoice("mps", "Apple GPU (MPS)", False,
                                    "needs an Apple silicon Mac" if built else "this PyTorch build has no MPS support"))
    choices.append(DeviceChoice("cpu", "CPU"))
    return choices
