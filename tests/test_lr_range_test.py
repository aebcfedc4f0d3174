"""scripts/lr_range_test.py: the reading of the curve, and a tiny study's runs tested end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import load_script, make_musdb


def test_the_suggestion_is_a_tenth_of_the_rate_at_the_smoothed_minimum():
    lrt = load_script("scripts/lr_range_test.py")
    rates = lrt.geometric_rates(1e-5, 1e-1, 81)
    assert rates[0] == pytest.approx(1e-5) and rates[-1] == pytest.approx(1e-1)
    x = np.log10(rates)  # a loss flat at 1 up to 1e-4, falling to 0.2 at 1e-2, then blowing up
    losses = list(np.where(x < -4, 1.0, np.where(x <= -2, 1.0 - 0.4 * (x + 4), 0.2 + 5 * (x + 2) ** 2)))
    found = lrt.suggestion(rates, losses)
    # the smoothing lags a few steps behind the raw curve's minimum at 1e-2
    assert 1e-2 <= found["lr_at_min"] <= 2e-2
    assert found["suggested_lr"] == pytest.approx(found["lr_at_min"] / 10)
    assert lrt.suggestion(rates[:5], losses[:5])["suggested_lr"] is None  # too short to read
    diverged = lrt.suggestion(rates, losses[:-1] + [float("nan")])  # a NaN at the end is not the minimum
    assert diverged["lr_at_min"] == found["lr_at_min"]
    smooth = lrt.smoothed([2.0, 2.0, 2.0])
    assert np.allclose(smooth, 2.0)  # bias-corrected: no pull toward 0 at the start


def test_a_study_s_runs_are_range_tested_and_fitted_models_skipped(tmp_path):
    lrt = load_script("scripts/lr_range_test.py")
    data = make_musdb(tmp_path / "data", tracks=3, seconds=2.0)
    study = tmp_path / "tiny.toml"
    study.write_text(f"""
[study]
name = "tiny"
seeds = [1]
[base.data]
dataset = "{data}"
segment = 0.5
valid_fraction = 0.34
valid_seconds = 1.0
[base.train]
steps = 10
batch_size = 2
threads = 1
[[variant]]
name = "hdemucs"
model = {{ architecture = "hdemucs", channels = 4, depth = 3, nfft = 64 }}
[[variant]]
name = "nmf"
model = {{ architecture = "nmf", extra = {{ components = 4 }} }}
""")
    out = tmp_path / "lr.json"
    assert lrt.main([str(study), "--dataset", str(data), "--out", str(out), "--steps", "12"]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"hdemucs", "nmf"}
    assert "skipped" in results["nmf"]
    run = results["hdemucs"]
    assert len(run["losses"]) == len(run["rates"]) <= 12 and all(np.isfinite(run["losses"]))
    assert run["rates"] == sorted(run["rates"])
    assert run["suggested_lr"] == pytest.approx(run["lr_at_min"] / 10)
    assert out.with_suffix(".png").stat().st_size > 0
    # a second call keeps what was done (resumable per run) and still answers
    assert lrt.main([str(study), "--dataset", str(data), "--out", str(out), "--steps", "12"]) == 0
    assert json.loads(out.read_text())["hdemucs"]["losses"] == run["losses"]
