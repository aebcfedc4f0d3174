"""scripts/card_add_metrics.py: held-out scores, the real-voice check and notes land in a card atomically."""

from __future__ import annotations

import json
import sys

import pytest

from helpers import load_script


def _script():
    return load_script("scripts/card_add_metrics.py")


def test_scores_and_the_real_voice_check_go_into_the_card(tmp_path, monkeypatch):
    card = tmp_path / "m.json"
    card.write_text(json.dumps({"name": "m", "sha256": "abc", "metrics": {"valid_sdr_mean": 1.0}}))
    summary = tmp_path / "summary.csv"
    summary.write_text("system,source,SDR,uSDR,SI-SDR,SIR,SAR,ISR\n"
                       "m,vocals,1.5,2.0,0.5,3,4,5\nm,drums,2.5,3.0,1.5,3,4,5\nother,vocals,9,9,9,9,9,9\n")
    voice = tmp_path / "real_voice.json"
    voice.write_text(json.dumps({"summary": {"m": {"gnsdr": {"vocals": 3.7, "accompaniment": 4.2},
                                                   "usdr_mean": {"vocals": 3.5, "accompaniment": 4.0},
                                                   "clips": 62, "seconds": 491.3}}, "clips": {}}))
    notes = tmp_path / "notes.md"
    notes.write_text("It separates.\n")
    leakage = tmp_path / "leakage.csv"
    leakage.write_text("system,estimate,source_in_it,level_db\nm,vocals,drums,-13.441\nm,vocals,bass,-12.7\n"
                       "oracle-IRM,vocals,drums,-24.5\nother,vocals,drums,-1\n")
    monkeypatch.setattr(sys, "argv", ["x", str(card), "--summary", str(summary), "--system", "m",
                                      "--test-set", "12 songs", "--real-voice", str(voice), "--notes", str(notes),
                                      "--leakage", str(leakage)])
    _script().main()
    out = json.loads(card.read_text())
    assert out["sha256"] == "abc" and out["metrics"]["valid_sdr_mean"] == 1.0
    assert out["metrics"]["test"]["model"]["vocals"]["SDR"] == 1.5 and out["metrics"]["test_usdr_mean"] == 2.5
    rv = out["metrics"]["real_voice"]
    assert rv["gnsdr_db"] == {"vocals": 3.7, "accompaniment": 4.2} and rv["clips"] == 62
    assert out["notes"] == "It separates."
    leak = out["metrics"]["leakage"]
    assert leak["mean_db"] == {"vocals": {"drums": -13.44, "bass": -12.7}}
    assert leak["ideal_ratio_mask_db"] == {"vocals": {"drums": -24.5}} and leak["set"] == "12 songs"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_missing_system_is_one_clear_line(tmp_path):
    voice = tmp_path / "real_voice.json"
    voice.write_text(json.dumps({"summary": {"a": {}}}))
    with pytest.raises(SystemExit, match="no real-voice summary for system 'b'"):
        _script().real_voice_block(voice, "b")
