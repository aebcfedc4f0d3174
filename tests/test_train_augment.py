"""Augmentation: what each switch does to the stems, what remix does to the segment plan, and determinism."""

import numpy as np
import pytest
import torch

from stemgui.train.augment import augment_stems, boost_source, plan_segment, solo_sources
from stemgui.train.config import AugmentConfig, Config

from helpers import make_musdb


def _stems(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((4, 2, 1000)).astype(np.float32)


def _only(**on) -> AugmentConfig:
    cfg = AugmentConfig(remix=False, shift=0.0, channel_swap=False, sign_flip=False, gain=False)
    for key, value in on.items():
        setattr(cfg, key, value)
    return cfg


def test_sign_flip_negates_whole_stems_sometimes():
    flips = []
    for seed in range(20):
        stems = _stems()
        out = augment_stems(stems.copy(), np.random.default_rng(seed), _only(sign_flip=True))
        for s in range(4):
            same, negated = np.array_equal(out[s], stems[s]), np.array_equal(out[s], -stems[s])
            assert same != negated
            flips.append(negated)
    assert 0.3 < np.mean(flips) < 0.7


def test_channel_swap_exchanges_left_and_right_and_skips_mono():
    swaps = []
    for seed in range(20):
        stems = _stems()
        out = augment_stems(stems.copy(), np.random.default_rng(seed), _only(channel_swap=True))
        for s in range(4):
            swapped = np.array_equal(out[s], stems[s, ::-1])
            assert swapped or np.array_equal(out[s], stems[s])
            swaps.append(swapped)
    assert 0.3 < np.mean(swaps) < 0.7
    mono = _stems()[:, :1]
    assert np.array_equal(augment_stems(mono.copy(), np.random.default_rng(0), _only(channel_swap=True)), mono)


def test_gain_scales_each_stem_by_one_factor_in_range():
    cfg = _only(gain=True, gain_min=0.5, gain_max=0.75)
    stems = _stems()
    out = augment_stems(stems.copy(), np.random.default_rng(3), cfg)
    factors = []
    for s in range(4):
        ratio = out[s] / stems[s]
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
        factors.append(ratio.flat[0])
    assert all(0.5 <= f <= 0.75 for f in factors) and len(set(np.round(factors, 6))) == 4


def test_boost_raises_only_the_named_source_in_about_its_share_of_segments():
    sources = ["drums", "bass", "other", "vocals"]
    cfg = _only(boost_share=0.5, boost_db=12.0)
    boosted = []
    for seed in range(40):
        stems = _stems()
        out = boost_source(stems.copy(), np.random.default_rng(seed), sources, cfg)
        np.testing.assert_array_equal(out[1:], stems[1:])  # bass, other and vocals untouched
        ratio = out[0] / stems[0]
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
        assert 1.0 <= ratio.flat[0] <= 10 ** (12 / 20) + 1e-5
        boosted.append(ratio.flat[0] > 1.0)
    assert 0.3 < np.mean(boosted) < 0.7
    # off (the default) or a model without that source: nothing drawn, nothing changed
    rng = np.random.default_rng(0)
    stems = _stems()
    assert np.array_equal(boost_source(stems.copy(), rng, sources, _only()), stems)
    assert rng.random() == np.random.default_rng(0).random()
    assert np.array_equal(boost_source(stems.copy(), rng, ["vocals", "accompaniment"], cfg), stems)


def test_solo_segments_keep_only_the_named_sources_in_about_their_share():
    sources = ["drums", "bass", "other", "vocals"]
    solos = []
    for seed in range(40):
        stems = _stems()
        out = solo_sources(stems.copy(), np.random.default_rng(seed), sources, _only(solo_share=0.25))
        np.testing.assert_array_equal(out[0], stems[0])  # the drums always stay as they were
        solo = not out[1:].any()
        assert solo or np.array_equal(out, stems)  # all the others silent, or nothing touched
        solos.append(solo)
    assert 0.1 < np.mean(solos) < 0.45
    out = solo_sources(_stems(), np.random.default_rng(0), sources, _only(solo_share=1.0, solo_keep=["drums", "bass"]))
    assert out[:2].any() and not out[2:].any()
    rng = np.random.default_rng(0)  # off (the default): nothing drawn, nothing changed
    stems = _stems()
    assert np.array_equal(solo_sources(stems.copy(), rng, sources, _only()), stems)
    assert rng.random() == np.random.default_rng(0).random()
    # two-stem data (real singing beside a four-stem model) has no drums to keep: untouched, nothing drawn
    rng = np.random.default_rng(0)
    two = stems[:2].copy()
    assert np.array_equal(solo_sources(two.copy(), rng, ["vocals", "accompaniment"], _only(solo_share=1.0)), two)
    assert rng.random() == np.random.default_rng(0).random()


@pytest.mark.parametrize("keep, share, error", [(["drums"], 1.5, "solo_share must be in"),
                                                 (["cowbell"], 0.2, "solo_keep must name some of data.sources"),
                                                 ([], 0.2, "solo_keep must name some of data.sources")])
def test_solo_settings_are_checked(keep, share, error):
    from stemgui.errors import ConfigError

    cfg = Config()
    cfg.augment.solo_keep, cfg.augment.solo_share = keep, share
    with pytest.raises(ConfigError, match=error):
        cfg.validate()


def test_a_training_sample_with_a_solo_is_the_drums_alone(tmp_path):
    from stemgui.train.data import SegmentDataset, load_splits

    cfg = Config()
    cfg.data.dataset, cfg.data.segment, cfg.data.valid_fraction = str(make_musdb(tmp_path / "musdb")), 1.0, 0.0
    cfg.augment.solo_share = 1.0
    tracks, _, sources = load_splits(cfg)
    mix, stems = SegmentDataset(tracks, sources, cfg, 4)[0]
    assert stems[0].abs().sum() > 0 and not stems[1:].any()
    torch.testing.assert_close(mix, stems[0])


def test_augmentation_is_a_pure_function_of_the_generator():
    cfg = AugmentConfig()
    a = augment_stems(_stems(), np.random.default_rng(7), cfg)
    b = augment_stems(_stems(), np.random.default_rng(7), cfg)
    assert np.array_equal(a, b)


def test_without_remix_every_source_comes_from_one_track_at_one_offset():
    frames = [50_000, 80_000, 60_000]
    for seed in range(30):
        plan = plan_segment(np.random.default_rng(seed), frames, 4, 10_000, shift=0, remix=False)
        assert len(set(plan)) == 1
        track, start = plan[0]
        assert 0 <= start <= frames[track] - 10_000


def test_remix_draws_each_source_from_its_own_track():
    """Remix builds mixtures that never existed: the sources of one example come from different songs."""
    frames = [50_000, 80_000, 60_000]
    plans = [plan_segment(np.random.default_rng(seed), frames, 4, 10_000, shift=0, remix=True)
             for seed in range(200)]
    mixed = np.mean([len({track for track, _ in plan}) > 1 for plan in plans])
    assert mixed > 0.8
    for s in range(4):  # every source visits every track
        assert {plan[s][0] for plan in plans} == {0, 1, 2}
    assert all(0 <= start <= frames[track] - 10_000 for plan in plans for track, start in plan)


def test_shift_delays_each_source_by_at_most_shift():
    frames = [50_000]
    for seed in range(30):
        plan = plan_segment(np.random.default_rng(seed), frames, 4, 10_000, shift=500, remix=False)
        starts = [start for _, start in plan]
        assert max(starts) - min(starts) <= 500 and max(starts) + 10_000 <= 50_000


@pytest.fixture(scope="module")
def tracks(tmp_path_factory):
    from stemgui.train.data import load_splits

    root = make_musdb(tmp_path_factory.mktemp("musdb"), tracks=2, seconds=1.0)
    cfg = Config()
    cfg.data.dataset, cfg.data.segment, cfg.data.valid_fraction = str(root), 0.25, 0.0
    train, _, sources = load_splits(cfg)
    return cfg, train, sources


def test_the_mixture_is_the_sum_of_the_augmented_stems(tracks):
    """Sign flip (like every augmentation) acts on stems before the mixture is formed, so mix == sum(stems)."""
    from stemgui.train.data import SegmentDataset

    cfg, train, sources = tracks
    plain_cfg, flip_cfg = cfg.copy(), cfg.copy()
    plain_cfg.augment = _only()
    flip_cfg.augment = _only(sign_flip=True)
    flipped_any = False
    for index in range(6):
        _, plain = SegmentDataset(train, sources, plain_cfg, length=6)[index]
        mix, flipped = SegmentDataset(train, sources, flip_cfg, length=6)[index]
        torch.testing.assert_close(mix, flipped.sum(0))
        for s in range(len(sources)):
            assert torch.equal(flipped[s], plain[s]) or torch.equal(flipped[s], -plain[s])
            flipped_any |= not torch.equal(flipped[s], plain[s])
    assert flipped_any
