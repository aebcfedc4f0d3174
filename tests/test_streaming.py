"""Streaming input: `Separator.separate_stream` reads blocks on demand and gives exactly what `separate()`
gives on the whole waveform, while holding only a bounded window of the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny_model
from torch import nn

from stemgui.errors import StemGUIError
from stemgui.separate import SeparationSettings, Separator

SR = 44100


class PositionModel(nn.Module):
    """Output depends on where a segment was cut and on its neighbourhood: any misplaced sample shows up."""

    sources = ["drums", "bass", "other", "vocals"]
    samplerate = SR
    audio_channels = 2
    segment = 1.0

    def forward(self, mix):
        ramp = torch.linspace(0.5, 1.5, mix.shape[-1])
        w = torch.tensor([0.1, 0.2, 0.3, 0.4]).view(1, -1, 1, 1)
        smooth = torch.nn.functional.avg_pool1d(mix, 9, stride=1, padding=4)
        return (mix[:, None] * ramp + smooth[:, None] * 0.5) * w


class FixedSegmentModel(PositionModel):
    """Like HTDemucs: always runs on its training segment (the engine pads the last, shorter one)."""

    use_train_segment = True
    segment = 0.5

    def forward(self, mix):
        assert mix.shape[-1] == int(round(self.segment * SR))
        return super().forward(mix)


def blocks_of(wav: np.ndarray, size: int, log: list | None = None):
    for start in range(0, wav.shape[1], size):
        if log is not None:
            log.append(min(start + size, wav.shape[1]))
        yield wav[:, start:start + size]


def streamed(sep: Separator, wav: np.ndarray, size: int, **kw) -> np.ndarray:
    parts: list[tuple[int, int, np.ndarray]] = []
    sep.separate_stream(blocks_of(wav, size), wav.shape[1], on_chunk=lambda a, b, x: parts.append((a, b, x.copy())),
                        **kw)
    assert parts[0][0] == 0 and parts[-1][1] == wav.shape[1]
    assert all(b0 == a1 for (_, b0, _), (a1, _, _) in zip(parts, parts[1:]))
    return np.concatenate([x for _, _, x in parts], axis=-1)


@pytest.mark.parametrize("shifts", [0, 2])
@pytest.mark.parametrize("size", [1, 4096, 65536, 10 ** 7])
@pytest.mark.parametrize("exact_sum", [False, True])
def test_stream_equals_whole_waveform(stereo_noise, shifts, size, exact_sum):
    wav = stereo_noise if size > 1 else stereo_noise[:, :20_000]
    settings = SeparationSettings(segment=1.0, overlap=0.25, shifts=shifts, batch_size=2, device="cpu",
                                  exact_sum=exact_sum, seed=3)
    sep = Separator(PositionModel(), settings, workers=2)
    whole = sep.separate(wav)
    np.testing.assert_allclose(streamed(sep, wav, size), whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("model", ["tiny_hdemucs", "fixed_segment"])
@pytest.mark.parametrize("shifts", [0, 2])
def test_stream_equals_whole_with_padded_models(model, shifts):
    """Models that get their input padded with the audio around a segment (valid_length, fixed segments)."""
    rng = np.random.default_rng(7)
    wav = (0.1 * rng.standard_normal((2, int(SR * 6.3)))).astype(np.float32)
    net = make_tiny_model() if model == "tiny_hdemucs" else FixedSegmentModel()
    sep = Separator(net, SeparationSettings(shifts=shifts, overlap=0.25, device="cpu", seed=1), workers=1)
    whole = sep.separate(wav)
    np.testing.assert_allclose(streamed(sep, wav, 10_000), whole, atol=1e-6, rtol=0)


def test_with_mix_gives_the_input_region(stereo_noise):
    sep = Separator(PositionModel(), SeparationSettings(segment=1.0, shifts=1, device="cpu"))
    seen = []
    sep.separate_stream(blocks_of(stereo_noise, 5000), stereo_noise.shape[1],
                        on_chunk=lambda a, b, x, m: seen.append((a, b, m.copy())), with_mix=True)
    np.testing.assert_array_equal(np.concatenate([m for _, _, m in seen], axis=-1), stereo_noise)


def test_input_is_read_on_demand_with_bounded_look_ahead():
    """A 60 s song: the stream is never read more than a few segments ahead of what was finished."""
    n = SR * 60
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal((2, n))).astype(np.float32)
    sep = Separator(PositionModel(), SeparationSettings(segment=1.0, shifts=2, batch_size=2, device="cpu"), workers=2)
    read: list[int] = []
    ahead = []
    sep.separate_stream(blocks_of(wav, 4096, read), n, on_chunk=lambda a, b, x: ahead.append(read[-1] - b))
    assert max(ahead) < 6 * SR, max(ahead) / SR  # segment 1 s + shift 0.5 s, a few batches in flight


def test_a_callable_source_is_reopened_for_an_out_of_memory_retry(stereo_noise, monkeypatch):
    sep = Separator(PositionModel(), SeparationSettings(segment=1.0, device="cpu"))
    whole = sep.separate(stereo_noise)
    real = Separator._forward
    calls = {"n": 0, "opened": 0}

    def oom_once(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return real(self, *a, **k)

    def source():
        calls["opened"] += 1
        return blocks_of(stereo_noise, 30_000)

    monkeypatch.setattr(Separator, "_forward", oom_once)
    parts, notes = [], []
    sep.separate_stream(source, stereo_noise.shape[1], progress=lambda p: notes.append(p),
                        on_chunk=lambda a, b, x: parts.append((a, x.copy())))
    assert calls["opened"] == 2 and any(p.fallback for p in notes)
    restart = max(i for i, (a, _) in enumerate(parts) if a == 0)
    out = np.concatenate([x for _, x in parts[restart:]], axis=-1)
    assert out.shape == whole.shape  # half segments now: equal up to the seams' different weighting
    with pytest.raises(RuntimeError, match="allocate"):
        calls["n"] = 1
        sep.separate_stream(blocks_of(stereo_noise, 30_000), stereo_noise.shape[1])  # not re-openable


def test_bad_streams_are_refused(stereo_noise):
    sep = Separator(PositionModel(), SeparationSettings(segment=1.0, device="cpu"))
    with pytest.raises(StemGUIError, match="ended after"):
        sep.separate_stream(blocks_of(stereo_noise, 4096), stereo_noise.shape[1] + 10)
    bad = stereo_noise.copy()
    bad[1, 100_000] = np.nan
    with pytest.raises(StemGUIError, match="NaN"):
        sep.separate_stream(blocks_of(bad, 4096), bad.shape[1])
    with pytest.raises(StemGUIError, match="channels"):
        sep.separate_stream(blocks_of(stereo_noise[:1], 4096), stereo_noise.shape[1])
    with pytest.raises(StemGUIError, match="empty"):
        sep.separate_stream(iter([]), 0)
    # extra samples after the announced length are ignored
    whole = sep.separate(stereo_noise[:, :50_000])
    np.testing.assert_allclose(_first(sep, stereo_noise, 50_000), whole, atol=1e-6, rtol=0)


def _first(sep, wav, n):
    parts = []
    sep.separate_stream(blocks_of(wav, 7000), n, on_chunk=lambda a, b, x: parts.append(x.copy()))
    return np.concatenate(parts, axis=-1)
