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

import logging
import math
from typing import Any, Callable, Sequence

import torch
from torch import nn

from stemgui.errors import ModelError

__all__ = ["RULES", "check_model_config", "dry_run"]

log = logging.getLogger(__name__)

Rule = Callable[[list[str], dict[str, Any]], "str | None"]


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


RULES: dict[str, Rule] = {"hdemucs": _hdemucs_rules, "htdemucs": _htdemucs_rules, "demucs": _demucs_rules,
                          "bag": _bag_rules}


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
    try:
        dry_run(model, seconds)
    except Exception as exc:  # noqa: BLE001 - the safety net: any failure of a tiny forward is a config error
        first = " ".join(str(exc).split())[:200] or type(exc).__name__
        keys = ("depth", "channels", "nfft", "kernel_size", "stride", "segment", "dconv_comp", "t_heads")
        log.debug("dry run of %s failed", architecture, exc_info=True)
        raise ModelError(f"{where} {_settings_text(dict(args), keys)}: this {architecture} configuration cannot "
                         f"run on a {seconds:g} s input ({first})") from None
    return model
