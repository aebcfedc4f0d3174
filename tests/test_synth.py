"""Synthetic multitrack generator: layout, exact sums, determinism, variety, real voice, CLI errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemgui import SOURCES
from stemgui.data import synth
from stemgui.data.arrange import make_arrangement
from stemgui.data.midi import MidiSong, Note, _varlen, encode_smf
from stemgui.errors import DatasetError

SECONDS = 5.0


def _requirements() -> str | None:
    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed"
    try:
        synth.find_soundfont()
    except DatasetError as exc:
        return str(exc)
    try:
        synth.vocal_clips("", "train")
    except DatasetError as exc:
        return f"MIR-1K clips unavailable: {exc}"
    return None


_MISSING = _requirements()
needs_renderer = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.synth_dataset(out, 2, synth.SynthSettings(seconds=SECONDS, seed=7, subset="train"), progress=False)
    return out


# ------------------------------------------------------------------------------------------ pure parts


def test_midi_varlen_and_header():
    assert _varlen(0) == b"\x00"
    assert _varlen(0x7F) == b"\x7f"
    assert _varlen(0x80) == b"\x81\x00"
    assert _varlen(0x3FFF) == b"\xff\x7f"
    song = MidiSong(programs={0: 33}, notes=[Note(0.5, 0.25, 40, 100, 0)])
    data = encode_smf(song)
    assert data[:4] == b"MThd" and data[14:18] == b"MTrk"
    assert bytes([0xC0, 33]) in data  # program change
    assert bytes([0x90, 40, 100]) in data and bytes([0x80, 40, 0]) in data
    assert data.endswith(b"\xff\x2f\x00")


def test_arrangement_is_seeded_and_complete():
    a = make_arrangement(np.random.default_rng([3, 0]), 20.0)
    b = make_arrangement(np.random.default_rng([3, 0]), 20.0)
    c = make_arrangement(np.random.default_rng([3, 1]), 20.0)
    assert a.describe() == b.describe()
    assert a.stems["drums"].notes == b.stems["drums"].notes
    assert a.describe() != c.describe()
    assert a.duration >= 20.0
    for name in ("drums", "bass", "other"):
        assert a.stems[name].notes, f"{name} has no notes"
    assert any(s.lead for s in a.sections)
    assert all(n.channel == 9 for n in a.stems["drums"].notes)


def test_singer_split_is_disjoint():
    if _MISSING:
        pytest.skip(_MISSING)
    train = {synth.singer_of(p) for p in synth.vocal_clips("", "train")}
    test = {synth.singer_of(p) for p in synth.vocal_clips("", "test")}
    assert train and test and not (train & test)


def test_missing_mir1k_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="MIR-1K folder not found"):
        synth.vocal_clips(tmp_path / "nowhere", "train")
    (tmp_path / "Wavfile").mkdir()
    with pytest.raises(DatasetError, match="no MIR-1K clips"):
        synth.vocal_clips(tmp_path, "train")


def test_cli_rejects_a_file_as_output(tmp_path, capsys):
    from stemgui.cli import main

    blocker = tmp_path / "not_a_dir.wav"
    blocker.write_bytes(b"x")
    code = main(["synth-dataset", str(blocker), "--songs", "1", "--seconds", "4"])
    err = capsys.readouterr().err
    assert code == 1
    assert str(blocker) in err and "not a folder" in err
    assert err.count("\n") == 1  # one line, no traceback


# ------------------------------------------------------------------------------------------ rendering


@needs_renderer
def test_layout_rates_and_channels(dataset):
    songs = sorted((dataset / "train").iterdir())
    assert [p.name for p in songs] == ["synth-7-0000", "synth-7-0001"]
    for song in songs:
        names = sorted(p.name for p in song.iterdir())
        assert names == sorted([f"{n}.wav" for n in (*SOURCES, "mixture")] + ["synth.json"])
        for name in (*SOURCES, "mixture"):
            info = sf.info(str(song / f"{name}.wav"))
            assert (info.samplerate, info.channels, info.frames) == (44100, 2, int(SECONDS * 44100))
            assert info.subtype == "FLOAT"
        meta = json.loads((song / "synth.json").read_text())
        assert meta["seed"] == [7, int(song.name[-4:])] and meta["samplerate"] == 44100


@needs_renderer
def test_stems_sum_exactly_to_mixture(dataset):
    for song in sorted((dataset / "train").iterdir()):
        mix, _ = sf.read(str(song / "mixture.wav"), dtype="float32")
        stems = [sf.read(str(song / f"{n}.wav"), dtype="float32")[0] for n in SOURCES]
        assert np.array_equal(stems[0] + stems[1] + stems[2] + stems[3], mix)
        assert np.array_equal(stems[3] + stems[2] + stems[1] + stems[0], mix)  # any order: values sit on a grid
        assert np.array_equal(np.sum(np.stack(stems), axis=0, dtype=np.float64).astype(np.float32), mix)
        assert 0.01 < np.abs(mix).max() <= 1.0
        for name, stem in zip(SOURCES, stems):
            assert np.sqrt(np.mean(stem ** 2)) > 1e-3, f"{song.name}/{name} is silent"
        from stemgui.data.layout import read_stems  # the loaders training and evaluation use

        stack, sr = read_stems(song)
        assert sr == 44100 and stack.shape == (4, 2, int(SECONDS * 44100))
        assert np.array_equal(stack.sum(axis=0), mix.T)


@needs_renderer
def test_same_seed_same_bytes_and_resume(dataset, tmp_path):
    settings = synth.SynthSettings(seconds=SECONDS, seed=7, subset="train")
    again = synth.make_song(tmp_path, 1, settings)
    original = dataset / "train" / "synth-7-0001"
    for name in (*SOURCES, "mixture"):
        assert _md5(again / f"{name}.wav") == _md5(original / f"{name}.wav"), name
    before = {p.name: p.stat().st_mtime_ns for p in again.iterdir()}
    synth.make_song(tmp_path, 1, settings)  # finished song with the same settings is kept as is
    assert {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == before


@needs_renderer
def test_different_seeds_give_different_songs(dataset):
    a, _ = sf.read(str(dataset / "train" / "synth-7-0000" / "mixture.wav"), dtype="float32")
    b, _ = sf.read(str(dataset / "train" / "synth-7-0001" / "mixture.wav"), dtype="float32")
    corr = np.corrcoef(a.mean(axis=1), b.mean(axis=1))[0, 1]
    assert abs(corr) < 0.2
    ma = json.loads((dataset / "train" / "synth-7-0000" / "synth.json").read_text())["arrangement"]
    mb = json.loads((dataset / "train" / "synth-7-0001" / "synth.json").read_text())["arrangement"]
    assert (ma["tempo"], ma["key"], ma["programs"]) != (mb["tempo"], mb["key"], mb["programs"])


@needs_renderer
def test_vocals_hold_real_mir1k_singing(dataset):
    song = dataset / "train" / "synth-7-0000"
    meta = json.loads((song / "synth.json").read_text())
    phrases = meta["vocal_phrases"]
    assert phrases, "no sung phrase placed"
    train_singers = {synth.singer_of(p) for p in synth.vocal_clips("", "train")}
    assert all(synth.singer_of(Path(p["clip"])) in train_singers for p in phrases)
    vocals, sr = sf.read(str(song / "vocals.wav"), dtype="float32")
    assert np.sqrt(np.mean(vocals ** 2)) > 0.005  # clearly audible (> -46 dBFS)
    # the stem contains the recorded voice itself: correlate the dry clip with the stem where it was placed
    first = phrases[0]
    clip = synth.load_voice(synth.vocal_clips("", "train")[0].parent / first["clip"])
    start, n = int(round(first["start"] * sr)), int(min(first["seconds"], 1.5) * sr)
    ref = clip[:n].astype(np.float64)
    best = 0.0
    for lag in range(-64, 64 + 1):  # phrases are placed sample-exactly; allow for the filters' delay
        seg = vocals[max(0, start + lag): start + lag + n].mean(axis=1).astype(np.float64)
        if len(seg) == n:
            best = max(best, float(np.dot(seg, ref) / (np.linalg.norm(seg) * np.linalg.norm(ref) + 1e-12)))
    assert best > 0.3


@needs_renderer
def test_test_subset_uses_held_out_singers_and_pcm16_flac_sums_exactly(tmp_path):
    settings = synth.SynthSettings(seconds=4.0, seed=11, subset="test", fmt="pcm16", ext="flac")
    folder = synth.make_song(tmp_path, 0, settings)
    meta = json.loads((folder / "synth.json").read_text())
    assert meta["vocal_phrases"]
    assert all(synth.is_test_singer(synth.singer_of(Path(p["clip"]))) for p in meta["vocal_phrases"])
    mix, sr = sf.read(str(folder / "mixture.flac"), dtype="int16")
    assert sr == 44100 and mix.shape == (4 * 44100, 2)
    total = sum(sf.read(str(folder / f"{n}.flac"), dtype="int16")[0].astype(np.int64) for n in SOURCES)
    assert np.array_equal(total, mix.astype(np.int64))


@needs_renderer
def test_parallel_jobs_give_the_same_songs(tmp_path):
    settings = synth.SynthSettings(seconds=3.0, seed=5, subset="train")
    one = synth.synth_dataset(tmp_path / "one", 2, settings, jobs=1, progress=False)
    two = synth.synth_dataset(tmp_path / "two", 2, settings, jobs=2, progress=False)
    assert [p.name for p in one] == [p.name for p in two]
    for a, b in zip(one, two):
        for name in (*SOURCES, "mixture"):
            assert _md5(a / f"{name}.wav") == _md5(b / f"{name}.wav")


def test_a_half_written_song_is_no_track_and_a_new_run_clears_it(tmp_path, monkeypatch):
    """A run killed while writing leaves `.synth-*.tmp` (write_song's temp folder): loaders skip it, and the
    next synth_dataset into the same folder deletes it before resuming."""
    from stemgui.data.layout import find_tracks

    from helpers import make_musdb

    root = make_musdb(tmp_path / "data", tracks=2, seconds=1.0)
    partial = root / "train" / ".synth-0-0002.abc123.tmp"
    partial.mkdir()
    sf.write(partial / "drums.wav", np.zeros((441, 2), dtype=np.float32), 44100)  # killed after one stem
    assert [p.name for p in find_tracks(root, "train")] == ["track00", "track01"]
    from stemgui.train.config import Config
    from stemgui.train.data import discover_tracks

    cfg = Config()
    cfg.data.dataset = str(root)
    assert len(discover_tracks(root, cfg, "train")) == 2
    synth.remove_stale_partials(root / "train")
    assert not partial.exists() and (root / "train" / "track00").is_dir()
    synth.remove_stale_partials(tmp_path / "missing")  # nothing to do, no error
