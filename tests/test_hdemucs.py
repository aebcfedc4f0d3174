"""Our Hybrid Demucs against the reference `demucs.hdemucs.HDemucs`: same state-dict names, same outputs."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from stemgui import SOURCES
from stemgui.models.hdemucs import HDemucs
from stemgui.models.spec import hybrid_inverse, hybrid_spectrogram, istft, stft

from reference import reference_hdemucs_class

SMALL_CONFIGS = {
    "ch8-depth5": dict(channels=8, depth=5),
    "nfft1024-depth4": dict(channels=8, depth=4, nfft=1024),
    "lstm-attn-from-layer2": dict(channels=8, depth=6, dconv_lstm=2, dconv_attn=3),
    "multi-freqs-dconv-both": dict(channels=8, depth=5, multi_freqs=[0.25, 0.5], dconv_mode=3),
    "time-channels-no-rewrite": dict(channels=8, channels_time=12, depth=5, rewrite=False, context_enc=1),
    "magnitude-mask": dict(channels=8, depth=5, cac=False, wiener_iters=-1, end_iters=-1),
    "hybrid-old": dict(channels=8, depth=5, hybrid_old=True),
    "spectrogram-only": dict(channels=8, depth=5, hybrid=False),
}


def _pair(sources, **kwargs) -> tuple[torch.nn.Module, HDemucs]:
    """A seeded reference model and ours with its weights loaded strictly."""
    torch.manual_seed(0)
    ref = reference_hdemucs_class()(list(sources), **kwargs).eval()
    ours = HDemucs(list(sources), **kwargs).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _mix(seconds: float, seed: int = 1, extra: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(1, 2, int(44100 * seconds) + extra, generator=gen)


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_small_config_matches_reference(name: str) -> None:
    ref, ours = _pair(SOURCES, **SMALL_CONFIGS[name])
    assert list(ours.state_dict()) == list(ref.state_dict())
    mix = _mix(1.0, extra=37)  # long enough for the BiLSTM to run on overlapping windows
    with torch.no_grad():
        expected, got = ref(mix), ours(mix)
    assert got.shape == (1, 4, 2, mix.shape[-1])
    assert (got - expected).abs().max().item() <= 1e-4


def test_small_config_matches_reference_in_training_mode_and_backprops() -> None:
    ref, ours = _pair(("vocals", "accompaniment"), channels=8, depth=5, dconv_lstm=3, dconv_attn=3)
    ref.train()
    ours.train()
    mix = _mix(0.5, seed=3)
    expected = ref(mix)
    got = ours(mix)
    assert got.shape == (1, 2, 2, mix.shape[-1])
    assert (got - expected).abs().max().item() <= 1e-4
    got.abs().mean().backward()
    grads = [p.grad for p in ours.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_published_default_matches_reference() -> None:
    """The published architecture (83.6 M parameters) with the reference's random weights, 2 s of audio."""
    ref, ours = _pair(SOURCES)
    assert sum(p.numel() for p in ours.parameters()) == 83_637_832
    mix = _mix(2.0, seed=2, extra=11)
    with torch.no_grad():
        expected, got = ref(mix), ours(mix)
    assert (got - expected).abs().max().item() <= 1e-4


@pytest.mark.parametrize("length", [2049, 5001, 44101])
def test_stft_round_trip(length: int) -> None:
    x = torch.randn(2, 2, length, generator=torch.Generator().manual_seed(length))
    for nfft in (4096, 1024):
        z = stft(x, nfft, nfft // 4)
        back = istft(z, nfft // 4, length)
        assert back.shape == x.shape
        assert (back - x).abs().max().item() <= 1e-5


def _band_limited(length: int, seed: int) -> torch.Tensor:
    """Noise with nothing in the top 10% of the band: the model drops the Nyquist bin by design."""
    noise = torch.randn(2, 2, length, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    spectrum = torch.fft.rfft(noise)
    spectrum[..., int(spectrum.shape[-1] * 0.9) :] = 0
    return torch.fft.irfft(spectrum, n=length).float()


@pytest.mark.parametrize("length", [1, 100, 9000, 12288, 44101])
def test_stft_round_trip_inside_model(length: int) -> None:
    """The model's spectrogram path has exactly ceil(T / hop) frames and inverts to 1e-5.

    The published design drops the Nyquist bin (hence band-limited test signals) and the two outer frames
    on each side, so the outer samples are only partly covered by the spectrogram (the time branch carries
    them), and the reflect padding's kink leaks into the dropped bin there. One window length (nfft) in from
    each end the round trip is exact.
    """
    model = HDemucs(list(SOURCES), channels=4, depth=5).eval()
    hop = model.hop_length
    x = _band_limited(length, seed=length)
    z = hybrid_spectrogram(x, model.nfft)
    assert z.shape == (2, 2, model.nfft // 2, -(-length // hop))
    back = hybrid_inverse(z, length, model.nfft)
    assert back.shape == x.shape and torch.isfinite(back).all()
    edge = model.nfft
    inner = slice(edge, length - edge)
    if length > 2 * edge + hop:
        assert (back[..., inner] - x[..., inner]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("length", [1, 999, 10_001, 44_101])
def test_output_shape_for_odd_lengths(length: int) -> None:
    model = HDemucs(["a", "b", "c"], channels=4, depth=5, dconv_lstm=9, dconv_attn=9).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 2, length, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 3, 2, length)
    assert torch.isfinite(out).all()
    assert model.valid_length(length) == length


def test_mono_model_and_metadata() -> None:
    model = HDemucs(["voice", "rest"], audio_channels=1, channels=4, depth=5, samplerate=22050, segment=7.5)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 1, 3000))
    assert out.shape == (1, 2, 1, 3000)
    assert model.sources == ["voice", "rest"]
    assert (model.samplerate, model.audio_channels, model.segment) == (22050, 1, 7.5)


def test_init_kwargs_are_json_and_rebuild_the_same_architecture() -> None:
    model = HDemucs(tuple(SOURCES), channels=8, depth=5, multi_freqs=(0.25, 0.5), dconv_lstm=3)
    kwargs = json.loads(json.dumps(model.init_kwargs))
    assert kwargs["sources"] == list(SOURCES)
    assert kwargs["multi_freqs"] == [0.25, 0.5]
    assert set(kwargs) == set(inspect.signature(reference_hdemucs_class()).parameters)
    rebuilt = HDemucs(**kwargs)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_wiener_filtering_is_refused_clearly() -> None:
    with pytest.raises(NotImplementedError, match="Wiener"):
        HDemucs(list(SOURCES), channels=4, cac=False)


def test_inference_pieces_change_nothing_but_memory(monkeypatch) -> None:
    """The piecewise DConv rows and transposed-conv matmuls (inference only) give the plain modules' output."""
    from stemgui.models import hdemucs

    torch.manual_seed(3)
    conv = torch.nn.ConvTranspose2d(6, 5, (8, 1), (4, 1))
    dconv = hdemucs.DConv(6, compress=2, depth=2, init=0.5).eval()
    y = torch.randn(2, 6, 13, 17)
    with torch.no_grad():
        expected_tr = conv(y)
        expected_dconv = dconv(y.permute(0, 2, 1, 3).reshape(-1, 6, 17)).view(2, 13, 6, 17).permute(0, 2, 1, 3)
    monkeypatch.setattr(hdemucs, "INFER_PIECE_ELEMENTS", 5 * 4 * 17 * 3)  # 3 input bins per piece
    with torch.no_grad():
        got_tr = hdemucs._conv_transpose(conv, y)
        got_dconv = hdemucs._dconv_over_freqs(dconv, y)
    assert got_tr.shape == expected_tr.shape == (2, 5, 56, 17)
    assert (got_tr - expected_tr).abs().max().item() <= 1e-5
    assert (got_dconv - expected_dconv).abs().max().item() <= 1e-5
    # with autograd (training) both are the plain modules, gradients included
    out = hdemucs._conv_transpose(conv, y.requires_grad_())
    assert out.grad_fn is not None and (out - expected_tr).abs().max().item() <= 1e-5


@pytest.mark.parametrize("hybrid", [True, False])
def test_inverse_of_channels_equals_the_plain_inverse_per_batch_item(hybrid) -> None:
    """The inference fast path (one source slice at a time) against un-standardise -> complex -> inverse."""
    from stemgui.models.spec import hybrid_inverse, hybrid_inverse_channels

    torch.manual_seed(5)
    nfft, freqs, frames, length = 256, 128, 20, 1250
    x = torch.randn(2, 3, 4, freqs, frames)  # (batch, sources, 2·channels, F, T)
    scale, shift = torch.tensor([0.5, 2.0]), torch.tensor([0.1, -0.3])
    spec = x * scale.view(2, 1, 1, 1, 1) + shift.view(2, 1, 1, 1, 1)
    spec = torch.view_as_complex(spec.view(2, 3, 2, 2, freqs, frames).permute(0, 1, 2, 4, 5, 3).contiguous())
    if not hybrid:
        frames_needed = length // (nfft // 4) + 1
        x, spec = x[..., :frames_needed], spec[..., :frames_needed]
    expected = hybrid_inverse(spec, length, nfft, hybrid=hybrid)
    got = hybrid_inverse_channels(x, scale, shift, length, nfft, hybrid=hybrid)
    assert got.shape == expected.shape == (2, 3, 2, length)
    assert (got - expected).abs().max().item() <= 1e-5
