"""Fine-tuning surgery: the base model a run starts from, its weights mapped onto the run's sources, frozen layers.

The base is a model of any registered architecture, or one member of a bag (`NAME:K` or `path.safetensors:K`
selects member K; a bag's tensors are stored under `models.K.`). The new generator is built with the base's own
architecture and arguments (only the training segment changes) and gets every tensor of the base; output
layers, which stack sources along one dimension, get the slices of the sources both share by name, while the
others keep their fresh initialisation. Nothing here knows a particular architecture: which tensors are
per-source is found by building the architecture once more with a probe source added.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stemgui.errors import ModelError
from stemgui.models.architectures import build_model
from stemgui.models.check import check_model_config

__all__ = ["BaseModel", "finetune_generator", "freeze_encoder_layers", "load_base_model", "map_sources",
           "source_dims", "source_layout", "split_member"]

log = logging.getLogger(__name__)

BAG = "bag"
MEMBER_SPEC = re.compile(r"^(?P<model>.+):(?P<member>\d+)$")
PROBE_SOURCE = "__probe__"


@dataclass(frozen=True)
class BaseModel:
    """What a fine-tune starts from: a plain model, or the one bag member the spec selected."""

    spec: str
    name: str | None
    architecture: str
    args: dict[str, Any]  # constructor arguments without `sources`
    sources: list[str]
    samplerate: int
    state: dict[str, torch.Tensor]
    member: int | None = None


def split_member(spec: str) -> tuple[str, int | None]:
    """`NAME:K` or `path.safetensors:K` -> (model, K); anything else -> (spec, None).

    A file that exists under the whole spec (a name that really ends in `:K`) is that file, not a member.
    """
    match = MEMBER_SPEC.match(spec)
    if match is None or Path(spec).exists():
        return spec, None
    return match["model"], int(match["member"])


def load_base_model(spec: str) -> BaseModel:
    """Read the card and weights the spec names (a registered model name or a path, optionally `:K`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from stemgui.models.card import read_card
    from stemgui.models.registry import resolve_model

    model_ref, member = split_member(spec)
    wpath = resolve_model(model_ref)
    card = read_card(wpath)
    if not wpath.is_file():
        raise ModelError(f"{wpath}: model weights not found")
    try:
        state = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{wpath}: weights file is corrupt ({exc})") from None
    name = card.get("name")
    architecture = str(card["architecture"])
    if architecture == BAG:
        return _bag_member(spec, card, state, member)
    if member is not None:
        raise ModelError(f"base model {spec}: '{name or model_ref}' is one {architecture} model, not a bag; "
                         f"':{member}' selects a member of a bag")
    args = {k: v for k, v in dict(card["args"]).items() if k != "sources"}
    samplerate = int(card.get("samplerate", args.get("samplerate", 44100)))
    return BaseModel(spec, name, architecture, args, list(card["sources"]), samplerate, state)


def _bag_member(spec: str, card: dict[str, Any], state: dict[str, torch.Tensor], member: int | None) -> BaseModel:
    """Member `member` of a bag card: its architecture, arguments, sources and its own tensors."""
    name = card.get("name")
    members = list(dict(card["args"]).get("members") or [])
    count = len(members)
    if count == 0:
        raise ModelError(f"base model {spec}: the bag '{name}' lists no members")
    if member is None:
        raise ModelError(f"base model {spec}: '{name}' is a bag of {count} models; fine-tune one member with "
                         f"{spec}:K (K from 0 to {count - 1})")
    if not 0 <= member < count:
        raise ModelError(f"base model {spec}: the bag '{name}' has members 0 to {count - 1}, not {member}")
    entry = dict(members[member])
    prefix = f"models.{member}."
    member_state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    if not member_state:
        raise ModelError(f"base model {spec}: the bag's weights hold no tensors for member {member} ({prefix}*)")
    args = {k: v for k, v in dict(entry.get("args") or {}).items() if k != "sources"}
    samplerate = int(args.get("samplerate", card.get("samplerate", 44100)))
    return BaseModel(spec, name, str(entry["architecture"]), args, list(entry.get("sources") or card["sources"]),
                     samplerate, member_state, member)


def source_layout(architecture: str, sources: Sequence[str], args: dict[str, Any],
                  model: nn.Module | None = None) -> tuple[dict[str, int], list[str]]:
    """Which tensors are per source: slices along one dimension (`dims`: key -> dimension) and whole modules
    per source (`templates`: keys with the source's index as `{}`, e.g. DRNN's `heads.{}.weight`).

    Found by building the architecture with a probe source added and comparing, so it holds for any
    architecture; `model` (already built for `sources`) saves one of the two builds.
    """
    with torch.random.fork_rng(devices=[]):  # the probe builds leave the caller's random stream untouched
        a = (model if model is not None else build_model(architecture, list(sources), args)).state_dict()
        b = build_model(architecture, list(sources) + [PROBE_SOURCE], args).state_dict()
    dims = {}
    for key, value in a.items():
        diff = [d for d in range(value.dim()) if value.shape[d] != b[key].shape[d]]
        if diff:
            dims[key] = diff[0]
    probe_index = re.compile(rf"(^|\.){len(sources)}(\.|$)")
    templates = sorted({probe_index.sub(lambda m: f"{m[1]}{{}}{m[2]}", key, count=1)
                        for key in b if key not in a and probe_index.search(key)})
    return dims, templates


def source_dims(architecture: str, sources: Sequence[str], args: dict[str, Any],
                model: nn.Module | None = None) -> dict[str, int]:
    """The tensors holding per-source slices, and along which dimension (see `source_layout`)."""
    return source_layout(architecture, sources, args, model)[0]


def _per_source_key(key: str, templates: Sequence[str]) -> tuple[str, int] | None:
    """`heads.2.weight` with template `heads.{}.weight` -> (template, 2); None for a shared tensor."""
    for template in templates:
        head, _, tail = template.partition("{}")
        middle = key[len(head):len(key) - len(tail)] if key.startswith(head) and key.endswith(tail) else ""
        if middle.isdigit() and len(key) > len(head) + len(tail):
            return template, int(middle)
    return None


def map_sources(model: nn.Module, base_state: dict[str, torch.Tensor], base_sources: list[str],
                sources: list[str], dims: dict[str, int], templates: Sequence[str] = ()) -> list[str]:
    """Load `base_state` into `model`, mapping per-source slices by name; returns the sources copied.

    Output layers stack sources source-major along one dimension (`dims`) or hold one module per source
    (`templates`); the parts of sources both models share are copied, the others keep their fresh
    initialisation; every other tensor is copied unchanged.
    """
    shared = [s for s in sources if s in base_sources]
    if not shared:
        raise ModelError(f"the base model's sources {base_sources} share none with {sources}")
    target = model.state_dict()
    extra = [key for key in base_state if key not in target and _per_source_key(key, templates) is None]
    if extra:
        raise ModelError(f"the base model has {len(extra)} tensors this architecture lacks, e.g. '{extra[0]}' "
                         "(different architecture)")
    new_state = {}
    for key, value in target.items():
        per_source = _per_source_key(key, templates)
        if per_source is not None:  # one module per source: the base's module of the same source, if any
            template, index = per_source
            name = sources[index]
            base_key = template.format(base_sources.index(name)) if name in base_sources else None
            if base_key is None:
                new_state[key] = value
                continue
            if base_key not in base_state or base_state[base_key].shape != value.shape:
                raise ModelError(f"tensor '{base_key}' of the base model does not fit '{key}' (different architecture)")
            new_state[key] = base_state[base_key]
            continue
        if key not in base_state:
            raise ModelError(f"the base model lacks the tensor '{key}' (different architecture)")
        base = base_state[key]
        if key in dims:
            dim = dims[key]
            per, per_base = value.shape[dim] // len(sources), base.shape[dim] // len(base_sources)
            if per != per_base or base.shape[dim] % len(base_sources):
                raise ModelError(f"tensor '{key}' cannot be split into {len(base_sources)} sources")
            out = value.clone()
            for i, name in enumerate(sources):
                if name in base_sources:
                    j = base_sources.index(name)
                    out.narrow(dim, i * per, per).copy_(base.narrow(dim, j * per, per))
            new_state[key] = out
        elif base.shape != value.shape:
            raise ModelError(f"tensor '{key}' has shape {tuple(base.shape)} in the base model, "
                             f"{tuple(value.shape)} here (different architecture)")
        else:
            new_state[key] = base
    model.load_state_dict(new_state)
    return shared


def freeze_encoder_layers(model: nn.Module, layers: int) -> int:
    """Freeze the first `layers` encoder layers of each branch (`encoder`, and `tencoder` where the model has a
    time branch); returns how many layers were frozen."""
    frozen = 0
    for branch in ("encoder", "tencoder"):
        for layer in list(getattr(model, branch, None) or [])[:layers]:
            layer.requires_grad_(False)
            frozen += 1
    if layers and not frozen:
        log.warning("finetune.freeze_encoder=%d: %s has no encoder layers to freeze", layers, type(model).__name__)
    return frozen


def finetune_generator(spec: str, sources: Sequence[str], *, segment: float, samplerate: int,
                       freeze_encoder: int = 0) -> tuple[nn.Module, dict[str, Any]]:
    """The generator a fine-tune starts from (base weights, sources mapped by name) and the card's note on it."""
    base = load_base_model(spec)
    if base.samplerate != samplerate:  # the trainer reads the data at the model's own rate (DRNN: 16 kHz mono)
        log.info("%s runs at %d Hz: the data (data.samplerate %d) are converted on the fly", spec,
                 base.samplerate, samplerate)
    sources = list(sources)
    args = dict(base.args, segment=segment)
    model = check_model_config(base.architecture, sources, args, segment=segment, where=f"base model {spec}:")
    dims, templates = ({}, []) if base.sources == sources else source_layout(base.architecture, sources, args, model)
    shared = map_sources(model, base.state, base.sources, sources, dims, templates)
    frozen = freeze_encoder_layers(model, freeze_encoder)
    log.info("fine-tuning %s (%s%s): sources %s mapped, %d encoder layers frozen", spec, base.architecture,
             f", bag member {base.member}" if base.member is not None else "", shared, frozen)
    note: dict[str, Any] = {"base_model": spec, "base_model_name": base.name, "mapped_sources": shared,
                            "base_architecture": base.architecture}
    if base.member is not None:
        note["base_member"] = base.member
    return model, note
