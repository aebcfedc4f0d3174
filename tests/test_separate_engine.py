"""The overlap-add engine: exactness with an identity model, parity with the reference apply_model,
streaming of finished regions, cancel, out-of-memory fallback and input validation."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from stemgui.errors import Cancelled, StemGUIError
from stemgui.separate import CancelToken, SeparationSettings, Separator, transition_window

SR = 44100
WEIGHTS = (0.1, 0.2, 0.3, 0.4)


class ScaleModel(nn.Module):
    """'Separates' by fixed fractions: the overlap-add must give exactly mix * fraction back."""

    sources = ["drums", "bass", "other", "vocals"]
    samplerate = SR
    audio_channels = 2
    segment = 1.0

    def __init__(self, weights=WEIGHTS) -> None:
        super().__init__()
        self.register_buffer("w", torch.tensor(weights).view(1, -1, 1, 1))

    def forward(self, mix):
        return mix[:, None] * self.w


class PositionModel(ScaleModel):
    """Output depends on where the segment was cut: any seam or misplaced region shows up."""

    def forward(self, mix):
        ramp = torch.linspace(0.5, 1.5, mix.shape[-1])
        return mix[:, None] * self.w * ramp


@pytest.mark.parametrize("length", [1, 1000, SR, SR * 3, int(SR * 0.75) * 4, 145_531])
@pytest.mark.parametrize("shifts", [0, 2])
def test_identity_model_returns_input_exactly(length, shifts):
    rng = np.random.default_rng(length)
    mix = rng.standard_normal((2, length)).astype(np.float32)
    sep = Separator(ScaleModel(), SeparationSettings(segment=1.0, overlap=0.25, shifts=shifts, device="cpu"))
    stems = sep.separate(mix)
    assert stems.shape == (4, 2, length)
    for k, w in enumerate(WEIGHTS):
        np.testing.assert_allclose(stems[k], mix * w, atol=1e-6)


def test_transition_window_is_a_triangle():
    w = transition_window(8)
    assert torch.allclose(w, torch.tensor([1, 2, 3, 4, 4, 3, 2, 1]) / 4.0)


def test_on_chunk_regions_are_in_order_and_tile_the_output(stereo_noise):
    sep = Separator(PositionModel(), SeparationSettings(segment=1.0, overlap=0.25, shifts=1, batch_size=2,
                                                        device="cpu"))
    seen: list[tuple[int, int, np.ndarray]] = []
    full = sep.separate(stereo_noise, on_chunk=lambda a, b, x: seen.append((a, b, x.copy())))
    assert seen[0][0] == 0 and seen[-1][1] == stereo_noise.shape[1]
    assert len(seen) > 2, "finished regions must arrive while the rest is computed"
    for (a0, b0, _), (a1, _, _) in zip(seen, seen[1:]):
        assert b0 == a1
    streamed = np.concatenate([x for _, _, x in seen], axis=-1)
    np.testing.assert_array_equal(streamed, full)
    none = sep.separate(stereo_noise, keep_output=False)
    assert none is None


def test_batching_does_not_change_the_result(stereo_noise):
    a = Separator(PositionModel(), SeparationSettings(segment=1.0, batch_size=1, device="cpu")).separate(stereo_noise)
    b = Separator(PositionModel(), SeparationSettings(segment=1.0, batch_size=8, device="cpu")).separate(stereo_noise)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_exact_sum_puts_residual_in_other(stereo_noise):
    sep = Separator(PositionModel(), SeparationSettings(segment=1.0, exact_sum=True, device="cpu"))
    stems = sep.separate(stereo_noise)
    np.testing.assert_allclose(stems.sum(axis=0), stereo_noise, atol=1e-5)
    plain = Separator(PositionModel(), SeparationSettings(segment=1.0, device="cpu")).separate(stereo_noise)
    np.testing.assert_array_equal(stems[3], plain[3])  # vocals untouched, residual went to "other"


def test_shifts_are_seeded(stereo_noise):
    def run(seed):
        s = SeparationSettings(segment=1.0, shifts=2, seed=seed, device="cpu")
        return Separator(PositionModel(), s).separate(stereo_noise)

    np.testing.assert_array_equal(run(3), run(3))
    assert np.abs(run(3) - run(4)).max() > 1e-4


@pytest.mark.parametrize("shifts", [0, 1, 2])
def test_matches_reference_apply_model(shifts):
    """Same weights, segment, overlap and shift offsets as the Demucs project's apply_model: within 1e-4."""
    from reference import import_demucs

    import_demucs()
    import demucs.apply
    import demucs.hdemucs
    torch.manual_seed(0)
    model = demucs.hdemucs.HDemucs(["drums", "bass", "other", "vocals"], channels=4, segment=2.0,
                                   dconv_attn=9, dconv_lstm=9).eval()
    rng = np.random.default_rng(0)
    mix = (0.1 * rng.standard_normal((2, int(SR * 4.3)))).astype(np.float32)
    settings = SeparationSettings(segment=2.0, overlap=0.25, shifts=shifts, seed=11, batch_size=3, device="cpu")
    ours = Separator(model, settings).separate(mix)
    random.seed(11)  # the reference draws its shift offsets from the global `random`
    with torch.no_grad():
        ref = demucs.apply.apply_model(model, torch.from_numpy(mix)[None], shifts=shifts, split=True,
                                       overlap=0.25, segment=2.0)[0].numpy()
    assert np.abs(ours - ref).max() <= 1e-4


def test_cancel_mid_song_raises_and_stops(stereo_noise):
    token = CancelToken()
    calls = []

    def progress(p):
        calls.append(p.fraction)
        if p.fraction > 0.3:
            token.cancel()

    sep = Separator(PositionModel(), SeparationSettings(segment=0.5, batch_size=1, device="cpu"))
    with pytest.raises(Cancelled):
        sep.separate(stereo_noise, progress=progress, cancel=token)
    assert max(calls) < 1.0


def test_progress_reports_fraction_and_eta(stereo_noise):
    reports = []
    Separator(PositionModel(), SeparationSettings(segment=1.0, device="cpu")).separate(
        stereo_noise, progress=reports.append)
    fractions = [r.fraction for r in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any(r.eta is not None for r in reports)


class OomModel(PositionModel):
    """Fails like a GPU out of memory for segments longer than 1 s."""

    def forward(self, mix):
        if mix.shape[-1] > SR:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(mix)


def test_out_of_memory_retries_with_half_segment(stereo_noise):
    sep = Separator(OomModel(), SeparationSettings(segment=2.0, device="cpu"))
    reports = []
    stems = sep.separate(stereo_noise, progress=reports.append)
    notes = [p.message for p in reports if p.fallback]
    assert len(notes) == 1 and "out of memory" in notes[0] and "1.0 s" in notes[0]
    expected = Separator(PositionModel(), SeparationSettings(segment=1.0, device="cpu")).separate(stereo_noise)
    np.testing.assert_allclose(stems, expected, atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 0), np.float32), "empty"),
    (np.full((2, 100), np.nan, np.float32), "NaN"),
    (np.zeros((3, 100), np.float32), "channels"),
])
def test_bad_waveforms_are_rejected(bad, message):
    with pytest.raises(StemGUIError, match=message):
        Separator(ScaleModel(), SeparationSettings(device="cpu")).separate(bad)


def test_bad_settings_are_rejected():
    with pytest.raises(StemGUIError, match="overlap"):
        Separator(ScaleModel(), SeparationSettings(overlap=1.5))
    with pytest.raises(StemGUIError, match="not available"):
        Separator(ScaleModel(), SeparationSettings(device="cuda"))


def test_model_files_get_ordinary_permissions(tmp_path):
    """Weights and card are readable like any file the user writes (umask), not 0600 temp-file leftovers."""
    import os
    import stat

    from stemgui.models.card import card_path, save_model

    path = save_model(ScaleModel(), tmp_path / "m.safetensors", {"name": "m"})
    umask = os.umask(0)
    os.umask(umask)
    for f in (path, card_path(path)):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("shifts", [0, 1])
def test_padded_models_match_reference_apply_model(shifts):
    """A model with `valid_length` (Demucs v2) gets each segment padded with the audio around it and
    centre-trimmed, exactly like the reference's TensorChunk.padded + center_trim."""
    from stemgui.models.demucs import Demucs

    from reference import import_demucs

    import_demucs()
    import demucs.apply
    import demucs.demucs

    torch.manual_seed(0)
    ref = demucs.demucs.Demucs(["drums", "bass", "other", "vocals"], channels=8, depth=4, segment=1.5).eval()
    ours = Demucs(["drums", "bass", "other", "vocals"], channels=8, depth=4, segment=1.5).eval()
    ours.load_state_dict(ref.state_dict())
    assert ours.valid_length(1000) > 1000
    rng = np.random.default_rng(0)
    mix = (0.1 * rng.standard_normal((2, int(SR * 3.7)))).astype(np.float32)
    out = Separator(ours, SeparationSettings(shifts=shifts, seed=2, batch_size=2, device="cpu")).separate(mix)
    random.seed(2)
    with torch.no_grad():
        expected = demucs.apply.apply_model(ref, torch.from_numpy(mix)[None], shifts=shifts, split=True,
                                            overlap=0.25)[0].numpy()
    assert np.abs(out - expected).max() <= 1e-4


@pytest.mark.parametrize("seconds", [1.5, 3.0])
def test_a_last_job_of_a_few_samples_runs_with_the_audio_around_it(seconds):
    """At these lengths the last segment is 1-4 samples long; a small HDemucs cannot normalise that alone."""
    from stemgui.models.hdemucs import HDemucs

    torch.manual_seed(0)
    model = HDemucs(["drums", "bass", "other", "vocals"], channels=4, depth=3, nfft=64, segment=0.5).eval()
    with pytest.raises(ValueError):  # what the engine used to hand it
        with torch.no_grad():
            model(torch.zeros(1, 2, 3))
    mix = 0.1 * np.random.default_rng(0).standard_normal((2, int(seconds * 44100))).astype(np.float32)
    out = Separator(model).separate(mix)
    assert out.shape == (4, 2, mix.shape[1]) and np.isfinite(out).all()
