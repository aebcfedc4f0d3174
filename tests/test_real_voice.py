"""The real-voice check: held-out MIR-1K singers as a two-stem set in evaluate, the trainer and the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemgui.data import mir1k
from stemgui.eval import metrics, real_voice

from helpers import make_musdb, tiny_config

MIR_RATE = 16000


def _clip(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """(samples, 2) at 16 kHz: left a drum-ish accompaniment with a bass line, right a vibrato 'voice'."""
    t = np.arange(int(seconds * MIR_RATE)) / MIR_RATE
    accompaniment = 0.2 * np.sin(2 * np.pi * rng.uniform(60, 90) * t) + \
        0.2 * rng.standard_normal(t.size) * (np.mod(t, 0.5) < 0.05)
    voice = 0.25 * np.sin(2 * np.pi * rng.uniform(220, 330) * t + 4 * np.sin(2 * np.pi * 5 * t)) * (np.mod(t, 1.0) < 0.8)
    return np.stack([accompaniment, voice], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def fake_mir1k(tmp_path_factory) -> Path:
    """MIR-1K layout with two held-out singers' clips and one training singer's (16 kHz FLAC/WAV)."""
    root = tmp_path_factory.mktemp("mir1k")
    (root / "Wavfile").mkdir()
    rng = np.random.default_rng(3)
    for name, seconds in (("bobon_1_01.wav", 1.5), ("jmzen_2_03.flac", 2.5), ("amy_4_01.wav", 1.0)):
        sf.write(root / "Wavfile" / name, _clip(rng, seconds), MIR_RATE, subtype="PCM_16")
    return root


def test_held_out_clips_are_the_named_singers_only(fake_mir1k):
    clips = mir1k.real_voice_clips(fake_mir1k)
    assert [c.name for c in clips] == ["bobon_1_01.wav", "jmzen_2_03.flac"]
    assert mir1k.real_voice_clips(fake_mir1k, limit=1) == [clips[0]]
    refs = mir1k.read_two_stem(clips[1])
    audio, _ = sf.read(str(clips[1]), dtype="float32")
    assert refs.shape == (2, 2, int(round(len(audio) * 44100 / MIR_RATE)))  # (vocals, accompaniment) at 44.1 kHz
    voice_energy = float((refs[0] ** 2).sum())
    assert voice_energy > float((refs[1] ** 2).sum()) * 0.1 and np.array_equal(refs[0, 0], refs[0, 1])


def test_gnsdr_is_the_length_weighted_nsdr_and_the_mixture_scores_zero(fake_mir1k):
    clips = mir1k.real_voice_clips(fake_mir1k)
    sources = ["drums", "bass", "other", "vocals"]

    def leave_as_is(mix):  # vocals = the mixture, nothing in the other stems
        return np.stack([np.zeros_like(mix)] * 3 + [mix])

    result = real_voice.evaluate_real_voice(leave_as_is, sources, clips)
    assert result.gnsdr()["vocals"] == pytest.approx(0.0, abs=1e-3)

    def half_right(mix):  # a fixed split: vocals get half the mixture, drums and other a quarter each
        return np.stack([0.25 * mix, np.zeros_like(mix), 0.25 * mix, 0.5 * mix])

    result = real_voice.evaluate_real_voice(half_right, sources, clips)
    expected = []
    for clip in clips:
        refs = mir1k.read_two_stem(clip)
        mix = refs.sum(axis=0)
        est = np.stack([0.5 * mix, 0.5 * mix])  # accompaniment = drums + bass + other
        expected.append(metrics.nsdr(refs, est, mix))
    lengths = np.array(result.lengths, dtype=float)
    want = (np.array(expected) * lengths[:, None]).sum(axis=0) / lengths.sum()
    got = result.gnsdr()
    assert got["vocals"] == pytest.approx(want[0], abs=2e-3) and got["accompaniment"] == pytest.approx(want[1], abs=2e-3)
    assert result.summary()["clips"] == 2 and result.lengths[1] > result.lengths[0]


def test_a_model_without_vocals_is_refused():
    with pytest.raises(Exception, match="no vocals"):
        real_voice.two_stem_estimate(np.zeros((2, 2, 10)), ["drums", "bass"])


def test_evaluate_cli_reports_the_real_voice_check(fake_mir1k, tiny_model_path, tmp_path, capsys):
    from stemgui.cli import main

    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(tiny_model_path), "--real-voice", "--mir1k", str(fake_mir1k),
                 "--out", str(out), "--no-progress"])
    assert code == 0
    data = json.loads((out / "real_voice.json").read_text())
    summary = data["summary"]["tiny"]
    assert summary["clips"] == 2 and set(summary["gnsdr"]) == {"vocals", "accompaniment"}
    assert all(np.isfinite(v) for v in summary["gnsdr"].values())
    assert [row["clip"] for row in data["clips"]["tiny"]] == ["bobon_1_01.wav", "jmzen_2_03.flac"]
    printed = capsys.readouterr().out
    assert "| tiny |" in printed and "vocals GNSDR" in (out / "real_voice.md").read_text()


def test_evaluate_cli_needs_something_to_score(tiny_model_path, tmp_path, capsys):
    from stemgui.cli import main

    assert main(["evaluate", "--model", str(tiny_model_path), "--out", str(tmp_path / "e")]) == 1
    assert "--real-voice" in capsys.readouterr().err


def test_trainer_validation_logs_it_and_the_card_carries_it(fake_mir1k, tmp_path):
    from stemgui.models.card import load_model
    from stemgui.train.trainer import Trainer

    dataset = make_musdb(tmp_path / "musdb", tracks=3, seconds=2.0)
    cfg = tiny_config(dataset, tmp_path / "m.safetensors", preset="l1", steps=2, batch=2)
    cfg.data.real_voice = True
    cfg.data.real_voice_dir = str(fake_mir1k)
    cfg.data.real_voice_clips = 0
    result = Trainer(cfg).run()
    log = [json.loads(line) for line in (tmp_path / "m.run" / "log.jsonl").read_text().splitlines()]
    valid = [r for r in log if r["event"] == "valid"]
    assert valid and all(set(r["real_voice"]["gnsdr"]) == {"vocals", "accompaniment"} for r in valid)
    assert valid[-1]["real_voice"]["clips"] == 2
    _, card = load_model(result.out)
    assert card["metrics"]["real_voice"]["gnsdr"] == valid[-1]["real_voice"]["gnsdr"]
