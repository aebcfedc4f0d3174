"""Our Hybrid Transformer Demucs against the reference `demucs.htdemucs.HTDemucs`: same names, same outputs."""

from __future__ import annotations

import inspect
import json
from fractions import Fraction

import pytest
import torch

from stemgui import SOURCES
from stemgui.models.architectures import build_model, get_class
from stemgui.models.htdemucs import HTDemucs

from reference import import_demucs

SIX = ("drums", "bass", "other", "vocals", "guitar", "piano")

# The published `htdemucs` architecture (its kwargs minus the 7.8 s segment, shortened to keep the test fast).
PUBLISHED = dict(channels=48, depth=4, dconv_mode=3, dconv_comp=8, bottom_channels=512, t_layers=5, t_heads=8,
                 multi_freqs=[], segment=1.0)

CONFIGS = {
    "published-htdemucs": (SOURCES, PUBLISHED),
    "published-6s": (SIX, dict(PUBLISHED, bottom_channels=0)),
    "small": (SOURCES, dict(channels=8, depth=4, t_layers=1, segment=0.5)),
    "small-bottom-dconv-both": (SOURCES, dict(channels=8, t_layers=2, bottom_channels=32, dconv_mode=3,
                                              segment=0.5)),
    "merge-at-depth5": (SOURCES, dict(channels=8, depth=5, t_layers=2, segment=0.5)),
    "cape-post-norm-cross-first-relu": (SOURCES, dict(channels=8, t_layers=3, t_emb="cape", t_norm_first=False,
                                                      t_cross_first=True, t_gelu=False, t_layer_scale=False,
                                                      segment=0.5)),
    "scaled-emb-group-norms": (SOURCES, dict(channels=8, t_layers=2, t_emb="scaled", t_norm_in=False,
                                             t_norm_in_group=True, t_group_norm=True, t_max_positions=500,
                                             t_weight_pos_embed=0.5, segment=0.5)),
    "multi-freqs-mono": (("voice", "rest"), dict(audio_channels=1, channels=8, t_layers=2,
                                                 multi_freqs=[0.25, 0.5], segment=0.5)),
    "magnitude-mask": (SOURCES, dict(channels=8, t_layers=2, cac=False, wiener_iters=-1, end_iters=-1,
                                     segment=0.5)),
    "no-transformer": (SOURCES, dict(channels=8, t_layers=0, segment=0.5)),
}


def reference_class():
    import_demucs()
    from demucs.htdemucs import HTDemucs as Reference

    return Reference


def _stir(model: torch.nn.Module) -> None:
    """LayerScales (initialised at 1e-3/1e-4) raised to O(1), so every residual branch shows in the output."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".scale"):
                param.copy_(0.2 + 0.8 * torch.rand(param.shape, generator=gen))


def _pair(sources, **kwargs) -> tuple[torch.nn.Module, HTDemucs]:
    """A seeded reference model (LayerScales stirred) and ours with its weights loaded strictly."""
    torch.manual_seed(0)
    ref = reference_class()(list(sources), **kwargs).eval()
    _stir(ref)
    ours = HTDemucs(list(sources), **kwargs).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _mix(samples: int, channels: int = 2, seed: int = 1) -> torch.Tensor:
    return 0.3 * torch.randn(1, channels, samples, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_matches_reference(name: str) -> None:
    sources, kwargs = CONFIGS[name]
    ref, ours = _pair(sources, **kwargs)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    train = round(kwargs["segment"] * 44100)
    assert ours.valid_length(train // 3) == train
    channels = kwargs.get("audio_channels", 2)
    for samples in (train, train * 2 // 3 + 7):  # exactly the training segment, and a shorter input (padded)
        mix = _mix(samples, channels, seed=samples)
        with torch.no_grad():
            expected, got = ref(mix), ours(mix)
        assert got.shape == (1, len(sources), channels, samples)
        assert (got - expected).abs().max().item() <= 1e-4, (name, samples)


@pytest.mark.parametrize("name", [n for n in CONFIGS if CONFIGS[n][1].get("t_layers", 5) > 0])
def test_transformer_alone_matches_reference(name: str) -> None:
    """The bottleneck Transformer on its own: random weights barely reach the model output, so look inside."""
    sources, kwargs = CONFIGS[name]
    ref, ours = _pair(sources, **kwargs)
    dim = ours.crosstransformer.layers[0].linear1.in_features
    gen = torch.Generator().manual_seed(7)
    x, xt = torch.randn(2, dim, 8, 11, generator=gen), torch.randn(2, dim, 45, generator=gen)
    with torch.no_grad():
        expected, got = ref.crosstransformer(x, xt), ours.crosstransformer(x, xt)
    for e, g in zip(expected, got):
        assert g.shape == e.shape
        assert (g - e).abs().max().item() <= 1e-4 * max(1.0, e.abs().max().item())


def test_published_segment_length_matches_reference() -> None:
    """The published 7.8 s segment: the reference's Fraction(39, 5) and our float give the same length."""
    ref, ours = _pair(SOURCES, **dict(PUBLISHED, segment=Fraction(39, 5), t_layers=1, channels=8,
                                      bottom_channels=0))
    assert ours.segment == 7.8 and ours.init_kwargs["segment"] == 7.8
    assert ours.valid_length(1) == ref.valid_length(1) == 343980
    mix = _mix(20_000)
    with torch.no_grad():
        expected, got = ref(mix), ours(mix)
    assert got.shape == (1, 4, 2, 20_000)
    assert (got - expected).abs().max().item() <= 1e-4


@pytest.mark.slow
def test_published_htdemucs_on_its_full_segment() -> None:
    ref, ours = _pair(SOURCES, **dict(PUBLISHED, segment=Fraction(39, 5)))
    for samples in (343980, 200_001):
        mix = _mix(samples, seed=samples)
        with torch.no_grad():
            expected, got = ref(mix), ours(mix)
        assert (got - expected).abs().max().item() <= 1e-4


def test_signature_matches_reference() -> None:
    ours = inspect.signature(HTDemucs).parameters
    theirs = inspect.signature(reference_class()).parameters
    assert list(ours) == list(theirs)
    for name, param in theirs.items():
        default = ours[name].default
        expected = param.default
        if isinstance(expected, list):
            default, expected = list(default), expected
        assert default == expected, name


def test_valid_length_and_padding() -> None:
    model = HTDemucs(list(SOURCES), channels=8, t_layers=1, segment=7.8).eval()
    assert model.training_length() == 343980  # int(7.8 * 44100) would be 343979
    assert model.valid_length(1) == model.valid_length(343980) == 343980
    with pytest.raises(ValueError, match="longer than the training length"):
        model.valid_length(343981)
    free = HTDemucs(list(SOURCES), channels=8, t_layers=1, segment=7.8, use_train_segment=False)
    assert free.valid_length(123) == 123

    short = HTDemucs(list(SOURCES), channels=8, t_layers=1, segment=0.5).eval()
    mix = _mix(9_000)
    with torch.no_grad():
        got = short(mix)
        padded = short(torch.nn.functional.pad(mix, (0, 22050 - 9_000)))
        longer = short(_mix(30_000))  # the reference fails here; we run at the input's own length
    assert got.shape == (1, 4, 2, 9_000)
    assert torch.equal(got, padded[..., :9_000])
    assert longer.shape == (1, 4, 2, 30_000) and torch.isfinite(longer).all()


def test_training_mode_matches_reference_and_backprops() -> None:
    """Training on a short segment (our trainer uses 1-4 s): the segment follows the input, gradients flow."""
    ref, ours = _pair(("vocals", "accompaniment"), channels=8, t_layers=2, bottom_channels=16, segment=7.8)
    ref.train()
    ours.train()
    mix = _mix(11_025, seed=3)
    expected = ref(mix)
    got = ours(mix)
    assert got.shape == (1, 2, 2, 11_025)
    assert (got - expected).abs().max().item() <= 1e-4
    got.abs().mean().backward()
    grads = [p.grad for p in ours.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0
    assert ours.segment == 0.25 and ours.init_kwargs["segment"] == 0.25
    assert ours.eval().valid_length(100) == 11_025


def test_init_kwargs_are_json_and_rebuild_the_same_model() -> None:
    model = HTDemucs(tuple(SOURCES), channels=8, t_layers=2, bottom_channels=32, multi_freqs=(0.25, 0.5),
                     segment=Fraction(39, 5), t_cape_glob_loc_scale=(100.0, 1.0, 1.2)).eval()
    kwargs = json.loads(json.dumps(model.init_kwargs))
    assert kwargs["sources"] == list(SOURCES)
    assert kwargs["segment"] == 7.8 and kwargs["multi_freqs"] == [0.25, 0.5]
    assert kwargs["t_cape_glob_loc_scale"] == [100.0, 1.0, 1.2]
    assert set(kwargs) == set(inspect.signature(HTDemucs).parameters)
    rebuilt = build_model("htdemucs", kwargs.pop("sources"), kwargs).eval()
    assert isinstance(rebuilt, HTDemucs) and get_class("htdemucs") is HTDemucs
    assert rebuilt.init_kwargs == model.init_kwargs
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    mix = _mix(5_000)
    with torch.no_grad():
        assert torch.equal(rebuilt(mix), model(mix))
    assert (model.samplerate, model.audio_channels, model.segment, model.sources) == (44100, 2, 7.8, list(SOURCES))


def test_unsupported_options_are_refused_clearly() -> None:
    with pytest.raises(NotImplementedError, match="Wiener"):
        HTDemucs(list(SOURCES), channels=8, cac=False)
    with pytest.raises(NotImplementedError, match="sparse attention"):
        HTDemucs(list(SOURCES), channels=8, t_sparse_self_attn=True)
    with pytest.raises(ValueError, match="equally wide"):
        HTDemucs(list(SOURCES), channels=8, channels_time=12)


@pytest.mark.parametrize("options", [dict(t_emb="cape", t_dropout=0.1), dict(t_sin_random_shift=5, t_dropout=0.1),
                                     dict(t_emb="scaled", t_max_positions=200)])
def test_training_only_randomness_runs(options: dict) -> None:
    """CAPE augmentation, random sinusoid shifts and dropout (training-time randomness) run and backprop."""
    torch.manual_seed(0)
    model = HTDemucs(list(SOURCES), channels=8, t_layers=2, segment=1.0, **options).train()
    out = model(_mix(8_192))
    assert out.shape == (1, 4, 2, 8_192) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
