"""Lazy segment datasets: MUSDB folders, .stem.mp4, MIR-1K (real clips), stem-mapped folders; errors; split."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemgui import SOURCES
from stemgui.errors import DatasetError
from stemgui.train.config import Config
from stemgui.train.data import (
    SegmentDataset,
    StepBatchSampler,
    ValidationDataset,
    discover_tracks,
    load_splits,
    read_source,
    split_tracks,
)

from helpers import RATE, make_musdb, make_stems

MIR1K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mir-1k-subset"


def _cfg(root, **data) -> Config:
    cfg = Config()
    cfg.data.dataset = str(root)
    cfg.data.segment = 0.5
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def test_segments_are_lazy_deterministic_and_sum_to_mix(tmp_path):
    root = make_musdb(tmp_path, tracks=3, seconds=2.0)
    cfg = _cfg(root)
    train, valid, sources = load_splits(cfg)
    assert sources == list(SOURCES) and len(train) == 2 and len(valid) == 1
    ds = SegmentDataset(train, sources, cfg, length=10)
    mix, stems = ds[3]
    assert stems.shape == (4, 2, RATE // 2) and stems.dtype == torch.float32
    torch.testing.assert_close(mix, stems.sum(0))
    mix2, stems2 = SegmentDataset(train, sources, cfg, length=10)[3]
    assert torch.equal(stems, stems2)  # a pure function of (seed, index)
    assert not torch.equal(stems, ds[4][1])


def test_unaugmented_segment_matches_the_files(tmp_path):
    root = make_musdb(tmp_path, tracks=1, seconds=2.0)
    cfg = _cfg(root, valid_fraction=0.0)
    a = cfg.augment
    a.remix = a.channel_swap = a.sign_flip = a.gain = False
    a.shift = 0.0
    train, _, sources = load_splits(cfg)
    ds = SegmentDataset(train, sources, cfg, length=4)
    mix, stems = ds[1]
    full = np.stack([sf.read(root / "train" / "track00" / f"{s}.wav", dtype="float32")[0].T for s in SOURCES])
    # find the offset from the bass stem and check every stem at that offset
    starts = [o for o in range(full.shape[-1] - stems.shape[-1] + 1)
              if np.allclose(full[1, :, o:o + 8], stems[1, :, :8].numpy())]
    assert starts
    o = starts[0]
    np.testing.assert_allclose(stems.numpy(), full[:, :, o:o + stems.shape[-1]], atol=1e-7)


def test_missing_stem_and_mismatches_raise(tmp_path):
    root = make_musdb(tmp_path, tracks=2, seconds=0.5)
    track = root / "train" / "track01"
    (track / "bass.wav").unlink()
    with pytest.raises(DatasetError, match="track01: missing stem 'bass'"):
        discover_tracks(root, _cfg(root), "train")
    sf.write(track / "bass.wav", np.zeros((1000, 2), np.float32), RATE)
    with pytest.raises(DatasetError, match=r"bass.wav: 1000 samples, but drums.wav has 22050"):
        discover_tracks(root, _cfg(root), "train")
    sf.write(track / "bass.wav", np.zeros((11025, 2), np.float32), 22050)
    with pytest.raises(DatasetError, match=r"bass.wav: sample rate 22050 Hz differs"):
        discover_tracks(root, _cfg(root), "train")
    with pytest.raises(DatasetError, match="dataset folder not found"):
        discover_tracks(tmp_path / "nope", _cfg(tmp_path / "nope"), None)


def test_split_is_deterministic_by_seed(tmp_path):
    root = make_musdb(tmp_path, tracks=6, seconds=0.3)
    tracks = discover_tracks(root, _cfg(root), "train")
    a = split_tracks(tracks, 0.34, seed=1)
    b = split_tracks(tracks, 0.34, seed=1)
    assert [t.name for t in a[1]] == [t.name for t in b[1]] and len(a[1]) == 2
    assert {t.name for t in a[0]} | {t.name for t in a[1]} == {t.name for t in tracks}
    assert not {t.name for t in a[0]} & {t.name for t in a[1]}


def test_valid_subset_and_validation_dataset(tmp_path):
    make_musdb(tmp_path, tracks=2, seconds=1.0)
    make_musdb(tmp_path, tracks=1, seconds=3.0, subset="test", seed=5)
    cfg = _cfg(tmp_path, valid_subset="test", valid_seconds=1.0)
    train, valid, sources = load_splits(cfg)
    assert len(train) == 2 and len(valid) == 1
    mix, stems = ValidationDataset(valid, sources, cfg)[0]
    assert stems.shape == (4, 2, RATE) and torch.allclose(mix, stems.sum(0))


def test_folder_with_stem_map_and_resampling(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        folder = tmp_path / f"song{i}"
        folder.mkdir()
        stems = make_stems(rng, 1.0, rate=22050)
        sf.write(folder / "Lead Vox.wav", stems[3, 0], 22050)  # mono
        sf.write(folder / "backing.flac", stems[:3].sum(0).T, 22050)
    cfg = _cfg(tmp_path, format="folder", sources=["vocals", "accompaniment"],
               stem_map={"vocals": "Lead Vox.wav", "accompaniment": "backing.flac"}, valid_fraction=0.0)
    train, valid, sources = load_splits(cfg)
    assert sources == ["vocals", "accompaniment"] and len(train) == 2
    assert train[0].samplerate == 22050
    seg = read_source(train[0], "vocals", 4410, 8820, RATE, 2)
    assert seg.shape == (2, 8820) and np.allclose(seg[0], seg[1])  # mono -> stereo, resampled to 44.1 kHz
    _, stems = SegmentDataset(train, sources, cfg, 2)[0]
    assert stems.shape == (2, 2, RATE // 2)
    bad = _cfg(tmp_path, format="folder", sources=["vocals", "drums"], stem_map={"vocals": "Lead Vox.wav"})
    with pytest.raises(DatasetError, match="no file name for source"):
        load_splits(bad)
    bad.data.stem_map = {"vocals": "Lead Vox.wav", "drums": "kit.wav"}
    with pytest.raises(DatasetError, match="kit.wav: stem file for 'drums' not found"):
        load_splits(bad)


@pytest.mark.skipif(not (MIR1K / "Wavfile").is_dir(), reason="MIR-1K subset not present in ../shared/datasets")
def test_mir1k_real_clips(tmp_path):
    root = tmp_path / "mir"
    (root / "Wavfile").mkdir(parents=True)
    clips = sorted((MIR1K / "Wavfile").glob("*.flac"))[:3]
    for clip in clips:
        shutil.copy(clip, root / "Wavfile" / clip.name)
    # The original distribution is WAV: one clip as WAV too.
    data, sr = sf.read(clips[0], dtype="float32")
    sf.write(root / "Wavfile" / "Wav_1_01.wav", data, sr)
    cfg = _cfg(root, valid_fraction=0.0)
    train, _, sources = load_splits(cfg)
    assert sources == ["accompaniment", "vocals"] and len(train) == 4
    track = next(t for t in train if t.name == clips[0].stem)
    assert track.samplerate == 16000
    import soxr

    expected = soxr.resample(data, 16000, RATE, quality="HQ").T  # (2, T) at 44.1 kHz
    start, n = 22050, 22050
    acc = read_source(track, "accompaniment", start, n, RATE, 2)
    voc = read_source(track, "vocals", start, n, RATE, 2)
    assert acc.shape == voc.shape == (2, n)
    np.testing.assert_allclose(acc[0], expected[0, start:start + n], atol=2e-3)  # left = accompaniment
    np.testing.assert_allclose(voc[1], expected[1, start:start + n], atol=2e-3)  # right = voice
    mix, stems = SegmentDataset(train, sources, cfg, 4)[2]
    assert stems.shape == (2, 2, RATE // 2) and torch.isfinite(stems).all()


def test_mir1k_training_leaves_out_the_real_voice_singers(tmp_path):
    """No model trains on its own real-voice check: bobon/jmzen clips are dropped unless a protocol asks."""
    root = tmp_path / "mir" / "Wavfile"
    root.mkdir(parents=True)
    clip = 0.1 * np.random.default_rng(0).standard_normal((16000, 2)).astype(np.float32)
    for name in ("amy_1_01", "bobon_1_01", "jmzen_2_03", "annar_3_02"):
        sf.write(root / f"{name}.wav", clip, 16000)
    cfg = _cfg(tmp_path / "mir", valid_fraction=0.0)
    train, _, _ = load_splits(cfg)
    assert sorted(t.name for t in train) == ["amy_1_01", "annar_3_02"]
    cfg.data.mir1k_held_out_singers = True  # e.g. scripts/drnn_mir1k.py, whose split is given by singer names
    train, _, _ = load_splits(cfg)
    assert len(train) == 4


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg CLI needed to build a .stem.mp4 fixture")
def test_stem_mp4(tmp_path):
    rate, seconds = 44100, 2.0
    t = np.arange(int(rate * seconds)) / rate
    freqs = {"drums": 200.0, "bass": 500.0, "other": 1100.0, "vocals": 2300.0}
    wavs = []
    for name, f in freqs.items():
        path = tmp_path / f"{name}.wav"
        sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * f * t)] * 2, 1), rate)
        wavs.append(path)
    mix = tmp_path / "mix.wav"
    sf.write(mix, sum(sf.read(w)[0] for w in wavs), rate)
    out = tmp_path / "set" / "song.stem.mp4"
    out.parent.mkdir()
    cmd = ["ffmpeg", "-loglevel", "error", "-y"]
    for w in [mix, *wavs]:
        cmd += ["-i", str(w)]
    for i in range(5):
        cmd += ["-map", f"{i}:a"]
    cmd += ["-c:a", "aac", "-b:a", "128k", str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    cfg = _cfg(tmp_path / "set", valid_fraction=0.0)
    tracks, _, sources = load_splits(cfg)
    assert len(tracks) == 1 and tracks[0].samplerate == rate and tracks[0].frames >= rate * 1.9
    for name, f in freqs.items():
        seg = read_source(tracks[0], name, 30000, 8192, rate, 2)
        assert seg.shape == (2, 8192)
        spectrum = np.abs(np.fft.rfft(seg[0] * np.hanning(8192)))
        peak = np.argmax(spectrum) * rate / 8192
        assert abs(peak - f) < 15, (name, peak)
        assert 0.15 < np.abs(seg).max() < 0.45
    # two-stem training reads the accompaniment as the sum of the drums, bass and other streams
    parts = sum(read_source(tracks[0], name, 30000, 8192, rate, 2) for name in ("drums", "bass", "other"))
    cfg.data.sources = ["vocals", "accompaniment"]
    tracks, _, sources = load_splits(cfg)
    assert sources == ["vocals", "accompaniment"]
    acc = read_source(tracks[0], "accompaniment", 30000, 8192, rate, 2)
    np.testing.assert_allclose(acc, parts, atol=1e-6)


def test_step_sampler_shards_the_global_batch():
    single = list(StepBatchSampler(4, 2, 4))
    assert single == [[8, 9, 10, 11], [12, 13, 14, 15]]
    r0 = list(StepBatchSampler(4, 2, 4, rank=0, world_size=2))
    r1 = list(StepBatchSampler(4, 2, 4, rank=1, world_size=2))
    assert [a + b for a, b in zip(r0, r1)] == single
    with pytest.raises(DatasetError, match="not divisible"):
        StepBatchSampler(3, 0, 1, rank=0, world_size=2)


def test_helper_stems_sum_to_mixture(tmp_path):
    root = make_musdb(tmp_path, tracks=1, seconds=0.5)
    track = root / "train" / "track00"
    mix, _ = sf.read(track / "mixture.wav", dtype="float32")
    total = sum(sf.read(track / f"{s}.wav", dtype="float32")[0] for s in SOURCES)
    np.testing.assert_allclose(mix, total, atol=1e-6)
