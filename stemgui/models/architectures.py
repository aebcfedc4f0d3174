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
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from torch import nn

from stemgui.errors import ModelError

__all__ = ["Architecture", "ARCHITECTURES", "architecture_names", "build_model", "changed_settings", "get_class",
           "register"]

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
register("drnn", "stemgui.models.drnn:DRNN", "DRNN (deep recurrent network, time-frequency masking layer)",
         "Huang et al. 2014/2015, Singing-voice separation from monaural recordings using deep RNNs")
register("unet", "stemgui.models.unet:SpectrogramUNet", "Spectrogram U-Net (sigmoid masks)",
         "Jansson et al. 2017, Singing voice separation with deep U-Net convolutional networks")
register("nmf", "stemgui.models.nmf:NMF", "Supervised NMF (per-source dictionaries, Wiener masks)",
         "Smaragdis et al. 2007; Févotte & Idier 2011 (beta-divergence multiplicative updates)")
register("waveunet", "stemgui.models.waveunet:WaveUNet", "Wave-U-Net (waveform U-Net, difference output layer)",
         "Stoller, Ewert, Dixon 2018, Wave-U-Net: A Multi-Scale Neural Network for End-to-End Audio Source "
         "Separation")
register("demucs1", "stemgui.models.demucs:Demucs1", "Demucs v1 (waveform U-Net with BiLSTM, GLU)",
         "Défossez et al. 2019, Music Source Separation in the Waveform Domain (v1)")
register("convtasnet", "stemgui.models.convtasnet:ConvTasNet", "Conv-TasNet (learned basis, TCN masks)",
         "Luo & Mesgarani 2019, Conv-TasNet; music configuration of Défossez et al. 2019")


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


def changed_settings(model: nn.Module) -> str:
    """The constructor arguments of `model` that differ from its class defaults, as "name=value (default x)"
    items; for classes whose defaults are a paper's settings this says how a model departs from the paper."""
    try:
        params = inspect.signature(type(model).__init__).parameters
    except (TypeError, ValueError):
        return ""
    items = []
    for key, value in dict(getattr(model, "init_kwargs", {}) or {}).items():
        param = params.get(key)
        if key != "sources" and param is not None and param.default is not inspect.Parameter.empty \
                and value != param.default:
            default = round(param.default, 4) if isinstance(param.default, float) else param.default
            items.append(f"{key}={value!r} (default {default!r})")
    return ", ".join(items)
