"""The architecture registry: architecture name -> model class, the one factory every caller builds through.

Cards name an architecture (`"architecture": "htdemucs"`) and its constructor arguments; the trainer, the
fine-tuning surgery, `models import`, the Separator and evaluation all build models with `build_model` and
never import a concrete class. Every registered class follows one interface:

* attributes `sources: list[str]`, `samplerate: int`, `audio_channels: int`, `segment: float` (training
  segment, seconds) and `init_kwargs: dict` (constructor arguments without `sources`, as JSON-able values);
* class attribute `architecture: str` (its registry name);
* `forward(mix: (batch, audio_channels, time)) -> (batch, len(sources), audio_channels, time)`;
* optionally `valid_length(length) -> int`: the input length the model needs for `length` samples (the engine
  pads a segment to it with the surrounding audio, as the Demucs reference does, and trims the output).

Classes are imported lazily so that `stemgui models` stays fast and a broken optional module cannot break the
others.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from torch import nn

from stemgui.errors import ModelError

__all__ = ["Architecture", "ARCHITECTURES", "architecture_names", "build_model", "get_class", "register"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Architecture:
    """One registered architecture: where its class lives and what it is, in words."""

    name: str
    target: str  # "module:Class"
    title: str
    paper: str = ""


ARCHITECTURES: dict[str, Architecture] = {}


def register(name: str, target: str, title: str, paper: str = "") -> None:
    """Add an architecture; `target` is "package.module:ClassName" (imported on first use)."""
    ARCHITECTURES[name] = Architecture(name, target, title, paper)


register("hdemucs", "stemgui.models.hdemucs:HDemucs", "Hybrid Demucs (v3)",
         "Défossez 2021, Hybrid Spectrogram and Waveform Source Separation")
register("htdemucs", "stemgui.models.htdemucs:HTDemucs", "Hybrid Transformer Demucs (v4)",
         "Rouard, Massa, Défossez 2023, Hybrid Transformers for Music Source Separation")
register("demucs", "stemgui.models.demucs:Demucs", "Demucs v2 (waveform U-Net with BiLSTM)",
         "Défossez et al. 2019, Music Source Separation in the Waveform Domain")
register("bag", "stemgui.models.bag:BagOfModels", "Bag of models (weighted average of member models)")


def architecture_names() -> list[str]:
    return list(ARCHITECTURES)


def get_class(name: str) -> type[nn.Module]:
    """The model class registered as `name` (ModelError naming the known ones otherwise)."""
    try:
        entry = ARCHITECTURES[name]
    except KeyError:
        known = ", ".join(ARCHITECTURES)
        raise ModelError(f"unknown architecture '{name}' (known: {known})") from None
    module_name, class_name = entry.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"architecture '{name}' is not available in this installation ({exc})") from None
    return getattr(module, class_name)


def build_model(name: str, sources: Sequence[str], args: dict[str, Any] | None = None,
                where: str = "model") -> nn.Module:
    """A freshly initialised model of architecture `name`; bad arguments are one ModelError line naming `where`."""
    cls = get_class(name)
    kwargs = dict(args or {})
    kwargs.pop("sources", None)
    try:
        return cls(list(sources), **kwargs)
    except (TypeError, ValueError, AssertionError, NotImplementedError, RuntimeError, ZeroDivisionError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelError(f"{where}: bad {name} architecture arguments ({detail})") from None
