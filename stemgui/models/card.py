"""Model files: weights as safetensors plus a JSON card that says what the weights are.

A model `NAME` is two files side by side: `NAME.safetensors` (tensors only, safe to load from anyone) and
`NAME.json` (architecture arguments, sources, sample rate, how it was trained, what it scored). Both are written
to temporary files and renamed into place, the card last, so a reader never sees a card without its weights.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stemgui.atomic import atomic_write, atomic_write_text
from stemgui.errors import ModelError

CARD_FORMAT = "stemgui-model/1"


def weights_path(path: str | os.PathLike) -> Path:
    """`x`, `x.json` or `x.safetensors` -> `x.safetensors`."""
    p = Path(path)
    return p.with_suffix(".safetensors") if p.suffix in (".json", ".safetensors", "") else p


def card_path(path: str | os.PathLike) -> Path:
    return weights_path(path).with_suffix(".json")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def count_parameters(model: nn.Module) -> int:
    """The learned values: the parameters, and for a model trained by fitting (NMF) its buffers, which it learns."""
    count = sum(p.numel() for p in model.parameters())
    if getattr(model, "trained_by_fitting", False):
        count += sum(b.numel() for b in model.buffers())
    return int(count)


def save_model(model: nn.Module, path: str | os.PathLike, card: dict[str, Any] | None = None,
               stored_dtype: torch.dtype | None = None) -> Path:
    """Write `model`'s weights and its card; returns the `.safetensors` path.

    The card is completed from the model (`init_kwargs`, `sources`, `samplerate`, `audio_channels`), so callers
    only add what the model cannot know (name, training, metrics). `stored_dtype=torch.float16` halves the file
    of a model shipped as an example (`load_model` casts back to the model's own dtype); the card says so.
    """
    from safetensors.torch import save_file

    wpath = weights_path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if stored_dtype is not None:
        state = {k: v.to(stored_dtype) if v.is_floating_point() else v for k, v in state.items()}
    atomic_write(wpath, lambda tmp: save_file(state, str(tmp), metadata={"format": CARD_FORMAT}))
    full: dict[str, Any] = {
        "format": CARD_FORMAT,
        "name": wpath.stem,
        "architecture": getattr(model, "architecture", "hdemucs"),
        "args": dict(getattr(model, "init_kwargs", {})),
        "sources": list(getattr(model, "sources", [])),
        "samplerate": int(getattr(model, "samplerate", 44100)),
        "audio_channels": int(getattr(model, "audio_channels", 2)),
        "training": {},
        "metrics": {},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    full.update(card or {})
    full["format"] = CARD_FORMAT
    full.pop("stored_dtype", None)
    if stored_dtype is not None:
        full["stored_dtype"] = str(stored_dtype).removeprefix("torch.")
    full["sha256"] = sha256_file(wpath)
    full["parameters"] = count_parameters(model)
    text = json.dumps(full, indent=2, sort_keys=False)
    atomic_write_text(card_path(wpath), text + "\n")
    return wpath


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON card of a model, with a clear error when it is missing or malformed."""
    cpath = card_path(path)
    if not cpath.is_file():
        raise ModelError(f"{cpath}: model card not found (a model is NAME.safetensors plus NAME.json)")
    try:
        card = json.loads(cpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{cpath}: model card is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise ModelError(f"{cpath}: not a StemGUI model card (format {card.get('format')!r})")
    for key in ("architecture", "args", "sources", "samplerate"):
        if key not in card:
            raise ModelError(f"{cpath}: model card lacks the '{key}' field")
    return card


def headline_score(card: dict[str, Any]) -> str | None:
    """The one score to show next to a model's name, saying what it was measured on: the held-out test mean
    uSDR when the card has one, else the last validation SDR (a trainer's own estimate), else nothing."""
    metrics = card.get("metrics") or {}
    for key, label in (("test_usdr_mean", "held-out uSDR"), ("valid_sdr_mean", "validation SDR"),
                       ("sdr", "SDR")):
        if metrics.get(key) is not None:
            return f"{label} {float(metrics[key]):.2f} dB"
    return None


def build_model(card: dict[str, Any], where: str | None = None) -> nn.Module:
    """An untrained model with the architecture the card describes (any registered architecture or a bag),
    checked to run: arguments that cannot run are one ModelError line naming `where` (the card's file)."""
    from stemgui.models.check import check_model_config

    where = where or f"model '{card.get('name')}':"
    return check_model_config(str(card["architecture"]), list(card["sources"]), dict(card["args"]), where=where)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load weights + card into a model in eval mode; never unpickles anything."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    wpath = weights_path(path)
    card = read_card(wpath)
    if not wpath.is_file():
        raise ModelError(f"{wpath}: model weights not found")
    model = build_model(card, where=f"{card_path(wpath)}:")
    try:
        state = load_file(str(wpath), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{wpath}: weights file is corrupt ({exc})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"{wpath}: weights do not match the card's architecture "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors, e.g. {(missing + unexpected)[:2]})"
        )
    model.to(device).eval()
    return model, card
