"""scripts/ship_listening_models.py: study runs copied as float16 models for the shipped listening test."""

from __future__ import annotations

import json
import shutil

import numpy as np
import soundfile as sf

from stemgui.models.card import card_path, load_model

from helpers import load_script


def test_study_runs_are_shipped_as_float16_cards_with_the_measured_gap(tmp_path, tiny_model_path):
    run = tmp_path / "ablation.study" / "runs" / "l1_seed1"
    run.mkdir(parents=True)
    shutil.copy(tiny_model_path, run / "l1_seed1.safetensors")
    shutil.copy(card_path(tiny_model_path), run / "l1_seed1.json")
    song = tmp_path / "song.wav"
    sf.write(song, 0.1 * np.random.default_rng(0).standard_normal((44100, 2)), 44100)
    script = load_script("scripts/ship_listening_models.py")
    out = tmp_path / "models"
    assert script.main([str(tmp_path / "ablation.study"), "l1_seed1=ablation-l1", "--out", str(out),
                        "--song", str(song), "--seconds", "1"]) == 0
    model, card = load_model(out / "ablation-l1.safetensors")
    assert card["name"] == "ablation-l1" and card["stored_dtype"] == "float16"
    assert card["origin"] == {"study": "ablation", "run": "l1_seed1",
                              "note": "a study run shipped for the example listening test, stored in float16"}
    gap = card["stored_dtype_check"]["sdr_of_float16_vs_float32_db"]
    assert set(gap) == {"drums", "bass", "other", "vocals"} and min(gap.values()) > 30
    assert json.loads(card_path(out / "ablation-l1.safetensors").read_text())["sha256"] == card["sha256"]


def test_a_trained_model_is_shipped_as_the_float16_default_with_its_training_card(tmp_path, tiny_model_path):
    song = tmp_path / "song.wav"
    sf.write(song, 0.1 * np.random.default_rng(1).standard_normal((44100, 2)), 44100)
    trained = json.loads(card_path(tiny_model_path).read_text())
    script = load_script("scripts/ship_default_model.py")
    out = tmp_path / "resources" / "default.safetensors"
    out.parent.mkdir()
    assert script.main([str(tiny_model_path), "--song", str(song), "--seconds", "1", "--out", str(out)]) == 0
    model, card = load_model(out)
    assert card["name"] == "default" and card["stored_dtype"] == "float16"
    assert card["training"] == trained["training"]  # the run's story travels with the weights
    assert min(card["stored_dtype_check"]["sdr_of_float16_vs_float32_db"].values()) > 30
    assert out.stat().st_size < tiny_model_path.stat().st_size * 0.6
