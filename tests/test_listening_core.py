"""Listening tests without Qt: config checks, BS.1770 loudness, anchors, order design, store, statistics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from stemgui.errors import ConfigError, StemGUIError
from stemgui.listening import conditions, design, stats
from stemgui.listening.config import load_config
from stemgui.listening.manifest import FORMAT_VERSION, HIDDEN_REFERENCE, manifest_from_dict
from stemgui.listening.report import build_report
from stemgui.listening.store import ResultStore, TrialResult

FS = 44100


# ---- config ---------------------------------------------------------------------------------------------
def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "mix.wav").write_bytes(b"")  # existence is all the config checks
    (tmp_path / "stems").mkdir(exist_ok=True)
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


GOOD = """
[test]
name = "t"
stems = ["vocals"]
[[songs]]
name = "s"
mix = "mix.wav"
stems = "stems"
excerpts = [[0.0, 6.0]]
[[systems]]
name = "a"
oracle = "irm"
"""


def test_config_reads_a_valid_definition_with_defaults(tmp_path):
    cfg = load_config(write_config(tmp_path, GOOD))
    assert cfg.mode == "mushra" and cfg.anchors == (3500.0, 7000.0) and cfg.loudness == -23.0
    assert cfg.songs[0].mix == tmp_path / "mix.wav" and cfg.folder == tmp_path / "t"
    assert cfg.systems[0].kind == "oracle"


@pytest.mark.parametrize("change, where", [
    (('mode = "mushra"', 'mode = "abx"'), "test.mode"),
    (('stems = ["vocals"]', 'stems = ["voice"]'), "test.stems"),
    (("excerpts = [[0.0, 6.0]]", "excerpts = [[0.0, 6.0], [9.0, 3.0]]"), "songs[0].excerpts[1]"),
    (('oracle = "irm"', 'oracle = "ideal"'), "systems[0].oracle"),
    (('oracle = "irm"', 'oracle = "irm"\nmodel = "default"'), "systems[0].name"),
    (('mix = "mix.wav"', 'mix = "gone.wav"'), "songs[0].mix"),
    (('name = "s"', 'name = "my song"'), "songs[0].name"),
    (('stems = "stems"', 'stem = "stems"'), "songs[0].stem"),
    (('oracle = "irm"', 'model = "models/gone.safetensors"'), "systems[0].model"),
])
def test_config_errors_are_one_line_naming_file_and_key(tmp_path, change, where):
    text = GOOD.replace('stems = ["vocals"]', 'stems = ["vocals"]\nmode = "mushra"')
    path = write_config(tmp_path, text.replace(*change))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: {where}:"), message


def test_a_models_path_is_relative_to_the_config_and_a_registry_name_stays_a_name(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "l1.safetensors").write_bytes(b"")
    text = GOOD + '[[systems]]\nname = "b"\nmodel = "models/l1.safetensors"\n'
    text += '[[systems]]\nname = "c"\nmodel = "ablation.l1+stft_seed1"\n'
    cfg = load_config(write_config(tmp_path, text))
    assert [s.model for s in cfg.systems[1:]] == [str(tmp_path / "models" / "l1.safetensors"),
                                                  "ablation.l1+stft_seed1"]


def test_config_mushra_needs_true_stems_and_bad_toml_is_refused(tmp_path):
    path = write_config(tmp_path, GOOD.replace('stems = "stems"\n', ""))
    with pytest.raises(ConfigError, match=r"songs\[0\]\.stems: MUSHRA needs the true stems"):
        load_config(path)
    path.write_text("[test\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


# ---- loudness ---------------------------------------------------------------------------------------------
def test_bs1770_full_scale_997_hz_sine_in_one_channel_reads_minus_3_01_lufs():
    t = np.arange(5 * FS) / FS
    sine = np.sin(2 * np.pi * 997 * t)
    assert conditions.integrated_loudness(sine[None], FS) == pytest.approx(-3.01, abs=0.01)
    assert conditions.integrated_loudness(np.stack([sine, np.zeros_like(sine)]), FS) == pytest.approx(-3.01, abs=0.01)
    # K-weighting at 48 kHz equals the standard's table (ITU-R BS.1770-4, Tables 1 and 2)
    (b1, a1), (b2, a2) = conditions.k_weighting(48000)
    np.testing.assert_allclose(b1, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-9)
    np.testing.assert_allclose(a1, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-9)
    np.testing.assert_allclose(a2, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-9)


def test_gating_ignores_silence_between_notes():
    t = np.arange(4 * FS) / FS
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    gapped = np.concatenate([tone, np.zeros(6 * FS), tone])
    # ungated, the 6 s of silence would make it 10*log10(14/8) = 2.4 LU quieter; only the few 400 ms blocks
    # that straddle an edge (and pass the -10 LU relative gate) pull it down a little
    assert conditions.integrated_loudness(gapped[None], FS) == pytest.approx(
        conditions.integrated_loudness(tone[None], FS), abs=0.25)


def test_loudness_matching_within_half_a_lu_for_different_signals():
    rng = np.random.default_rng(3)
    t = np.arange(6 * FS) / FS
    signals = {
        "noise": 0.3 * rng.standard_normal((2, t.size)),
        "bass": np.stack([0.8 * np.sin(2 * np.pi * 55 * t)] * 2),
        "hats": np.stack([0.05 * rng.standard_normal(t.size) * (np.mod(t, 0.25) < 0.02)] * 2),
        "quiet_voice": 0.01 * np.stack([np.sin(2 * np.pi * 300 * t + 3 * np.sin(2 * np.pi * 5 * t))] * 2),
    }
    matched, reached = conditions.match_trial({k: v.astype(np.float32) for k, v in signals.items()}, FS, -23.0)
    for name, audio in matched.items():
        assert abs(conditions.integrated_loudness(audio, FS) - reached) < 0.5, name
    assert max(np.abs(a).max() for a in matched.values()) <= conditions.PEAK_CEILING + 1e-6


def test_a_trial_that_would_clip_is_turned_down_as_a_whole():
    rng = np.random.default_rng(4)
    spiky = np.zeros((2, 6 * FS), np.float32)
    spiky[:, ::FS] = 0.9  # one click per second: quiet on average, peaks near full scale
    spiky += 0.001 * rng.standard_normal(spiky.shape).astype(np.float32)
    noise = (0.1 * rng.standard_normal((2, 6 * FS))).astype(np.float32)
    matched, reached = conditions.match_trial({"spiky": spiky, "noise": noise}, FS, -14.0)
    assert reached < -14.0
    assert np.abs(matched["spiky"]).max() == pytest.approx(conditions.PEAK_CEILING, rel=1e-5)
    levels = [conditions.integrated_loudness(a, FS) for a in matched.values()]
    assert abs(levels[0] - levels[1]) < 0.5


# ---- anchors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cutoff", [3500.0, 7000.0])
def test_anchor_has_no_energy_above_its_cutoff(cutoff):
    """White noise low-passed, cut and faded as `create` does: the energy at and above the cutoff is below
    -60 dB of the total (measured: about -105 dB through a rectangular window)."""
    rng = np.random.default_rng(0)
    stem = (0.1 * rng.standard_normal((2, 12 * FS))).astype(np.float32)
    excerpt = conditions.fade(conditions.anchor(stem, 2 * FS, 8 * FS, cutoff, FS), FS, 0.02)
    power = np.abs(np.fft.rfft(excerpt.astype(np.float64), axis=1)) ** 2
    freqs = np.fft.rfftfreq(excerpt.shape[1], 1 / FS)
    above = 10 * np.log10(power[:, freqs >= cutoff].sum() / power.sum())
    assert above < -60.0, above
    # and the pass band is untouched: below cutoff - transition the anchor keeps the noise's level
    band = freqs < cutoff - conditions.ANCHOR_TRANSITION_HZ
    original = np.abs(np.fft.rfft(conditions.fade(stem[:, 2 * FS:8 * FS], FS, 0.02).astype(np.float64), axis=1)) ** 2
    assert 10 * np.log10(power[:, band].sum() / original[:, band].sum()) == pytest.approx(0.0, abs=0.1)


def test_anchor_is_aligned_with_the_reference():
    t = np.arange(3 * FS) / FS
    tone = np.stack([np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
    a = conditions.anchor(tone, FS, 2 * FS, 3500.0, FS)
    np.testing.assert_allclose(a, tone[:, FS:2 * FS], atol=1e-3)  # 440 Hz passes unchanged and undelayed


# ---- design ---------------------------------------------------------------------------------------------
def test_orders_are_random_per_listener_and_reproducible_from_the_seed():
    trials = [f"t{i}" for i in range(8)]
    a1 = design.trial_order(trials, 5, "ann")
    assert a1 == design.trial_order(trials, 5, "ann") and sorted(a1) == trials
    assert a1 != design.trial_order(trials, 5, "bob")
    assert a1 != design.trial_order(trials, 6, "ann")
    conds = ["hidden_reference", "anchor_3500", "system:x", "system:y", "system:z"]
    per_trial = {tuple(design.condition_order(conds, 5, "ann", t)) for t in trials}
    assert len(per_trial) > 1
    assert design.labels(28)[:3] == ["A", "B", "C"] and design.labels(28)[26:] == ["AA", "AB"]


# ---- store and statistics (a hand-made manifest, no audio) ---------------------------------------------
def fake_manifest(tmp_path: Path, trials: int = 4, stems=("vocals", "drums")):
    items = []
    for i in range(trials):
        stem = stems[i % len(stems)]
        conds = [{"id": HIDDEN_REFERENCE, "kind": "reference", "label": "hidden reference", "file": "x.wav"},
                 {"id": "anchor_3500", "kind": "anchor", "label": "anchor 3.5 kHz", "file": "x.wav"},
                 {"id": "system:good", "kind": "system", "label": "good", "file": "x.wav",
                  "objective": {"SDR": 8.0 + i, "SIR": 15.0 + i, "SAR": 9.0 + i}},
                 {"id": "system:bad", "kind": "system", "label": "bad", "file": "x.wav",
                  "objective": {"SDR": 1.0 + i, "SIR": 5.0 + i, "SAR": 2.0 + i}}]
        items.append({"id": f"s-{i + 1}-{stem}", "song": "s", "stem": stem, "start": 0, "end": 6,
                      "reference": "x.wav", "conditions": conds, "loudness": -23.0})
    data = {"format": FORMAT_VERSION, "name": "fake", "mode": "mushra", "seed": 1, "samplerate": FS,
            "loudness": -23.0, "stems": list(stems), "systems": ["good", "bad"], "trials": items}
    return manifest_from_dict(data, tmp_path)


def submit(store, listener, trial, ratings, position=0):
    store.submit(TrialResult(listener, trial, position, list(ratings), dict(ratings),
                             {c: design.labels(len(ratings))[k] for k, c in enumerate(ratings)},
                             plays={c: 1 for c in ratings}))


def ratings_of(ref, anchor, good, bad):
    return {HIDDEN_REFERENCE: ref, "anchor_3500": anchor, "system:good": good, "system:bad": bad}


def test_store_keeps_each_trial_in_one_transaction_and_resumes(tmp_path):
    manifest = fake_manifest(tmp_path)
    db = tmp_path / "r.sqlite"
    store = ResultStore(db, manifest)
    store.add_listener("ann")
    submit(store, "ann", "s-1-vocals", ratings_of(100, 20, 70, 40))
    with pytest.raises(StemGUIError, match="already submitted"):
        submit(store, "ann", "s-1-vocals", ratings_of(100, 20, 70, 40))
    broken = ratings_of(100, 20, 70, None)  # fails half-way through the inserts
    with pytest.raises(TypeError):
        submit(store, "ann", "s-2-drums", broken)
    with pytest.raises(StemGUIError, match="needs a rating for each"):
        submit(store, "ann", "s-2-drums", {HIDDEN_REFERENCE: 100})
    store.close()
    again = ResultStore(db, manifest)  # as after a crash: only whole trials are there
    assert again.submitted("ann") == {"s-1-vocals": 0}
    assert {r.trial for r in again.ratings()} == {"s-1-vocals"} and len(again.ratings()) == 4
    other = fake_manifest(tmp_path, trials=3)
    with pytest.raises(StemGUIError, match="another test"):
        ResultStore(db, other)


def test_mean_and_95_percent_interval_match_a_hand_computed_case():
    # ratings 60, 70, 80, 90, 100: mean 80, s = sqrt(250) = 15.8114, t(0.975, 4) = 2.7764 (t table)
    # half-width = 2.7764 * 15.8114 / sqrt(5) = 19.632 -> [60.368, 99.632]
    iv = stats.mean_ci([70, 80, 90, 60, 100])
    assert iv.mean == 80.0 and iv.n == 5
    assert iv.std == pytest.approx(15.8114, abs=1e-4)
    assert (iv.low, iv.high) == (pytest.approx(60.368, abs=1e-3), pytest.approx(99.632, abs=1e-3))
    one = stats.mean_ci([42])
    assert one.mean == 42 and math.isnan(one.low)


def obs_for(listener, ref_ratings):
    return [stats.Observation(listener, f"t{i}", "s", "vocals", HIDDEN_REFERENCE, "reference", "hidden reference",
                              r, None) for i, r in enumerate(ref_ratings)]


def test_post_screening_drops_a_listener_who_misses_the_reference_in_over_15_percent_of_trials():
    obs = (obs_for("steady", [100, 95, 100, 90, 100, 100, 100])   # never below 90
           + obs_for("one_slip", [100, 85, 100, 100, 100, 100, 100])  # 1/7 = 14.3 %: kept
           + obs_for("careless", [100, 85, 100, 80, 100, 100, 100]))  # 2/7 = 28.6 %: excluded
    screening = stats.post_screen(obs)
    assert screening.excluded == ["careless"]
    assert screening.kept == ["steady", "one_slip"]
    assert screening.fractions["one_slip"] == pytest.approx(1 / 7)


def test_report_intervals_screening_objective_and_csv_against_hand_computed_values(tmp_path):
    manifest = fake_manifest(tmp_path)
    db = tmp_path / "results.sqlite"
    store = ResultStore(db, manifest)
    # good system: 80, 70, 90, 60 from ann; 100, 80, 70, 90 from bob; carl misses the reference (excluded)
    table = {
        "ann": [(100, 20, 80, 30), (100, 25, 70, 35), (95, 20, 90, 40), (100, 15, 60, 45)],
        "bob": [(100, 30, 100, 50), (90, 30, 80, 40), (100, 20, 70, 30), (100, 10, 90, 20)],
        "carl": [(40, 50, 10, 90), (100, 50, 10, 90), (100, 50, 10, 90), (100, 50, 10, 90)],
    }
    for listener, rows in table.items():
        for k, (trial, values) in enumerate(zip(manifest.trials, rows)):
            submit(store, listener, trial.id, ratings_of(*values), position=k)
    store.close()
    rep = build_report(db, tmp_path / "out")
    assert rep.screening.excluded == ["carl"]
    good = next(r for r in rep.rows if r.stem == "all" and r.condition == "system:good")
    values = [80, 70, 90, 60, 100, 80, 70, 90]  # mean 80, s = 13.0931, t(0.975, 7) = 2.3646
    assert good.interval.n == 8 and good.interval.mean == 80.0
    assert good.interval.half_width == pytest.approx(2.3646 * np.std(values, ddof=1) / math.sqrt(8), abs=1e-3)
    assert good.interval.half_width == pytest.approx(10.946, abs=1e-3)
    assert good.objective["SDR"] == pytest.approx(np.mean([8, 9, 10, 11]))  # SDR 8 + i over the 4 trials
    vocals_good = next(r for r in rep.rows if r.stem == "vocals" and r.condition == "system:good")
    assert vocals_good.interval.mean == pytest.approx(np.mean([80, 90, 100, 70]))  # trials 1 and 3 are vocals
    with open(tmp_path / "out" / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r["stem"] == "all" and r["condition"] == "system:good")
    assert float(row["mean"]) == 80.0 and float(row["ci_low"]) == pytest.approx(80 - 10.946, abs=1e-3)
    assert float(row["SDR"]) == 9.5
    with open(tmp_path / "out" / "listeners.csv", newline="") as f:
        listeners = {r["listener"]: r for r in csv.DictReader(f)}
    assert listeners["carl"]["excluded"] == "1" and float(listeners["carl"]["hidden_reference_below_fraction"]) == 0.25
    with open(tmp_path / "out" / "ratings.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 3 * 4 * 4
    corr = {c.metric: c for c in rep.correlations}
    assert corr["SDR"].n == 8 and corr["SDR"].pearson > 0.8  # good > bad on every trial, both ways
    assert (tmp_path / "out" / "ratings.png").stat().st_size > 10_000
    assert "carl" in (tmp_path / "out" / "report.md").read_text()


def test_report_refuses_an_empty_or_missing_database(tmp_path):
    with pytest.raises(StemGUIError, match="no such results database"):
        build_report(tmp_path / "none.sqlite")
    ResultStore(tmp_path / "r.sqlite", fake_manifest(tmp_path)).close()
    with pytest.raises(StemGUIError, match="no trial has been submitted"):
        build_report(tmp_path / "r.sqlite")


def test_a_process_killed_mid_transaction_leaves_every_submitted_trial_and_no_partial_one(tmp_path):
    """kill -9 between BEGIN and COMMIT of a trial: the database opens, the earlier trial is whole."""
    import subprocess
    import sys

    manifest = fake_manifest(tmp_path)
    db = tmp_path / "results.sqlite"
    ResultStore(db, manifest).close()
    script = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_listening_core import fake_manifest, ratings_of, submit
from pathlib import Path
from stemgui.listening.store import ResultStore
store = ResultStore({str(db)!r}, fake_manifest(Path({str(tmp_path)!r})))
submit(store, "ann", "s-1-vocals", ratings_of(100, 20, 70, 40))
store.conn.execute("BEGIN IMMEDIATE")
store.conn.execute("INSERT INTO trials VALUES ('ann', 's-2-drums', 1, '[]', 0, 1.0, 0.0)")
os.kill(os.getpid(), 9)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    store = ResultStore(db, manifest)
    assert store.submitted("ann") == {"s-1-vocals": 0}
    assert len(store.ratings()) == 4
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_report_merges_databases_of_the_same_test_from_several_machines(tmp_path):
    manifest = fake_manifest(tmp_path)
    for i, listener in enumerate(("ann", "bob")):
        store = ResultStore(tmp_path / f"machine{i}.sqlite", manifest)
        for k, trial in enumerate(manifest.trials):
            submit(store, listener, trial.id, ratings_of(100, 20, 60 + 10 * i, 30), position=k)
        store.close()
    rep = build_report([tmp_path / "machine0.sqlite", tmp_path / "machine1.sqlite"], tmp_path / "out",
                       plot_figure=False)
    good = next(r for r in rep.rows if r.stem == "all" and r.condition == "system:good")
    assert good.interval.n == 8 and good.interval.mean == 65.0
    store = ResultStore(tmp_path / "clash.sqlite", manifest)
    submit(store, "ann", manifest.trials[0].id, ratings_of(100, 20, 60, 30))
    store.close()
    with pytest.raises(StemGUIError, match="listener 'ann' is also in"):
        build_report([tmp_path / "machine0.sqlite", tmp_path / "clash.sqlite"], tmp_path / "out2")
