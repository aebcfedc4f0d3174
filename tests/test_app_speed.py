"""What makes the app as fast as the CLI (issue 14 item 7), checked as mechanisms, not times: the engine runs
the CLI's schedule (one segment per torch thread, single-threaded each), the pictures use no BLAS (whose threads
spin on every core), and long lanes are pictured block by block from their mapped file."""

import numpy as np
import pytest
import torch
from conftest import make_tiny_model

from stemgui.gui import lane_file
from stemgui.gui.spectrogram import SpectrogramLayout, compute_columns
from stemgui.gui.waveform import BLOCK, MAX_STROKES, peak_envelope, stroke_block
from stemgui.gui.workers import engine_settings
from stemgui.separate import SeparationSettings, Separator


def panel_settings() -> SeparationSettings:
    """What the settings panel hands the worker (batch size 1)."""
    return SeparationSettings(segment=None, overlap=0.25, shifts=0, device="cpu", batch_size=1, exact_sum=True)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_the_app_separates_with_the_clis_schedule(threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    app = Separator(make_tiny_model(), engine_settings(panel_settings()), workers=threads)
    cli = Separator(make_tiny_model(), SeparationSettings(device="cpu"), workers=threads)  # `stemgui separate`
    segment = app.segment_seconds
    workers, per_forward = app._schedule(segment)
    assert workers == cli._schedule(segment)[0] == threads  # one segment per thread, not one on all threads
    assert per_forward == 1  # and a cancel waits for one segment at most (the CLI batches 4 on one thread)


def test_a_wide_model_runs_one_segment_at_a_time_on_all_threads(monkeypatch):
    """Above WIDE_MODEL_PARAMETERS concurrent segments would double the activations for a few per cent of speed."""
    from stemgui import separate

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    model = make_tiny_model()
    small = Separator(model, SeparationSettings(device="cpu"))
    assert small._schedule(small.segment_seconds) == (2, 1)
    monkeypatch.setattr(separate, "WIDE_MODEL_PARAMETERS", sum(p.numel() for p in model.parameters()) - 1)
    wide = Separator(model, SeparationSettings(device="cpu"))
    assert wide._schedule(wide.segment_seconds) == (1, 1)  # no batch of 4 either: one segment's activations
    assert Separator(model, SeparationSettings(device="cpu"), workers=2)._schedule(1.0) == (2, 1)  # asked for


def test_engine_settings_change_nothing_that_changes_the_stems():
    from stemgui.gui.workers import cache_settings

    panel = panel_settings()
    assert cache_settings(engine_settings(panel)) == cache_settings(panel)


def test_sparse_filterbank_equals_the_dense_product():
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((2, 5 * 44100))).astype(np.float32)
    for scale in ("log", "mel"):
        layout = SpectrogramLayout(audio.shape[1], 44100, 300, scale=scale)
        bins, weights, starts = layout.bands
        assert len(bins) < layout.fb.size / 20  # a few bins per row, not all 1025
        power = rng.random((7, layout.nfft // 2 + 1)).astype(np.float32)
        sparse = np.add.reduceat(power[:, bins] * weights, starts, axis=1)
        np.testing.assert_allclose(sparse, power @ layout.fb.T, rtol=1e-5, atol=1e-7)


def test_pictures_of_a_mapped_lane_equal_those_in_ram(tmp_path):
    rng = np.random.default_rng(1)
    frames = 3 * 44100 + 17
    lanes = lane_file.create_lanes(tmp_path / "lanes.f32", (2, 2, frames))
    lanes[:] = (0.3 * rng.standard_normal((2, 2, frames))).astype(np.float32)
    in_ram = np.array(lanes)
    layout = SpectrogramLayout(frames, 44100, 200)
    np.testing.assert_array_equal(compute_columns(lanes[1], layout, 0, 200), compute_columns(in_ram[1], layout, 0, 200))
    for a, b in zip(peak_envelope(lanes[1], 44100), peak_envelope(in_ram[1], 44100)):
        np.testing.assert_array_equal(a, b)


def test_waveform_strokes_stay_bounded_for_a_long_lane_and_exact_for_a_song():
    rate = 44100
    assert stroke_block(10 * 60 * rate) == BLOCK  # up to ~24 minutes: one stroke per BLOCK samples
    hour = 3600 * rate
    assert stroke_block(hour) * MAX_STROKES >= hour and stroke_block(hour) > BLOCK
    rng = np.random.default_rng(2)
    audio = rng.standard_normal((2, 10 * BLOCK + 5)).astype(np.float32)
    x, y = peak_envelope(audio, rate)
    mono = audio[:, :10 * BLOCK].mean(axis=0).reshape(10, BLOCK)
    np.testing.assert_array_equal(y[0::2], mono.min(axis=1))
    np.testing.assert_array_equal(y[1::2], mono.max(axis=1))
    assert x[0] == x[1] == pytest.approx(0.5 * BLOCK / rate)
