"""scripts/listen_report.py: the stem figures used to describe a model on real songs without true stems."""

from __future__ import annotations

import numpy as np

from helpers import load_script


def _load():
    return load_script("scripts/listen_report.py")


def test_describe_credits_hits_to_the_stem_that_holds_them():
    report = _load()
    rate = 44100
    rng = np.random.default_rng(0)
    t = np.arange(4 * rate) / rate
    tone = 0.2 * np.sin(2 * np.pi * 110 * t)  # steady bass: no onsets above 1 kHz
    hits = np.zeros_like(t)
    for start in range(0, len(t) - 2000, rate // 4):  # 16 noise bursts
        hits[start:start + 2000] = rng.standard_normal(2000) * np.exp(-np.arange(2000) / 300)
    silent = np.zeros_like(t)
    stems = np.stack([np.stack([s, s]) for s in (hits, tone, silent)]).astype(np.float32)
    figures = report.describe(stems.sum(axis=0), stems, ["drums", "bass", "vocals"], rate)
    assert figures["drums"]["flux_share"] > 0.95
    assert figures["bass"]["flux_share"] < 0.01
    assert figures["vocals"]["share_db"] < -100  # nothing at all
    assert figures["bass"]["band_db"]["0-250Hz"] > -0.5  # the bass holds the low band
    assert 0.0 < figures["drums"]["active"] <= 1.0


def test_floor_is_the_level_of_a_stem_in_its_pauses():
    """A voice that sings every other second, with a leak 30 dB under the mixture in its pauses."""
    report = _load()
    rate = 8000
    rng = np.random.default_rng(2)
    t = np.arange(10 * rate) / rate
    band = 0.3 * rng.standard_normal(len(t))
    sung = (np.floor(t) % 2 == 0).astype(float)
    voice = 0.3 * np.sin(2 * np.pi * 440 * t) * sung + 10 ** (-30 / 20) * 0.3 * rng.standard_normal(len(t)) * (1 - sung)
    stems = np.stack([np.stack([s, s]) for s in (band, voice)]).astype(np.float32)
    figures = report.describe(stems.sum(axis=0), stems, ["other", "vocals"], rate)
    assert -31.5 < figures["vocals"]["floor_db"] < -28.5
    assert figures["other"]["floor_db"] > -5  # never silent


def test_figure_is_written(tmp_path):
    report = _load()
    rate = 8000
    wav = np.random.default_rng(1).standard_normal((2, 2, 3 * rate)).astype(np.float32) * 0.1
    out = tmp_path / "song.png"
    report.figure(out, wav.sum(axis=0), wav, ["a", "b"], rate, "test")
    assert out.stat().st_size > 10_000
