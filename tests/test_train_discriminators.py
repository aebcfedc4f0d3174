"""Discriminator output shapes, PQMF sub-bands, reproducible random windows."""

import math

import pytest
import torch

from stemgui.models.discriminators import (
    PQMF,
    MultiResolutionSpectrogramDiscriminator,
    SourceDiscriminators,
    StyleMelGANDiscriminator,
    split_batch,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("bands", [1, 2, 4, 8])
def test_pqmf_shapes_and_band_selectivity(bands):
    pqmf = PQMF(bands)
    n = 4096
    t = torch.arange(n) / 44100
    # A tone in the middle of band k must put most of its energy into sub-band k.
    k = bands // 2
    freq = (k + 0.5) * 22050 / bands
    x = torch.sin(2 * math.pi * freq * t)[None, None]
    y = pqmf(x)
    assert y.shape == (1, bands, n // bands)
    energy = y[..., 64:-64].square().sum(-1)[0]
    assert int(energy.argmax()) == k
    if bands > 1:
        assert energy[k] > 0.9 * energy.sum()


def test_stylemelgan_shapes():
    disc = StyleMelGANDiscriminator(windows=(512, 1024, 2048, 4096), bands=(1, 2, 4, 8), repeats=2,
                                    channels=4, layers=3)
    x = torch.randn(6, 1, 8000)
    scores, feats = disc(x, torch.Generator().manual_seed(0))
    assert len(scores) == len(feats) == 8
    for (window, bands), score, fl in zip([(512, 1), (1024, 2), (2048, 4), (4096, 8)] * 2, scores, feats):
        # PQMF: window/bands samples, then 3 stride-4 convs.
        frames = window // bands
        for _ in range(3):
            frames = (frames + 4 - 1) // 4
        assert score.shape == (6, 1, frames)
        assert len(fl) == 5 and all(f.shape[0] == 6 for f in fl)


def test_random_windows_follow_the_generator():
    disc = StyleMelGANDiscriminator(channels=4, layers=2)
    x = torch.randn(2, 1, 20000)
    a, _ = disc(x, torch.Generator().manual_seed(3))
    b, _ = disc(x, torch.Generator().manual_seed(3))
    c, _ = disc(x, torch.Generator().manual_seed(4))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(torch.equal(p, q) for p, q in zip(a, c))


def test_short_input_is_padded():
    disc = StyleMelGANDiscriminator(channels=4, layers=2)
    scores, _ = disc(torch.randn(1, 1, 300))
    assert len(scores) == 4 and all(torch.isfinite(s).all() for s in scores)


@pytest.mark.parametrize("kind,per_source", [("stylemelgan", 4), ("mrsd", 3), ("both", 7)])
def test_source_discriminators_per_source_and_channel(kind, per_source):
    sources = ["drums", "bass", "vocals"]
    disc = SourceDiscriminators(sources, kind=kind, channels=4, layers=2, spectral_norm=(kind == "both"))
    wave = torch.randn(2, 3, 2, 6000)
    scores, feats = disc(wave, torch.Generator().manual_seed(0))
    assert len(scores) == len(feats) == per_source * len(sources)
    assert all(s.shape[0] == 2 * 2 for s in scores)  # batch x channels rows
    real_s, real_f, fake_s, fake_f = split_batch(scores, feats, 2)
    assert all(s.shape[0] == 2 for s in real_s + fake_s)
    loss = sum(s.square().mean() for s in scores)
    loss.backward()
    assert all(p.grad is not None for p in disc.parameters())


def test_mrsd_shapes():
    disc = MultiResolutionSpectrogramDiscriminator(channels=4)
    scores, feats = disc(torch.randn(3, 1, 6000))
    assert len(scores) == 3
    assert all(s.dim() == 4 and s.shape[:2] == (3, 1) for s in scores)


def test_spectral_norm_bounds_the_weights():
    disc = SourceDiscriminators(["vocals"], channels=4, layers=2, spectral_norm=True)
    disc.train()
    for _ in range(20):  # power iterations converge during training forwards
        disc(torch.randn(1, 1, 1, 5000))
    conv = disc.style[0].discs[0].convs[0]
    sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.weight.shape[0], -1), ord=2)
    assert sigma.item() == pytest.approx(1.0, rel=0.05)
