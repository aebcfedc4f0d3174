"""Configuration checks: a model configuration that cannot run is one clear line before any work starts.

Two layers, both used by the trainer's configuration, the Fine-tune dock and every card load:

* cheap rules per architecture (`RULES`): divisibility, the minimum depth for an nfft, a residual branch that
  would be zero channels wide, segment against the receptive field... each with a hint of what would work;
* the safety net: the model is built and run once on a tiny silent input (`dry_run`), and any failure becomes
  `[model] <settings>: <what failed>` instead of a 50-line traceback after the data has loaded.

Every message has the shape `[model] depth=4 with nfft=4096: ... (try depth >= 6)`; `where` replaces `[model]`
by a file name for cards.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from stemgui.errors import ModelError

__all__ = ["RULES", "check_model_config", "dry_run"]

log = logging.getLogger(__name__)

Rule = Callable[[list[str], dict[str, Any]], "str | None"]
# configurations whose dry run passed in this process (the forward depends on the arguments, not the weights)
_PASSED_DRY_RUNS: set[str] = set()


def _get(args: dict[str, Any], name: str, default: Any) -> Any:
    value = args.get(name, default)
    return default if value is None else value


def _freq_layers_needed(nfft: int, kernel: int, stride: int) -> int:
    """How many frequency layers Hybrid Demucs needs to bring nfft/2 bins down to one (where the branches meet)."""
    freqs, layers = nfft // 2, 0
    while freqs > 1 and layers < 64:
        freqs = 1 if freqs <= kernel else freqs // stride
        layers += 1
    return layers


def _positive_ints(args: dict[str, Any], names: Sequence[str], defaults: dict[str, int]) -> str | None:
    for name in names:
        value = args.get(name, defaults.get(name))
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1 or int(value) != value:
            return f"{name}={value!r}: must be a whole number >= 1"
    return None


def _dconv_width(args: dict[str, Any], channels_key: str = "channels", default_channels: int = 48) -> str | None:
    channels = _get(args, channels_key, default_channels)
    comp = float(_get(args, "dconv_comp", 4))
    mode = int(_get(args, "dconv_mode", 1))
    if mode and comp > 0 and int(channels / comp) < 1:
        return (f"{channels_key}={channels} with dconv_comp={comp:g}: the residual DConv branch would be 0 channels "
                f"wide (try {channels_key} >= {math.ceil(comp)})")
    return None


def _hdemucs_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    problem = _positive_ints(args, ("channels", "depth", "kernel_size", "stride", "time_stride", "nfft"),
                             {"channels": 48, "depth": 6, "kernel_size": 8, "stride": 4, "time_stride": 2,
                              "nfft": 4096})
    if problem:
        return problem
    nfft = int(_get(args, "nfft", 4096))
    if nfft & (nfft - 1):
        return f"nfft={nfft}: must be a power of two (try {1 << round(math.log2(nfft))})"
    kernel, stride, depth = int(_get(args, "kernel_size", 8)), int(_get(args, "stride", 4)), int(_get(args, "depth", 6))
    if _get(args, "hybrid", True):
        need = _freq_layers_needed(nfft, kernel, stride)
        if stride ** need != nfft // 4:
            valid = [4 * stride ** n for n in range(2, 8) if _freq_layers_needed(4 * stride ** n, kernel, stride) == n]
            return (f"nfft={nfft} with stride={stride}, kernel_size={kernel}: the time branch (downsampled "
                    f"{stride}^{need}x) never lines up with the spectrogram frames (hop {nfft // 4}) "
                    f"(try nfft in {', '.join(map(str, valid[:4]))})")
        if depth < need:
            return (f"depth={depth} with nfft={nfft}: the spectrogram branch never shrinks to one frequency bin, "
                    f"so it cannot meet the time branch (try depth >= {need})")
    return _dconv_width(args)


def _htdemucs_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    problem = _positive_ints(args, ("channels", "depth", "kernel_size", "stride", "nfft", "t_heads"),
                             {"channels": 48, "depth": 4, "kernel_size": 8, "stride": 4, "nfft": 4096, "t_heads": 8})
    if problem:
        return problem
    nfft = int(_get(args, "nfft", 4096))
    if nfft & (nfft - 1):
        return f"nfft={nfft}: must be a power of two (try {1 << round(math.log2(nfft))})"
    depth, stride, kernel = int(_get(args, "depth", 4)), int(_get(args, "stride", 4)), int(_get(args, "kernel_size", 8))
    need = _freq_layers_needed(nfft, kernel, stride)
    if depth >= need and stride ** need != nfft // 4:  # the branches merge before the Transformer
        return (f"depth={depth} with nfft={nfft}: the spectrogram branch collapses to one bin where the time "
                f"branch does not line up with it (try depth <= {need - 1})")
    channels, growth = int(_get(args, "channels", 48)), float(_get(args, "growth", 2))
    width = int(_get(args, "bottom_channels", 0)) or int(channels * growth ** (depth - 1))
    heads = int(_get(args, "t_heads", 8))
    if int(_get(args, "t_layers", 5)) and width % heads:
        return (f"t_heads={heads} with a Transformer width of {width}: the width must be a multiple of the heads "
                f"(try t_heads = {math.gcd(width, heads) or 1})")
    return _dconv_width(args)


def _bag_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    for index, member in enumerate(args.get("members") or []):
        rule = RULES.get(str(member.get("architecture"))) if isinstance(member, dict) else None
        problem = rule(list(member.get("sources") or sources), dict(member.get("args") or {})) if rule else None
        if problem:
            return f"bag member {index}: {problem}"
    return None


def _demucs_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    problem = _positive_ints(args, ("channels", "depth", "kernel_size", "stride"),
                             {"channels": 64, "depth": 6, "kernel_size": 8, "stride": 4})
    if problem:
        return problem
    kernel, stride = int(_get(args, "kernel_size", 8)), int(_get(args, "stride", 4))
    if kernel < stride:
        return f"kernel_size={kernel} with stride={stride}: the kernel must cover the stride (try kernel_size >= {stride})"
    return _dconv_width(args, default_channels=64)


def _stft_rules(args: dict[str, Any], nfft_default: int, hop_default: int, power_of_two: bool) -> str | None:
    """nfft / hop of a spectrogram model's own front end (`hop` 0 = nfft / 2)."""
    nfft = int(_get(args, "nfft", nfft_default))
    hop = int(_get(args, "hop", hop_default)) or nfft // 2
    if power_of_two and nfft & (nfft - 1):
        return f"nfft={nfft}: must be a power of two (try {1 << max(1, round(math.log2(max(nfft, 1))))})"
    if nfft % 2:
        return f"nfft={nfft}: must be even (try {nfft + 1})"
    if hop >= nfft:
        return (f"hop={hop} with nfft={nfft}: the Hann frames must overlap for the inverse STFT "
                f"(try hop <= {3 * nfft // 4})")
    return None


def _drnn_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    problem = _positive_ints(args, ("hidden", "layers", "nfft"), {"hidden": 1000, "layers": 3, "nfft": 1024})
    if problem:
        return problem
    context = _get(args, "context", 1)
    if isinstance(context, bool) or not isinstance(context, (int, float)) or context < 0 or int(context) != context:
        return f"context={context!r}: must be a whole number >= 0 (frames on each side)"
    layers, recurrent = int(_get(args, "layers", 3)), _get(args, "recurrent", 2)
    if not _get(args, "stacked", False) and not 0 <= int(recurrent) <= layers:
        return (f"recurrent={recurrent} with layers={layers}: the recurrent connection must sit at a hidden layer "
                f"(try recurrent in 0..{layers}, or stacked=true for the sRNN)")
    return _stft_rules(args, 1024, 0, power_of_two=False)


def _unet_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    problem = _positive_ints(args, ("channels", "nfft", "hop"), {"channels": 16, "nfft": 1024, "hop": 768})
    if problem:
        return problem
    problem = _stft_rules(args, 1024, 768, power_of_two=True)
    if problem:
        return problem
    nfft = int(_get(args, "nfft", 1024))
    if nfft < 128:
        return f"nfft={nfft}: the six stride-2 layers need at least 64 frequency bins (try nfft >= 128)"
    dropout = float(_get(args, "dropout", 0.5))
    if not 0 <= dropout < 1:
        return f"dropout={dropout:g}: must be in [0, 1)"
    return None


def _nmf_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    problem = _positive_ints(args, ("components", "iterations", "fit_iterations", "nfft", "hop"),
                             {"components": 32, "iterations": 50, "fit_iterations": 100, "nfft": 2048, "hop": 512})
    if problem:
        return problem
    if float(_get(args, "power", 2.0)) <= 0:
        return f"power={_get(args, 'power', 2.0)}: the Wiener exponent must be > 0 (try 2)"
    return _stft_rules(args, 2048, 512, power_of_two=False)


RULES: dict[str, Rule] = {"hdemucs": _hdemucs_rules, "htdemucs": _htdemucs_rules, "demucs": _demucs_rules,
                          "bag": _bag_rules, "drnn": _drnn_rules, "unet": _unet_rules, "nmf": _nmf_rules}


def _waveunet_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    problem = _positive_ints(args, ("levels", "features", "kernel_down", "kernel_up"),
                             {"levels": 12, "features": 24, "kernel_down": 15, "kernel_up": 5})
    if problem:
        return problem
    for name, default in (("kernel_down", 15), ("kernel_up", 5)):
        kernel = int(_get(args, name, default))
        if kernel % 2 == 0:
            return f"{name}={kernel}: must be odd so the convolutions stay centred (try {name}={kernel + 1})"
    output = _get(args, "output", "difference")
    if output not in ("difference", "direct"):
        return f"output={output!r}: must be 'difference' (last source = mix - others) or 'direct'"
    if output == "difference" and len(sources) < 2:
        return (f"output='difference' with {len(sources)} source: the last source is the mix minus the others, "
                f"so it needs two or more (try output='direct')")
    upsampling = _get(args, "upsampling", "linear")
    if upsampling != "linear":
        return f"upsampling={upsampling!r}: only the paper's linear interpolation is implemented (try 'linear')"
    levels = int(_get(args, "levels", 12))
    rate = float(_get(args, "samplerate", 44100))
    if _get(args, "context", True):
        kd, ku = int(_get(args, "kernel_down", 15)), int(_get(args, "kernel_up", 5))
        margin = (1 << levels) * (kd - 1 + ku - 1)  # about the input context each segment needs
        if margin > 60 * rate:
            most = max(1, int(math.log2(60 * rate / (kd + ku - 2))))
            return (f"levels={levels} with context: every segment would need ~{margin / rate:.0f} s of input "
                    f"context (try levels <= {most})")
    else:
        segment = float(_get(args, "segment", 16384 / 22050))
        if segment * rate < (1 << levels):
            most = max(1, int(math.log2(max(1.0, segment * rate))))
            return (f"levels={levels} with segment={segment:g} s: {levels} decimations by 2 need at least "
                    f"{1 << levels} samples per segment (try levels <= {most} or a longer segment)")
    return None


def _convtasnet_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    problem = _positive_ints(args, ("N", "L", "B", "H", "P", "X", "R"),
                             {"N": 256, "L": 20, "B": 256, "H": 512, "P": 3, "X": 8, "R": 4})
    if problem:
        return problem
    length, kernel = int(_get(args, "L", 20)), int(_get(args, "P", 3))
    if length < 2 or length % 2:
        return (f"L={length}: the encoder's stride is L/2 (50% overlap), so L must be even "
                f"(try L={max(2, length + 1)})")
    if kernel % 2 == 0:
        return f"P={kernel}: the dilated convolutions need an odd kernel to keep the frame count (try P={kernel + 1})"
    norm = _get(args, "norm_type", "gLN")
    if norm not in ("gLN", "cLN", "BN", "id"):
        return f"norm_type={norm!r}: must be gLN, cLN, BN or id"
    mask = _get(args, "mask_nonlinear", "relu")
    if mask not in ("relu", "softmax"):
        return f"mask_nonlinear={mask!r}: must be relu or softmax"
    return None


def _demucs1_rules(sources: list[str], args: dict[str, Any]) -> str | None:
    context, lstm = _get(args, "context", 1), _get(args, "lstm_layers", 2)
    for name, value in (("context", context), ("lstm_layers", lstm)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or int(value) != value:
            return f"{name}={value!r}: must be a whole number >= 0"
    return _demucs_rules(sources, {"channels": 100, "dconv_mode": 0, **args})


RULES.update({"waveunet": _waveunet_rules, "convtasnet": _convtasnet_rules, "demucs1": _demucs1_rules})

def _settings_text(args: dict[str, Any], keys: Sequence[str]) -> str:
    shown = [f"{k}={args[k]}" for k in keys if k in args and args[k] is not None]
    return ", ".join(shown) or "these settings"


def dry_run(model: nn.Module, seconds: float = 0.5) -> None:
    """Run `model` once on silence of `seconds` (training mode, no gradients), leaving it as it was.

    Training mode lets fixed-segment models (HTDemucs) take the short input; anything they change about
    their segment in that mode is restored.
    """
    saved = [(m, m.segment, dict(getattr(m, "init_kwargs", {}) or {}))
             for m in model.modules() if hasattr(m, "segment")]
    was_training = model.training
    length = max(1, int(seconds * int(getattr(model, "samplerate", 44100))))
    mix = torch.zeros(1, int(getattr(model, "audio_channels", 2)), length)
    try:
        model.train()
        with torch.no_grad():
            out = model(mix)
    finally:
        model.train(was_training)
        for module, segment, kwargs in saved:
            module.segment = segment
            if kwargs:
                module.init_kwargs = kwargs
    expected = (1, len(getattr(model, "sources", [])), mix.shape[1], length)
    if tuple(out.shape) != expected:
        raise ValueError(f"the model returns shape {tuple(out.shape)} for input {tuple(mix.shape)}, "
                         f"expected {expected}")


def check_model_config(architecture: str, sources: Sequence[str], args: dict[str, Any], *,
                       segment: float | None = None, where: str = "[model]",
                       model: nn.Module | None = None) -> nn.Module:
    """Refuse a configuration that cannot run with one ModelError line; returns the (dry-run) model.

    `segment` (seconds) is the training segment to try, when it is shorter than the default half second;
    `model` skips building when the caller already has one (a card load).
    """
    from stemgui.models.architectures import build_model

    sources = list(sources)
    if not sources:
        raise ModelError(f"{where} sources: at least one source is needed")
    if len(set(sources)) != len(sources):
        raise ModelError(f"{where} sources {sources}: a source is named twice")
    rule = RULES.get(architecture)
    if rule is not None:
        problem = rule(sources, dict(args))
        if problem:
            raise ModelError(f"{where} {problem}")
    if model is None:
        try:
            model = build_model(architecture, sources, args, where=where.rstrip(":"))
        except ModelError as exc:
            text = str(exc)
            if where.startswith("["):  # "[model]: bad ..." reads better as "[model] bad ..."
                text = text.replace(f"{where}: ", f"{where} ", 1)
            raise ModelError(text) from None
    seconds = 0.5 if segment is None else min(0.5, float(segment))
    verdict_key = json.dumps([architecture, sources, dict(args), seconds], sort_keys=True, default=str)
    if verdict_key in _PASSED_DRY_RUNS:  # a bag of four HTDemucs would pay four forwards on every load
        return model
    try:
        dry_run(model, seconds)
    except Exception as exc:  # noqa: BLE001 - the safety net: any failure of a tiny forward is a config error
        first = " ".join(str(exc).split())[:200] or type(exc).__name__
        keys = ("depth", "channels", "nfft", "kernel_size", "stride", "segment", "dconv_comp", "t_heads")
        log.debug("dry run of %s failed", architecture, exc_info=True)
        raise ModelError(f"{where} {_settings_text(dict(args), keys)}: this {architecture} configuration cannot "
                         f"run on a {seconds:g} s input ({first})") from None
    _PASSED_DRY_RUNS.add(verdict_key)
    return model
