"""One owner of fitting a model's estimates to the references (rate, channels, length): evaluate and study."""

import numpy as np

from stemgui.eval.fit import fit_estimate, separate_like


def test_fit_estimate_folds_channels_and_trims_or_pads():
    out = np.arange(2 * 2 * 10, dtype=np.float32).reshape(2, 2, 10)
    mono = fit_estimate(out, 44100, 44100, 1, 12)
    assert mono.shape == (2, 1, 12)
    np.testing.assert_allclose(mono[:, 0, :10], out.mean(axis=1))
    assert not mono[:, :, 10:].any()
    np.testing.assert_array_equal(fit_estimate(out, 44100, 44100, 2, 7), out[..., :7])


def test_fit_estimate_resamples_to_the_reference_rate():
    t = np.arange(44100) / 44100
    out = np.stack([np.sin(2 * np.pi * 440 * t)] * 2)[None].astype(np.float32)
    fitted = fit_estimate(out, 44100, 16000, 2, 16000)
    assert fitted.shape == (1, 2, 16000)
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(fitted[0, 0, 100:-100] - ref[100:-100]).max() < 1e-2


class HalfSeparator:
    """Stereo 44.1 kHz 'model': two stems, half the mixture each."""

    samplerate, audio_channels, sources = 44100, 2, ("a", "b")

    def separate(self, wav):
        self.seen = wav.shape
        return np.stack([0.5 * wav, 0.5 * wav])


def test_separate_like_converts_in_and_out():
    sep = HalfSeparator()
    mono = np.ones((1, 22050), np.float32)
    out = separate_like(sep, mono, 22050, 1, 22050)
    assert sep.seen[0] == 2 and abs(sep.seen[1] - 44100) <= 1  # the model got stereo at its rate
    assert out.shape == (2, 1, 22050)
    np.testing.assert_allclose(out[:, :, 1000:-1000], 0.5, atol=1e-3)
