"""`stemgui remix` (presets, gains, pans, mutes, tempo, transpose, loop) and its sameness with the app's export;
the app's practice controls (tempo, transpose, BPM/key, A/B), the second-model comparison and exact_sum."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pytestqt")

from test_gui_app import separate, settings, songs, wait_for, window  # noqa: E402,F401 - fixtures
from test_player import jack_dummy  # noqa: E402,F401 - the JACK dummy-driver fixture

from stemgui.cli import main as cli_main  # noqa: E402
from stemgui.cli.remix import find_stems, lanes_from_args  # noqa: E402
from stemgui.gui.cache import cache_key  # noqa: E402
from stemgui.gui.dialogs import ExportOptions  # noqa: E402
from stemgui.gui.workers import cache_settings  # noqa: E402
from stemgui.mix import LaneMix, Playback, render_mix  # noqa: E402

SR = 44100
NAMES = ["drums", "bass", "other", "vocals"]


def write_stems(folder, seconds=3.0, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    stems = (0.2 * rng.standard_normal((4, 2, int(seconds * SR)))).astype(np.float32)
    for name, stem in zip(NAMES, stems):
        sf.write(folder / f"{name}.wav", stem.T, SR, subtype="FLOAT")
    return stems


def args(**kw):
    base = dict(preset=None, gain=[], pan=[], mute=[], solo=[])
    base.update(kw)
    return argparse.Namespace(**base)


def test_find_stems_in_lane_order(tmp_path):
    write_stems(tmp_path / "s")
    (tmp_path / "s" / "piano.wav").write_bytes((tmp_path / "s" / "bass.wav").read_bytes())
    assert [p.stem for p in find_stems(tmp_path / "s")] == NAMES + ["piano"]


def test_lanes_from_options():
    lanes = lanes_from_args(args(preset="karaoke", gain=["bass=-6"], pan=["drums=-0.3"], mute=["other"]), NAMES)
    assert [l.mute for l in lanes] == [False, False, True, True]
    assert lanes[1].gain == pytest.approx(10 ** (-6 / 20)) and lanes[0].pan == pytest.approx(-0.3)
    assert [l.mute for l in lanes_from_args(args(preset="acapella"), NAMES)] == [True, True, True, False]
    with pytest.raises(Exception, match="no stem 'guitar'"):
        lanes_from_args(args(gain=["guitar=-3"]), NAMES)
    with pytest.raises(Exception, match="STEM=VALUE"):
        lanes_from_args(args(gain=["vocals"]), NAMES)


def test_remix_writes_the_mixers_samples(tmp_path):
    stems = write_stems(tmp_path / "s")
    out = tmp_path / "karaoke.wav"
    rc = cli_main(["remix", str(tmp_path / "s"), "--preset", "karaoke", "--gain", "bass=-6", "--pan", "drums=-0.3",
                   "--bit-depth", "float", "-o", str(out)])
    assert rc == 0
    got, sr = sf.read(out, dtype="float32", always_2d=True)
    lanes = [LaneMix(pan=-0.3), LaneMix(gain=10 ** (-6 / 20)), LaneMix(), LaneMix(mute=True)]
    np.testing.assert_array_equal(got.T, render_mix(stems, lanes, SR))
    assert cli_main(["remix", str(tmp_path / "s"), "-o", str(out)]) == 1  # exists: not replaced without -y


def test_remix_tempo_transpose_and_loop(tmp_path):
    write_stems(tmp_path / "s", seconds=4.0)
    out = tmp_path / "practice.flac"
    rc = cli_main(["remix", str(tmp_path / "s"), "--mute", "drums", "--tempo", "0.8", "--transpose", "-2",
                   "--cents", "30", "--loop", "1", "3", "-o", str(out)])
    assert rc == 0
    info = sf.info(out)
    assert info.frames == int(round(2 * SR / 0.8))
    assert cli_main(["remix", str(tmp_path / "s"), "--tempo", "3", "-y", "-o", str(out)]) == 1
    assert cli_main(["remix", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.wav")]) == 1


def test_app_export_and_remix_give_the_same_samples(qtbot, window, songs, tmp_path):
    separate(qtbot, window, songs["short"])
    session = window.session
    # the same settings in the app and on the command line
    window.apply_preset("Karaoke")
    window.set_lane_mix(session.names.index("bass"), gain=10 ** (-6 / 20))
    window.set_lane_mix(session.names.index("drums"), pan=-0.3)
    window.practice.tempo_spin.setValue(90)
    window.practice.semitones_spin.setValue(-2)
    assert window.player.playback == Playback(0.9, -2.0)
    worker = window.export(ExportOptions(folder=str(tmp_path / "app"), fmt="wav", mix=True))
    wait_for(qtbot, worker)
    app_files = list((tmp_path / "app").glob("*.wav"))
    assert len(app_files) == 1, window.dialogs.messages
    stems_dir = tmp_path / "stems"
    stems_dir.mkdir()
    for name, stem in zip(session.stem_names, session.stems):
        sf.write(stems_dir / f"{name}.wav", stem.T, session.samplerate, subtype="FLOAT")
    out = tmp_path / "cli.wav"
    assert cli_main(["remix", str(stems_dir), "--preset", "karaoke", "--gain", "bass=-6", "--pan", "drums=-0.3",
                     "--tempo", "0.9", "--transpose", "-2", "-o", str(out)]) == 0
    app, _ = sf.read(app_files[0], dtype="int32")
    cli, _ = sf.read(out, dtype="int32")
    assert app.shape == cli.shape == (int(round(session.frames / 0.9)), 2)
    np.testing.assert_array_equal(app, cli)


def test_practice_controls_and_ab_reach_the_player(qtbot, window, songs):
    separate(qtbot, window, songs["short"])
    p = window.practice
    qtbot.waitUntil(lambda: p.analysis is not None, timeout=20_000)
    assert "BPM" in p.key_label.text() or "unclear" in p.key_label.text()
    p.tempo_spin.setValue(75)
    p.semitones_spin.setValue(3)
    p.cents_spin.setValue(-25)
    assert window.player.tempo == pytest.approx(0.75) and window.player.semitones == pytest.approx(2.75)
    assert "Estimated from the song" in p.key_label.toolTip()
    assert not window.player.original
    window.keys.for_key("A").shortcuts[0].activated.emit()
    assert window.player.original and p.ab_button.text() == "A/B: song"
    gains = window.player.target_gains
    assert gains[0].tolist() == [1.0, 1.0] and not gains[1:].any()  # the song alone
    p.ab_button.click()
    assert not window.player.original


def test_second_model_comparison(qtbot, window, songs, tmp_path):
    from conftest import make_tiny_model

    from stemgui.models.card import save_model

    other = tmp_path / "other.safetensors"
    save_model(make_tiny_model(seed=7), other, {"name": "other", "training": {"note": "random weights, tests"}})
    separate(qtbot, window, songs["short"])
    worker = window.compare_with_model(other)
    wait_for(qtbot, worker)
    assert window.player.alternate_loaded, window.dialogs.messages
    p = window.practice
    assert p.ab_mode.isVisible() and "other" in p.ab_mode.currentText()
    p.toggle_ab()
    assert window.player.using_alternate and not window.player.original
    assert not np.array_equal(window.player.heard_audio[1:], window.session.stems)
    p.toggle_ab()
    assert not window.player.using_alternate


def test_exact_sum_is_on_by_default_shown_and_in_the_cache_key(qtbot, window, settings):
    panel = window.settings_panel
    assert settings.exact_sum and panel.exact_sum_check.isChecked()
    assert window.separation_settings().exact_sum is True
    assert "add up to the song" in panel.card_label.text()
    on = cache_key("song", "model", cache_settings(window.separation_settings()))
    panel.exact_sum_check.setChecked(False)
    assert settings.exact_sum is False and window.separation_settings().exact_sum is False
    assert "Raw model stems" in panel.card_label.text()
    assert cache_key("song", "model", cache_settings(window.separation_settings())) != on


def test_clean_up_choice_is_saved_shown_and_in_the_cache_key(qtbot, window, settings, monkeypatch):
    panel = window.settings_panel
    assert settings.refine == "auto" and panel.refine_combo.currentData() == "auto"
    assert window.separation_settings().refine == "auto"
    auto = cache_key("song", "model", cache_settings(window.separation_settings()))
    panel.refine_combo.setCurrentIndex(panel.refine_combo.findData("vocals"))
    assert settings.refine == "vocals" and window.separation_settings().refine == "vocals"
    assert "Clean-up: cleaner vocals" in panel.card_label.text()
    assert cache_key("song", "model", cache_settings(window.separation_settings())) != auto
    # with the card, the key holds the mode that will run: "auto" on a card that chooses wiener = wiener
    card = {"sources": ["drums", "bass", "other", "vocals"], "separation": {"refine": "wiener"}}
    panel.refine_combo.setCurrentIndex(panel.refine_combo.findData("auto"))
    assert cache_settings(window.separation_settings(), card)["refine"] == "wiener"
    # stems cached under older rules of a mode miss the cache; no refinement, no rules in the key
    from stemgui import refine

    key = cache_key("song", "model", cache_settings(window.separation_settings(), card))
    assert cache_settings(window.separation_settings(), card)["refine_rules"] == refine.RULES_VERSION
    monkeypatch.setattr("stemgui.gui.workers.RULES_VERSION", refine.RULES_VERSION + 1)
    assert cache_key("song", "model", cache_settings(window.separation_settings(), card)) != key
    panel.refine_combo.setCurrentIndex(panel.refine_combo.findData("off"))
    assert "refine_rules" not in cache_settings(window.separation_settings(), card)


def test_a_vocals_clean_up_is_off_for_a_model_without_vocals(qtbot, window, settings, monkeypatch):
    """The saved choice stays; this model just separates without it, and the card line says why."""
    panel = window.settings_panel
    panel.refine_combo.setCurrentIndex(panel.refine_combo.findData("vocals-strict"))
    monkeypatch.setattr(panel, "current_card", lambda: {"name": "dbo", "sources": ["drums", "bass", "other"]})
    panel._on_model_changed()
    assert window.separation_settings().refine == "off" and settings.refine == "vocals-strict"
    assert "Clean-up: off (this model has no vocals stem)" in panel.card_label.text()


@pytest.mark.audio_device
def test_stretching_six_lanes_while_separating_never_stalls(qtbot, settings, songs, tmp_path, jack_dummy):
    """Six stems + the song through JACK at 80 % and -3 semitones while a second model separates the song."""
    import os
    import time

    from conftest import make_tiny_model
    from test_gui_app import Heartbeat, write_song

    from stemgui.gui.cache import StemCache
    from stemgui.gui.dialogs import RecordingDialogs
    from stemgui.gui.main_window import MainWindow
    from stemgui.models.card import save_model

    six = ("drums", "bass", "other", "vocals", "guitar", "piano")
    first, second = tmp_path / "six_a.safetensors", tmp_path / "six_b.safetensors"
    for path, seed in ((first, 1), (second, 2)):
        save_model(make_tiny_model(six, seed=seed), path, {"name": path.stem, "training": {"note": "tests"}})
    win = MainWindow(settings, RecordingDialogs(), StemCache(tmp_path / "c"), model=str(first))
    qtbot.addWidget(win)
    win.show()
    assert win.audio_ok, win.audio_reason
    separate(qtbot, win, write_song(tmp_path / "eight.wav", 8.0, 3))
    assert len(win.session.names) == 7
    win.set_loop(0.0, win.session.duration)  # loops, so it plays on however long the separation takes
    win.enable_loop(True)
    win.practice.tempo_spin.setValue(80)
    win.practice.semitones_spin.setValue(-3)
    win.toggle_play()
    qtbot.waitUntil(lambda: win.player.stretching, timeout=5_000)
    beat = Heartbeat()
    beat.start()
    cpu0, t0 = win.player.callback_cpu_seconds, time.monotonic()
    worker = win.compare_with_model(second)
    qtbot.waitUntil(worker.isFinished, timeout=120_000)
    for step in range(10):  # and the tempo moved while it plays
        win.practice.tempo_spin.setValue(60 + 8 * step)
        qtbot.wait(50)
    beat.stop()
    elapsed = time.monotonic() - t0
    cpu = (win.player.callback_cpu_seconds - cpu0) / elapsed
    load = os.getloadavg()[0]
    print(f"stretching 7 lanes while separating for {elapsed:.1f} s: longest event-loop stall "
          f"{beat.longest * 1000:.1f} ms (GUI-thread CPU at most {beat.longest_busy * 1000:.1f} ms between ticks), "
          f"{win.player.underruns} underruns, {win.player.starved} blocks not ready, audio-thread CPU {cpu * 100:.1f} % "
          f"of a core, longest callback "
          f"{win.player.callback_seconds_max * 1000:.1f} ms, queue grew to {win.player.queue_blocks} blocks, "
          f"load average {load:.1f}, longest garbage collection {beat.longest_gc * 1000:.1f} ms (left out)")
    assert win.player.playing and win.player.alternate_loaded
    assert beat.longest_busy < 0.100  # our GUI code never works 100 ms at a stretch
    if load <= (os.cpu_count() or 1):  # on an oversubscribed shared machine the OS decides: only reported
        assert beat.longest < 0.100
        assert win.player.underruns == 0 and win.player.starved == 0
    win.shutdown()
