"""Our waveform Demucs against the reference `demucs.demucs.Demucs`; our sinc resampler against julius."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from stemgui import SOURCES
from stemgui.models.architectures import build_model
from stemgui.models.demucs import Demucs, center_trim
from stemgui.models.sinc_resample import downsample2, resample_frac, upsample2

from reference import import_demucs

TOL = 1e-4

# Small configs: every option the published checkpoints use, and the v2 switches turned off one at a time.
SMALL = dict(channels=8, depth=4, dconv_lstm=2, dconv_attn=3)  # DConv BiLSTM + attention in layers 2-3
VARIANTS = {
    "defaults": {},
    "glu-off": dict(glu=False),
    "gelu-off": dict(gelu=False),
    "rewrite-off": dict(rewrite=False),
    "resample-off": dict(resample=False),
    "normalize-off": dict(normalize=False),
    "bottleneck-lstm": dict(lstm_layers=2),
    "no-lstm-anywhere": dict(lstm_layers=0, dconv_lstm=10, dconv_attn=10),
    "v2-like": dict(dconv_mode=0, gelu=False, lstm_layers=2, normalize=False, norm_starts=10),
    "dconv-both-attn-lstm-early": dict(dconv_mode=3, dconv_lstm=1, dconv_attn=2, norm_starts=2),
    "odd-geometry": dict(channels=6, depth=3, kernel_size=5, stride=3, context=2, growth=1.5, dconv_comp=2,
                         audio_channels=1),
}


def _reference_class():
    import_demucs()
    pytest.importorskip("julius")  # the reference's resampling
    from demucs.demucs import Demucs as Reference

    return Reference


def _pair(sources=SOURCES, **kwargs):
    """A seeded reference model and ours with its weights loaded strictly (both in eval mode)."""
    torch.manual_seed(0)
    ref = _reference_class()(list(sources), **kwargs).eval()
    ours = Demucs(list(sources), **kwargs).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _noise(channels: int, length: int, seed: int = 1, batch: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, channels, length, generator=gen)


# ------------------------------------------------------------------------------------------------------------
# Resampler
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 7, 64, 1001, 4410])
def test_2x_resampling_matches_julius(length: int) -> None:
    julius = pytest.importorskip("julius")
    x = torch.randn(2, 3, length, generator=torch.Generator().manual_seed(length))
    up_ref, up = julius.resample_frac(x, 1, 2), upsample2(x)
    assert up.shape == up_ref.shape == (2, 3, 2 * length)
    assert (up - up_ref).abs().max().item() <= 1e-5
    down_ref, down = julius.resample_frac(x, 2, 1), downsample2(x)
    assert down.shape == down_ref.shape == (2, 3, length // 2)
    if length > 1:
        assert (down - down_ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("old,new", [(4, 5), (5, 4), (3, 1), (2, 3)])
def test_fractional_resampling_matches_julius(old: int, new: int) -> None:
    julius = pytest.importorskip("julius")
    x = torch.randn(4, 997, generator=torch.Generator().manual_seed(old * 10 + new), dtype=torch.float64)
    for kwargs in ({}, {"full": True}, {"output_length": 100}, {"zeros": 8, "rolloff": 0.9}):
        expected = julius.resample_frac(x, old, new, **kwargs)
        got = resample_frac(x, old, new, **kwargs)
        assert got.shape == expected.shape and got.dtype == x.dtype
        assert (got - expected).abs().max().item() <= 1e-5, kwargs  # julius builds its filters in float32


def test_resampler_keeps_constants_and_low_frequencies() -> None:
    assert torch.allclose(upsample2(torch.full((1, 50), 0.7)), torch.tensor(0.7), atol=1e-6)
    t = torch.arange(4000, dtype=torch.float64)
    tone = torch.sin(2 * torch.pi * 0.05 * t)  # well below both Nyquist rates
    up = upsample2(tone)
    expected = torch.sin(2 * torch.pi * 0.025 * torch.arange(8000, dtype=torch.float64))
    assert (up - expected)[200:-200].abs().max().item() < 1e-3
    assert (downsample2(up) - tone)[200:-200].abs().max().item() < 1e-3
    with pytest.raises(ValueError):
        resample_frac(tone, 1, 2, output_length=9000)


# ------------------------------------------------------------------------------------------------------------
# Interface and constructor
# ------------------------------------------------------------------------------------------------------------


def test_constructor_arguments_match_the_reference() -> None:
    ref_params = inspect.signature(_reference_class().__init__).parameters
    our_params = inspect.signature(Demucs.__init__).parameters
    assert list(our_params) == list(ref_params)
    for name, param in ref_params.items():
        assert our_params[name].default == param.default, name
    assert Demucs.architecture == "demucs"


def test_init_kwargs_round_trip_through_json_and_the_registry() -> None:
    model = Demucs(["vocals", "accompaniment"], channels=4, depth=3, lstm_layers=1, segment=7)
    kwargs = json.loads(json.dumps(model.init_kwargs))
    assert kwargs["sources"] == ["vocals", "accompaniment"] and kwargs["segment"] == 7.0
    assert set(kwargs) == set(inspect.signature(Demucs.__init__).parameters) - {"self"}
    rebuilt = build_model("demucs", kwargs["sources"], kwargs)
    assert isinstance(rebuilt, Demucs) and rebuilt.init_kwargs == model.init_kwargs
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert (rebuilt.sources, rebuilt.samplerate, rebuilt.audio_channels, rebuilt.segment) == (
        ["vocals", "accompaniment"], 44100, 2, 7.0)


def test_valid_length_matches_the_reference() -> None:
    for kwargs in ({}, dict(resample=False), dict(depth=3, kernel_size=5, stride=3)):
        torch.manual_seed(0)
        ref = _reference_class()(list(SOURCES), channels=4, **kwargs)
        ours = Demucs(list(SOURCES), channels=4, **kwargs)
        for length in (1, 2, 100, 4777, 4778, 4779, 44100, 441001):
            valid = ours.valid_length(length)
            assert valid == ref.valid_length(length) and valid >= length
            # A fixed point whenever the U-Net's own length is even (any even stride) or there is no
            # resampling; with an odd stride and resampling the reference rule can grow again (kept as is).
            if kwargs.get("stride", 4) % 2 == 0 or not kwargs.get("resample", True):
                assert ours.valid_length(valid) == valid


def test_center_trim() -> None:
    x = torch.arange(10.0)
    assert center_trim(x, 10).tolist() == x.tolist()
    assert center_trim(x, 7).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # odd excess: extra one on the right
    with pytest.raises(ValueError):
        center_trim(x, 11)


# ------------------------------------------------------------------------------------------------------------
# Parity with the reference
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_small_configs_match_reference(name: str) -> None:
    kwargs = {**SMALL, **VARIANTS[name]}
    ref, ours = _pair(**kwargs)
    assert list(ours.state_dict()) == list(ref.state_dict())
    chans = kwargs.get("audio_channels", 2)
    valid = ours.valid_length(2000)  # long enough for the DConv BiLSTMs to run on overlapping windows
    for length in (valid, 1234):  # valid length (the engine's case) and one the forward pads itself
        mix = _noise(chans, length, batch=2)
        with torch.no_grad():
            expected = ref(mix)
            got = ours(mix)
        assert got.shape == expected.shape == (2, len(SOURCES), chans, length)
        assert (got - expected).abs().max().item() <= TOL, (name, length)
    with torch.inference_mode():
        assert (ours(mix) - expected).abs().max().item() <= TOL


def test_published_mdx_waveform_config_matches_reference() -> None:
    """The MDX 2021 Track A / repro_mdx_a waveform members: 64 channels, depth 6, DConv LSTM + attention in
    layers 4-5, GroupNorm from layer 4, 2x resampling (the training config's defaults), normalised input."""
    ref, ours = _pair(channels=64, normalize=True, segment=44)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    mix = _noise(2, ours.valid_length(5000), seed=4)
    with torch.no_grad():
        expected = ref(mix)
        got = ours(mix)
    assert got.shape == (1, 4, 2, mix.shape[-1])
    assert (got - expected).abs().max().item() <= TOL


def test_training_mode_matches_reference_and_gradients_agree() -> None:
    ref, ours = _pair(("vocals", "accompaniment"), **SMALL, lstm_layers=1)
    ref.train()
    ours.train()
    mix = _noise(2, ours.valid_length(1500), seed=3)
    expected, got = ref(mix), ours(mix)
    assert got.shape == (1, 2, 2, mix.shape[-1]) and got.requires_grad
    assert (got - expected).abs().max().item() <= TOL
    target = _noise(2, mix.shape[-1], seed=5)[:, None].expand_as(got)
    (got - target).abs().mean().backward()
    (expected - target).abs().mean().backward()
    ref_grads = dict(ref.named_parameters())
    for name, param in ours.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        ref_grad = ref_grads[name].grad
        assert (param.grad - ref_grad).abs().max().item() <= TOL * max(1.0, ref_grad.abs().max().item()), name


def test_chunked_separation_like_apply_model_matches_reference() -> None:
    """The reference's `apply_model` pads each chunk with surrounding audio to `valid_length` and centre-trims;
    given our model it must give what it gives with the reference model."""
    import_demucs()
    from demucs.apply import apply_model

    ref, ours = _pair(**SMALL, segment=0.1)
    mix = _noise(2, 10_000, seed=6)
    expected = apply_model(ref, mix, shifts=0, split=True, overlap=0.25, progress=False)
    got = apply_model(ours, mix, shifts=0, split=True, overlap=0.25, progress=False)
    assert got.shape == (1, 4, 2, mix.shape[-1])
    assert (got - expected).abs().max().item() <= TOL


def test_first_generation_key_names_load() -> None:
    """v2 checkpoints put the second conv of each layer at Sequential position 2 (no norm placeholder)."""
    model = Demucs(list(SOURCES), channels=4, depth=3, dconv_mode=0, norm_starts=10, lstm_layers=1)
    old_state = {}
    for key, value in model.state_dict().items():
        part, index, pos, rest = key.split(".", 3) if key.count(".") >= 3 else (key, "", "", "")
        if part in ("encoder", "decoder") and pos == "3":
            key = f"{part}.{index}.2.{rest}"
        old_state[key] = value.clone() + 1.0
    assert any(k.startswith("encoder.0.2.") for k in old_state)
    model.load_state_dict(old_state, strict=True)
    assert torch.equal(model.encoder[0][3].weight, old_state["encoder.0.2.weight"])
