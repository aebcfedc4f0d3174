"""Lane spectrograms (pure numpy): frequency rows, the filterbank, the column layout and the dB image."""

from __future__ import annotations

import numpy as np
import pytest

from stemgui.gui.spectrogram import (
    DB_FLOOR,
    SpectrogramLayout,
    compute_columns,
    filterbank,
    hz_to_mel,
    mel_to_hz,
    row_frequencies,
)

SR = 44100


def sine(hz: float, seconds: float = 2.0, amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    mono = (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.stack([mono, mono])


def test_mel_scale_round_trips_and_is_anchored_at_1_khz():
    hz = np.array([0.0, 30.0, 440.0, 1000.0, 18000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, atol=1e-6)
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.1)


@pytest.mark.parametrize("scale", ["log", "mel"])
def test_rows_run_from_fmin_to_fmax_in_even_steps_of_their_scale(scale):
    rows = row_frequencies(160, 30.0, 18000.0, scale)
    assert rows.shape == (160,) and rows[0] == pytest.approx(30.0) and rows[-1] == pytest.approx(18000.0)
    steps = np.diff(np.log(rows) if scale == "log" else hz_to_mel(rows))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-9)


def test_an_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="unknown frequency scale"):
        row_frequencies(10, 30.0, 18000.0, "linear")


@pytest.mark.parametrize("scale", ["log", "mel"])
def test_filterbank_rows_are_normalised_triangles_centred_on_their_frequency(scale):
    nfft = 2048
    fb = filterbank(160, nfft, SR, 30.0, 18000.0, scale)
    assert fb.shape == (160, nfft // 2 + 1) and fb.dtype == np.float32
    assert fb.min() >= 0.0
    np.testing.assert_allclose(fb.sum(axis=1), 1.0, atol=1e-5)  # every row averages power, none is empty
    bins = np.fft.rfftfreq(nfft, 1.0 / SR)
    centres = row_frequencies(160, 30.0, 18000.0, scale)
    peaks = bins[fb.argmax(axis=1)]
    assert np.all(np.abs(peaks - centres) <= SR / nfft)  # the weight peaks within a bin of the row's centre


def test_layout_clamps_columns_to_the_song_and_fmax_below_nyquist():
    tiny = SpectrogramLayout(frames=100, samplerate=SR, columns=400)
    assert tiny.columns == 100  # never more columns than samples
    low_rate = SpectrogramLayout(frames=16000, samplerate=16000, columns=50)
    assert low_rate.fmax < 8000 and low_rate.frequencies[-1] == pytest.approx(low_rate.fmax)
    assert SpectrogramLayout(frames=3 * SR, samplerate=SR, columns=300).duration == pytest.approx(3.0)


def test_columns_within_counts_columns_entirely_inside_the_separated_part():
    layout = SpectrogramLayout(frames=1000, samplerate=SR, columns=10)  # 100 samples per column
    assert layout.columns_within(0) == 0
    assert layout.columns_within(99) == 0
    assert layout.columns_within(100) == 1
    assert layout.columns_within(550) == 5
    assert layout.columns_within(1000) == layout.columns_within(10**9) == 10
    counts = [layout.columns_within(end) for end in range(0, 1001, 7)]
    assert counts == sorted(counts)


@pytest.mark.parametrize("scale", ["log", "mel"])
def test_row_of_frequency_inverts_the_row_frequencies(scale):
    layout = SpectrogramLayout(frames=SR, samplerate=SR, columns=10, scale=scale)
    for row in (0, 17, 80, 159):
        assert layout.row_of_frequency(float(layout.frequencies[row])) == pytest.approx(row, abs=1e-6)


@pytest.mark.parametrize("scale", ["log", "mel"])
@pytest.mark.parametrize("hz", [100.0, 1000.0, 5000.0])
def test_a_full_scale_sine_is_a_bright_line_at_its_frequency(scale, hz):
    audio = sine(hz)
    layout = SpectrogramLayout(audio.shape[1], SR, 50, scale=scale)
    image = compute_columns(audio, layout, 0, layout.columns)
    assert image.shape == (layout.rows, 50) and np.isfinite(image).all()
    loudest = image.mean(axis=1).argmax()
    assert abs(loudest - layout.row_of_frequency(hz)) <= 3
    assert -12.0 < image.max() <= 0.5  # 0 dB is a full-scale sine; wide rows average it with its neighbours
    quiet = compute_columns(sine(hz, amplitude=0.1), layout, 0, layout.columns)
    assert image.max() - quiet.max() == pytest.approx(20.0, abs=0.1)  # a tenth of the amplitude: -20 dB


def test_silence_sits_on_the_floor():
    layout = SpectrogramLayout(SR, SR, 20)
    image = compute_columns(np.zeros((2, SR), np.float32), layout, 0, 20)
    assert np.all(image == DB_FLOOR)


def test_columns_computed_in_pieces_equal_the_whole_image():
    """The worker draws a lane 128 columns at a time as the separation advances: pieces must join seamlessly."""
    rng = np.random.default_rng(0)
    audio = (0.2 * rng.standard_normal((2, 5 * SR))).astype(np.float32)
    layout = SpectrogramLayout(audio.shape[1], SR, 700)
    whole = compute_columns(audio, layout, 0, 700)
    pieces = np.concatenate([compute_columns(audio, layout, a, min(700, a + 128)) for a in range(0, 700, 128)],
                            axis=1)
    np.testing.assert_allclose(pieces, whole, atol=1e-4)
    assert compute_columns(audio, layout, 300, 300).shape == (layout.rows, 0)


def test_mono_input_and_a_mono_mixdown_agree():
    audio = sine(440.0, seconds=1.0)
    layout = SpectrogramLayout(audio.shape[1], SR, 40)
    np.testing.assert_allclose(compute_columns(audio[0], layout, 0, 40), compute_columns(audio, layout, 0, 40),
                               atol=1e-4)
