"""`stemgui evaluate` with two-stem models (vocals, accompaniment) on four-stem datasets: MUSDB folders and
.stem.mp4 files; accompaniment reference = sum of the non-vocal stems; two-stem oracles; one-line errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemgui import SOURCES
from stemgui.cli import main
from stemgui.eval import bsseval, oracle
from stemgui.eval.dataset import ACCOMPANIMENT_PARTS, find_eval_tracks, read_references

from helpers import RATE, make_musdb

TWO = ["vocals", "accompaniment"]


def _summary(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as handle:
        return {(r["system"], r["source"]): r for r in csv.DictReader(handle)}


def _frames(path: Path) -> tuple[list[str], np.ndarray]:
    doc = json.loads(path.read_text())
    names = [t["name"] for t in doc["targets"]]
    return names, np.array([[f["metrics"]["SDR"] for f in t["frames"]] for t in doc["targets"]], dtype=float)


@pytest.fixture(scope="module")
def musdb(tmp_path_factory) -> Path:
    return make_musdb(tmp_path_factory.mktemp("musdb4"), tracks=2, seconds=2.0, subset="test")


def _save(model, folder: Path, name: str) -> Path:
    from stemgui.models.card import save_model

    path = save_model(model, folder / f"{name}.safetensors", {"name": name, "training": {"note": "tests only"}})
    return path.with_suffix(".json")


@pytest.fixture(scope="module")
def drnn_two(tmp_path_factory) -> Path:
    """A tiny random DRNN with the paper's two stems, 16 kHz mono (evaluate converts rate and channels)."""
    import torch

    from stemgui.models.drnn import DRNN

    torch.manual_seed(0)
    return _save(DRNN(TWO, hidden=16, segment=1.0), tmp_path_factory.mktemp("drnn"), "drnn2")


@pytest.fixture(scope="module")
def stem_mp4(tmp_path_factory) -> Path:
    """set/test/song.stem.mp4: stream 0 the mixture, 1-4 drums/bass/other/vocals as sines of distinct pitch."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg CLI needed to build a .stem.mp4 fixture")
    tmp = tmp_path_factory.mktemp("mp4")
    t = np.arange(int(RATE * 2.0)) / RATE
    wavs = []
    for name, f in zip(SOURCES, (200.0, 500.0, 1100.0, 2300.0)):
        path = tmp / f"{name}.wav"
        sf.write(path, np.stack([0.2 * np.sin(2 * np.pi * f * t)] * 2, 1), RATE)
        wavs.append(path)
    mix = tmp / "mix.wav"
    sf.write(mix, sum(sf.read(w)[0] for w in wavs), RATE)
    out = tmp / "set" / "test" / "song.stem.mp4"
    out.parent.mkdir(parents=True)
    cmd = ["ffmpeg", "-loglevel", "error", "-y"]
    for w in [mix, *wavs]:
        cmd += ["-i", str(w)]
    for i in range(5):
        cmd += ["-map", f"{i}:a"]
    subprocess.run([*cmd, "-c:a", "aac", "-b:a", "128k", str(out)], check=True, timeout=60)
    return out


def test_musdb_accompaniment_reference_is_the_sum_of_the_non_vocal_stems(musdb):
    track = find_eval_tracks(musdb, "test")[0]
    assert set(track.stems) == {*SOURCES, "accompaniment"}
    refs, mixture, rate = read_references(track, TWO)
    files = {s: sf.read(track.path / f"{s}.wav", dtype="float32")[0].T for s in SOURCES}
    assert rate == RATE and refs.shape == (2, 2, 2 * RATE)
    np.testing.assert_array_equal(refs[0], files["vocals"])
    np.testing.assert_allclose(refs[1], sum(files[s] for s in ACCOMPANIMENT_PARTS), atol=1e-6)
    assert ACCOMPANIMENT_PARTS == ("drums", "bass", "other")
    np.testing.assert_array_equal(mixture, sf.read(track.path / "mixture.wav", dtype="float32")[0].T)
    np.testing.assert_allclose(refs.sum(axis=0), mixture, atol=1e-5)


def test_without_mixture_file_the_mixture_is_the_four_stems_sum_not_the_scored_ones(musdb, tmp_path):
    song = tmp_path / "set" / "test" / "song"
    shutil.copytree(musdb / "test" / "track00", song)
    (song / "mixture.wav").unlink()
    [track] = find_eval_tracks(tmp_path / "set", "test")
    refs, mixture, _ = read_references(track, ["vocals"])
    four, _, _ = read_references(track, list(SOURCES))
    np.testing.assert_array_equal(refs[0], four[3])
    np.testing.assert_allclose(mixture, four.sum(axis=0), atol=1e-6)


def test_two_stem_model_and_two_stem_oracles_on_a_four_stem_musdb_folder(musdb, drnn_two, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(drnn_two), "--dataset", str(musdb), "--out", str(out),
                 "--compare", "irm", "mix", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "accompaniment" in printed and "drums" not in printed
    summary = _summary(out / "summary.csv")
    assert set(summary) == {(s, src) for s in ("drnn2", "oracle-IRM", "mixture") for src in (*TWO, "overall")}
    assert summary[("drnn2", "accompaniment")]["tracks"] == "2"
    assert float(summary[("mixture", "accompaniment")]["GNSDR"]) == pytest.approx(0.0, abs=1e-3)
    assert float(summary[("oracle-IRM", "vocals")]["SDR"]) > float(summary[("mixture", "vocals")]["SDR"]) + 10
    markdown = (out / "summary.md").read_text()
    assert "| drnn2 | accompaniment |" in markdown and "| oracle-IRM | vocals |" in markdown

    # every system's JSON has the two targets; the IRM is the two-stem ratio mask, vocals against the
    # accompaniment (not the four-stem mask summed), computed from the summed references
    for system in ("drnn2", "oracle-IRM", "mixture"):
        assert _frames(out / system / "test" / "track00.json")[0] == TWO
    track = find_eval_tracks(musdb, "test", ["track00"])[0]
    four, _, _ = read_references(track, list(SOURCES))
    two = np.stack([four[3], four[:3].sum(axis=0)])
    expected = bsseval.framewise_sdr(two.transpose(0, 2, 1), oracle.ideal_ratio_mask(two).transpose(0, 2, 1))
    np.testing.assert_allclose(_frames(out / "oracle-IRM" / "test" / "track00.json")[1], expected, atol=1e-4)
    folded = oracle.ideal_ratio_mask(four)
    folded = np.stack([folded[3], folded[:3].sum(axis=0)])
    assert not np.allclose(oracle.ideal_ratio_mask(two), folded, atol=1e-4)
    np.testing.assert_allclose(oracle.ideal_ratio_mask(two).sum(axis=0), two.sum(axis=0), atol=1e-4)
    np.testing.assert_allclose(oracle.mixture_as_estimate(two)[1], four.sum(axis=0), atol=1e-5)


def test_four_stem_model_is_scored_on_two_stems_with_its_non_vocal_stems_summed(musdb, tiny_model_path, tmp_path):
    from stemgui.cli.evaluate import model_estimate_plan
    from stemgui.errors import ModelError

    assert model_estimate_plan("m", list(SOURCES), TWO) == [[3], [0, 1, 2]]
    assert model_estimate_plan("m", TWO, TWO) == [[0], [1]]
    with pytest.raises(ModelError, match="model has no stem drums"):
        model_estimate_plan("m", TWO, list(SOURCES))
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_model_path), "--dataset", str(musdb), "--out", str(out),
                 "--sources", "vocals,accompaniment", "--tracks", "track01", "--no-progress"]) == 0
    assert _frames(out / "tiny" / "test" / "track01.json")[0] == TWO


def test_stem_mp4_accompaniment_reference_and_evaluation(stem_mp4, drnn_two, tmp_path, capsys):
    from stemgui.train.data import StemRef, read_ref

    root = stem_mp4.parent.parent
    [track] = find_eval_tracks(root, "test")
    assert track.name == "song" and track.format == "stem-mp4"
    refs, mixture, rate = read_references(track, TWO)
    assert rate == RATE and refs.shape[:2] == (2, 2) and mixture.shape == refs.shape[1:]
    frames = refs.shape[-1]
    streams = {s: read_ref(StemRef(stem_mp4, stream=k + 1), 0, frames) for k, s in enumerate(SOURCES)}
    np.testing.assert_array_equal(refs[0], streams["vocals"])
    np.testing.assert_allclose(refs[1], streams["drums"] + streams["bass"] + streams["other"], atol=1e-6)
    spectrum = np.abs(np.fft.rfft(refs[1, 0, 20000:28192] * np.hanning(8192)))
    freqs = np.fft.rfftfreq(8192, 1 / RATE)
    level = {f: spectrum[np.argmin(np.abs(freqs - f))] for f in (200.0, 500.0, 1100.0, 2300.0)}
    assert min(level[200.0], level[500.0], level[1100.0]) > 100 * level[2300.0]  # no voice in the accompaniment

    for dataset in (root, stem_mp4):  # the folder (subset test) and the one file
        out = tmp_path / dataset.name
        assert main(["evaluate", "--model", str(drnn_two), "--dataset", str(dataset), "--out", str(out),
                     "--oracle", "irm", "--no-progress"]) == 0
        summary = _summary(out / "summary.csv")
        assert {src for _, src in summary} == {*TWO, "overall"}
        assert float(summary[("oracle-IRM", "overall")]["SDR"]) > 10
        assert _frames(out / "drnn2" / "test" / "song.json")[0] == TWO
    capsys.readouterr()


def test_a_source_the_dataset_lacks_is_one_line_naming_dataset_and_source(musdb, tmp_path, capsys):
    import torch

    from stemgui.models.drnn import DRNN

    torch.manual_seed(0)
    piano = _save(DRNN(["piano", "organ"], hidden=8, segment=1.0), tmp_path, "piano")
    assert main(["evaluate", "--model", str(piano), "--dataset", str(musdb), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(musdb) in err and "'piano'" in err and str(piano) in err
    assert not (tmp_path / "o").exists()
    # a model with more stems than the dataset (a six-stem model on MUSDB): the stems it has, with one warning
    partly = _save(DRNN(["vocals", "piano"], hidden=8, segment=1.0), tmp_path, "partly")
    assert main(["evaluate", "--model", str(partly), "--dataset", str(musdb), "--out", str(tmp_path / "p"),
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("stemgui: warning:")]
    assert len(warnings) == 1 and "no piano stem: scoring vocals" in warnings[0]
    assert _frames(tmp_path / "p" / "partly" / "test" / "track00.json")[0] == ["vocals"]
    assert main(["evaluate", "--oracle", "irm", "--sources", "vocals,organ", "--dataset", str(musdb),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(musdb) in err and "'organ'" in err and "--sources" in err
