"""Function-preserving widening (Net2WiderNet) of a trained Hybrid Demucs: a wider model that starts where it was.

A wider generator learns more, but trained from scratch on a CPU it needs many hours just to catch up with the
narrow one it replaces. Widening instead gives every hidden unit `factor` copies: a layer's output channels are
repeated (new channel j is old channel j // factor) and the next layer's input weights are split among the
copies by random shares that sum to one, so the wide model computes exactly what the narrow one did, while the
unequal shares let the copies drift apart under training.

Why it is exact for Hybrid Demucs: every widened axis is a concatenation of blocks (GLU halves, LSTM gates and
directions, attention heads, GroupNorm groups) each of which doubles in place, so `j // factor` maps each new
block onto its old block; a GroupNorm group then holds every old value `factor` times (same mean and variance);
attention scores sum over `factor` times as many channels and are divided by a larger sqrt(head width), which
the query weights' 1/sqrt(factor) undoes. Inputs (audio) and outputs (stems) keep their widths.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stemgui.errors import ModelError
from stemgui.models.architectures import build_model
from stemgui.models.hdemucs import LayerScale, LocalState

__all__ = ["WIDENABLE", "widen_hdemucs", "widen_model_file", "widened_args"]

log = logging.getLogger(__name__)

WIDENABLE = ("hdemucs",)

# Which axes of a module's tensors are its outputs (copied) and inputs (split among copies), by module type.
_CONV = {"weight": (0, 1), "bias": (0, None)}
_CONV_T = {"weight": (1, 0), "bias": (0, None)}


def widened_args(args: dict[str, Any], factor: int) -> dict[str, Any]:
    """The constructor arguments of the wide model: every width times `factor`."""
    wide = dict(args)
    wide["channels"] = int(args["channels"]) * factor
    if args.get("channels_time"):
        wide["channels_time"] = int(args["channels_time"]) * factor
    return wide


def _axes(module: nn.Module, tensor_name: str) -> tuple[int | None, int | None]:
    """(output axis, input axis) of one of the module's own tensors; None where it has no such axis."""
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        return _CONV_T[tensor_name]
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        return _CONV[tensor_name]
    if isinstance(module, nn.LSTM):  # weight_ih_lK (4H, I), weight_hh_lK (4H, H), biases (4H,)
        return (0, 1) if tensor_name.startswith("weight") else (0, None)
    if isinstance(module, (nn.GroupNorm, LayerScale)):
        return 0, None
    if isinstance(module, nn.Embedding):  # (positions, channels): added to the activations
        return 1, None
    raise ModelError(f"widening: no rule for {type(module).__name__}.{tensor_name}")


def _widen_tensor(old: torch.Tensor, shape: torch.Size, out_axis: int | None, in_axis: int | None,
                  factor: int, generator: torch.Generator, where: str) -> torch.Tensor:
    """Copy along the widened output axis; copy and split by random shares along the widened input axis."""
    new = old
    for axis in range(old.dim()):
        if shape[axis] == old.shape[axis]:
            continue
        if shape[axis] != factor * old.shape[axis] or axis not in (out_axis, in_axis):
            raise ModelError(f"widening: {where} goes from {tuple(old.shape)} to {tuple(shape)}, "
                             f"not a x{factor} widening of its channels")
        new = new.repeat_interleave(factor, dim=axis)
        if axis == in_axis:
            # Shares for the `factor` copies of each input channel, drawn per weight and summing to one.
            grouped = list(new.shape)
            grouped[axis:axis + 1] = [old.shape[axis], factor]
            raw = 0.5 + torch.rand(grouped, generator=generator, dtype=torch.float64)
            shares = (raw / raw.sum(dim=axis + 1, keepdim=True)).reshape(new.shape)
            new = (new.double() * shares).to(old.dtype)
    return new


def widen_hdemucs(model: nn.Module, factor: int = 2, seed: int = 0) -> nn.Module:
    """A Hybrid Demucs `factor` times as wide computing the same function as `model` (in float rounding).

    model: a built `hdemucs` model -> a new model of the same class with `widened_args`, every tensor mapped.
    """
    architecture = getattr(model, "architecture", type(model).__name__)
    if architecture not in WIDENABLE:
        raise ModelError(f"widening is implemented for {', '.join(WIDENABLE)}, not {architecture}")
    if factor < 2:
        raise ModelError(f"widening factor must be 2 or more, not {factor}")
    args = {k: v for k, v in model.init_kwargs.items() if k != "sources"}
    wide = build_model(architecture, model.sources, widened_args(args, factor))
    generator = torch.Generator().manual_seed(seed)
    old_state = model.state_dict()
    new_state = wide.state_dict()
    modules = dict(wide.named_modules())
    mapped: dict[str, torch.Tensor] = {}
    for key, target in new_state.items():
        owner, _, tensor_name = key.rpartition(".")
        module = modules[owner]
        out_axis, in_axis = _axes(module, tensor_name)
        mapped[key] = _widen_tensor(old_state[key], target.shape, out_axis, in_axis, factor, generator, key)
    for name, module in wide.named_modules():
        query = f"{name}.query.weight"
        if isinstance(module, LocalState) and mapped[query].shape != old_state[query].shape:
            # Scores sum over `factor` x the channels per head and divide by sqrt(factor) x more: undo the net √f.
            for tensor in ("weight", "bias"):
                mapped[f"{name}.query.{tensor}"] = mapped[f"{name}.query.{tensor}"] / math.sqrt(factor)
    wide.load_state_dict(mapped)
    log.info("widened %s x%d: %d -> %d parameters", architecture, factor,
             sum(p.numel() for p in model.parameters()), sum(p.numel() for p in wide.parameters()))
    return wide


def widen_model_file(src: str | os.PathLike, dst: str | os.PathLike, factor: int = 2, seed: int = 0) -> Path:
    """Widen the model stored at `src` (a name or a path) and write it to `dst` with a card that says so.

    The card keeps the narrow model's training and metrics under `training.widened_from` (its own figures no
    longer describe a model that will be trained on) and records the factor and the seed of the shares.
    """
    from stemgui.models.card import count_parameters, load_model, save_model
    from stemgui.models.registry import resolve_model

    path = resolve_model(src)
    model, card = load_model(path)
    wide = widen_hdemucs(model, factor, seed)
    narrow = count_parameters(model)
    out_card = {
        "name": Path(dst).stem,
        "training": {
            "method": "function-preserving widening (Net2WiderNet): not trained since",
            "widened_from": {"model": str(card.get("name") or path.stem), "file": str(path), "factor": factor,
                             "seed": seed, "parameters": narrow, "training": card.get("training", {}),
                             "metrics": card.get("metrics", {})},
        },
        "metrics": {},
        "notes": f"{card.get('name') or path.stem} widened x{factor} ({narrow:,} -> "
                 f"{count_parameters(wide):,} parameters); separates as the narrow model did until trained.",
    }
    return save_model(wide, dst, out_card)
