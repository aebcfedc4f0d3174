"""Import Demucs weights published elsewhere and convert them to our safetensors + card format.

Three sources exist in the wild:

* Demucs project `.th` files: a torch pickle of `{"klass": demucs.htdemucs.HTDemucs (or hdemucs.HDemucs,
  demucs.Demucs), "args", "kwargs", "state", "training_args"}` (weights often in float16). The class reference is why these files cannot be read with a plain
  `torch.load`: that would import and trust arbitrary code named in the file. We read them with
  `torch.load(weights_only=True)`, torch's restricted unpickler, and let through only tensors, plain
  containers and the *names* of Demucs classes, mapped to inert placeholders. Anything else (a `__reduce__`
  calling `os.system`, an unknown class) is refused.
* Plain state dicts (`.pt`/`.pth`), including torchaudio's `HDemucs` which names the branches
  `freq_encoder/freq_decoder/time_encoder/time_decoder` and keeps an unused `norm1` in the time encoder's last
  layer. The architecture arguments are read off the tensor shapes (or given by the caller) and checked by
  loading the weights strictly into our `HDemucs`.
* Demucs bags: a small YAML file (`models: [SIG, ...]`, optional `weights`, `segment`) naming member `.th`
  files `SIG-HASH.th` (HASH = first 8 hex digits of the file's sha256), found beside the YAML or in the torch
  hub cache where the demucs CLI keeps them. They become one bag model (see `bag.py`).
"""

from __future__ import annotations

import fractions
import hashlib
import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from inspect import signature
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from stemgui import SOURCES
from stemgui.errors import ModelError

__all__ = ["ImportedModel", "find_member_file", "import_bag_to_card", "import_checkpoint", "import_to_card",
           "infer_hdemucs_args", "map_torchaudio_keys", "parse_bag_yaml", "torch_hub_checkpoints",
           "verify_signature_name"]

log = logging.getLogger(__name__)

# Demucs classes a `.th` file may name, and what we call them in messages.
_DEMUCS_CLASSES = {
    "demucs.hdemucs.HDemucs": "Hybrid Demucs (v3)",
    "demucs.htdemucs.HTDemucs": "Hybrid Transformer Demucs (v4, HTDemucs)",
    "demucs.demucs.Demucs": "Demucs v2 (waveform only)",
    "demucs.wdemucs.WDemucs": "Demucs v2 (waveform only)",
    "demucs.tasnet.ConvTasNet": "Conv-TasNet",
    "demucs.tasnet_v2.ConvTasNet": "Conv-TasNet",
}


class DemucsClassName:
    """Inert stand-in for a Demucs class named in a checkpoint; never instantiated, only read."""

    qualified_name = ""


def _placeholders() -> list[tuple[type, str]]:
    out = []
    for name in _DEMUCS_CLASSES:
        cls = type(name.rsplit(".", 1)[1] + "Name", (DemucsClassName,), {"qualified_name": name})
        out.append((cls, name))
    return out


_PLACEHOLDERS = _placeholders()
# Demucs class -> our architecture registry name, for the classes we can run.
_ARCHITECTURE_OF = {
    "demucs.hdemucs.HDemucs": "hdemucs",
    "demucs.htdemucs.HTDemucs": "htdemucs",
    "demucs.demucs.Demucs": "demucs",
}
# numpy scalars and dtypes may appear in `training_args`; they are plain data.
_NUMPY_GLOBALS: list[tuple[Any, str]] = [
    (np.dtype, "numpy.dtype"),
    *[(type(np.dtype(t)), f"numpy.dtypes.{type(np.dtype(t)).__name__}")
      for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)],
]
try:
    from numpy._core.multiarray import scalar as _np_scalar

    _NUMPY_GLOBALS += [(_np_scalar, "numpy.core.multiarray.scalar"), (_np_scalar, "numpy._core.multiarray.scalar")]
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core.multiarray import scalar as _np_scalar  # type: ignore[no-redef]

    _NUMPY_GLOBALS.append((_np_scalar, "numpy.core.multiarray.scalar"))
_TORCHAUDIO_PREFIXES = {
    "freq_encoder.": "encoder.",
    "freq_decoder.": "decoder.",
    "time_encoder.": "tencoder.",
    "time_decoder.": "tdecoder.",
}


def _safe_load(path: Path) -> Any:
    """Unpickle a torch file allowing only tensors, plain containers and Demucs class *names*."""
    allowed = [*_PLACEHOLDERS, fractions.Fraction, *_NUMPY_GLOBALS]
    try:
        with torch.serialization.safe_globals(allowed), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": the failure, if any, says enough
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise ModelError(
                f"{path}: refused to load: the file contains code or objects other than weights ({found.group(1)})"
            ) from None
        raise ModelError(f"{path}: not a readable PyTorch checkpoint (corrupt, or pickled content we do not load)") from None
    except Exception as exc:  # noqa: BLE001 - arbitrary bytes reach torch's unpickler: IndexError, struct.error...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({first[:160]})") from None


def map_torchaudio_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchaudio `HDemucs` parameters to the published (and our) names.

    torchaudio keeps a `norm1` in the time encoder's last layer, which only convolves (the merge point), so
    every tensor of that layer other than its conv is dropped.
    """
    last_time = max(
        (int(k.split(".")[1]) for k in state if k.startswith("time_encoder.") and k.split(".")[1].isdigit()),
        default=-1,
    )
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        for old_prefix, new_prefix in _TORCHAUDIO_PREFIXES.items():
            if key.startswith(old_prefix):
                new = new_prefix + key[len(old_prefix) :]
                break
        if key.startswith(f"time_encoder.{last_time}.") and not key.startswith(f"time_encoder.{last_time}.conv."):
            continue
        out[new] = value
    return out


def _layer_indices(state: Mapping[str, Any], prefix: str) -> list[int]:
    return sorted({int(k.split(".")[1]) for k in state if k.startswith(prefix) and k.split(".")[1].isdigit()})


def _as_number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def infer_hdemucs_args(state: Mapping[str, torch.Tensor], path: str | os.PathLike = "state dict") -> dict[str, Any]:
    """Architecture arguments of a published-naming HDemucs state dict, read from tensor shapes.

    Arguments that leave no trace in the shapes (norm_groups, freq_emb weight, emb_scale, stride of the
    frequency layers, hybrid_old) get the published defaults; callers can override them.
    """
    depth_idx = _layer_indices(state, "encoder.")
    if not depth_idx or depth_idx != list(range(len(depth_idx))):
        raise ModelError(f"{path}: not a Hybrid Demucs state dict (no encoder layers found)")
    depth = len(depth_idx)

    def enc(i: int, name: str) -> str | None:
        for key in (f"encoder.{i}.{name}", f"encoder.{i}.layers.0.{name}"):
            if key in state:
                return key
        return None

    conv0 = state[enc(0, "conv.weight") or "encoder.0.conv.weight"]
    if conv0.dim() != 4:
        raise ModelError(f"{path}: not a Hybrid Demucs state dict (first layer is not a spectrogram conv)")
    args: dict[str, Any] = {"depth": depth, "channels": int(conv0.shape[0]), "kernel_size": int(conv0.shape[2])}
    hybrid = any(k.startswith("tencoder.") for k in state)
    args["hybrid"] = hybrid
    if hybrid:
        tconv0 = state["tencoder.0.conv.weight"]
        audio_channels = int(tconv0.shape[1])
        args["cac"] = int(conv0.shape[1]) == 2 * audio_channels
        if int(tconv0.shape[0]) != args["channels"]:
            args["channels_time"] = int(tconv0.shape[0])
    else:
        audio_channels = int(conv0.shape[1]) // 2
    args["audio_channels"] = audio_channels
    if depth > 1:
        key1 = enc(1, "conv.weight")
        if key1 is not None:
            args["growth"] = _as_number(round(int(state[key1].shape[0]) / args["channels"], 6))

    freq_layers = [i for i in depth_idx if (k := enc(i, "conv.weight")) and state[k].dim() == 4]
    stride = 4
    if "freq_emb.embedding.weight" in state:
        args["nfft"] = 2 * stride * int(state["freq_emb.embedding.weight"].shape[0])
    elif freq_layers:
        last_kernel = int(state[enc(freq_layers[-1], "conv.weight")].shape[2])
        args["nfft"] = 2 * stride ** (len(freq_layers) - 1) * last_kernel
    args["freq_emb"] = 0.2 if "freq_emb.embedding.weight" in state else 0.0
    if len(freq_layers) < depth:
        args["time_stride"] = int(state[enc(len(freq_layers), "conv.weight")].shape[-1]) // 2

    args["rewrite"] = enc(0, "rewrite.weight") is not None
    if args["rewrite"]:
        args["context_enc"] = (int(state[enc(0, "rewrite.weight")].shape[-1]) - 1) // 2
        dec_rewrite = [k for k in state if re.fullmatch(r"decoder\.\d+\.(layers\.0\.)?rewrite\.weight", k)]
        if dec_rewrite:
            args["context"] = (int(state[sorted(dec_rewrite)[0]].shape[-1]) - 1) // 2
    normed = [i for i in depth_idx if enc(i, "norm1.weight")]
    args["norm_starts"] = normed[0] if normed else max(depth, 4)

    mode = (1 if any(".dconv." in k and k.startswith("encoder.") for k in state) else 0) | (
        2 if any(".dconv." in k and k.startswith("decoder.") for k in state) else 0
    )
    args["dconv_mode"] = mode
    if mode:
        side = "encoder." if mode & 1 else "decoder."
        first = next(k for k in state if k.startswith(side) and ".dconv.layers.0.0.weight" in k)
        owner = first.split(".dconv.")[0]
        args["dconv_depth"] = len({k.split(".dconv.layers.")[1].split(".")[0] for k in state
                                   if k.startswith(owner + ".dconv.layers.")})
        hidden, width = int(state[first].shape[0]), int(state[first].shape[1])
        args["dconv_comp"] = _as_number(round(width / hidden, 6))

        def first_with(marker: str) -> int:
            hits = [int(k.split(".")[1]) for k in state if k.startswith(side) and marker in k]
            if side == "decoder.":  # decoder layers are stored deepest first
                hits = [depth - 1 - h for h in hits]
            return min(hits) if hits else max(depth, 4)

        args["dconv_lstm"] = first_with(".lstm.weight_ih_l0")
        args["dconv_attn"] = first_with(".content.weight")

    multi = [i for i in depth_idx if f"encoder.{i}.layers.0.conv.weight" in state]
    if multi:
        args["multi_freqs_depth"] = len(multi)
        args["multi_freqs"] = None  # band ratios leave no trace in the shapes: the caller must give them
    return args


@dataclass
class ImportedModel:
    """A checkpoint read and checked: our architecture name, float32 weights under our names, arguments."""

    architecture: str
    state: dict[str, torch.Tensor]
    kwargs: dict[str, Any]  # constructor arguments without `sources`
    sources: list[str]
    samplerate: int

    def build(self) -> nn.Module:
        """Our model with these weights, in eval mode."""
        from stemgui.models.architectures import build_model

        model = build_model(self.architecture, self.sources, self.kwargs)
        model.load_state_dict(self.state, strict=True)
        return model.eval()

    def member_spec(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "args": dict(self.kwargs), "sources": list(self.sources)}


def _architecture_of(klass: Any, path: Path) -> str:
    if not (isinstance(klass, type) and issubclass(klass, DemucsClassName)):
        raise ModelError(f"{path}: not a Demucs checkpoint (its model class is {klass!r})")
    arch = _ARCHITECTURE_OF.get(klass.qualified_name)
    if arch is None:
        kind = _DEMUCS_CLASSES.get(klass.qualified_name, klass.qualified_name)
        raise ModelError(f"{path}: is a {kind} checkpoint, which StemGUI cannot run "
                         f"(supported: HTDemucs v4, Hybrid Demucs v3, Demucs v2)")
    return arch


def _plain_value(value: Any) -> Any:
    """Checkpoint argument values as JSON-able Python values (Fraction -> float, tuple -> list, numpy -> py)."""
    if isinstance(value, fractions.Fraction):
        return float(value)
    if isinstance(value, (tuple, list)):
        return [_plain_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _float_state(state: Mapping[str, Any], path: Path) -> dict[str, torch.Tensor]:
    if state.get("__quantized"):
        raise ModelError(f"{path}: is a quantized (DiffQ) checkpoint; import the non-quantized release instead")
    if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelError(f"{path}: the weights are not a mapping of names to tensors")
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def _verify(imported: ImportedModel, path: Path) -> None:
    """Build our model with the imported arguments and load the weights strictly: the definitive check."""
    from stemgui.models.check import check_model_config

    kwargs = imported.kwargs
    if kwargs.get("multi_freqs", 0) is None and kwargs.get("multi_freqs_depth"):
        raise ModelError(f"{path}: uses frequency band splitting; give its 'multi_freqs' ratios to import it")
    model = check_model_config(imported.architecture, imported.sources, kwargs, where=f"{path}:")
    try:
        model.load_state_dict(imported.state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:240]
        title = model.__class__.__name__
        raise ModelError(f"{path}: weights do not match a {title} architecture ({detail})") from None


def import_checkpoint(
    path: str | os.PathLike,
    sources: list[str] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    samplerate: int | None = None,
) -> ImportedModel:
    """Read a Demucs `.th` (HTDemucs, HDemucs, Demucs v2) or a plain HDemucs state dict, checked.

    The state uses our (= the published) parameter names in float32 (half-precision files are upcast for CPU
    inference); `kwargs` are constructor arguments without `sources`. `sources`, `kwargs` and `samplerate`
    override what the file says or what the shapes suggest (a plain state dict does not name its sources:
    four outputs are taken to be drums, bass, other, vocals, the order of every published four-stem model).
    A file named `SIG-HASH.th` must have HASH as the prefix of its sha256. Raises ModelError.
    """
    from stemgui.models.architectures import get_class

    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: file not found")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    verify_signature_name(path)
    package = _safe_load(path)
    if not isinstance(package, Mapping):
        raise ModelError(f"{path}: not a model checkpoint (it holds a {type(package).__name__})")

    if "klass" in package:  # a Demucs project package
        architecture = _architecture_of(package["klass"], path)
        if "state" not in package:
            raise ModelError(f"{path}: Demucs checkpoint without weights ('state' is missing)")
        state = _float_state(package["state"], path)
        args = list(package.get("args") or ())
        file_kwargs = dict(package.get("kwargs") or {})
        if args:
            file_kwargs.setdefault("sources", args[0])
        file_sources = [str(s) for s in file_kwargs.pop("sources", None) or []]
        if not file_sources:
            raise ModelError(f"{path}: Demucs checkpoint does not name its sources")
        known = set(signature(get_class(architecture)).parameters)
        dropped = sorted(k for k in file_kwargs if k not in known)
        if dropped:  # like Demucs itself, drop options that newer code retired
            log.info("%s: dropping unknown arguments %s", path.name, ", ".join(dropped))
        arch = {k: _plain_value(v) for k, v in file_kwargs.items() if k in known}
        sources = list(sources or file_sources)
    else:  # a plain state dict, ours or torchaudio's
        architecture = "hdemucs"
        state_src = package.get("state_dict", package) if isinstance(package.get("state_dict"), Mapping) else package
        state = _float_state(state_src, path)
        if any(k.startswith("freq_encoder.") for k in state):
            state = map_torchaudio_keys(state)
        if any("crosstransformer" in k for k in state):
            raise ModelError(f"{path}: is a Hybrid Transformer Demucs (v4) state dict without its arguments; "
                             f"import the Demucs .th file it came from")
        if "encoder.0.conv.weight" not in state and "encoder.0.layers.0.conv.weight" not in state:
            raise ModelError(f"{path}: not a Hybrid Demucs state dict (no 'encoder.0.conv' weights)")
        arch = infer_hdemucs_args(state, path)
        last = state.get(f"decoder.{arch['depth'] - 1}.conv_tr.weight")
        if last is None:
            last = state.get(f"decoder.{arch['depth'] - 1}.layers.0.conv_tr.weight")
        if last is None:
            raise ModelError(f"{path}: not a Hybrid Demucs state dict (no output layer)")
        per_source = arch["audio_channels"] * (2 if arch.get("cac", True) else 1)
        n_sources = int(last.shape[1]) // per_source
        if sources is None:
            if n_sources != len(SOURCES):
                raise ModelError(f"{path}: the model has {n_sources} outputs; give their source names to import it")
            sources = list(SOURCES)
    arch.update(dict(kwargs or {}))
    arch.pop("sources", None)
    if samplerate is not None:
        arch["samplerate"] = int(samplerate)
    imported = ImportedModel(architecture, state, arch, [str(s) for s in sources], int(arch.get("samplerate", 44100)))
    _verify(imported, path)
    return imported


_SIGNATURE_NAME = re.compile(r"^(?P<sig>[0-9a-f]{8})-(?P<hash>[0-9a-f]{8})\.th$")


def verify_signature_name(path: Path) -> str | None:
    """For a Demucs-convention name `SIG-HASH.th`, check HASH against the file's sha256; returns the full sha256.

    The Demucs project names every published file by the first 8 hex digits of its sha256: a mismatch means a
    corrupt or tampered download. Other names are not checked (None).
    """
    found = _SIGNATURE_NAME.match(path.name)
    if not found:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    full = digest.hexdigest()
    if not full.startswith(found.group("hash")):
        raise ModelError(f"{path}: checksum mismatch (the name says {found.group('hash')}..., the file's sha256 "
                         f"is {full[:8]}...): the file is corrupt or was altered")
    return full


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or any(c in name for c in '/\\:'):
        raise ModelError(f"{name!r}: invalid model name (use letters, digits, '-', '_' or '.')")


def import_to_card(
    src: str | os.PathLike,
    dest_dir: str | os.PathLike,
    name: str,
    *,
    sources: list[str] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    samplerate: int | None = None,
    card: Mapping[str, Any] | None = None,
) -> Path:
    """Import a checkpoint (or a bag `.yaml`) and write `dest_dir/name.safetensors` + `name.json`.

    `card` adds fields to the card (a catalog entry's description, licence, reported scores). Returns the
    safetensors path.
    """
    from stemgui.models.card import save_model, sha256_file

    _check_name(name)
    src = Path(src)
    if src.suffix.lower() in (".yaml", ".yml"):
        return import_bag_to_card(src, dest_dir, name, card=card)
    imported = import_checkpoint(src, sources=sources, kwargs=kwargs, samplerate=samplerate)
    model = imported.build()
    full = {
        "name": name,
        "training": {
            "imported_from": src.name,
            "imported_sha256": sha256_file(src),
            "note": f"weights imported unchanged from a published {model.__class__.__name__} checkpoint",
        },
    }
    full.update(dict(card or {}))
    return save_model(model, Path(dest_dir) / name, full)


# -------------------------------------------------------------------------------------------------------------
# bags
# -------------------------------------------------------------------------------------------------------------


@dataclass
class BagSpec:
    """A Demucs bag YAML: member signatures, optional (members x sources) weights and segment."""

    signatures: list[str]
    weights: list[list[float]] | None
    segment: float | None


def parse_bag_yaml(path: str | os.PathLike) -> BagSpec:
    """Read a bag YAML (safe loader only) with one clear error per problem."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = " ".join(str(exc).split())[:160]
        raise ModelError(f"{path}: not a readable bag YAML ({first})") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list) or not data["models"]:
        raise ModelError(f"{path}: not a Demucs bag (expected a 'models:' list of model signatures)")
    sigs = [str(s) for s in data["models"]]
    weights = data.get("weights")
    if weights is not None:
        if (not isinstance(weights, list) or len(weights) != len(sigs)
                or not all(isinstance(r, list) and all(isinstance(w, (int, float)) for w in r) for r in weights)):
            raise ModelError(f"{path}: 'weights' must be one list of numbers per model ({len(sigs)} models)")
        weights = [[float(w) for w in row] for row in weights]
    segment = data.get("segment")
    if segment is not None and (not isinstance(segment, (int, float)) or segment <= 0):
        raise ModelError(f"{path}: 'segment' must be a positive number of seconds, got {segment!r}")
    return BagSpec(sigs, weights, None if segment is None else float(segment))


def torch_hub_checkpoints() -> Path:
    """Where torch.hub (and the demucs CLI) keeps downloaded checkpoints: $TORCH_HOME/hub/checkpoints."""
    home = os.environ.get("TORCH_HOME")
    if not home:
        home = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(home) / "hub" / "checkpoints"


def find_member_file(signature: str, folders: Sequence[Path]) -> Path | None:
    """The `.th` of bag member `signature` (`SIG-HASH.th` or `SIG.th`) in the first folder that has it."""
    for folder in folders:
        hits = sorted(folder.glob(f"{signature}-*.th")) + ([folder / f"{signature}.th"]
                                                           if (folder / f"{signature}.th").is_file() else [])
        if hits:
            return hits[0]
    return None


def import_bag_to_card(src: str | os.PathLike, dest_dir: str | os.PathLike, name: str, *,
                       member_files: Sequence[Path] | None = None,
                       card: Mapping[str, Any] | None = None) -> Path:
    """Import a Demucs bag YAML and its member `.th` files as one bag model (safetensors + card).

    Members are looked up beside the YAML, then in the torch hub cache, unless `member_files` gives them.
    """
    from stemgui.models.architectures import build_model
    from stemgui.models.card import save_model, sha256_file

    _check_name(name)
    src = Path(src)
    spec = parse_bag_yaml(src)
    if member_files is None:
        folders = [src.parent, torch_hub_checkpoints()]
        found = []
        for sig in spec.signatures:
            hit = find_member_file(sig, folders)
            if hit is None:
                raise ModelError(f"{src}: member model '{sig}' not found (looked for {sig}-*.th in "
                                 f"{', '.join(str(f) for f in folders)})")
            found.append(hit)
        member_files = found
    members = [import_checkpoint(f) for f in member_files]
    first = members[0]
    for f, m in zip(member_files, members):
        if m.sources != first.sources or m.samplerate != first.samplerate:
            raise ModelError(f"{f}: separates {m.sources} at {m.samplerate} Hz, but {member_files[0].name} "
                             f"separates {first.sources} at {first.samplerate} Hz: they cannot form a bag")
    try:
        bag = build_model("bag", first.sources, {"members": [m.member_spec() for m in members],
                                                 "weights": spec.weights, "segment": spec.segment}, where=str(src))
    except ModelError:
        raise
    for model, m in zip(bag.models, members):
        model.load_state_dict(m.state, strict=True)
    full = {
        "name": name,
        "training": {
            "imported_from": src.name,
            "imported_members": [f.name for f in member_files],
            "imported_sha256": {f.name: sha256_file(f) for f in member_files},
            "note": f"a bag of {len(members)} published models, weights imported unchanged",
        },
    }
    full.update(dict(card or {}))
    return save_model(bag.eval(), Path(dest_dir) / name, full)
