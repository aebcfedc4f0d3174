"""Stem cache (keys, round trip, atomicity, clearing) and exports checked sample by sample."""

import os
from collections import namedtuple

import numpy as np
import pytest
import soundfile as sf

from stemgui.errors import AudioError, Cancelled
from stemgui.gui import export
from stemgui.gui.cache import StemCache, cache_key, file_digest
from stemgui.gui.mixer import LaneMix, mix_as_heard

SR = 44100
NAMES = ["drums", "bass", "other", "vocals"]


@pytest.fixture
def stems():
    rng = np.random.default_rng(3)
    return (0.2 * rng.standard_normal((4, 2, 20_011))).astype(np.float32)


def test_cache_key_depends_on_song_model_and_settings(tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    base = cache_key(file_digest(a), "m1", {"shifts": 0, "overlap": 0.25})
    assert base == cache_key(file_digest(a), "m1", {"overlap": 0.25, "shifts": 0})
    assert base != cache_key(file_digest(b), "m1", {"shifts": 0, "overlap": 0.25})
    assert base != cache_key(file_digest(a), "m2", {"shifts": 0, "overlap": 0.25})
    assert base != cache_key(file_digest(a), "m1", {"shifts": 1, "overlap": 0.25})


def test_cache_round_trip_including_loud_stems(tmp_path, stems):
    cache = StemCache(tmp_path / "c")
    stems = stems.copy()
    stems[0] *= 8  # peaks well over full scale: stored scaled, restored exactly enough
    assert cache.get("k") is None
    cache.put("k", stems, SR, NAMES, {"song": "x"})
    got = cache.get("k")
    assert got.sources == tuple(NAMES) and got.samplerate == SR and got.stems.shape == stems.shape
    peak = np.abs(stems).max(axis=(1, 2))
    for s in range(4):
        tol = max(1.0, peak[s] / 0.999) * 2.0 ** -23 * 1.01
        assert np.abs(got.stems[s] - stems[s]).max() <= tol
    assert "k" in cache and cache.size_bytes() > 0
    assert cache.clear() > 0 and cache.get("k") is None and cache.size_bytes() == 0


def test_cancelled_cache_write_leaves_nothing(tmp_path, stems):
    cache = StemCache(tmp_path / "c")
    calls = iter([False, False, True])
    with pytest.raises(Cancelled):
        cache.put("k", stems, SR, NAMES, cancel=lambda: next(calls))
    assert "k" not in cache and list((tmp_path / "c").iterdir()) == []


def test_damaged_entry_is_a_miss(tmp_path, stems):
    cache = StemCache(tmp_path / "c")
    folder = cache.put("k", stems, SR, NAMES)
    (folder / "lanes.f32").write_bytes(b"garbage")
    assert cache.get("k") is None and not folder.exists()


@pytest.mark.parametrize("bit_depth", ["float", 24, 16])
def test_export_stems_sample_by_sample(tmp_path, stems, bit_depth):
    seen = []
    paths = export.export_stems(stems, NAMES, SR, tmp_path, "song", "wav", selected=["bass", "vocals"],
                                bit_depth=bit_depth, progress=lambda f, m: seen.append(f))
    assert [p.name for p in paths] == ["song - bass.wav", "song - vocals.wav"]
    tol = {"float": 0, 24: 2.0 ** -23, 16: 2.0 ** -15}[bit_depth]
    for path, idx in zip(paths, (1, 3)):
        data, sr = sf.read(path, dtype="float32", always_2d=True)
        assert sr == SR and data.shape == (stems.shape[2], 2)
        assert np.abs(data.T - stems[idx]).max() <= tol
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_export_flac_and_mp3(tmp_path, stems):
    flac = export.export_stems(stems, NAMES, SR, tmp_path, "s", "flac", selected=["drums"])[0]
    data, _ = sf.read(flac, dtype="float32")
    assert np.abs(data.T - stems[0]).max() <= 2.0 ** -23
    mp3 = export.export_stems(stems, NAMES, SR, tmp_path, "s", "mp3", selected=["drums"])[0]
    info = sf.info(mp3)
    assert info.format == "MP3" and info.samplerate == SR and abs(info.frames - stems.shape[2]) < 3000


def test_export_mix_as_heard_with_loop_region(tmp_path, stems):
    audio = np.concatenate([stems.sum(axis=0, keepdims=True), stems])  # lane 0 = the original mix
    lanes = [LaneMix(mute=True), LaneMix(gain=0.5, pan=-0.5), LaneMix(solo=True), LaneMix(solo=True, mute=True),
             LaneMix(solo=True, gain=2.0)]
    path = export.export_mix(audio, lanes, SR, tmp_path / "mix.wav", region=(1000, 15_000), bit_depth="float")
    data, _ = sf.read(path, dtype="float32", always_2d=True)
    expected = mix_as_heard(audio, lanes, 1000, 15_000)
    assert data.shape == (14_000, 2)
    np.testing.assert_array_equal(data.T, expected)
    # longhand: bass and vocals are soloed (other is soloed but muted: mute wins), vocals at double gain;
    # the panned drums lane is silent because it is not soloed
    np.testing.assert_allclose(data.T, (stems[1] + 2.0 * stems[3])[:, 1000:15_000], atol=1e-6)


def test_never_overwrite_without_asking(tmp_path, stems):
    target = tmp_path / "song - drums.wav"
    target.write_bytes(b"keep me")
    with pytest.raises(Cancelled):
        export.export_stems(stems, NAMES, SR, tmp_path, "song", "wav", selected=["drums"])
    with pytest.raises(Cancelled):
        export.export_stems(stems, NAMES, SR, tmp_path, "song", "wav", selected=["drums"],
                            confirm_overwrite=lambda paths: False)
    assert target.read_bytes() == b"keep me"
    asked = []
    export.export_stems(stems, NAMES, SR, tmp_path, "song", "wav", selected=["drums"],
                        confirm_overwrite=lambda paths: asked.append(paths) or True)
    assert asked == [[target]] and sf.info(target).frames == stems.shape[2]


def test_cancelled_export_leaves_no_file(tmp_path):
    long = np.zeros((1, 2, 10 * export.BLOCK), np.float32)
    calls = iter([False, False, True])
    with pytest.raises(Cancelled):
        export.export_stems(long, ["drums"], SR, tmp_path, "song", "wav", cancel=lambda: next(calls))
    assert list(tmp_path.iterdir()) == []


def test_full_disk_is_one_clear_sentence(tmp_path, stems, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(export.shutil, "disk_usage", lambda _p: Usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(AudioError, match="disk is full"):
        export.export_stems(stems, NAMES, SR, tmp_path, "song", "wav")
    assert list(tmp_path.iterdir()) == []


def test_write_error_mid_file_is_reported_and_cleaned(tmp_path, stems):
    def broken(a, b):
        if a > 0:
            raise OSError(28, os.strerror(28))
        return np.zeros((2, b - a), np.float32)

    with pytest.raises(AudioError, match="disk is full"):
        export.write_audio(tmp_path / "x.wav", 3 * export.BLOCK, 2, SR, broken)
    assert list(tmp_path.iterdir()) == []


def test_silent_mix_is_refused(tmp_path, stems):
    with pytest.raises(AudioError, match="muted"):
        export.export_mix(stems, [LaneMix(mute=True)] * 4, SR, tmp_path / "m.wav")
