"""Two-stem material for a four-stem model: grouping, which steps read it, the trainer's loop and the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemgui.errors import ConfigError
from stemgui.train.grouping import TWO_STEM_SOURCES, TwoStemSteps, group_stems, grouping_matrix

from helpers import load_script, make_musdb, tiny_config

FOUR = ["drums", "bass", "other", "vocals"]


@pytest.fixture(scope="module")
def mir1k_dir(tmp_path_factory) -> Path:
    """MIR-1K layout: a held-out singer (bobon) and two training singers, 16 kHz stereo (left accompaniment)."""
    root = tmp_path_factory.mktemp("mir1k") / "mir"
    (root / "Wavfile").mkdir(parents=True)
    rng = np.random.default_rng(5)
    t = np.arange(16000) / 16000
    for name in ("bobon_1_01.wav", "amy_1_01.wav", "amy_1_02.wav", "ariel_2_01.wav"):
        voice = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 400) * t)
        accompaniment = 0.2 * rng.standard_normal(t.size)
        sf.write(root / "Wavfile" / name, np.stack([accompaniment, voice], 1).astype(np.float32), 16000)
    return root


def test_the_grouping_sums_everything_but_vocals_into_the_accompaniment():
    matrix = grouping_matrix(FOUR)
    assert TWO_STEM_SOURCES == ["accompaniment", "vocals"]
    assert matrix.tolist() == [[1, 1, 1, 0], [0, 0, 0, 1]]
    estimate = torch.randn(2, 4, 2, 50)
    grouped = group_stems(estimate, matrix)
    assert grouped.shape == (2, 2, 2, 50)
    torch.testing.assert_close(grouped[:, 0], estimate[:, :3].sum(1))
    torch.testing.assert_close(grouped[:, 1], estimate[:, 3])
    six = ["drums", "bass", "other", "vocals", "guitar", "piano"]
    assert grouping_matrix(six).tolist() == [[1, 1, 1, 0, 1, 1], [0, 0, 0, 1, 0, 0]]
    with pytest.raises(ConfigError, match="vocals stem"):
        grouping_matrix(["drums", "bass", "other"])


def test_every_nth_step_is_a_two_stem_step():
    steps = TwoStemSteps(3)
    assert [s for s in range(10) if steps(s)] == [2, 5, 8]
    assert steps.count(10) == 3 and steps.count(9) == 3 and steps.count(8) == 2
    off = TwoStemSteps(0)
    assert not any(off(s) for s in range(10)) and off.count(10) == 0
    with pytest.raises(ConfigError):
        TwoStemSteps(1)


def test_the_settings_go_together(tmp_path):
    cfg = tiny_config(tmp_path, tmp_path / "m.safetensors")
    cfg.data.two_stem_every = 4
    with pytest.raises(ConfigError, match="go together"):
        cfg.validate()
    cfg.data.two_stem_dataset = str(tmp_path)
    cfg.data.two_stem_every = 1
    with pytest.raises(ConfigError, match="two_stem_every = 1"):
        cfg.validate()


def test_the_trainer_reads_real_pairs_on_their_steps_and_the_card_says_so(mir1k_dir, tmp_path):
    from stemgui.models.card import load_model
    from stemgui.train.data import StepMixedDataset
    from stemgui.train.trainer import Trainer

    dataset = make_musdb(tmp_path / "musdb", tracks=3, seconds=2.0)
    cfg = tiny_config(dataset, tmp_path / "m.safetensors", preset="l1+stft+gan", steps=4, batch=2)
    cfg.data.two_stem_dataset = str(mir1k_dir)
    cfg.data.two_stem_every = 2
    trainer = Trainer(cfg)
    assert sorted(t.name for t in trainer.two_stem_tracks) == ["amy_1_01", "amy_1_02", "ariel_2_01"]  # no bobon
    data = trainer._train_dataset()
    assert isinstance(data, StepMixedDataset)
    assert data[0][1].shape[0] == 4 and data[1][1].shape[0] == 4  # step 0: the four-stem dataset
    mix, stems = data[2]  # step 1: a real pair, (accompaniment, vocals), mixture = their sum
    assert stems.shape == (2, 2, int(0.5 * 44100))
    torch.testing.assert_close(mix, stems.sum(0))

    result = trainer.run()
    log = [json.loads(line) for line in (tmp_path / "m.run" / "log.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in log if r["event"] == "train"}
    assert [s for s, r in sorted(steps.items()) if r.get("two_stem")] == [2, 4]  # logged after steps 1 and 3
    assert all("adv" not in steps[s] and "d_loss" not in steps[s] for s in (2, 4))  # D sits those out
    assert "adv" in steps[3] and "d_loss" in steps[3]
    assert all(np.isfinite(r["loss"]) for r in steps.values())
    _, card = load_model(result.out)
    assert card["training"]["data"]["two_stem"] == {"dataset": str(mir1k_dir), "every": 2, "steps": 2, "tracks": 3}


def test_a_model_without_vocals_refuses_two_stem_material(mir1k_dir, tmp_path):
    from stemgui.train.trainer import Trainer

    dataset = make_musdb(tmp_path / "musdb", tracks=3, seconds=2.0)
    cfg = tiny_config(dataset, tmp_path / "m.safetensors", preset="l1", steps=2, batch=2)
    cfg.data.sources = ["drums", "bass", "other"]
    cfg.data.two_stem_dataset = str(mir1k_dir)
    cfg.data.two_stem_every = 2
    with pytest.raises(ConfigError, match="vocals stem"):
        Trainer(cfg)


def test_an_ab_arm_can_change_the_training_config(tmp_path):
    """scripts/data_ab.py: `train:` items go to the training config, the rest to the song generator."""
    data_ab = load_script("scripts/data_ab.py")
    synth, train = data_ab.arm_settings("production=false,train:data.two_stem_every=2,"
                                        "train:data.two_stem_dataset=/x/mir")
    assert synth == {"production": "false"}  # coerced by the generator's settings_from
    assert train == {"data.two_stem_every": "2", "data.two_stem_dataset": "/x/mir"}
    assert data_ab.arm_settings("") == ({}, {})
    assert data_ab.yaml_value("2") == 2 and data_ab.yaml_value("/x/mir") == "/x/mir"


def test_an_ab_judges_the_vocals_stem_on_instrumentals(tmp_path):
    """scripts/data_ab.py --instrumental-songs: the vocals estimate's level against the mix, and its column."""
    data_ab = load_script("scripts/data_ab.py")
    root = make_musdb(tmp_path / "inst", tracks=2, seconds=1.0, subset="test")

    class Fixed:
        """A 'separator' whose vocals are the mixture at a fixed gain (or silence)."""

        sources = ["drums", "bass", "other", "vocals"]

        def __init__(self, gain: float) -> None:
            self.gain = gain

        def separate(self, mix):
            out = np.zeros((4, *mix.shape), dtype=np.float32)
            out[3] = self.gain * mix
            return out

    assert data_ab.vocals_on_instrumentals(Fixed(0.1), root) == pytest.approx(-20.0, abs=0.01)
    assert data_ab.vocals_on_instrumentals(Fixed(0.0), root) == -80.0

    def scores(vocals_db: float) -> dict:
        return {"real_voice": {"gnsdr": {"vocals": 4.0, "accompaniment": 5.0}},
                "synthetic_usdr": dict.fromkeys(["drums", "bass", "other", "vocals"], 2.0),
                "vocals_on_instrumentals_db": vocals_db}

    md = data_ab.table({"A": {"settings": {}, "scores": scores(-17.5)},
                        "B": {"settings": {"instrumental": 0.2}, "scores": scores(-24.0)}})
    assert "vocals on instrumentals" in md.splitlines()[0]
    assert md.splitlines()[-1].endswith("| -6.50 |")
    plain = {k: v for k, v in scores(0).items() if k != "vocals_on_instrumentals_db"}
    assert "instrumentals" not in data_ab.table({"A": {"settings": {}, "scores": plain}})


def test_an_ab_reports_drums_in_vocals_and_paired_intervals():
    """scripts/data_ab.py: the drums-in-vocals column and, from per-song scores, one interval line per column."""
    data_ab = load_script("scripts/data_ab.py")

    def scores(shift: float) -> dict:
        songs = [[2.0 + shift + 0.01 * k] * 4 for k in range(6)]
        return {"real_voice": {"gnsdr": {"vocals": 4.0, "accompaniment": 5.0}},
                "synthetic_usdr": dict.fromkeys(["drums", "bass", "other", "vocals"], 2.0 + shift),
                "synthetic_drums_in_vocals_db": -12.0 - shift, "synthetic_usdr_per_song": songs,
                "synthetic_drums_in_vocals_per_song": [-12.0 - shift - 0.1 * k for k in range(6)]}

    arms = {"A": {"settings": {}, "scores": scores(0.0)}, "B": {"settings": {"x": 1}, "scores": scores(0.5)}}
    md = data_ab.table(arms)
    assert "drums in synthetic vocals" in md.splitlines()[0] and md.splitlines()[-1].endswith("| -0.50 |")
    lines = data_ab.intervals(arms)
    assert len(lines) == 5
    assert lines[0].startswith("- B's synthetic drums uSDR: 0.50 dB higher than A")
    assert "drums in the synthetic vocals" in lines[-1] and "0.50 dB lower than A" in lines[-1]
    del arms["A"]["scores"]["synthetic_usdr_per_song"]  # an arm judged before per-song scores were kept
    assert data_ab.intervals(arms) == []
