"""`stemgui study`: a two-run study end to end (killed with SIGKILL, resumed, scored, reported), the paired
bootstrap against hand-computed cases, study-file errors as one line, the runs in the model registry, and the
trainer's CPU-time budget."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stemgui.errors import ConfigError
from stemgui.study.config import load_study
from stemgui.study.stats import NO_DIFFERENCE, RESOLUTION_DB, paired_bootstrap

from helpers import make_musdb, tiny_config

REPO = Path(__file__).resolve().parents[1]
KILL_SEED = 18
STEPS = 8

STUDY = """
[study]
name = "tiny"
description = "Two presets on a tiny HDemucs (a test, not a finding)."
baseline = "l1"
seeds = [0]
heldout = "test"
bootstrap = 2000
bootstrap_seed = 3

[base]
data = {{ dataset = "{dataset}", sources = ["bass", "vocals"], segment = 0.5, valid_seconds = 1.0, valid_fraction = 0.34 }}
model = {{ channels = 4, depth = 3, nfft = 64 }}
optim = {{ lr = 1e-3, ema_decay = 0.0 }}
train = {{ steps = {steps}, batch_size = 1, checkpoint_every = 1, valid_every = 4, log_every = 1, threads = 1 }}

[grid]
"loss.preset" = ["l1", "l1+stft"]
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("studydata")
    make_musdb(root, tracks=3, seconds=2.0, seed=0, subset="train")
    make_musdb(root, tracks=2, seconds=1.0, seed=7, subset="test")  # the held-out songs
    return root


def _write_study(folder: Path, dataset: Path, text: str = STUDY, **values) -> Path:
    path = folder / "tiny.toml"
    path.write_text(text.format(dataset=dataset, steps=values.get("steps", STEPS)), encoding="utf-8")
    return path


def _log(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            pass  # a line torn by SIGKILL
    return records


def _latest_step(run_dir: Path) -> int:
    pointer = run_dir / "latest.json"
    try:
        return int(json.loads(pointer.read_text(encoding="utf-8"))["step"])
    except (OSError, ValueError, KeyError):
        return -1


def test_two_run_study_killed_resumed_scored_and_reported(dataset, tmp_path):
    """A real `python -m stemgui study` is SIGKILLed at a seeded step of its second run; `--resume` does not train
    the finished run again, continues the other from its checkpoint, scores both and the baselines on the same
    held-out songs and reports intervals that match a hand computation; the runs appear in the registry."""
    study = _write_study(tmp_path, dataset)
    out = tmp_path / "tiny.study"
    cmd = [sys.executable, "-m", "stemgui", "study", str(study), "--out", str(out), "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    kill_at = random.Random(KILL_SEED).randint(1, 3)
    second = out / "runs" / "l1+stft" / "train"
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _latest_step(second) < kill_at:
        time.sleep(0.02)
    assert proc.poll() is None, f"the study ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    from stemgui.study.runner import study_lock

    with pytest.raises(ConfigError, match="another `stemgui study`"):  # one study process per folder
        with study_lock(out):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = _latest_step(second)
    assert kill_at <= killed_at < STEPS
    first_done = out / "runs" / "l1" / "done.json"
    assert first_done.is_file() and not (out / "runs" / "l1+stft" / "done.json").exists()
    first_stamp = first_done.stat().st_mtime_ns

    resumed = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # finished runs are never redone; the unfinished one continued from its checkpoint
    assert first_done.stat().st_mtime_ns == first_stamp
    assert [r["event"] for r in _log(out / "runs" / "l1" / "train" / "log.jsonl")].count("start") == 1
    starts = [r for r in _log(second / "log.jsonl") if r["event"] == "start"]
    assert len(starts) == 2 and starts[-1]["step"] == killed_at and starts[-1]["resumed_from"]
    for name in ("l1", "l1+stft"):
        card = json.loads((out / "runs" / name / f"{name}.json").read_text(encoding="utf-8"))
        assert card["training"]["steps"] == STEPS and card["training"]["preset"] == name
        assert card["training"]["cpu_time_s"] > 0

    # every system scored on the same two held-out songs
    summary = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert summary["heldout_songs"] == ["track00", "track01"]
    for system in ("l1", "l1+stft", "oracle-IRM", "mixture"):
        assert sorted(p.name for p in (out / "eval" / system / "test").iterdir()) == ["track00.json", "track01.json"]

    # the interval, by hand: per song, the mean over sources of the median over frames of SDR; with two songs the
    # bootstrap distribution of the mean difference is {d1, (d1+d2)/2, d2} with weights 1/4, 1/2, 1/4, so its
    # 2.5th and 97.5th percentiles are min(d) and max(d)
    def song_sdr(system: str, song: str) -> float:
        doc = json.loads((out / "eval" / system / "test" / f"{song}.json").read_text(encoding="utf-8"))
        return float(np.mean([np.nanmedian([f["metrics"]["SDR"] for f in t["frames"]]) for t in doc["targets"]]))

    diffs = [song_sdr("l1+stft", s) - song_sdr("l1", s) for s in ("track00", "track01")]
    row = next(c for c in summary["comparisons"]
               if c["level"] == "cell" and c["metric"] == "SDR" and c["source"] == "overall")
    assert row["system"] == "l1+stft" and row["baseline"] == "l1" and row["songs"] == 2
    assert row["mean"] == pytest.approx(np.mean(diffs), abs=1e-9)
    assert row["low"] == pytest.approx(min(diffs), abs=1e-9) and row["high"] == pytest.approx(max(diffs), abs=1e-9)
    within_rounding = max(abs(min(diffs)), abs(max(diffs))) < RESOLUTION_DB
    expected = (NO_DIFFERENCE if min(diffs) <= 0 <= max(diffs) or within_rounding
                else "higher" if min(diffs) > 0 else "lower")
    assert row["verdict"] == expected

    report = (out / "REPORT.md").read_text(encoding="utf-8")
    for text in ("## What was compared", "## What it showed", "oracle-IRM", "mixture", "## Training cost",
                 "95 % CI", "learning_curves.png", "boxplot_SDR.png"):
        assert text in report
    assert (out / "figures" / "learning_curves.png").stat().st_size > 1000
    study = json.loads((out / "study.json").read_text(encoding="utf-8"))
    overall = {r["system"]: r["uSDR"] for r in study["table"] if r["source"] == "overall"}
    assert study["silent_runs"] == [n for n in ("l1", "l1+stft") if abs(overall[n]) < 0.25]
    assert ("have not learned to separate" in report) == bool(study["silent_runs"])
    header = (out / "comparisons.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("level,system,baseline,metric,source,mean_diff_db,ci_low_db,ci_high_db")

    # the report's own settings may change on resume (an extra pair here); what is trained may not
    study_file = tmp_path / "tiny.toml"
    edited = study_file.read_text(encoding="utf-8").replace("bootstrap_seed = 3",
                                                            'bootstrap_seed = 3\ncompare = [["l1", "l1+stft"]]')
    study_file.write_text(edited, encoding="utf-8")
    again = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert first_done.stat().st_mtime_ns == first_stamp
    assert 'compare = [["l1", "l1+stft"]]' in (out / "study.toml").read_text(encoding="utf-8")
    summary = json.loads((out / "study.json").read_text(encoding="utf-8"))
    reverse = next(c for c in summary["comparisons"] if c["system"] == "l1" and c["baseline"] == "l1+stft"
                   and c["metric"] == "SDR" and c["source"] == "overall")
    assert reverse["mean"] == pytest.approx(-np.mean(diffs), abs=1e-9)
    assert "- `l1` against `l1+stft`: SDR (mean over sources)" in (out / "REPORT.md").read_text(encoding="utf-8")
    study_file.write_text(edited.replace("steps = 8", "steps = 9"), encoding="utf-8")
    refused = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "differs from the study file" in refused.stderr

    # the app's picker lists the registry: both runs are there, labelled with their study
    from stemgui.models.registry import list_models, resolve_model

    entries = {e.name: e for e in list_models()}
    assert {"tiny.l1", "tiny.l1+stft"} <= set(entries)
    assert entries["tiny.l1+stft"].study == "tiny" and "study tiny" in entries["tiny.l1+stft"].summary
    assert resolve_model("tiny.l1") == (out / "runs" / "l1" / "l1.safetensors").resolve()


def test_two_folders_of_one_study_file_list_their_runs_under_distinct_names(tmp_path):
    """A rerun of a study beside the first (ablation.study, ablation-v2.study) must not give the picker two
    'ablation.l1' entries that resolve to the same one: the folders' names tell them apart."""
    from stemgui.models.architectures import build_model
    from stemgui.models.card import save_model
    from stemgui.models.registry import list_models, register_study, resolve_model

    paths = {}
    for folder in ("ablation.study", "ablation-v2.study", "elsewhere/ablation-v2.study", "other.study"):
        root = tmp_path / folder
        weights = save_model(build_model("nmf", ["vocals", "accompaniment"], {"components": 2, "nfft": 64, "hop": 32}),
                             root / "runs" / "l1" / "l1.safetensors")
        study = "other" if folder == "other.study" else "ablation"
        (root / "models.json").write_text(json.dumps({"study": study, "models": [{"name": "l1", "path": str(weights)}]}))
        register_study(root)
        paths[folder] = weights.resolve()
    names = [e.name for e in list_models() if e.study]
    assert names == ["ablation.l1", "ablation-v2.l1", "ablation-v2~2.l1", "other.l1"]
    assert resolve_model("ablation-v2.l1").resolve() == paths["ablation-v2.study"]
    assert resolve_model("ablation-v2~2.l1").resolve() == paths["elsewhere/ablation-v2.study"]
    assert resolve_model("other.l1").resolve() == paths["other.study"]  # a study alone keeps its own name


def test_a_fitted_run_validates_where_its_cpu_time_ended(tmp_path):
    """NMF logs one "fit" record, no training steps: its validation point sits at its CPU minutes, not at 0."""
    from stemgui.study.report import _valid_cpu, read_log

    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        {"event": "fit", "step": 100, "segments": 400, "cpu_time_s": 660.0},
        {"event": "valid", "step": 100, "valid_sdr_mean": 1.3}]) + "\n{torn", encoding="utf-8")
    records = read_log(log)
    assert [r["step"] for r in records["train"]] == [100] and len(records["valid"]) == 1
    assert _valid_cpu(records["valid"], records["train"]) == [11.0]
    older = [{"event": "fit", "step": 100}]  # a fit logged before it said its CPU time: the run's total
    assert _valid_cpu(records["valid"], older, total=11.1) == [11.1]
    steps = [{"step": 10, "cpu_time_s": 60.0}, {"step": 20, "cpu_time_s": 120.0}]
    assert _valid_cpu([{"step": 15}, {"step": 20}, {"step": 5}], steps) == [1.0, 2.0, 0.0]


def test_runs_that_score_like_silence_are_named_as_not_learned():
    from stemgui.eval.report import SummaryRow
    from stemgui.study.report import silent_runs, silent_stems

    rows = [SummaryRow("a", "overall", {"uSDR": 0.1}, 8), SummaryRow("b", "overall", {"uSDR": 1.3}, 8),
            SummaryRow("c", "overall", {"uSDR": -0.2}, 8), SummaryRow("b", "vocals", {"uSDR": 0.0}, 8),
            SummaryRow("oracle-IRM", "overall", {"uSDR": 0.0}, 8)]
    assert silent_runs(rows, ["a", "b", "c", "d"]) == ["a", "c"]  # d has no scores; baselines are not runs
    rows += [SummaryRow("b", "drums", {"uSDR": -0.1}, 8), SummaryRow("b", "bass", {"uSDR": 2.0}, 8),
             SummaryRow("a", "drums", {"uSDR": 0.0}, 8), SummaryRow("oracle-IRM", "drums", {"uSDR": 0.0}, 8)]
    # a run silent as a whole is named above, not again per stem
    assert silent_stems(rows, ["a", "b", "c", "d"]) == {"b": ["vocals", "drums"]}


def test_paired_bootstrap_matches_hand_computed_intervals():
    """Three songs, differences (0, 0, 3): the resampled mean is k of 3 with k ~ Binomial(3, 1/3), P(k=0) = 8/27
    and P(k=3) = 1/27 > 2.5 %, so the 95 % interval is exactly [0, 3] and includes 0; (1, 1, 4) gives [1, 4]."""
    zeros = [0.0, 0.0, 0.0]
    wide = paired_bootstrap([0.0, 0.0, 3.0], zeros, resamples=20000, seed=1)
    assert (wide.mean, wide.low, wide.high, wide.songs) == (1.0, 0.0, 3.0, 3)
    assert wide.verdict == NO_DIFFERENCE
    up = paired_bootstrap([1.0, 1.0, 4.0], zeros, resamples=20000, seed=1)
    assert (up.low, up.high, up.verdict) == (1.0, 4.0, "higher")
    down = paired_bootstrap([-2.0, -1.0], [0.0, 0.0], resamples=5000, seed=2)
    assert (down.low, down.high, down.mean, down.verdict) == (-2.0, -1.0, -1.5, "lower")
    # a consistent difference smaller than the stored scores' rounding is no difference
    tiny = paired_bootstrap([1e-5, 2e-5], [0.0, 0.0], resamples=5000, seed=2)
    assert tiny.low > 0 and tiny.verdict == NO_DIFFERENCE
    # a song without a number (NaN: a silent stem) is left out of both sides; the same seed gives the same interval
    skip = paired_bootstrap([1.0, np.nan, 4.0, 1.0], [0.0, 5.0, 0.0, 0.0], resamples=20000, seed=1)
    assert skip.songs == 3 and (skip.low, skip.high) == (1.0, 4.0)
    assert paired_bootstrap([0.3, 0.1, 0.7], [0.2, 0.4, 0.1], seed=9) == paired_bootstrap([0.3, 0.1, 0.7],
                                                                                          [0.2, 0.4, 0.1], seed=9)


@pytest.mark.parametrize("edit, key", [
    (("seeds = [0]", "seedz = [0]"), "'study.seedz'"),
    (('"loss.preset"', '"loss.presett"'), "'loss.presett'"),
    (("channels = 4,", "chanels = 4,"), "'model.chanels'"),
    (('"loss.preset" = ["l1", "l1+stft"]', '"train.steps" = [1, 2]'), "'train.steps'"),
    (('baseline = "l1"', 'baseline = "l2"'), "'l2'"),
    (('[grid]', '[gird]'), "[gird]"),
    (('seeds = [0]', 'seeds = [0]\ncompare = [["l1+stft", "l3"]]'), "'l3'"),
    (('seeds = [0]', 'seeds = [0]\ncompare = ["l1+stft"]'), "study.compare"),
])
def test_a_bad_key_is_one_line_naming_the_file_and_the_key(dataset, tmp_path, capsys, edit, key):
    from stemgui.cli import main

    study = _write_study(tmp_path, dataset, STUDY.replace(*edit))
    with pytest.raises(ConfigError) as info:
        load_study(study)
    assert str(study) in str(info.value) and key in str(info.value)
    assert main(["study", str(study), "--out", str(tmp_path / "never")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"stemgui: error: {study}: ") and key in err[0]
    assert not (tmp_path / "never").exists()


def test_the_grid_expands_cells_times_seeds_with_the_seed_policy(dataset, tmp_path):
    text = STUDY.replace("seeds = [0]", "seeds = [4, 5]\nseed_policy = \"offset\"").replace(
        '"loss.preset" = ["l1", "l1+stft"]', '"loss.preset" = ["l1", "l1+stft"]\n"optim.lr" = [1e-3, 3e-4]')
    text = text.replace('baseline = "l1"', 'baseline = "l1_lr=0.001"')
    plan = load_study(_write_study(tmp_path, dataset, text))
    assert plan.cells == ["l1_lr=0.001", "l1_lr=0.0003", "l1+stft_lr=0.001", "l1+stft_lr=0.0003"]
    assert len(plan.runs) == 8 and plan.runs[0].name == "l1_lr=0.001_seed4"
    assert [r.config.train.seed for r in plan.runs[:4]] == [4, 5, 1004, 1005]  # offset: independent per cell
    assert plan.runs[2].config.optim.lr == 3e-4 and plan.runs[5].config.loss.preset == "l1+stft"
    assert all(r.config.train.steps == STEPS for r in plan.runs)  # one budget for all
    from stemgui.study.report import run_colors

    colors = run_colors(plan)  # a cell's seeds share a colour in the box plots and the learning curves
    assert colors["l1_lr=0.001_seed4"] == colors["l1_lr=0.001_seed5"]
    assert len({colors[r.name] for r in plan.runs}) == 4


def test_the_shipped_studies_parse_and_state_their_budget():
    for name in ("ablation", "seed-systems", "gan-countermeasures", "mir1k-drnn"):
        path = REPO / "studies" / f"{name}.toml"
        plan = load_study(path)
        assert plan.budget_note and "2 CPU cores" in plan.budget_note, name
        assert "Budget on 2 CPU cores" in path.read_text(encoding="utf-8"), name
    ablation = load_study(REPO / "studies" / "ablation.toml")
    assert ablation.cells == ["l1", "l1+stft", "l1+stft+gan"] and ablation.seeds == [1, 2, 3]
    systems = load_study(REPO / "studies" / "seed-systems.toml")
    assert systems.budget_kind == "cpu"
    assert {r.config.model.architecture for r in systems.runs} == {
        "hdemucs", "htdemucs", "demucs", "demucs1", "waveunet", "convtasnet", "drnn", "unet", "nmf"}


def test_the_trainer_stops_at_its_cpu_time_budget_and_records_the_steps(dataset, tmp_path):
    """train.cpu_minutes: process CPU time (time.process_time) ends the run, train.steps is only the cap."""
    from stemgui.models.card import read_card
    from stemgui.train.trainer import train

    cfg = tiny_config(dataset, tmp_path / "cpu.safetensors", preset="l1", steps=100000, batch=1)
    cfg.train.cpu_minutes = 0.02  # 1.2 CPU seconds
    cfg.train.checkpoint_every = 100000
    started = time.process_time()
    result = train(cfg)
    spent = time.process_time() - started
    assert 1 <= result.steps < 100000
    training = read_card(result.out)["training"]
    assert training["steps"] == result.steps and training["cpu_budget_s"] == 1.2
    assert 1.2 <= training["cpu_time_s"] <= spent + 0.1
    events = [json.loads(line) for line in (tmp_path / "cpu.run" / "log.jsonl").read_text().splitlines()]
    budget = [e for e in events if e["event"] == "cpu_budget"]
    assert len(budget) == 1 and budget[0]["step"] == result.steps and budget[0]["cpu_time_s"] >= 1.2
    assert any(e["event"] == "valid" and e["step"] == result.steps for e in events)  # scored where it stopped


def test_a_fitted_model_keeps_to_the_cpu_budget_too(dataset, tmp_path):
    """NMF's dictionary learning (no gradient steps) stops its updates when train.cpu_minutes is spent."""
    from stemgui.models.card import read_card
    from stemgui.train.trainer import train

    cfg = tiny_config(dataset, tmp_path / "nmf.safetensors", preset="l1", steps=8, batch=2)
    cfg.model.architecture = "nmf"
    cfg.model.extra = {"components": 4, "nfft": 256, "hop": 64, "fit_iterations": 100000}
    cfg.train.cpu_minutes = 0.01  # 0.6 CPU seconds
    result = train(cfg)
    events = [json.loads(line) for line in (tmp_path / "nmf.run" / "log.jsonl").read_text().splitlines()]
    fit = next(e for e in events if e["event"] == "fit")
    assert set(fit["updates"]) == set(read_card(result.out)["sources"])
    assert all(1 <= n < 100000 for n in fit["updates"].values()), fit["updates"]
    assert read_card(result.out)["training"]["cpu_time_s"] < 0.6 + 2.0  # the budget, plus validation's margin


MIR1K = next((p for p in (REPO.parent / "shared" / "datasets" / "mir-1k-subset",
                          REPO.parent.parent / "shared" / "datasets" / "mir-1k-subset") if p.is_dir()), None)

MIR1K_STUDY = """
[study]
name = "mir1k-tiny"
baseline = "discrim"
heldout = "test"
frames = "whole"
bootstrap = 500

[mir1k]
dataset = "{dataset}"
train_singers = ["tammy"]
test_singers = ["Ani", "bug"]
max_test_clips_per_singer = 1

[base]
data = {{ segment = 1.0, valid_fraction = 0.25, valid_seconds = 2.0 }}
augment = {{ remix = false, shift = 0.0, circular_shift = true, channel_swap = false }}
model = {{ architecture = "drnn", extra = {{ hidden = 16, segment = 1.0 }} }}
loss = {{ preset = "drnn" }}
optim = {{ lr = 1e-3, ema_decay = 0.0 }}
train = {{ cpu_minutes = 0.03, steps = 40, batch_size = 2, checkpoint_every = 5, valid_every = 5, log_every = 1, threads = 1 }}

[[variant]]
name = "discrim"

[[variant]]
name = "plain"
loss = {{ discriminative = 0.0 }}
"""


@pytest.mark.slow
@pytest.mark.skipif(MIR1K is None, reason="the MIR-1K subset is not next to the checkout")
def test_a_mir1k_study_splits_by_singer_stops_at_its_cpu_budget_and_scores_whole_clips(tmp_path):
    """The [mir1k] split (by singer, linked into the study folder), two DRNN variants ended by a CPU-time budget,
    whole-clip scoring of 16 kHz mono two-source clips, with --jobs 2 worker processes."""
    from stemgui.cli import main

    study = tmp_path / "mir1k.toml"
    study.write_text(MIR1K_STUDY.format(dataset=MIR1K), encoding="utf-8")
    out = tmp_path / "mir1k.study"
    assert main(["study", str(study), "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    assert sorted(p.name.split("_")[0] for p in (out / "data" / "test" / "Wavfile").iterdir()) == ["Ani", "bug"]
    assert all(p.name.startswith("tammy_") for p in (out / "data" / "Wavfile").iterdir())
    summary = json.loads((out / "study.json").read_text(encoding="utf-8"))
    assert summary["sources"] == ["accompaniment", "vocals"] and len(summary["heldout_songs"]) == 2
    for name in ("discrim", "plain"):
        record = summary["runs"][name]
        assert record["cpu_time_s"] >= 1.8 and 1 <= record["steps"] <= 40
    scores = json.loads((out / "eval" / "plain" / "test" / f"{summary['heldout_songs'][0]}.json").read_text())
    assert len(scores["targets"][0]["frames"]) == 1  # the whole clip is one BSSEval frame
    assert "CPU-minutes of training per run" in (out / "REPORT.md").read_text(encoding="utf-8")
