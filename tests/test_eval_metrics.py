"""Whole-track metrics and oracle baselines on signals whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from stemgui.eval import metrics, oracle

SR = 44100


def _stems(seed: int = 0, seconds: float = 2.0) -> np.ndarray:
    """Four stereo stems with different spectra (noise bursts, low sine, mid chord, high vibrato tone)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    drums = rng.standard_normal(n) * (np.sin(2 * np.pi * 4 * t) > 0.6)
    bass = 0.6 * np.sin(2 * np.pi * 55 * t)
    other = 0.2 * sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392))
    vocals = 0.4 * np.sin(2 * np.pi * 880 * t + 4 * np.sin(2 * np.pi * 5 * t))
    mono = np.stack([drums, bass, other, vocals])
    return np.stack([0.8 * mono, 0.6 * mono + 0.01 * rng.standard_normal(mono.shape)], axis=1).astype(np.float32)


def test_usdr_is_the_whole_track_snr():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((2, 2, 1000))
    est = ref + 0.1 * rng.standard_normal(ref.shape)
    expected = [10 * np.log10(np.sum(ref[i] ** 2) / np.sum((ref[i] - est[i]) ** 2)) for i in range(2)]
    np.testing.assert_allclose(metrics.usdr(ref, est), expected, rtol=1e-6)
    # an error of 1/10 the amplitude everywhere is exactly 20 dB
    np.testing.assert_allclose(metrics.usdr(ref, 1.1 * ref), [20.0, 20.0], atol=1e-6)
    # silence estimated as silence is 0 dB thanks to MDX's delta, not NaN
    assert metrics.usdr(np.zeros((1, 2, 10)), np.zeros((1, 2, 10)))[0] == pytest.approx(0.0)


def test_si_sdr_ignores_gain_but_not_noise():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((1, 2, 5000))
    noise = rng.standard_normal(ref.shape)
    noise -= (np.sum(noise * ref) / np.sum(ref * ref)) * ref  # orthogonal to the reference
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2)) / 10  # -20 dB
    est = 0.5 * (ref + noise)
    assert metrics.si_sdr(ref, est, zero_mean=False)[0] == pytest.approx(20.0, abs=1e-6)
    assert metrics.si_sdr(ref, 3.0 * ref)[0] > 100  # pure gain: no distortion
    assert metrics.usdr(ref, 0.5 * ref)[0] == pytest.approx(10 * np.log10(4), abs=1e-6)  # uSDR does count gain
    assert np.isnan(metrics.si_sdr(np.zeros((1, 2, 10)), np.ones((1, 2, 10)))[0])


def test_nsdr_is_improvement_over_the_mixture_and_gnsdr_weights_by_length():
    stems = _stems()
    mix = stems.sum(axis=0)
    assert np.allclose(metrics.nsdr(stems, np.broadcast_to(mix, stems.shape), mix), 0.0)
    est = stems + 0.01 * mix
    np.testing.assert_allclose(
        metrics.nsdr(stems, est, mix), metrics.usdr(stems, est) - metrics.usdr(stems, np.broadcast_to(mix, stems.shape))
    )
    values = np.array([[1.0, 4.0], [3.0, np.nan]])
    np.testing.assert_allclose(metrics.gnsdr(values, np.array([1.0, 3.0])), [2.5, 4.0])


def test_csdr_is_the_median_of_one_second_snrs():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((1, 2, 3 * SR))
    est = ref.copy()
    for k, snr_db in enumerate((10.0, 30.0, 20.0)):  # per-second noise levels; the median second is 20 dB
        chunk = ref[0, :, k * SR : (k + 1) * SR]
        noise = rng.standard_normal(chunk.shape)
        noise *= np.sqrt(np.sum(chunk**2) / np.sum(noise**2) / 10 ** (snr_db / 10))
        est[0, :, k * SR : (k + 1) * SR] += noise
    assert metrics.csdr(ref, est, SR)[0] == pytest.approx(20.0, abs=1e-6)


def test_oracles_rank_as_expected_and_keep_shape():
    stems = _stems(4, seconds=1.5)
    mix_est = oracle.mixture_as_estimate(stems)
    irm = oracle.ideal_ratio_mask(stems)
    ibm = oracle.ideal_binary_mask(stems)
    assert irm.shape == ibm.shape == mix_est.shape == stems.shape and irm.dtype == np.float32
    np.testing.assert_allclose(mix_est[2], stems.sum(axis=0), atol=1e-6)
    sdr_mix = metrics.usdr(stems, mix_est)
    sdr_irm = metrics.usdr(stems, irm)
    sdr_ibm = metrics.usdr(stems, ibm)
    assert np.all(sdr_irm > sdr_mix + 10) and np.all(sdr_ibm > sdr_mix + 10)
    # ratio masks split the mixture: the estimates add back up to it
    np.testing.assert_allclose(irm.sum(axis=0), stems.sum(axis=0), atol=1e-4)
    np.testing.assert_allclose(ibm.sum(axis=0), stems.sum(axis=0), atol=1e-4)
    assert metrics.usdr(stems, oracle.ideal_ratio_mask(stems, power=2.0)).mean() > sdr_mix.mean() + 10
    with pytest.raises(ValueError, match="unknown oracle"):
        oracle.oracle_estimates(stems, "wiener")


def test_oracle_handles_tracks_shorter_than_the_fft():
    stems = _stems(5, seconds=0.02)  # 882 samples, well under nfft 4096
    est = oracle.oracle_estimates(stems, "irm")
    assert est.shape == stems.shape and np.all(np.isfinite(est))
