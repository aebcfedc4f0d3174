"""The compute devices a user can pick, with the reason when one cannot be used on this machine."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceChoice:
    """One entry of the device menu: `id` is what SeparationSettings.device takes."""

    id: str
    label: str
    enabled: bool = True
    reason: str = ""


def device_choices() -> list[DeviceChoice]:
    """Auto, every CUDA GPU by name, Apple MPS and the CPU; unusable ones disabled with a one-line reason."""
    import torch

    choices = [DeviceChoice("auto", "Auto (best available)")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            choices.append(DeviceChoice(f"cuda:{i}", f"CUDA {i}: {torch.cuda.get_device_name(i)}"))
    else:
        reason = ("this PyTorch build has no CUDA support" if torch.version.cuda is None
                  else "no CUDA GPU or driver was found")
        choices.append(DeviceChoice("cuda", "CUDA GPU", False, reason))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append(DeviceChoice("mps", "Apple GPU (MPS)"))
    else:
        built = mps is not None and mps.is_built()
        choices.append(DeviceChoice("mps", "Apple GPU (MPS)", False,
                                    "needs an Apple silicon Mac" if built else "this PyTorch build has no MPS support"))
    choices.append(DeviceChoice("cpu", "CPU"))
    return choices
