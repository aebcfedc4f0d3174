"""Generator version 3: production chain, recorded kits, held-out singers, old metadata, exact sums."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemgui import SOURCES
from stemgui.data import drumkit, production, synth
from stemgui.data.midi import Note
from stemgui.errors import DatasetError

FLUIDR3 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SECONDS = 4.0


def _requirements() -> str | None:
    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed"
    try:
        synth.find_soundfont()
        synth.vocal_clips("", "train")
    except DatasetError as exc:
        return str(exc)
    return None


_MISSING = _requirements()
needs_renderer = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")
needs_kits = pytest.mark.skipif(not drumkit.find_kits(), reason="hydrogen-drumkits not installed")


def _settings(**kw) -> synth.SynthSettings:
    base = dict(seconds=SECONDS, seed=21, subset="train", soundfont=synth.find_soundfont().as_posix())
    base.update(kw)
    return synth.SynthSettings(**base)


# ------------------------------------------------------------------------------------------ a fake kit


def _write_kit(folder: Path) -> Path:
    """A two-layer kick, a snare, closed and open hats; namespaced XML as newer Hydrogen writes it."""
    folder.mkdir(parents=True)
    rate = 44100
    t = np.arange(int(0.3 * rate)) / rate
    sounds = {"kick_soft.wav": 0.2, "kick_hard.wav": 0.9, "snare.wav": 0.5, "hat.wav": 0.3, "open.wav": 0.3}
    for name, amp in sounds.items():
        sf.write(folder / name, (amp * np.sin(2 * np.pi * 100 * t) * np.exp(-t * 5)).astype(np.float32), rate)
    layer = "<layer><filename>{}</filename><min>{}</min><max>{}</max><gain>1</gain></layer>"
    inst = "<instrument><id>{}</id><name>{}</name><volume>1</volume><pan_L>1</pan_L><pan_R>1</pan_R>{}</instrument>"
    body = "".join([
        inst.format(0, "Kick", layer.format("kick_soft.wav", 0, 0.5) + layer.format("kick_hard.wav", 0.5, 1)),
        inst.format(1, "Snare", layer.format("snare.wav", 0, 1)),
        inst.format(2, "Closed HH", layer.format("hat.wav", 0, 1)),
        inst.format(3, "Open HH", layer.format("open.wav", 0, 1)),
    ])
    (folder / "drumkit.xml").write_text(
        '<?xml version="1.0"?><drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">'
        f"<name>Fake</name><instrumentList>{body}</instrumentList></drumkit_info>")
    return folder


def test_recorded_kit_maps_gm_notes_and_picks_velocity_layers(tmp_path):
    kit = drumkit.load_kit(str(_write_kit(tmp_path / "Fake")))
    assert kit is not None and kit.name == "Fake"
    assert kit.pieces[36].name == "Kick" and kit.pieces[38].name == "Snare"
    assert kit.pieces[42].name == "Closed HH" and kit.pieces[46].name == "Open HH"
    assert kit.pieces[44].name == "Closed HH"  # pedal hat falls back to the closed one
    rng = np.random.default_rng(0)
    assert drumkit._layer(kit.pieces[36], 0.2, rng).path.name == "kick_soft.wav"
    assert drumkit._layer(kit.pieces[36], 0.9, rng).path.name == "kick_hard.wav"
    soft = drumkit.render_kit(kit, [Note(0.1, 0.1, 36, 30, 9)], 44100, np.random.default_rng(1), humanize=0.0)
    hard = drumkit.render_kit(kit, [Note(0.1, 0.1, 36, 120, 9)], 44100, np.random.default_rng(1), humanize=0.0)
    assert np.abs(hard).max() > 5 * np.abs(soft).max()  # a louder layer and a louder hit
    # an open hat is choked by the next closed hit
    choked = drumkit.render_kit(kit, [Note(0.1, 0.1, 46, 100, 9), Note(0.15, 0.1, 42, 1, 9)], 44100,
                                np.random.default_rng(1), humanize=0.0)
    ring = drumkit.render_kit(kit, [Note(0.1, 0.1, 46, 100, 9)], 44100, np.random.default_rng(1), humanize=0.0)
    tail = slice(int(0.2 * 44100), int(0.35 * 44100))
    assert np.abs(ring[:, tail]).max() > 0.01 and np.abs(choked[:, tail]).max() < np.abs(ring[:, tail]).max() * 0.2


def test_a_folder_without_kick_snare_and_hat_is_no_kit(tmp_path):
    folder = tmp_path / "Hands"
    folder.mkdir()
    sf.write(folder / "clap.wav", np.zeros(100, dtype=np.float32), 44100)
    (folder / "drumkit.xml").write_text("<drumkit_info><name>Hands</name><instrumentList><instrument><name>Clap"
                                        "</name><filename>clap.wav</filename></instrument></instrumentList>"
                                        "</drumkit_info>")
    assert drumkit.load_kit(str(folder)) is None


# ------------------------------------------------------------------------------------------ the bus


def test_limiter_never_lets_a_peak_through_and_a_shared_gain_keeps_the_sum():
    rng = np.random.default_rng(4)
    stems = rng.standard_normal((4, 2, 44100)) * np.linspace(0.05, 0.6, 44100)
    mix = stems.sum(axis=0)
    gain, info = production.bus_gain(mix, rng, target_lufs=-9.0)
    assert np.abs(mix * gain).max() <= 10 ** (-1 / 20) + 1e-12
    assert np.allclose((stems * gain).sum(axis=0), mix * gain, atol=1e-12)
    assert abs(production.integrated_loudness(mix * gain) - (-9.0)) < 1.5 and info["target_lufs"] == -9.0


def test_integrated_loudness_of_a_sine_matches_bs1770():
    t = np.arange(3 * 44100) / 44100
    sine = 0.1 * np.sin(2 * np.pi * 997 * t)
    assert production.integrated_loudness(np.stack([sine, sine])) == pytest.approx(-20.0, abs=0.15)


def test_air_modes_put_energy_above_8k_or_take_it_away():
    rng = np.random.default_rng(2)
    from scipy.signal import butter, sosfilt

    spectrum = np.fft.rfft(rng.standard_normal(44100))
    spectrum[7800:] = 0  # 1 Hz bins: nothing above 7.8 kHz, as MIR-1K
    voice = sosfilt(butter(2, 100, "highpass", fs=44100, output="sos"), np.fft.irfft(spectrum, n=44100))

    def above_8k(x):
        spec = np.abs(np.fft.rfft(x)) ** 2
        return spec[int(8500 * len(x) / 44100):].sum() / spec.sum()

    assert above_8k(voice) < 1e-6
    assert above_8k(voice + production.exciter_air(voice, -20)) > 1e-3
    assert above_8k(voice + production.folded_air(voice, -20)) > 1e-3
    assert above_8k(production.lowpass_8k(rng.standard_normal(44100))) < 1e-4


# ------------------------------------------------------------------------------------------ settings, metadata


def test_settings_from_coerces_and_rejects():
    s = synth.settings_from(synth.SynthSettings(), {"production": "false", "drums": "recorded", "lufs_min": "-12"})
    assert (s.production, s.drums, s.lufs_min) == (False, "recorded", -12.0)
    with pytest.raises(DatasetError, match="unknown"):
        synth.settings_from(synth.SynthSettings(), {"reverb": 1})
    with pytest.raises(DatasetError, match="voice_air"):
        synth.settings_from(synth.SynthSettings(), {"voice_air": "sparkle"})
    with pytest.raises(DatasetError, match="production"):
        synth.settings_from(synth.SynthSettings(), {"production": "maybe"})


def test_old_metadata_still_loads(tmp_path):
    """A version-2 song (no settings, no render block) reads as the plain mix; the loaders ignore synth.json."""
    from helpers import make_musdb

    root = make_musdb(tmp_path / "old", tracks=2, seconds=1.0)
    song = root / "train" / "track00"
    (song / "synth.json").write_text(json.dumps({"generator": "stemgui.data.synth", "version": 2, "seed": [1, 0],
                                                 "subset": "train", "seconds": 1.0, "vocal_phrases": []}))
    meta = synth.read_song_meta(song)
    assert meta["version"] == 2 and meta["settings"]["production"] is False
    assert meta["settings"]["drums"] == "soundfont" and meta["render"]["voice_air"] == "exciter"
    from stemgui.train.config import Config
    from stemgui.train.data import discover_tracks

    cfg = Config()
    cfg.data.dataset = str(root)
    assert len(discover_tracks(root, cfg, "train")) == 2
    (song / "synth.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(DatasetError, match="version 99"):
        synth.read_song_meta(song)


# ------------------------------------------------------------------------------------------ held-out singers


def test_training_voice_pool_never_holds_the_real_voice_singers(tmp_path, monkeypatch):
    folder = tmp_path / "Wavfile"
    folder.mkdir()
    for name in ("bobon_1_01", "jmzen_1_02", "amy_2_01", "Ani_3_04"):
        sf.write(folder / f"{name}.wav", np.zeros((1600, 2), dtype=np.float32), 16000)
    for subset in ("train", "valid"):
        singers = {synth.singer_of(p) for p in synth.vocal_clips(tmp_path, subset)}
        assert singers == {"amy", "Ani"}
    assert {synth.singer_of(p) for p in synth.vocal_clips(tmp_path, "test")} == {"bobon", "jmzen"}
    from stemgui.data import mir1k

    # even a split that would let them through is stopped
    monkeypatch.setattr(synth, "is_test_singer", lambda singer: False)
    with pytest.raises(DatasetError, match="held-out singers bobon, jmzen"):
        synth.vocal_clips(tmp_path, "train")
    assert mir1k.HELD_OUT_SINGERS == ("bobon", "jmzen")


# ------------------------------------------------------------------------------------------ rendering


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    """One produced song on a recorded kit (when installed), written and read back."""
    out = tmp_path_factory.mktemp("produced")
    settings = _settings(drums="recorded", harmonies=True, doubling=True)
    folder = synth.make_song(out, 0, settings)
    return settings, folder


@needs_renderer
def test_produced_song_sums_exactly_is_loud_and_records_its_version(produced):
    settings, folder = produced
    synth.verify_exact_sum(folder)
    mix, sr = sf.read(str(folder / "mixture.wav"), dtype="float32")
    stems = [sf.read(str(folder / f"{n}.wav"), dtype="float32")[0] for n in SOURCES]
    assert np.array_equal(stems[0] + stems[1] + stems[2] + stems[3], mix)
    meta = synth.read_song_meta(folder)
    assert meta["version"] == synth.GENERATOR_VERSION == 3
    assert meta["settings"] == settings.production_dict()
    target = meta["mix"]["bus"]["target_lufs"]
    assert settings.lufs_min <= target <= settings.lufs_max
    assert abs(production.integrated_loudness(mix.T.astype(np.float64)) - target) < 2.0
    assert np.abs(mix).max() <= 10 ** (-1 / 20) + 1e-4  # the limiter's ceiling
    for name, stem in zip(SOURCES, stems):
        assert np.sqrt(np.mean(stem ** 2)) > 1e-3, name
    assert all(not synth.is_held_out_singer(synth.singer_of(Path(p["clip"]))) for p in meta["vocal_phrases"])
    if drumkit.find_kits():
        assert meta["render"]["drums"].startswith("recorded:")


@needs_renderer
def test_same_seed_same_audio_other_settings_other_audio(produced):
    settings, folder = produced
    again, meta = synth.render_song(0, settings)
    mix, _ = sf.read(str(folder / "mixture.wav"), dtype="float32")
    assert np.array_equal(again.sum(axis=0, dtype=np.float64).astype(np.float32), mix.T)
    plain, plain_meta = synth.render_song(0, _settings(drums="recorded", production=False))
    assert plain.shape == again.shape and not np.array_equal(plain, again)
    assert "bus" not in plain_meta["mix"] and plain_meta["settings"]["production"] is False


@needs_renderer
def test_lowpass_air_leaves_nothing_above_8k_in_any_stem():
    stems, meta = synth.render_song(1, _settings(drums="soundfont", voice_air="lowpass"))
    assert meta["render"]["voice_air"] == "lowpass"
    for stem in stems:
        spec = np.abs(np.fft.rfft(stem.astype(np.float64).mean(axis=0))) ** 2
        assert spec[int(9000 * stem.shape[-1] / 44100):].sum() < 1e-4 * spec.sum()


@needs_renderer
def test_missing_drum_kits_fall_back_to_the_soundfont_with_a_notice(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("STEMGUI_DRUMKITS", str(tmp_path / "no-kits"))
    monkeypatch.setattr(synth, "_NOTICES", set())
    with caplog.at_level(logging.WARNING, logger="stemgui.data.synth"):
        stems, meta = synth.render_song(2, _settings(drums="recorded"))
    assert meta["render"]["drums"] == "soundfont"
    assert np.sqrt(np.mean(stems[0].astype(np.float64) ** 2)) > 1e-3
    assert any("hydrogen-drumkits" in r.getMessage() for r in caplog.records)


def test_cli_set_and_config_reach_the_generator(tmp_path, monkeypatch):
    from stemgui.cli import main

    seen = {}

    def fake(out, songs, settings, jobs=1, overwrite=False):
        seen["settings"] = settings
        folder = Path(out) / settings.subset / "x"
        return [folder]

    monkeypatch.setattr(synth, "synth_dataset", fake)
    config = tmp_path / "b.yaml"
    config.write_text("voice_air: fold\ndrums: soundfont\n")
    assert main(["synth-dataset", str(tmp_path / "d"), "--songs", "1", "--config", str(config),
                 "--set", "harmonies=false", "--set", "drums=recorded"]) == 0
    s = seen["settings"]
    assert (s.voice_air, s.drums, s.harmonies) == ("fold", "recorded", False)
    assert main(["synth-dataset", str(tmp_path / "d"), "--set", "nonsense"]) == 1


# ------------------------------------------------------------------------------------------ instrumental songs


def test_an_instrumental_arrangement_gives_the_tune_to_an_instrument():
    from stemgui.data.arrange import OTHER_CHS, make_arrangement

    for seed in range(12):
        arr = make_arrangement(np.random.default_rng([5, seed]), 20.0, instrumental=True)
        assert arr.instrumental and arr.describe()["instrumental"] is True
        assert not any(s.lead or s.backing for s in arr.sections)
        melody = arr.roles.index("melody")
        assert len(arr.roles) <= len(OTHER_CHS)
        assert any(r in ("pad", "comp", "power") for r in arr.roles)  # a harmonic part stays
        playing = [s for s in arr.sections if s.others[melody] and s.start_bar * arr.bar_seconds < 20.0]
        assert playing, seed  # the tune sounds within the song, where the voice would have sung
        channel = OTHER_CHS[melody]
        assert any(n.channel == channel for n in arr.stems["other"].notes)
        assert not arr.stems["backing"].notes
        sung = make_arrangement(np.random.default_rng([5, seed]), 20.0)
        assert not sung.instrumental and any(s.lead for s in sung.sections)


def test_the_instrumental_share_is_drawn_per_song_and_checked():
    share = synth.SynthSettings(instrumental=0.3)
    picks = [share.is_instrumental(i) for i in range(400)]
    assert 0.22 < np.mean(picks) < 0.38
    assert picks == [share.is_instrumental(i) for i in range(400)]  # a pure function of (seed, index)
    assert not any(synth.SynthSettings().is_instrumental(i) for i in range(50))
    assert all(synth.SynthSettings(instrumental=1.0).is_instrumental(i) for i in range(50))
    assert synth.settings_from(synth.SynthSettings(), {"instrumental": "0.25"}).instrumental == 0.25
    with pytest.raises(DatasetError, match="instrumental=1.5"):
        synth.settings_from(synth.SynthSettings(), {"instrumental": 1.5})


def test_a_song_made_before_the_instrumental_setting_is_still_finished(tmp_path):
    """Resuming an older dataset (its synth.json has no `instrumental`) keeps its songs instead of re-rendering."""
    settings = synth.SynthSettings(seconds=1.0, seed=3)
    folder = tmp_path / "train" / synth.song_name(3, 0)
    folder.mkdir(parents=True)
    for name in (*SOURCES, "mixture"):
        sf.write(folder / f"{name}.wav", np.zeros((441, 2), dtype=np.float32), 44100)
    stored = {k: v for k, v in settings.production_dict().items() if k != "instrumental"}
    meta = {"seed": [3, 0], "seconds": 1.0, "format": "float", "version": synth.GENERATOR_VERSION,
            "subset": "train", "settings": stored}
    (folder / "synth.json").write_text(json.dumps(meta))
    assert synth._is_done(folder, settings, 0)
    assert synth.read_song_meta(folder)["settings"]["instrumental"] == 0.0
    assert synth.read_song_meta(folder)["instrumental"] is False
    assert not synth._is_done(folder, synth.SynthSettings(seconds=1.0, seed=3, instrumental=0.2), 0)


@needs_renderer
@pytest.mark.parametrize("production_chain", [True, False])
def test_an_instrumental_song_has_a_silent_vocals_stem_and_a_louder_tune(production_chain):
    stems, meta = synth.render_song(4, _settings(drums="soundfont", instrumental=1.0, production=production_chain))
    assert meta["instrumental"] is True and meta["vocal_phrases"] == []
    vocals = stems[SOURCES.index("vocals")]
    assert not np.any(vocals)
    for name in ("drums", "bass", "other"):
        assert np.sqrt(np.mean(stems[SOURCES.index(name)].astype(np.float64) ** 2)) > 1e-3, name
    if production_chain:
        assert any(info.get("tune") for info in meta["mix"]["other"].values())


@needs_renderer
def test_songs_left_sung_by_an_instrumental_share_are_bit_for_bit_the_songs_without_it():
    share = _settings(drums="soundfont", instrumental=0.5, seconds=2.0)
    sung = next(i for i in range(20) if not share.is_instrumental(i))
    with_share, _ = synth.render_song(sung, share)
    without, _ = synth.render_song(sung, _settings(drums="soundfont", seconds=2.0))
    assert np.array_equal(with_share, without)
