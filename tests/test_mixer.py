"""The mixer's arithmetic, sample by sample: every mute/solo combination, pan, ramps and presets."""

import itertools

import numpy as np
import pytest

from stemgui.gui.mixer import GainRamp, LaneMix, apply_preset, audible, lane_gains, mix, mix_as_heard, pan_gains


@pytest.fixture
def lanes_audio():
    rng = np.random.default_rng(0)
    return rng.uniform(-0.5, 0.5, size=(4, 2, 257)).astype(np.float32)


def test_every_mute_solo_combination_equals_expected_sum(lanes_audio):
    n = lanes_audio.shape[0]
    volumes = [1.0, 0.5, 0.25, 2.0]
    checked = 0
    for mutes in itertools.product([False, True], repeat=n):
        for solos in itertools.product([False, True], repeat=n):
            lanes = [LaneMix(gain=v, mute=m, solo=s) for v, m, s in zip(volumes, mutes, solos)]
            out = mix_as_heard(lanes_audio, lanes)
            # expected, written out longhand: soloed lanes only if any solo, mute always wins
            expected = np.zeros((2, lanes_audio.shape[2]), np.float64)
            for i in range(n):
                if mutes[i]:
                    continue
                if any(solos) and not solos[i]:
                    continue
                expected += volumes[i] * lanes_audio[i].astype(np.float64)
            np.testing.assert_allclose(out, expected, atol=1e-6, rtol=0)
            checked += 1
    assert checked == 4 ** n


def test_audible_rules():
    assert audible([LaneMix(), LaneMix()]) == [True, True]
    assert audible([LaneMix(solo=True), LaneMix()]) == [True, False]
    assert audible([LaneMix(solo=True, mute=True), LaneMix()]) == [False, False]  # mute wins over solo
    assert audible([LaneMix(mute=True), LaneMix()]) == [False, True]


def test_pan_balance_law(lanes_audio):
    assert pan_gains(0.0) == (1.0, 1.0)
    assert pan_gains(-1.0) == (1.0, 0.0)
    assert pan_gains(1.0) == (0.0, 1.0)
    assert pan_gains(0.5) == (0.5, 1.0)
    out = mix(lanes_audio[:1], lane_gains([LaneMix(gain=0.8, pan=-0.25)]))
    np.testing.assert_allclose(out[0], 0.8 * lanes_audio[0, 0], atol=1e-7)
    np.testing.assert_allclose(out[1], 0.8 * 0.75 * lanes_audio[0, 1], atol=1e-7)


def test_mono_lanes_go_to_both_sides():
    mono = np.arange(10, dtype=np.float32).reshape(1, 1, 10)
    out = mix(mono, np.array([[1.0, 0.5]]))
    np.testing.assert_array_equal(out[0], mono[0, 0])
    np.testing.assert_array_equal(out[1], 0.5 * mono[0, 0])


def test_gain_ramp_is_linear_sample_by_sample_across_blocks():
    ramp = GainRamp(1, ramp_samples=8, initial=np.array([[1.0, 1.0]]))
    ones = np.ones((1, 2, 5), np.float32)
    np.testing.assert_array_equal(ramp.process(ones), np.ones((2, 5)))
    ramp.set_target(np.array([[0.0, 0.5]]))
    a = ramp.process(ones)
    b = ramp.process(ones)
    got = np.concatenate([a, b], axis=1)
    n = np.minimum(np.arange(1, 11), 8) / 8
    np.testing.assert_allclose(got[0], 1.0 - n, atol=1e-7)
    np.testing.assert_allclose(got[1], 1.0 - 0.5 * n, atol=1e-7)
    # the largest step between consecutive samples is 1/8 of the change: no click
    assert np.abs(np.diff(got[0])).max() <= 1 / 8 + 1e-7
    np.testing.assert_allclose(ramp.current, [[0.0, 0.5]])


def test_gain_ramp_retarget_mid_ramp_starts_from_current_value():
    ramp = GainRamp(1, ramp_samples=4, initial=np.array([[0.0, 0.0]]))
    ramp.set_target(np.array([[1.0, 1.0]]))
    first = ramp.process(np.ones((1, 2, 2), np.float32))
    np.testing.assert_allclose(first[0], [0.25, 0.5])
    ramp.set_target(np.array([[0.0, 0.0]]))
    second = ramp.process(np.ones((1, 2, 4), np.float32))
    np.testing.assert_allclose(second[0], [0.375, 0.25, 0.125, 0.0])


def test_presets():
    names = ["mix", "drums", "bass", "other", "vocals"]
    start = [LaneMix(gain=0.5, solo=True)] + [LaneMix(mute=True, solo=True)] * 4
    muted = lambda preset: [l.mute for l in apply_preset(preset, names, start)]  # noqa: E731
    assert muted("All") == [True, False, False, False, False]
    assert muted("Karaoke") == [True, False, False, False, True]
    assert muted("Acapella") == [True, True, True, True, False]
    assert muted("Drumless") == [True, True, False, False, False]
    assert muted("Bassless") == [True, False, True, False, False]
    assert not any(l.solo for l in apply_preset("All", names, start))
    assert apply_preset("All", names, start)[0].gain == 0.5
    with pytest.raises(ValueError):
        apply_preset("Nope", names, start)
