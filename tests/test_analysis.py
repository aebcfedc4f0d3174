"""Tempo and key estimation on signals whose answer is known: clicks at a set BPM, chord progressions."""

import numpy as np
import pytest

from stemgui.audio.analysis import Analysis, Key, analyse, estimate_key, estimate_tempo

SR = 44100


def clicks(bpm: float, seconds: float = 20.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 0.01 * rng.standard_normal(int(seconds * SR)).astype(np.float32)
    period = 60.0 / bpm
    for k in range(int(seconds / period)):
        i = int(k * period * SR)
        burst = rng.standard_normal(400).astype(np.float32) * np.exp(-np.arange(400) / 60.0).astype(np.float32)
        x[i:i + 400] += 0.8 * burst[: x[i:i + 400].size]
    return np.stack([x, x])


def chords(progression, seconds_per_chord: float = 1.0, repeats: int = 4) -> np.ndarray:
    """Each chord a list of MIDI notes, rendered as decaying harmonic tones."""
    t = np.arange(int(seconds_per_chord * SR)) / SR
    env = np.exp(-t * 1.5)
    blocks = []
    for _ in range(repeats):
        for notes in progression:
            block = np.zeros_like(t)
            for m in notes:
                f = 440 * 2 ** ((m - 69) / 12)
                block += sum(np.sin(2 * np.pi * f * h * t) / h ** 1.5 for h in range(1, 5))
            blocks.append(block * env)
    x = (0.1 * np.concatenate(blocks)).astype(np.float32)
    return np.stack([x, x])


C_MAJOR = [[48, 60, 64, 67], [53, 57, 60, 65], [55, 59, 62, 67], [48, 60, 64, 67]]  # C F G C
A_MINOR = [[45, 57, 60, 64], [50, 57, 62, 65], [52, 56, 59, 64], [45, 57, 60, 64]]  # Am Dm E Am


@pytest.mark.parametrize("bpm", [72.0, 100.0, 128.0, 150.0])
def test_tempo_of_clicks(bpm):
    est, conf = estimate_tempo(clicks(bpm), SR)
    assert est == pytest.approx(bpm, rel=0.02), est
    assert conf > 0.2


def test_silence_has_no_tempo():
    assert estimate_tempo(np.zeros((2, SR * 10), np.float32), SR) == (0.0, 0.0)


def test_key_of_chord_progressions():
    assert estimate_key(chords(C_MAJOR), SR).name == "C major"
    assert estimate_key(chords(A_MINOR), SR).name == "A minor"
    up_two = [[n + 2 for n in c] for c in C_MAJOR]
    assert estimate_key(chords(up_two), SR).name == "D major"


def test_transposed_key_name_and_description():
    assert Key(9, "minor").transposed(-2).name == "G minor"
    assert Key(11, "major").transposed(1).name == "C major"
    a = analyse(np.concatenate([clicks(100.0, 16.0)[:, :16 * SR], ], axis=1) + chords(C_MAJOR)[:, :16 * SR], SR)
    assert a.bpm == pytest.approx(100.0, rel=0.03)
    assert a.describe(tempo=0.9, semitones=2).endswith("D major")
    assert "≈ 90 BPM" in a.describe(tempo=0.9)


# ---- the key estimate of issue 13's leftovers: tuning, percussion, stems, confidence and a named runner-up
def detuned(progression, cents: float):
    return [[n + cents / 100 for n in chord] for chord in progression]


@pytest.mark.parametrize("cents", [30.0, -40.0])
def test_tuning_is_estimated_and_a_detuned_song_keeps_its_key(cents):
    from stemgui.audio.analysis import _mono, pitch_spectrogram

    x = chords(detuned(C_MAJOR, cents))
    _spec, tuning = pitch_spectrogram(_mono(x, SR))
    assert tuning == pytest.approx(cents / 100, abs=0.03)
    key = estimate_key(x, SR)
    assert key.name == "C major" and key.confidence > 0.8


def test_loud_drums_do_not_move_the_key():
    x = chords(A_MINOR)[:, :16 * SR] + 3.0 * clicks(100.0, 16.0)[:, :16 * SR]
    assert estimate_key(x, SR).name == "A minor"


def test_key_from_the_pitched_stems_and_tempo_from_the_mix():
    from stemgui.audio.analysis import analyse_key, stems_mono_sum

    drums = clicks(100.0, 16.0)[:, :16 * SR]
    harmony = chords(A_MINOR)[:, :16 * SR]
    a = analyse(drums + harmony, SR, pitched=harmony)
    assert a.key_source == "stems" and a.key.name == "A minor"
    assert a.bpm == pytest.approx(100.0, rel=0.03)  # from the mix: the stems have no drums
    lanes = np.stack([drums + harmony, drums, harmony, 0.5 * harmony])  # mix, drums, other, vocals
    mono = stems_mono_sum(lanes, [2, 3], SR)
    np.testing.assert_allclose(mono, 1.5 * harmony.mean(axis=0), atol=1e-6)
    assert analyse_key(mono, SR).name == "A minor"
    assert stems_mono_sum(lanes, [2], SR, max_seconds=4.0).shape == (4 * SR,)  # the middle only


def test_confidence_is_a_probability_and_a_close_runner_up_is_named():
    from stemgui.audio.analysis import ALTERNATIVE_RATIO, KEY_TEMPERATURE, key_from_scores

    scores = np.full((2, 12), 0.1)
    scores[0, 0] = 0.90  # C major
    clear = key_from_scores(scores)
    assert clear.name == "C major" and clear.alternative is None and 0.9 < clear.confidence <= 1.0
    close = scores.copy()
    close[1, 9] = 0.90 - 0.5 * KEY_TEMPERATURE  # A minor, exp(-0.5) ≈ 0.61 as likely
    key = key_from_scores(close)
    assert key.name == "C major" and key.alternative is not None and key.alternative.name == "A minor"
    assert np.exp(-0.5) > ALTERNATIVE_RATIO
    assert key.confidence + key.alternative.confidence <= 1.0 and key.confidence < clear.confidence
    assert key.label == "C major (or A minor)"
    assert key.transposed(-3).label == "A major (or F# minor)"
    a = Analysis(120.0, 0.8, key)
    assert a.describe(semitones=2) == "≈ 120 BPM · D major (or B minor)"
    assert key_from_scores(np.zeros((2, 12))).confidence == 0.0  # silence: no key claimed


def test_a_clear_cadence_is_confident():
    key = estimate_key(chords(C_MAJOR), SR)
    assert key.name == "C major" and key.confidence > 0.8 and key.alternative is None
