"""stemgui.audio: round trips for every format, channel handling, resampling accuracy, bad input, atomic writes."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from stemgui.audio import (
    AudioInfo,
    AudioWriter,
    audio_info,
    convert_channels,
    iter_blocks,
    load_audio,
    resample,
    save_audio,
)
from stemgui.errors import AudioError, StemGUIError

SR = 44100
EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "examples"


def stereo_tones(seconds: float = 0.5, sr: int = SR, freqs=(440.0, 660.0), amps=(0.5, 0.3)) -> np.ndarray:
    """Different tone per channel, so a swapped or mixed-up channel shows in the test."""
    t = np.arange(int(seconds * sr)) / sr
    return np.stack([a * np.sin(2 * np.pi * f * t) for f, a in zip(freqs, amps)]).astype(np.float32)


def sweeps(seconds: float = 0.5, sr: int = SR) -> np.ndarray:
    """A rising and a falling chirp: no periodicity, so the codec delay is found without ambiguity."""
    t = np.arange(int(seconds * sr)) / sr

    def chirp(f0: float, f1: float) -> np.ndarray:
        return np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))

    return np.stack([0.5 * chirp(200, 2000), 0.3 * chirp(3000, 500)]).astype(np.float32)


def noise(channels: int = 2, seconds: float = 0.25, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.25 * rng.standard_normal((channels, int(seconds * SR)))).clip(-0.99, 0.99).astype(np.float32)


def write_pyav(path: Path, wav: np.ndarray, sr: int, codec: str = "aac") -> Path:
    """Encode with PyAV (the container follows the suffix: .m4a -> mp4, .aac -> ADTS)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr)
        stream.layout = "stereo"
        stream.bit_rate = 192_000
        for i in range(0, wav.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav[:, i:i + 1024]), format="fltp",
                                               layout="stereo")
            frame.sample_rate = sr
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def aligned_snr(ref: np.ndarray, est: np.ndarray, max_lag: int = 4096) -> tuple[float, int]:
    """SNR in dB of `est` against `ref` after the best integer shift (lossy codecs add delay/padding)."""
    n = min(ref.shape[1], est.shape[1])
    r, e = ref[0, :n].astype(np.float64), est[0, :n].astype(np.float64)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    xc = np.fft.irfft(np.fft.rfft(e, size) * np.conj(np.fft.rfft(r, size)), size)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    lag = int(lags[np.argmax(np.r_[xc[: max_lag + 1], xc[-max_lag:]])])
    a, b = (ref[:, : n - lag], est[:, lag:n]) if lag >= 0 else (ref[:, -lag:n], est[:, : n + lag])
    err = np.sum((a - b) ** 2)
    return 10 * np.log10(np.sum(a**2) / max(err, 1e-20)), lag


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "name, bit_depth, tol, codec",
    [
        ("x.wav", 16, 1 / 2**15, "pcm_s16"),
        ("x.wav", 24, 1 / 2**23, "pcm_s24"),
        ("x.wav", 32, 0.0, "pcm_f32"),
        ("x.wav", "float", 0.0, "pcm_f32"),
        ("x.flac", 16, 1 / 2**15, "flac"),
        ("x.flac", 24, 1 / 2**23, "flac"),
    ],
)
def test_lossless_round_trip(tmp_path, name, bit_depth, tol, codec):
    x = noise()
    out = save_audio(tmp_path / name, x, SR, bit_depth=bit_depth)
    assert out == tmp_path / name and out.is_file()
    y, sr = load_audio(out)
    assert sr == SR and y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= tol
    info = audio_info(out)
    assert isinstance(info, AudioInfo)
    assert (info.samplerate, info.channels, info.frames) == (SR, 2, x.shape[1])
    assert info.duration == pytest.approx(x.shape[1] / SR)
    assert info.format == out.suffix[1:] and (info.codec == codec or codec == "flac")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["x.mp3", "x.ogg"])
def test_lossy_round_trip_soundfile(tmp_path, name):
    x = sweeps()
    out = save_audio(tmp_path / name, x, SR)
    y, sr = load_audio(out)
    assert sr == SR and y.shape[0] == 2
    assert abs(y.shape[1] - x.shape[1]) <= 2304  # two MP3 granules of padding at most
    snr, lag = aligned_snr(x, y)
    assert snr > 20 and abs(lag) < 2048
    # channels are not swapped: left is the rising chirp
    assert np.corrcoef(x[0, 4096:-4096], y[0, 4096 + lag:y.shape[1] - 4096 + lag])[0, 1] > 0.99
    info = audio_info(out)
    assert info.codec == {"x.mp3": "mp3", "x.ogg": "vorbis"}[name] and info.channels == 2


def test_mp3_is_written_at_320k(tmp_path):
    x = noise(seconds=0.3)
    out = save_audio(tmp_path / "x.mp3", x, SR)
    with av.open(str(out)) as c:
        assert c.streams.audio[0].bit_rate == 320_000


def test_mp3_through_pyav_when_libsndfile_lacks_mp3(tmp_path, monkeypatch):
    real = soundfile.check_format
    monkeypatch.setattr(soundfile, "check_format", lambda fmt, *a: fmt != "MP3" and real(fmt, *a))
    monkeypatch.setattr(soundfile, "SoundFile", type("NoSoundFile", (), {}))  # writing via libsndfile would fail
    x = sweeps(0.5)
    out = save_audio(tmp_path / "x.mp3", x, SR)
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name.startswith("mp3") and c.streams.audio[0].bit_rate == 320_000
    y, sr = load_audio(out)
    assert sr == SR and abs(y.shape[1] - x.shape[1]) <= 2304 and aligned_snr(x, y)[0] > 20


@pytest.mark.parametrize("name", ["x.m4a", "x.aac"])
def test_lossy_round_trip_pyav(tmp_path, name):
    x = sweeps()
    path = write_pyav(tmp_path / name, x, SR)
    y, sr = load_audio(path)
    assert sr == SR and y.shape[0] == 2
    assert abs(y.shape[1] - x.shape[1]) <= 3 * 1024  # AAC frames are 1024 samples (+ priming)
    snr, _ = aligned_snr(x, y)
    assert snr > 20
    info = audio_info(path)
    assert info.codec == "aac" and info.samplerate == SR and info.channels == 2
    assert info.duration == pytest.approx(x.shape[1] / SR, abs=0.1)


def test_opus_round_trip_pyav(tmp_path):
    x = sweeps(0.5, sr=48000)
    path = tmp_path / "x.opus"
    soundfile.write(path, x.T, 48000, format="OGG", subtype="OPUS")
    y, sr = load_audio(path)  # .opus goes to PyAV
    assert sr == 48000 and abs(y.shape[1] - x.shape[1]) <= 960
    assert aligned_snr(x, y)[0] > 15
    y44, sr44 = load_audio(path, samplerate=SR)
    assert sr44 == SR and abs(y44.shape[1] - y.shape[1] * SR / 48000) <= 1
    info = audio_info(path)
    assert (info.codec, info.samplerate) == ("opus", 48000)


def test_m4a_length_follows_container_not_codec_padding(tmp_path):
    x = sweeps(1.0)
    y, _ = load_audio(write_pyav(tmp_path / "x.m4a", x, SR))
    assert y.shape[1] == x.shape[1]


def test_pyav_path_matches_soundfile(tmp_path, monkeypatch):
    """The PyAV decoder (FLAC decodes to packed s16 there) gives the same samples as libsndfile."""
    import stemgui.audio.load as load_mod

    x = noise()
    paths = [save_audio(tmp_path / "a.wav", x, SR, bit_depth=16), save_audio(tmp_path / "a.flac", x, SR,
                                                                             bit_depth=24)]
    expected = [load_audio(p)[0] for p in paths]
    monkeypatch.setattr(load_mod, "prefers_pyav", lambda p: True)
    for p, want in zip(paths, expected):
        got, sr = load_audio(p)
        assert sr == SR and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_pyav_fallback_when_soundfile_cannot_read(tmp_path):
    """An AAC file with a .wav name: libsndfile refuses it, PyAV decodes it."""
    x = sweeps()
    path = write_pyav(tmp_path / "x.m4a", x, SR)
    renamed = path.rename(tmp_path / "really-aac.wav")
    y, sr = load_audio(renamed)
    assert sr == SR and aligned_snr(x, y)[0] > 20
    assert audio_info(renamed).codec == "aac"


# ---------------------------------------------------------------- channels


def test_mono_becomes_stereo(tmp_path):
    x = noise(channels=1)
    path = save_audio(tmp_path / "mono.wav", x[0], SR, bit_depth=32)  # 1-D counts as mono
    assert audio_info(path).channels == 1
    y, _ = load_audio(path)
    assert y.shape == (2, x.shape[1])
    np.testing.assert_array_equal(y[0], x[0])
    np.testing.assert_array_equal(y[1], x[0])
    mono, _ = load_audio(path, channels=1)
    assert mono.shape == (1, x.shape[1])
    native, _ = load_audio(path, channels=None)
    assert native.shape == (1, x.shape[1])


def test_stereo_to_mono_averages(tmp_path):
    x = noise()
    path = save_audio(tmp_path / "s.wav", x, SR, bit_depth=32)
    y, _ = load_audio(path, channels=1)
    np.testing.assert_allclose(y[0], x.mean(axis=0), atol=1e-7)


def test_six_channels_downmix_with_warning(tmp_path):
    n = SR // 10
    x = np.zeros((6, n), dtype=np.float32)  # 5.1 in WAV order: FL FR FC LFE BL BR
    x[0] = 0.5  # front left only on the left
    x[5] = -0.25  # back right only on the right
    x[3] = 0.9  # LFE is dropped
    path = save_audio(tmp_path / "surround.wav", x, SR, bit_depth=32)
    with pytest.warns(UserWarning, match="6 channels downmixed"):
        y, _ = load_audio(path)
    assert y.shape == (2, n)
    w = 1 + 2 * 0.7071  # left = (FL + .707 FC + .707 BL) / sum of weights
    np.testing.assert_allclose(y[0], 0.5 / w, atol=1e-6)
    np.testing.assert_allclose(y[1], -0.25 * 0.7071 / w, atol=1e-6)
    assert np.max(np.abs(y)) <= 1.0
    with pytest.warns(UserWarning, match="6 channels"):
        blocks = list(iter_blocks(path, 1000))
    np.testing.assert_allclose(np.concatenate(blocks, axis=1), y, atol=1e-7)


def test_named_layout_downmix_through_pyav(tmp_path):
    """A 5.1 AAC file: PyAV names the channels, a centre-only signal lands equally on both sides."""
    sr, n = 48000, 24000
    x = np.zeros((6, n), dtype=np.float32)
    x[2] = 0.5 * np.sin(2 * np.pi * 500 * np.arange(n) / sr)  # FC in FFmpeg's 5.1 order
    path = tmp_path / "surround.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sr)
        stream.layout = "5.1"
        for i in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, i:i + 1024]), format="fltp", layout="5.1")
            frame.sample_rate, frame.pts = sr, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    native, _ = load_audio(path, channels=None)
    assert native.shape == (6, n)
    with pytest.warns(UserWarning, match="6 channels downmixed to 2"):
        y, _ = load_audio(path)
    np.testing.assert_array_equal(y[0], y[1])
    rms = np.sqrt(np.mean(y[:, 2000:-2000] ** 2))
    assert rms == pytest.approx(0.5 * 0.7071 / (1 + 2 * 0.7071) / np.sqrt(2), rel=0.05)


def test_convert_channels_refuses_other_counts():
    with pytest.raises(ValueError):
        convert_channels(np.zeros((2, 10), np.float32), 3)


# ---------------------------------------------------------------- resampling


def test_resample_round_trip_snr_and_frequency():
    sr2 = 48000
    t = np.arange(SR) / SR
    x = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.25 * np.sin(2 * np.pi * 3000 * t)]).astype(np.float32)
    up = resample(x, SR, sr2)
    assert up.shape == (2, sr2) and up.dtype == np.float32
    for ch, f in enumerate((1000, 3000)):  # 1 s at 48 kHz: FFT bins are 1 Hz apart
        assert int(np.argmax(np.abs(np.fft.rfft(up[ch])))) == f
    back = resample(up, sr2, SR)
    assert back.shape == x.shape
    edge = 2000
    err = back[:, edge:-edge] - x[:, edge:-edge]
    snr = 10 * np.log10(np.sum(x[:, edge:-edge] ** 2) / np.sum(err**2))
    assert snr > 80, snr


def test_resample_identity_and_shapes():
    x = noise()
    np.testing.assert_array_equal(resample(x, SR, SR), x)
    assert resample(x[0, :10000], SR, 22050).shape == (5000,)
    assert resample(np.zeros((2, 0), np.float32), SR, 48000).shape == (2, 0)
    stems = np.stack([x, 0.5 * x, -x])  # (sources, channels, samples) keeps its leading axes
    out = resample(stems, SR, 22050)
    assert out.shape == (3, 2, 5513) and out.dtype == np.float32
    np.testing.assert_allclose(out[1], 0.5 * resample(x, SR, 22050), atol=1e-6)
    with pytest.raises(ValueError):
        resample(x, 0, SR)


def test_load_resamples_to_requested_rate(tmp_path):
    x = stereo_tones(0.5, sr=22050)
    path = save_audio(tmp_path / "low.flac", x, 22050)
    y, sr = load_audio(path, samplerate=SR)
    assert sr == SR and y.shape == (2, x.shape[1] * 2)
    assert int(np.argmax(np.abs(np.fft.rfft(y[0])))) == 440 // 2  # 0.5 s: 2 Hz bins


# ---------------------------------------------------------------- blocks


def test_iter_blocks_matches_load(tmp_path):
    x = noise(seconds=0.3)
    path = save_audio(tmp_path / "b.wav", x, SR, bit_depth=32)
    blocks = list(iter_blocks(path, 4000))
    assert all(b.shape == (2, 4000) for b in blocks[:-1]) and 0 < blocks[-1].shape[1] <= 4000
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), x)


def test_iter_blocks_resampled_stream_matches_one_shot(tmp_path):
    x = stereo_tones(0.5)
    path = save_audio(tmp_path / "b.wav", x, SR, bit_depth=32)
    streamed = np.concatenate(list(iter_blocks(path, 3000, samplerate=48000)), axis=1)
    whole, _ = load_audio(path, samplerate=48000)
    assert abs(streamed.shape[1] - whole.shape[1]) <= 1
    n = min(streamed.shape[1], whole.shape[1])
    assert np.max(np.abs(streamed[:, 500:n - 500] - whole[:, 500:n - 500])) < 1e-3


def test_iter_blocks_reports_bad_samples(tmp_path):
    x = noise()
    x[1, -5] = np.inf
    path = tmp_path / "inf.wav"
    soundfile.write(path, x.T, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="inf.wav: contains NaN or infinite samples"):
        list(iter_blocks(path, 1024))


def test_load_buffer_grows_and_compacts_exactly():
    """load_audio's store: grows past a wrong length estimate, ends C-contiguous with the exact samples."""
    from stemgui.audio.load import _Buffer

    rng = np.random.default_rng(3)
    blocks = [rng.standard_normal((3, int(k))).astype(np.float32) for k in rng.integers(0, 5000, 40)]
    for capacity in (1000, sum(b.shape[1] for b in blocks) + 77):
        buf = _Buffer(3, capacity)
        for b in blocks:
            buf.append(b)
        out = buf.finish()
        assert out.flags.c_contiguous
        np.testing.assert_array_equal(out, np.concatenate(blocks, axis=1))


# ---------------------------------------------------------------- bad input


def _wav_bytes(tmp_path: Path, x: np.ndarray, fmt: str = "WAV") -> bytes:
    p = tmp_path / f"scratch.{fmt.lower()}"
    soundfile.write(p, x.T, SR, format=fmt)
    data = p.read_bytes()
    p.unlink()
    return data


def make_bad(kind: str, folder: Path) -> Path:
    x = noise(seconds=0.5)
    if kind == "missing":
        return folder / "missing.wav"
    if kind == "directory":
        (folder / "folder.wav").mkdir()
        return folder / "folder.wav"
    if kind == "empty":
        p = folder / "empty.mp3"
        p.touch()
        return p
    if kind == "truncated-wav":
        data = _wav_bytes(folder, x)
        p = folder / "truncated.wav"
        p.write_bytes(data[: len(data) // 2])
        return p
    if kind == "truncated-header":
        p = folder / "header.wav"
        p.write_bytes(_wav_bytes(folder, x)[:30])
        return p
    if kind == "truncated-flac":
        data = _wav_bytes(folder, x, "FLAC")
        p = folder / "truncated.flac"
        p.write_bytes(data[: len(data) // 2])
        return p
    if kind == "truncated-mp3":
        data = _wav_bytes(folder, x, "MP3")
        p = folder / "truncated.mp3"
        p.write_bytes(data[: len(data) // 2])
        return p
    if kind in ("truncated-ogg", "truncated-opus"):
        opus = kind.endswith("opus")
        p = folder / ("truncated.opus" if opus else "truncated.ogg")
        soundfile.write(folder / "full.ogg", x.T, 48000 if opus else SR, format="OGG",
                        subtype="OPUS" if opus else "VORBIS")
        data = (folder / "full.ogg").read_bytes()
        (folder / "full.ogg").unlink()
        p.write_bytes(data[: len(data) * 9 // 10])
        return p
    if kind == "truncated-aac":
        data = write_pyav(folder / "full.aac", x, SR).read_bytes()
        (folder / "full.aac").unlink()
        p = folder / "truncated.aac"
        p.write_bytes(data[: len(data) // 2 + 100])
        return p
    if kind == "truncated-m4a":
        data = write_pyav(folder / "full.m4a", x, SR).read_bytes()
        (folder / "full.m4a").unlink()
        p = folder / "truncated.m4a"
        p.write_bytes(data[: len(data) // 2])
        return p
    if kind == "text-as-mp3":
        p = folder / "notes.mp3"
        p.write_text("These are my lyrics, not a song.\n" * 50)
        return p
    if kind == "garbage":
        p = folder / "garbage.wav"
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return p
    if kind == "unsupported":
        p = folder / "picture.png"
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
        return p
    if kind == "zero-length":
        p = folder / "silence0.wav"
        soundfile.write(p, np.zeros((0, 2), np.float32), SR)
        return p
    if kind in ("nan", "inf"):
        x[0, 100] = np.nan if kind == "nan" else -np.inf
        p = folder / f"{kind}.wav"
        soundfile.write(p, x.T, SR, subtype="FLOAT")
        return p
    raise AssertionError(kind)


BAD = {
    "missing": "not found",
    "directory": "folder",
    "empty": "empty",
    "truncated-wav": "truncated",
    "truncated-header": "not a readable audio file",
    "truncated-flac": "corrupt or truncated",
    "truncated-mp3": "truncated",
    "truncated-m4a": "not a readable audio file",
    "truncated-ogg": "truncated",
    "truncated-opus": "truncated",
    "truncated-aac": "corrupt or truncated",
    "text-as-mp3": "not a readable audio file",
    "garbage": "not a readable audio file",
    "unsupported": "contains no audio stream",
    "zero-length": "no audio",
    "nan": "contains NaN or infinite samples",
    "inf": "contains NaN or infinite samples",
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_raises_audio_error_naming_the_file(tmp_path, kind):
    bad = make_bad(kind, tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(AudioError) as err:
        load_audio(bad, samplerate=48000)
    message = str(err.value)
    assert bad.name in message and BAD[kind] in message
    assert "\n" not in message and message.endswith(".")
    assert isinstance(err.value, StemGUIError)
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, nothing left behind
    with pytest.raises(AudioError, match=bad.name):
        list(iter_blocks(bad, 4096))


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "text-as-mp3", "truncated-header", "unsupported"])
def test_audio_info_bad_input(tmp_path, kind):
    bad = make_bad(kind, tmp_path)
    with pytest.raises(AudioError, match=bad.name):
        audio_info(bad)


def test_audio_info_does_not_decode(tmp_path, monkeypatch):
    path = save_audio(tmp_path / "x.flac", noise(), SR)
    monkeypatch.setattr(soundfile.SoundFile, "read", lambda *a, **k: pytest.fail("audio_info decoded audio"))
    assert audio_info(path).frames == noise().shape[1]


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize(
    "name, channels, kwargs, match",
    [
        ("x.xyz", 2, {}, "unsupported output format"),
        ("x.flac", 2, {"bit_depth": 32}, "FLAC stores 16 or 24-bit"),
        ("x.wav", 2, {"bit_depth": 8}, "unsupported bit depth"),
        ("x.mp3", 6, {}, "MP3 stores mono or stereo only"),
    ],
)
def test_save_rejects_bad_settings(tmp_path, name, channels, kwargs, match):
    with pytest.raises(AudioError, match=f"{name}: .*{match}"):
        save_audio(tmp_path / name, noise(channels=channels), SR, **kwargs)
    assert os.listdir(tmp_path) == []


def test_save_rejects_nan_and_leaves_nothing(tmp_path):
    x = noise(seconds=8.0)  # several write chunks: the NaN sits in the last one
    x[0, -3] = np.nan
    with pytest.raises(AudioError, match="x.wav: refusing to write NaN"):
        save_audio(tmp_path / "x.wav", x, SR)
    assert os.listdir(tmp_path) == []


def test_save_onto_a_folder_fails_cleanly(tmp_path):
    (tmp_path / "stem.wav").mkdir()
    with pytest.raises(AudioError, match="stem.wav: is a folder"):
        save_audio(tmp_path / "stem.wav", noise(), SR)
    assert leftovers(tmp_path) == []


def test_save_creates_parent_folders(tmp_path):
    out = save_audio(tmp_path / "song" / "stems" / "vocals.flac", noise(), SR)
    assert out.is_file() and load_audio(out)[0].shape == (2, noise().shape[1])


def test_integer_formats_clip_with_warning(tmp_path):
    x = noise()
    x[0, 10], x[1, 20] = 1.5, -2.0
    with pytest.warns(UserWarning, match="clipped"):
        path = save_audio(tmp_path / "loud.wav", x, SR, bit_depth=24)
    y, _ = load_audio(path)
    assert np.max(np.abs(y)) <= 1.0 and y[0, 10] == pytest.approx(1.0, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # float WAV keeps the overs, silently
        path = save_audio(tmp_path / "loud-float.wav", x, SR, bit_depth="float")
    assert load_audio(path)[0][1, 20] == -2.0


def test_mp3_at_unsupported_rate_is_converted(tmp_path):
    x = stereo_tones(0.25, sr=96000)
    with pytest.warns(UserWarning, match="96000 Hz"):
        path = save_audio(tmp_path / "hi.mp3", x, 96000)
    info = audio_info(path)
    assert info.samplerate == 48000 and info.duration == pytest.approx(0.25, abs=0.06)


def test_failure_mid_write_leaves_no_partial_file(tmp_path, monkeypatch):
    dest = tmp_path / "vocals.wav"
    save_audio(dest, np.zeros((2, 100), np.float32), SR)  # an older result that must survive
    old = dest.read_bytes()
    real_write = soundfile.SoundFile.write

    def failing_write(self, data):
        real_write(self, data[: len(data) // 2])  # some bytes reach the temp file, then the disk "fills up"
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(soundfile.SoundFile, "write", failing_write)
    with pytest.raises(AudioError, match="vocals.wav: writing failed \\(no space left on device\\)"):
        save_audio(dest, noise(), SR)
    assert dest.read_bytes() == old
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["vocals.wav"]


def test_failure_on_close_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(13, "Permission denied")))
    with pytest.raises(AudioError, match="x.flac: writing failed"):
        save_audio(tmp_path / "x.flac", noise(), SR)
    assert os.listdir(tmp_path) == []


def test_streaming_writer(tmp_path):
    x = noise(seconds=0.5)
    dest = tmp_path / "drums.flac"
    with AudioWriter(dest, SR, channels=2, bit_depth=24) as writer:
        for start in range(0, x.shape[1], 5000):
            writer.write(x[:, start:start + 5000])
            assert not dest.exists()  # nothing at the destination until the stem is complete
            temps = leftovers(tmp_path)
            assert len(temps) == 1 and temps[0].startswith(".drums.tmp-") and temps[0].endswith(".flac")
    assert writer.frames == x.shape[1]
    assert leftovers(tmp_path) == []
    y, sr = load_audio(dest)
    assert sr == SR and np.max(np.abs(y - x)) <= 1 / 2**23


def test_streaming_writer_exception_discards(tmp_path):
    dest = tmp_path / "bass.wav"
    with pytest.raises(RuntimeError, match="cancelled"):
        with AudioWriter(dest, SR, channels=2) as writer:
            writer.write(noise())
            raise RuntimeError("cancelled")
    assert os.listdir(tmp_path) == []


def test_streaming_writer_rejects_wrong_shape(tmp_path):
    dest = tmp_path / "other.wav"
    with pytest.raises(AudioError, match="other.wav: expected \\(2, samples\\)"):
        with AudioWriter(dest, SR, channels=2) as writer:
            writer.write(noise(channels=3))
    assert os.listdir(tmp_path) == []


def test_streaming_writer_mp3(tmp_path):
    x = sweeps(0.5)
    with AudioWriter(tmp_path / "mix.mp3", SR, channels=2) as writer:
        writer.write(x[:, :10000])
        writer.write(x[:, 10000:])
    y, _ = load_audio(tmp_path / "mix.mp3")
    assert aligned_snr(x, y)[0] > 20


def test_new_files_follow_umask(tmp_path):
    out = save_audio(tmp_path / "x.wav", noise(), SR)
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------- real songs


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="../shared/examples is not present in this checkout")
def test_real_example_files():
    mp3 = EXAMPLES / "steven-m-bryant-slow-motion-dream.mp3"
    wav, sr = load_audio(mp3)
    assert sr == 44100 and wav.shape[0] == 2
    assert wav.shape[1] / sr == pytest.approx(10.88, abs=0.05)  # listed as 11 s
    assert 0.05 < np.max(np.abs(wav)) < 2.0 and np.isfinite(wav).all()  # mp3 decodes may overshoot 1.0
    assert audio_info(mp3).frames == wav.shape[1]
    ogg = audio_info(EXAMPLES / "kevin-macleod-vibe-ace.ogg")
    assert (ogg.samplerate, ogg.channels, ogg.codec, ogg.format) == (44100, 2, "vorbis", "ogg")
    assert ogg.duration == pytest.approx(61.46, abs=0.05)  # listed as 61 s


@pytest.mark.parametrize("suffix,rate,channels", [(".wav", 48000, 2), (".flac", 22050, 1), (".mp3", 44100, 2),
                                                  (".ogg", 32000, 2), (".m4a", 48000, 2), (".wav", 8000, 6)])
@pytest.mark.parametrize("target", [None, 44100, 48000])
def test_count_frames_is_exactly_what_decoding_gives(tmp_path, suffix, rate, channels, target):
    from stemgui.audio import count_frames

    rng = np.random.default_rng(rate)
    path = tmp_path / f"x{suffix}"
    x = (0.1 * rng.standard_normal((channels, int(rate * 1.37) + 3))).astype(np.float32)
    write_pyav(path, x, rate) if suffix == ".m4a" else save_audio(path, x, rate)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wav, _ = load_audio(path, samplerate=target)
        streamed = sum(b.shape[1] for b in iter_blocks(path, 5000, samplerate=target))
    assert count_frames(path, target) == wav.shape[1] == streamed


def test_resampled_length_matches_soxr():
    import soxr

    from stemgui.audio import resampled_length

    rng = np.random.default_rng(0)
    rates = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 7999]
    for _ in range(200):
        a, b = (int(r) for r in rng.choice(rates, 2))
        n = int(rng.integers(1, 100_000))
        assert resampled_length(n, a, b) == len(soxr.resample(np.zeros(n, np.float32), a, b, quality="HQ"))
    assert resampled_length(121380, 24000, 88200) == 446071 and resampled_length(1000, 8000, 44100) == 5513
