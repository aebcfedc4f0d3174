"""`stemgui separate | info | models` end to end with a tiny random-weight model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemgui.cli import main

SR = 44100


@pytest.fixture
def song(tmp_path) -> Path:
    rng = np.random.default_rng(5)
    t = np.arange(int(SR * 2.5)) / SR
    wav = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] * np.ones((1, 2)) + 0.05 * rng.standard_normal((len(t), 2))
    path = tmp_path / "my song.wav"
    sf.write(path, wav.astype(np.float32), SR, subtype="FLOAT")
    return path


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_separate_writes_all_stems_and_sidecar(song, tmp_path, tiny_model_path):
    out = tmp_path / "out"
    assert run_cli("separate", song, "-o", out, "--model", tiny_model_path, "--device", "cpu") == 0
    folder = out / "my song"
    assert leftovers(out) == ["my song"]
    assert leftovers(folder) == ["bass.wav", "drums.wav", "other.wav", "separation.json", "vocals.wav"]
    mix, _ = sf.read(song, dtype="float32")
    for name in ("drums", "bass", "other", "vocals"):
        data, rate = sf.read(folder / f"{name}.wav", dtype="float32")
        assert rate == SR and data.shape == mix.shape
    sidecar = json.loads((folder / "separation.json").read_text())
    assert sidecar["model"]["name"] == "tiny" and len(sidecar["model"]["sha256"]) == 64
    assert sidecar["settings"]["overlap"] == 0.25 and sidecar["settings"]["seed"] == 0
    assert len(sidecar["input"]["sha256"]) == 64 and sidecar["seconds"] > 0


def test_separate_matches_engine_and_resamples_back(tmp_path, tiny_model_path):
    """A 48 kHz song: stems come back at 48 kHz, equal to the engine's output resampled."""
    from stemgui.audio import load_audio, resample
    from stemgui.separate import SeparationSettings, Separator

    rng = np.random.default_rng(2)
    song = tmp_path / "s48.flac"
    sf.write(song, (0.2 * rng.standard_normal((48000 * 2, 2))).astype(np.float32), 48000, subtype="PCM_24")
    out = tmp_path / "out"
    assert run_cli("separate", song, "-o", out, "--model", tiny_model_path, "--format", "wav",
                   "--bit-depth", "32") == 0
    vocals, rate = sf.read(out / "s48" / "vocals.wav", dtype="float32", always_2d=True)
    assert rate == 48000 and len(vocals) == 48000 * 2
    wav, _ = load_audio(song, samplerate=SR)
    expected = Separator.from_path(tiny_model_path, SeparationSettings(device="cpu")).separate(wav)[3]
    expected = resample(expected, SR, 48000)
    n = min(len(vocals), expected.shape[1])
    assert np.abs(vocals[:n].T - expected[:, :n]).max() < 1e-3


def test_two_stems_sum_to_the_song(song, tmp_path, tiny_model_path):
    out = tmp_path / "out"
    assert run_cli("separate", song, "-o", out, "--model", tiny_model_path, "--two-stems", "vocals",
                   "--bit-depth", "32") == 0
    folder = out / "my song"
    assert leftovers(folder) == ["no_vocals.wav", "separation.json", "vocals.wav"]
    mix, _ = sf.read(song, dtype="float32")
    v, _ = sf.read(folder / "vocals.wav", dtype="float32")
    nv, _ = sf.read(folder / "no_vocals.wav", dtype="float32")
    np.testing.assert_allclose(v + nv, mix, atol=1e-6)


@pytest.mark.parametrize("fmt", ["flac", "mp3"])
def test_stem_subset_and_formats(song, tmp_path, tiny_model_path, fmt):
    out = tmp_path / "out"
    assert run_cli("separate", song, "-o", out, "--model", tiny_model_path, "--stems", "vocals,drums",
                   "--format", fmt) == 0
    assert leftovers(out / "my song") == [f"drums.{fmt}", "separation.json", f"vocals.{fmt}"]
    info = sf.info(out / "my song" / f"vocals.{fmt}")
    assert info.samplerate == SR and abs(info.duration - 2.5) < 0.1


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    good = tmp_path / "good.wav"
    sf.write(good, np.zeros((SR, 2), np.float32) + 0.1, SR)
    truncated = tmp_path / "truncated.flac"
    sf.write(truncated, (0.1 * np.random.default_rng(0).standard_normal((SR * 2, 2))).astype(np.float32), SR)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    text = tmp_path / "notes.mp3"
    text.write_text("these are my lyrics, not audio\n" * 50)
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros((0, 2), np.float32), SR)
    nan = tmp_path / "nan.wav"
    data = np.zeros((SR, 2), np.float32)
    data[100] = np.nan
    sf.write(nan, data, SR, subtype="FLOAT")
    folder = tmp_path / "a folder.wav"
    folder.mkdir()
    return {"empty": empty, "truncated": truncated, "text": text, "zero": zero, "nan": nan, "dir": folder,
            "missing": tmp_path / "missing.wav"}


@pytest.mark.parametrize("kind", ["empty", "truncated", "text", "zero", "nan", "dir", "missing"])
def test_bad_inputs_give_one_line_and_no_output(kind, tmp_path, tiny_model_path, capsys):
    bad = _bad_inputs(tmp_path)[kind]
    out = tmp_path / "out"
    assert run_cli("separate", bad, "-o", out, "--model", tiny_model_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("stemgui: error:")]
    assert len(errors) == 1 and bad.name in errors[0], err
    assert leftovers(out) == []


def test_missing_model_is_a_clear_error(song, tmp_path, capsys):
    assert run_cli("separate", song, "-o", tmp_path / "o", "--model", tmp_path / "nope.safetensors") == 1
    assert "nope" in capsys.readouterr().err


def test_interrupt_leaves_nothing_half_written(song, tmp_path, tiny_model_path, monkeypatch):
    """Ctrl-C after some stems were already streamed: exit 130 and no folder, finished-looking or not."""
    from stemgui import separate as engine

    real = engine.Separator._finish
    calls = {"n": 0}

    def finish_then_interrupt(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(engine.Separator, "_finish", finish_then_interrupt)
    out = tmp_path / "out"
    assert run_cli("separate", song, "-o", out, "--model", tiny_model_path, "--segment", "0.5") == 130
    assert calls["n"] == 2
    assert leftovers(out) == []


def test_sigint_in_a_real_process_exits_130(tmp_path, tiny_model_path):
    rng = np.random.default_rng(0)
    song = tmp_path / "long.wav"
    sf.write(song, (0.1 * rng.standard_normal((SR * 60, 2))).astype(np.float32), SR)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "stemgui", "separate", str(song), "-o", str(out),
                             "--model", str(tiny_model_path), "--segment", "1", "--batch-size", "1"],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and any(out.iterdir())):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert leftovers(out) == []


def test_reference_prints_sdr_per_stem(tmp_path, tiny_model_path, capsys):
    rng = np.random.default_rng(3)
    ref = tmp_path / "true"
    ref.mkdir()
    stems = (0.1 * rng.standard_normal((4, SR * 2, 2))).astype(np.float32)
    for name, data in zip(("drums", "bass", "other", "vocals"), stems):
        sf.write(ref / f"{name}.wav", data, SR, subtype="FLOAT")
    sf.write(ref / "mixture.wav", stems.sum(0), SR, subtype="FLOAT")
    assert run_cli("separate", ref / "mixture.wav", "-o", tmp_path / "o", "--model", tiny_model_path,
                   "--reference", ref) == 0
    out = capsys.readouterr().out
    for name in ("drums", "bass", "other", "vocals", "mean"):
        assert name in out
    assert "SDR" in out


def test_info_and_models(song, tmp_path, tiny_model_path, capsys, monkeypatch):
    assert run_cli("info", song) == 0
    line = capsys.readouterr().out
    assert "44100 Hz" in line and "2 channels" in line and "0:02.500" in line
    from stemgui.models.registry import register_user_model

    register_user_model(tiny_model_path, "my-tiny")
    assert run_cli("models") == 0
    listing = capsys.readouterr().out
    assert "my-tiny (user)" in listing
    assert run_cli("models", "show", "my-tiny") == 0
    assert json.loads(capsys.readouterr().out)["sources"] == ["drums", "bass", "other", "vocals"]
    assert run_cli("info", tmp_path / "missing.wav") == 1


def test_help_lists_every_command(capsys):
    from stemgui.cli import COMMANDS

    with pytest.raises(SystemExit) as exit_:
        run_cli("--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_a_command_imports_only_its_own_module(song):
    """The dispatcher routes by its table: `stemgui info` does not import the other commands (or Qt)."""
    code = ("import sys; from stemgui.cli import main; rc = main(['info', sys.argv[1]]); "
            "print(sorted(m for m in sys.modules if m.startswith('stemgui.cli.') or m == 'PySide6')); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(song)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "['stemgui.cli.info']"


def test_without_a_display_the_app_separates_on_the_command_line(song, tmp_path, tiny_model_path, monkeypatch,
                                                                  capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.chdir(tmp_path)
    assert run_cli("--no-audio") == 2  # no song: nothing to do without a window
    assert "no display found" in capsys.readouterr().err
    assert run_cli(song, "--model", tiny_model_path) == 0
    assert "no display found" in capsys.readouterr().err
    assert leftovers(tmp_path / "separated" / "my song") == ["bass.wav", "drums.wav", "other.wav",
                                                             "separation.json", "vocals.wav"]


@pytest.mark.parametrize("rate,channels,subtype,shifts", [(48000, 2, "PCM_24", 2), (22050, 1, "PCM_16", 0),
                                                           (44100, 6, "FLOAT", 1), (44100, 2, "PCM_16", 2)])
def test_streamed_cli_equals_the_whole_waveform_path(tmp_path, tiny_model_path, rate, channels, subtype, shifts):
    """The CLI decodes, resamples and separates as a stream: the stems equal load -> separate -> resample."""
    import warnings

    from stemgui.audio import load_audio, resample
    from stemgui.separate import SeparationSettings, Separator

    rng = np.random.default_rng(rate + channels)
    song = tmp_path / f"s{rate}.flac" if subtype != "FLOAT" else tmp_path / f"s{rate}.wav"
    sf.write(song, (0.2 * rng.standard_normal((int(rate * 5.3), channels))).astype(np.float32), rate,
             subtype=subtype)
    out = tmp_path / "out"
    assert run_cli("separate", song, "-o", out, "--model", tiny_model_path, "--bit-depth", "32",
                   "--shifts", str(shifts), "--segment", "1", "--two-stems", "vocals") == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wav, _ = load_audio(song, samplerate=SR, channels=2)
    sep = Separator.from_path(tiny_model_path, SeparationSettings(device="cpu", shifts=shifts, segment=1.0))
    stems = sep.separate(wav)
    vocals = resample(stems[3], SR, rate)
    no_vocals = resample(wav - stems[3], SR, rate)
    for name, expected in (("vocals", vocals), ("no_vocals", no_vocals)):
        got, got_rate = sf.read(out / song.stem / f"{name}.wav", dtype="float32", always_2d=True)
        assert got_rate == rate and got.shape == (expected.shape[1], 2)
        np.testing.assert_allclose(got.T, expected, atol=1e-6, rtol=0)


def _hot_song(tmp_path: Path, gain: float = 30.0) -> Path:
    """A float wav whose samples go far beyond full scale (legitimate in float, lost if clipped)."""
    rng = np.random.default_rng(11)
    t = np.arange(int(SR * 2.2)) / SR
    wav = gain * (0.3 * np.sin(2 * np.pi * 110 * t)[:, None] + 0.1 * rng.standard_normal((len(t), 2)))
    path = tmp_path / "hot.wav"
    sf.write(path, wav.astype(np.float32), SR, subtype="FLOAT")
    return path


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("stemgui: warning") or "Warning" in line]


def test_float_input_gives_float_stems_without_clipping(tmp_path, tiny_model_path, capsys):
    song = _hot_song(tmp_path)
    out = tmp_path / "out"
    assert run_cli("separate", song, "-o", out, "--model", tiny_model_path) == 0
    assert _warnings(capsys.readouterr().err) == []
    folder = out / "hot"
    assert sf.info(folder / "vocals.wav").subtype == "FLOAT"
    peaks = [np.abs(sf.read(folder / f"{n}.wav", dtype="float32")[0]).max() for n in ("drums", "bass", "other",
                                                                                       "vocals")]
    assert max(peaks) > 1.0  # kept, not clipped
    clip = json.loads((folder / "separation.json").read_text())["clip"]
    assert clip["mode"] == "none" and clip["factor"] == 1.0 and clip["peak"] == pytest.approx(max(peaks), rel=1e-5)


def test_integer_output_is_rescaled_by_one_recorded_factor(tmp_path, tiny_model_path, capsys):
    song = _hot_song(tmp_path)
    assert run_cli("separate", song, "-o", tmp_path / "f", "--model", tiny_model_path) == 0
    assert run_cli("separate", song, "-o", tmp_path / "i", "--model", tiny_model_path, "--format", "flac") == 0
    err = capsys.readouterr().err
    lines = _warnings(err)
    assert len(lines) == 1 and lines[0].startswith(f"stemgui: warning: {song}: the stems peak at "), err
    assert "scaled by" in lines[0] and "UserWarning" not in err
    clip = json.loads((tmp_path / "i" / "hot" / "separation.json").read_text())["clip"]
    assert clip["mode"] == "rescale" and clip["output"] == "16-bit flac"
    assert clip["factor"] == pytest.approx(0.99 / clip["peak"]) and clip["peak"] > 1.0
    for name in ("drums", "bass", "other", "vocals"):
        full, _ = sf.read(tmp_path / "f" / "hot" / f"{name}.wav", dtype="float32")
        fit, _ = sf.read(tmp_path / "i" / "hot" / f"{name}.flac", dtype="float32")
        assert np.abs(fit).max() <= 0.99 + 1e-4
        np.testing.assert_allclose(fit, full * clip["factor"], atol=1.5 / 32768)


def test_clamp_cuts_peaks_with_one_warning(tmp_path, tiny_model_path, capsys):
    song = _hot_song(tmp_path)
    assert run_cli("separate", song, "-o", tmp_path / "c", "--model", tiny_model_path, "--bit-depth", "24",
                   "--clip", "clamp") == 0
    lines = _warnings(capsys.readouterr().err)
    assert len(lines) == 1 and "clamped" in lines[0] and str(song) in lines[0]
    clip = json.loads((tmp_path / "c" / "hot" / "separation.json").read_text())["clip"]
    assert clip["mode"] == "clamp" and clip["factor"] == 1.0 and clip["output"] == "24-bit wav"
    data, _ = sf.read(tmp_path / "c" / "hot" / "vocals.wav", dtype="float32")
    assert np.abs(data).max() <= 1.0


def test_quiet_integer_song_is_written_unchanged(song, tmp_path, tiny_model_path, capsys):
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, sf.read(song, dtype="float32")[0], SR, subtype="PCM_16")
    assert run_cli("separate", quiet, "-o", tmp_path / "o", "--model", tiny_model_path) == 0
    assert _warnings(capsys.readouterr().err) == []
    sidecar = json.loads((tmp_path / "o" / "quiet" / "separation.json").read_text())
    assert sidecar["clip"]["factor"] == 1.0 and sidecar["clip"]["peak"] < 1.0
    assert sf.info(tmp_path / "o" / "quiet" / "vocals.wav").subtype == "PCM_16"


def test_a_warning_is_one_line_naming_the_file(tmp_path, tiny_model_path, capsys):
    six = tmp_path / "six.wav"
    sf.write(six, (0.1 * np.random.default_rng(0).standard_normal((SR, 6))).astype(np.float32), SR)
    assert run_cli("separate", six, "-o", tmp_path / "o", "--model", tiny_model_path) == 0
    err = capsys.readouterr().err
    assert _warnings(err) == [f"stemgui: warning: {six}: 6 channels downmixed to 2."], err


def test_decoder_chatter_never_reaches_the_terminal(tmp_path, tiny_model_path, capfd):
    """A text file named .mp3: libmpg123 would print 'Note: Illegal Audio-MPEG-Header' lines on fd 2."""
    text = tmp_path / "notes.mp3"
    text.write_text("these are my lyrics, not audio\n" * 50)
    assert run_cli("separate", text, "-o", tmp_path / "o", "--model", tiny_model_path) == 1
    assert run_cli("info", text) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [f"stemgui: error: {text}: not a readable audio file (unknown, unsupported or corrupt format)."] * 2
    done = subprocess.run([sys.executable, "-m", "stemgui", "info", str(text)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == err[:1]
