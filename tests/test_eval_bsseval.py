"""Our BSSEval v4 against museval's (the reference every MUSDB number comes from) on short fixtures.

museval is slow (seconds per second of 4-stem audio), so fixtures are 0.5-2.3 s long.
"""

from __future__ import annotations

import numpy as np
import pytest

from stemgui.eval import bsseval

museval = pytest.importorskip("museval")

SR = 44100
TOL_DB = 0.01


def _assert_matches_museval(refs: np.ndarray, ests: np.ndarray, win: int = SR, hop: int = SR) -> tuple:
    expected = museval.evaluate(refs, ests, win=win, hop=hop)
    ours = bsseval.evaluate(refs, ests, win=win, hop=hop)
    for name, want, got in zip(("SDR", "ISR", "SIR", "SAR"), expected, ours):
        want = np.asarray(want)
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{name}: NaN frames differ")
        finite = np.isfinite(want)
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg=f"{name}: inf frames differ")
        assert np.max(np.abs(got[finite] - want[finite]), initial=0.0) <= TOL_DB, name
    return ours


def _random_correlated(seed: int, length: int, nsrc: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Sources mixed from shared noise (so they correlate), estimates leaking the others plus noise."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((nsrc, length, 2))
    mixing = np.eye(nsrc) + 0.3 * rng.standard_normal((nsrc, nsrc))
    refs = np.einsum("ij,jtc->itc", mixing, base)
    leak = 0.3 * rng.standard_normal((nsrc, nsrc))
    ests = refs + np.einsum("ij,jtc->itc", leak, base) + 0.1 * rng.standard_normal(refs.shape)
    # a filtered (delayed, smoothed) copy adds spatial distortion for ISR to measure
    ests[0, 3:] += 0.2 * refs[0, :-3]
    return refs.astype(np.float32), ests.astype(np.float32)


def _musical(seed: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Drum hits, a bass line, chords and a vibrato voice; each stem with its own stereo room (sparse
    random reverb per channel) and a -80 dB noise floor, as real recordings have."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / SR
    drums = np.zeros(length)
    for start in range(0, length, SR // 4):
        n = min(4000, length - start)
        drums[start : start + n] += rng.standard_normal(n) * np.exp(-np.arange(n) / 600)
    bass = np.sin(2 * np.pi * 55 * t * (1 + 0.01 * np.sin(np.pi * t))) * (0.6 + 0.4 * np.sin(4 * np.pi * t))
    chords = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((261.6, 329.6, 392.0, 523.2)))
    voice = np.sin(2 * np.pi * 440 * t + 3 * np.sin(10 * np.pi * t)) * (np.sin(1.4 * np.pi * t) > -0.3)
    dry = np.stack([drums, bass, 0.3 * chords, 0.5 * voice])
    refs = np.empty((4, length, 2))
    for s in range(4):
        for c in range(2):
            room = np.zeros(2000)
            room[0] = 0.5 + 0.3 * rng.random()
            room[rng.integers(100, 2000, 30)] = 0.05 * rng.standard_normal(30)
            refs[s, :, c] = np.convolve(dry[s], room)[:length]
    refs += 1e-4 * rng.standard_normal(refs.shape)
    mix = refs.sum(axis=0)
    ests = 0.7 * refs + 0.3 * mix[None] / 4 + 0.01 * rng.standard_normal(refs.shape)
    return refs.astype(np.float32), ests.astype(np.float32)


def test_random_correlated_sources_match_museval():
    refs, ests = _random_correlated(0, 2 * SR + 1234)
    sdr, isr, sir, sar = _assert_matches_museval(refs, ests)
    assert sdr.shape == (4, 2)  # the trailing partial second is dropped, as museval does
    assert np.all(np.isfinite(sdr))


def test_musical_stems_match_museval():
    refs, ests = _musical(1, 2 * SR + 300)
    sdr, isr, sir, sar = _assert_matches_museval(refs, ests)
    assert np.all(np.isfinite(np.stack([sdr, isr, sir, sar])))


def test_partly_silent_stem_gives_nan_frames_like_museval():
    refs, ests = _random_correlated(2, 3 * SR, nsrc=3)
    refs[1, SR : 2 * SR] = 0.0  # one stem rests for the middle second
    ests[2, 2 * SR :] = 0.0  # another's estimate goes silent at the end
    sdr, isr, sir, sar = _assert_matches_museval(refs, ests)
    for metric in (sdr, isr, sir, sar):
        assert np.all(np.isnan(metric[:, 1:])) and np.all(np.isfinite(metric[:, 0]))  # NaN for every source


def test_very_short_tracks_match_museval():
    refs, ests = _random_correlated(3, SR // 2, nsrc=3)  # shorter than a window: one frame of it all
    sdr, *_ = _assert_matches_museval(refs, ests)
    assert sdr.shape == (3, 1)
    refs, ests = _random_correlated(4, SR // 4)  # a quarter second, still longer than the filter unknowns
    sdr, *_ = _assert_matches_museval(refs, ests)
    assert sdr.shape == (4, 1)


def test_overlapping_frames_and_float64_input_match_museval():
    refs, ests = _random_correlated(5, SR + SR // 2, nsrc=2)
    sdr, *_ = _assert_matches_museval(refs.astype(np.float64), ests.astype(np.float64), win=SR // 2, hop=SR // 4)
    assert sdr.shape == (2, 5)


def test_mismatched_lengths_are_padded_or_cut_like_museval():
    refs, ests = _random_correlated(6, SR + 500, nsrc=2)
    _assert_matches_museval(refs, ests[:, :-4000])
    longer = np.concatenate([ests, ests[:, :3000]], axis=1)
    _assert_matches_museval(refs, longer)


def test_wholly_silent_stem_is_all_nan_where_museval_refuses():
    refs, ests = _random_correlated(7, SR + 100, nsrc=3)
    refs[2] = 0.0
    with pytest.raises(ValueError):
        museval.evaluate(refs, ests)
    result = bsseval.evaluate(refs, ests)
    assert all(m.shape == (3, 1) and np.all(np.isnan(m)) for m in result)


def test_fast_sdr_equals_full_sdr_and_is_a_framewise_snr():
    refs, ests = _random_correlated(8, 3 * SR + 10)
    refs[0, : SR // 2] = 0.0  # a silent half second does not silence the frame
    refs[2, 2 * SR : 3 * SR] = 0.0  # a silent whole frame does
    full = bsseval.evaluate(refs, ests)[0]
    fast = bsseval.framewise_sdr(refs, ests)
    np.testing.assert_allclose(fast, full, rtol=0, atol=1e-9)
    assert np.all(np.isnan(fast[:, 2])) and np.all(np.isfinite(fast[:, :2]))
    r = refs[1, SR : 2 * SR].astype(np.float64)
    e = ests[1, SR : 2 * SR].astype(np.float64)
    assert fast[1, 1] == pytest.approx(10 * np.log10(np.sum(r**2) / np.sum((r - e) ** 2)), abs=1e-9)


def test_exact_estimate_gives_infinite_sdr_and_frame_bounds_follow_museval():
    refs, _ = _random_correlated(9, SR + 5, nsrc=2)
    sdr = bsseval.framewise_sdr(refs, refs.copy())
    assert np.all(np.isposinf(sdr))
    assert bsseval.frame_bounds(10, win=4, hop=3) == [(0, 4), (3, 7), (6, 10)]
    assert bsseval.frame_bounds(10, win=20, hop=20) == [(0, 10)]
    assert bsseval.frame_bounds(10, win=np.inf, hop=np.inf) == [(0, 10)]


def test_shape_errors_are_reported():
    with pytest.raises(ValueError, match="same"):
        bsseval.evaluate(np.ones((2, 100, 2)), np.ones((3, 100, 2)), padding=False)
    with pytest.raises(ValueError, match="sources, samples, channels"):
        bsseval.evaluate(np.ones((1, 2, 100, 2)), np.ones((1, 2, 100, 2)))


def test_lagged_products_are_exact_correlations():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 9000, 1))
    y = rng.standard_normal((1, 9000, 2))
    corr = bsseval.lagged_products((x,), (y,), max_lag=5)
    for p in range(2):
        for q in range(2):
            full = np.correlate(x[p, :, 0], y[0, :, q], mode="full")  # index k + len - 1 for lag k
            mid = len(x[p]) - 1
            np.testing.assert_allclose(corr[p, q], full[mid - 5 : mid + 6], rtol=1e-9, atol=1e-9)


def test_block_levinson_solves_the_filter_system_like_a_dense_solve():
    """The distortion-filter system is block Toeplitz: the Levinson recursion gives the dense solution."""
    refs, ests = _musical(4, SR)
    taps, nsig = 64, refs.shape[0] * refs.shape[2]
    corr = bsseval.lagged_products((refs,), (refs, ests), taps - 1)
    ref_corr = np.ascontiguousarray(corr[:, :nsig])
    gram = bsseval._block_toeplitz(ref_corr, taps)
    rhs = corr[:, nsig:][:, :, taps - 1 - np.arange(taps)].transpose(0, 2, 1).reshape(nsig * taps, nsig)
    dense = np.linalg.solve(gram + np.finfo(float).eps * np.eye(len(gram)), rhs)
    blocks = np.ascontiguousarray(ref_corr[:, :, taps - 1:].transpose(2, 0, 1))
    x = bsseval._levinson(blocks, rhs.reshape(nsig, taps, -1).transpose(1, 0, 2))
    fast = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(nsig * taps, -1)
    assert np.linalg.norm(gram @ fast - rhs) / np.linalg.norm(rhs) < 1e-10  # as exact as the dense solve
    assert np.linalg.norm(fast - dense) / np.linalg.norm(dense) < 1e-4  # the system is ill-conditioned
    np.testing.assert_array_equal(bsseval._toeplitz_solve(ref_corr, taps, gram.copy(), rhs), fast)


def test_an_inaccurate_recursion_falls_back_to_the_dense_solve(monkeypatch):
    """Whatever the recursion returns is checked against the dense system: a poor answer (here: a breakdown, and
    a wrong solution) is replaced by museval's dense solve, with the same results."""
    refs, ests = _musical(5, SR)
    refs[1, :, 1] = 0.0  # the bass stem is mono-left: a singular system, regularised by eps like museval's
    expected = bsseval.evaluate(refs, ests)
    calls = []
    real = bsseval._solve
    monkeypatch.setattr(bsseval, "_solve", lambda g, r: (calls.append(g.shape), real(g, r))[1])
    for broken in (lambda blocks, rhs: None, lambda blocks, rhs: np.ones(rhs.shape)):
        calls.clear()
        monkeypatch.setattr(bsseval, "_levinson", broken)
        got = bsseval.evaluate(refs, ests)
        assert len(calls) == 2  # the joint system, and the sources' own systems (one batched solve)
        for want, have in zip(expected, got):
            np.testing.assert_allclose(have, want, atol=TOL_DB, rtol=0)


def test_leakage_reads_each_interferer_apart() -> None:
    """Estimate 0 holds source 1 at -20 dB and source 2 at -40 dB; estimate 1 holds source 0 at -10.46 dB."""
    rng = np.random.default_rng(0)
    refs = 0.1 * rng.standard_normal((3, 4 * 44100, 2))
    ests = np.stack([refs[0] + 0.1 * refs[1] + 0.01 * refs[2], refs[1] + 0.3 * refs[0], refs[2]])
    sdr, isr, sir, sar, leak = bsseval.evaluate_with_leakage(refs, ests)
    assert leak.shape == (3, 3) and np.isnan(np.diag(leak)).all()
    np.testing.assert_allclose([leak[0, 1], leak[0, 2], leak[1, 0]], [-20.0, -40.0, 20 * np.log10(0.3)], atol=0.05)
    assert leak[2, 0] == leak[2, 1] == bsseval.LEAKAGE_FLOOR_DB  # nothing leaked: the floor, not rounding noise
    for got, expected in zip((sdr, isr, sir, sar), bsseval.evaluate(refs, ests)):  # the same metrics as evaluate
        np.testing.assert_array_equal(got, expected)
