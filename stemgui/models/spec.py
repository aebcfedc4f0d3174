"""STFT helpers for the frequency branch of Hybrid Demucs.

The frequency branch must see exactly `ceil(length / hop)` frames so its strides line up with the time branch.
`torch.stft` with `center=True` cannot give that, so the signal is reflect-padded by 3·hop/2 on the left (and
enough on the right), and the two outer frames on each side are dropped afterwards. The transforms are
`normalized=True` Hann STFTs, the convention the published weights were trained with.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

ISTFT_CHUNK_ELEMENTS = 1 << 21  # complex bins per torch.istft call (a ~10 s stereo spectrogram)


def pad1d(x: torch.Tensor, left: int, right: int, mode: str = "constant") -> torch.Tensor:
    """`F.pad` that also reflect-pads signals shorter than the padding.

    Reflection needs the input to be longer than the pad, so a short input is first zero-extended on the right
    (and on the left if the right pad is too small to absorb it); the original samples keep their position.
    """
    length = x.shape[-1]
    if mode == "reflect" and length <= max(left, right):
        extra = max(left, right) - length + 1
        extra_right = min(right, extra)
        extra_left = extra - extra_right
        x = F.pad(x, (extra_left, extra_right))
        left, right = left - extra_left, right - extra_right
    return F.pad(x, (left, right), mode=mode)


def stft(x: torch.Tensor, nfft: int, hop: int) -> torch.Tensor:
    """Complex spectrogram (..., nfft//2 + 1, frames) of a (..., time) signal."""
    *shape, length = x.shape
    flat = x.reshape(-1, length)
    if flat.device.type == "mps":  # MPS has no complex FFT.
        flat = flat.cpu()
    z = torch.stft(
        flat,
        nfft,
        hop,
        window=torch.hann_window(nfft, device=flat.device, dtype=flat.dtype),
        win_length=nfft,
        normalized=True,
        center=True,
        return_complex=True,
        pad_mode="reflect",
    )
    return z.view(*shape, z.shape[-2], z.shape[-1])


def istft(z: torch.Tensor, hop: int, length: int) -> torch.Tensor:
    """Inverse of `stft` for a (..., freqs, frames) complex tensor, trimmed/padded to `length` samples."""
    *shape, freqs, frames = z.shape
    nfft = 2 * freqs - 2
    flat = z.reshape(-1, freqs, frames)
    if flat.device.type == "mps":
        flat = flat.cpu()
    window = torch.hann_window(nfft, device=flat.device, dtype=flat.real.dtype)
    # torch.istft holds several full-size temporaries (scaled copy, frames, windowed frames); a few rows at a
    # time bound that memory without changing any value (rows are independent).
    rows = max(1, ISTFT_CHUNK_ELEMENTS // max(1, freqs * frames))
    parts = [
        torch.istft(part, nfft, hop, window=window, win_length=nfft, normalized=True, length=length, center=True)
        for part in flat.split(rows)
    ]
    x = parts[0] if len(parts) == 1 else torch.cat(parts)
    return x.view(*shape, length)


def hybrid_spectrogram(x: torch.Tensor, nfft: int, hybrid: bool = True, hybrid_old: bool = False) -> torch.Tensor:
    """Spectrogram with the Nyquist bin dropped and, for hybrid models, exactly ceil(T / hop) frames.

    `hybrid_old` reproduces the zero (instead of reflect) padding some MDX-2021 checkpoints were trained with.
    """
    hop = nfft // 4
    if not hybrid:
        return stft(x, nfft, hop)[..., :-1, :]
    frames = math.ceil(x.shape[-1] / hop)
    pad = hop // 2 * 3
    right = pad + frames * hop - x.shape[-1]
    x = pad1d(x, pad, right, mode="constant" if hybrid_old else "reflect")
    z = stft(x, nfft, hop)[..., :-1, :]
    assert z.shape[-1] == frames + 4, (z.shape, frames)
    return z[..., 2 : 2 + frames]


def hybrid_inverse(z: torch.Tensor, length: int, nfft: int, hybrid: bool = True, hybrid_old: bool = False) -> torch.Tensor:
    """Inverse of `hybrid_spectrogram`: restores the Nyquist bin and the dropped frames, returns `length` samples."""
    hop = nfft // 4
    z = F.pad(z, (0, 0, 0, 1))
    if not hybrid:
        return istft(z, hop, length)
    z = F.pad(z, (2, 2))
    pad = hop // 2 * 3
    frames_len = hop * math.ceil(length / hop)
    if hybrid_old:
        return istft(z, hop, frames_len)[..., :length]
    x = istft(z, hop, frames_len + 2 * pad)
    return x[..., pad : pad + length]


def hybrid_inverse_channels(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, length: int, nfft: int,
                            hybrid: bool = True) -> torch.Tensor:
    """`hybrid_inverse` of a network output with real/imag as channels, un-standardised on the way.

    x is (batch, ..., 2·C, F, T); the spectrogram is shift + scale·x with `scale`/`shift` shaped (batch,). The
    values go in one pass straight into the buffer `torch.istft` reads, whose Nyquist bin and (hybrid) border
    frames are zero. Same result as `hybrid_inverse(view_as_complex(...))` (hybrid_old is not handled here) with
    three full-size copies, two fills and a multiply fewer (this step measured ~4x faster on one thread). One
    (batch, source) slice at a time through one reused buffer: the transient is a slice's spectrogram, not all
    of them (57 MB for four stereo sources of a 10 s segment).
    """
    *lead, chans2, freqs, frames = x.shape
    chans = chans2 // 2
    flat = x.reshape(-1, chans2, freqs, frames)
    per_item = flat.shape[0] // x.shape[0]
    border = 2 if hybrid else 0
    buf = x.new_zeros(chans, freqs + 1, frames + 2 * border, 2)  # the Nyquist bin and border frames stay zero
    interior = buf[:, :freqs, border : border + frames, :]  # (C, F, T, 2)
    spec = torch.view_as_complex(buf)  # (C, F + 1, T + 2·border)
    hop = nfft // 4
    pad = hop // 2 * 3 if hybrid else 0
    total = hop * math.ceil(length / hop) + 2 * pad if hybrid else length
    out = x.new_empty(flat.shape[0], chans, length)
    for index in range(flat.shape[0]):
        item = index // per_item
        src = flat[index].view(chans, 2, freqs, frames).movedim(1, -1)
        torch.addcmul(shift.reshape(-1)[item], src, scale.reshape(-1)[item], out=interior)
        out[index] = istft(spec, hop, total)[..., pad : pad + length]
    return out.view(*lead, chans, length)
