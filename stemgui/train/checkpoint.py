"""Atomic, unpickle-free training checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint is `ckpt-<step>.safetensors` + `ckpt-<step>.json`, each written to a temp file and renamed into
place; `latest.json` is replaced last and names the newest complete pair, so a run killed at any instant
(kill -9 included) leaves the previous checkpoint intact and loadable. Nested states (optimizer state dicts
with int keys, RNG tuples, numpy arrays) are flattened to a JSON tree whose leaves point at tensor names.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stemgui.atomic import atomic_write, atomic_write_text
from stemgui.errors import ConfigError

CHECKPOINT_FORMAT = "stemgui-checkpoint/1"
LATEST = "latest.json"


def _encode(obj: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": path}
    if isinstance(obj, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": path}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: _encode(v, tensors, f"{path}/{k}") for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors, f"{path}/k{i}"), _encode(v, tensors, f"{path}/{i}")]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} at {path} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
        if "__float__" in obj:
            return float(obj["__float__"])
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def save_checkpoint(run_dir: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write the checkpoint for `step`, point latest.json at it, and drop all but the newest `keep`."""
    from safetensors.torch import save_file

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors, "s")
    name = f"ckpt-{step:08d}"
    atomic_write(run / f"{name}.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    doc = {"format": CHECKPOINT_FORMAT, "step": step, "state": tree}
    atomic_write_text(run / f"{name}.json", json.dumps(doc))
    atomic_write_text(run / LATEST, json.dumps({"step": step, "name": name}))
    names = sorted(p.stem for p in run.glob("ckpt-*.json"))
    for old in names[:-keep]:
        if old != name:
            (run / f"{old}.safetensors").unlink(missing_ok=True)
            (run / f"{old}.json").unlink(missing_ok=True)
    for tmp in run.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    return run / f"{name}.json"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The JSON file of the newest complete checkpoint in `run_dir`, or None."""
    pointer = Path(run_dir) / LATEST
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text(encoding="utf-8"))["name"]
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"{pointer}: checkpoint pointer is corrupt; delete it to start over") from None
    path = Path(run_dir) / f"{name}.json"
    return path if path.is_file() else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state saved by save_checkpoint (tensors on CPU); never unpickles."""
    from safetensors.torch import load_file

    jpath = Path(path)
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
        tensors = load_file(str(jpath.with_suffix(".safetensors")))
    except Exception as exc:  # noqa: BLE001 - OSError, JSON and safetensors errors alike are "cannot be read"
        raise ConfigError(f"{jpath}: checkpoint cannot be read ({exc})") from None
    if doc.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{jpath}: not a StemGUI training checkpoint")
    return _decode(doc["state"], tensors)


def read_checkpoint_config(path: str | Path) -> dict[str, Any]:
    """Just the config a checkpoint was written with (reads the JSON half only)."""
    jpath = Path(path)
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
        return dict(doc["state"]["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{jpath}: checkpoint cannot be read ({exc})") from None
