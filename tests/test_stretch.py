"""Rubber Band tempo/transpose: lengths, pitches, alignment, glitch-free live changes, the offline renderer."""

import numpy as np
import pytest

from stemgui.audio.stretch import Stretcher, pitch_scale
from stemgui.mix import LaneMix, Playback, mix_as_heard, render_mix

SR = 44100


def sine(freq=440.0, seconds=4.0, amp=0.2):
    t = np.arange(int(seconds * SR)) / SR
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x, x])


def peak_hz(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spec) * SR / x.size


def test_pitch_scale():
    assert pitch_scale(12) == pytest.approx(2.0)
    assert pitch_scale(-12) == pytest.approx(0.5)
    assert pitch_scale(0.5) == pytest.approx(2 ** (1 / 24))  # 50 cents


def test_render_mix_identity_is_the_plain_mix():
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, (3, 2, 5000)).astype(np.float32)
    lanes = [LaneMix(mute=True), LaneMix(gain=0.5, pan=0.2), LaneMix()]
    np.testing.assert_array_equal(render_mix(audio, lanes, SR), mix_as_heard(audio, lanes))
    np.testing.assert_array_equal(render_mix(audio, lanes, SR, region=(100, 900)), mix_as_heard(audio, lanes, 100, 900))


@pytest.mark.parametrize("tempo", [0.5, 0.9, 1.5])
def test_tempo_changes_length_not_pitch(tempo):
    audio = sine()[None]
    out = render_mix(audio, [LaneMix()], SR, Playback(tempo, 0.0))
    assert out.shape == (2, int(round(audio.shape[2] / tempo)))
    assert peak_hz(out[0, SR // 2: SR // 2 + SR]) == pytest.approx(440, abs=3)


@pytest.mark.parametrize("semitones", [-12, -2.5, 7])
def test_transpose_changes_pitch_not_length(semitones):
    audio = sine()[None]
    out = render_mix(audio, [LaneMix()], SR, Playback(1.0, semitones))
    assert out.shape == (2, audio.shape[2])
    assert peak_hz(out[0, SR // 2: SR // 2 + SR]) == pytest.approx(440 * pitch_scale(semitones), rel=0.01)


def test_stretched_output_stays_aligned_to_song_time():
    clicks = np.zeros((1, 2, 4 * SR), np.float32)
    clicks[0, :, SR::SR] = 1.0
    for tempo in (0.5, 1.25):
        out = render_mix(clicks, [LaneMix()], SR, Playback(tempo, 0.0))
        for k in (1, 2, 3):
            lo, hi = int((k - 0.2) * SR / tempo), int((k + 0.2) * SR / tempo)
            at = (lo + np.argmax(np.abs(out[0, lo:hi]))) * tempo / SR
            assert at == pytest.approx(k, abs=0.01)  # within 10 ms of song time


def test_out_of_range_settings_are_refused():
    with pytest.raises(ValueError, match="tempo"):
        render_mix(sine()[None], [LaneMix()], SR, Playback(2.0, 0))
    with pytest.raises(ValueError, match="transpose"):
        render_mix(sine()[None], [LaneMix()], SR, Playback(1.0, 13))


def test_live_changes_every_block_do_not_click():
    x = sine(seconds=6.0)
    st = Stretcher(SR, 2, engine="faster")
    st.prime(None)
    out = []
    for i, a in enumerate(range(0, x.shape[1], 1024)):
        st.tempo = 1.0 + 0.5 * np.sin(i / 20)
        st.semitones = 3 * np.sin(i / 33)
        out.append(st.feed(x[:, a:a + 1024]))
    y = np.concatenate(out, axis=1)[0, 4096:]
    # a 0.2-amplitude sine at up to 440 * 2**(3/12) Hz moves at most ~0.015 per sample; a click would jump far more
    assert np.abs(np.diff(y)).max() < 0.05
    assert np.abs(y).max() < 0.3
