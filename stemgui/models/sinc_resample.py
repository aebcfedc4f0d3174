"""Band-limited resampling by a rational factor with a windowed-sinc FIR (polyphase), written for StemGUI.

The waveform Demucs runs its U-Net at twice the audio rate (`resample=True`): the input is upsampled 2x on
entry and the output downsampled 2x on exit. The published weights were trained with the `julius` package's
`resample_frac`, so this module reproduces the same interpolation filter (to float rounding) without making
julius a runtime dependency:

* an ideal resampler evaluates the band-limited signal x(t) = sum_i x[i] sinc(pi (t - i)) at the new times;
* the low-pass cutoff is `rolloff` times the lower of the two Nyquist rates (an anti-aliasing margin that also
  hides the edge artefacts of the padding);
* the sinc is truncated after `zeros` zero crossings and tapered by a raised-cosine window
  cos^2(pi u / (2 zeros)), u the sinc argument in zero crossings, so it falls smoothly to zero at the cut;
* each of the `new` output phases has its own filter, normalised to unit DC gain so constants are preserved;
* the signal is extended by repeating its edge samples ("replicate") before filtering.

With `old` and `new` the two rates divided by their gcd, output sample n*new + p only depends on input samples
around n*old, so one strided conv1d with `new` output channels computes every phase at once.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch.nn import functional as F

__all__ = ["resample_frac", "upsample2", "downsample2", "resample_filters"]


@lru_cache(maxsize=32)
def _filters_f64(old: int, new: int, zeros: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """(new, 1, taps) float64 polyphase filters and the one-sided support `half` (input samples).

    Filter p, tap k weighs input sample n*old + k - half for output sample n*new + p; taps = 2*half + old.
    """
    # Time unit: one block (`old` input periods = `new` output periods). The low-pass cutoff is `rolloff` times
    # the lower Nyquist rate, so the sinc has `crossings` zero crossings per unit of time; a tap `half` inputs
    # away from the block start is `zeros` crossings out, the end of the filter's support.
    crossings = min(old, new) * rolloff
    half = math.ceil(zeros * old / crossings)
    offsets = torch.arange(-half, half + old, dtype=torch.float64) / old  # input times within the window
    phases = torch.arange(new, dtype=torch.float64)[:, None] / new  # output times within the block
    u = (offsets[None, :] - phases) * crossings  # input-output distance in zero crossings
    taper = torch.cos(math.pi * u / (2 * zeros)) ** 2
    filters = torch.where(u.abs() <= zeros, torch.sinc(u) * taper, torch.zeros_like(u))
    filters = filters / filters.sum(dim=1, keepdim=True)
    return filters[:, None, :].contiguous(), half


_DEVICE_CACHE: dict[tuple, torch.Tensor] = {}


def resample_filters(
    old: int, new: int, zeros: int, rolloff: float, like: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """The polyphase filters on `like`'s device and dtype (cached: the engine calls this per segment)."""
    key = (old, new, zeros, float(rolloff), like.device, like.dtype)
    # the caches outlive the call: built outside inference mode (the engine's), so training can use them too
    with torch.inference_mode(False), torch.no_grad():
        base, half = _filters_f64(old, new, zeros, float(rolloff))
        cached = _DEVICE_CACHE.get(key)
        if cached is None:
            if len(_DEVICE_CACHE) > 64:
                _DEVICE_CACHE.clear()
            cached = _DEVICE_CACHE[key] = base.to(device=like.device, dtype=like.dtype)
    return cached, half


def resample_frac(
    x: torch.Tensor,
    old_sr: int,
    new_sr: int,
    zeros: int = 24,
    rolloff: float = 0.945,
    output_length: int | None = None,
    full: bool = False,
) -> torch.Tensor:
    """Resample `x` (..., T) from `old_sr` to `new_sr` along its last axis.

    The output has floor(T * new / old) samples (the ceiling with `full=True`, or exactly `output_length`,
    which must lie between 0 and that ceiling), the same convention as julius's `resample_frac`.
    """
    if not isinstance(old_sr, int) or not isinstance(new_sr, int):
        raise ValueError("old_sr and new_sr must be integers")
    gcd = math.gcd(old_sr, new_sr)
    old, new = old_sr // gcd, new_sr // gcd
    if old == new:
        return x
    *lead, length = x.shape
    filters, half = resample_filters(old, new, zeros, rolloff, x)
    flat = F.pad(x.reshape(-1, 1, length), (half, half + old), mode="replicate")
    phases = F.conv1d(flat, filters, stride=old)  # (N, new, blocks): phase p of block n is sample n*new + p
    out = phases.transpose(1, 2).reshape(*lead, -1)

    longest = math.ceil(new * length / old)
    if output_length is None:
        keep = longest if full else (new * length) // old
    else:
        if full:
            raise ValueError("give either full=True or output_length, not both")
        if not 0 <= output_length <= longest:
            raise ValueError(f"output_length must be between 0 and {longest}")
        keep = output_length
    return out[..., :keep]


def upsample2(x: torch.Tensor, zeros: int = 24, rolloff: float = 0.945) -> torch.Tensor:
    """(..., T) -> (..., 2T): band-limited 2x upsampling (cutoff `rolloff` x the input Nyquist rate)."""
    return resample_frac(x, 1, 2, zeros, rolloff)


def downsample2(x: torch.Tensor, zeros: int = 24, rolloff: float = 0.945) -> torch.Tensor:
    """(..., T) -> (..., T // 2): anti-aliased 2x downsampling (cutoff `rolloff` x the output Nyquist rate)."""
    return resample_frac(x, 2, 1, zeros, rolloff)
