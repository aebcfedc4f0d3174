"""A whole listening test driven headless: `create` on a tiny song, a scripted listener in the app's window
(pytest-qt, no audio device: the test pulls the player's blocks), resume after a crash, then `report`."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import Qt
from test_player import jack_dummy  # noqa: F401 - the JACK dummy device fixture

from stemgui import SOURCES
from stemgui.cli import main
from stemgui.gui.dialogs import RecordingDialogs
from stemgui.gui.listening import REFERENCE, SWITCH_RAMP_SECONDS, ListeningWindow
from stemgui.listening import conditions, design
from stemgui.listening.manifest import HIDDEN_REFERENCE, read_manifest

from helpers import RATE, make_musdb


def config_text(root, mode="mushra", model=None, anchors="[3500, 7000]", stems='["vocals", "drums"]',
                excerpts="[[0.5, 1.5], [1.5, 2.5]]", objective="false", oracle=True):
    systems = f'[[systems]]\nname = "tiny"\nmodel = "{model}"\n' if model else ""
    if oracle:
        systems += '[[systems]]\nname = "irm"\noracle = "irm"\n'
    return f"""
[test]
name = "tiny test"
mode = "{mode}"
seed = 7
stems = {stems}
anchors = {anchors}
objective = {objective}

[[songs]]
name = "song"
mix = "{root}/train/track00/mixture.wav"
stems = "{root}/train/track00"
excerpts = {excerpts}

{systems}
[[systems]]
name = "other-tool"
folder = "other/{{song}}"
"""


def make_song(tmp):
    root = make_musdb(tmp / "data", tracks=1, seconds=3.0, seed=2)
    other = tmp / "other" / "song"  # "another tool": the true stems with some noise
    other.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in SOURCES:
        audio, rate = sf.read(root / "train" / "track00" / f"{name}.wav", dtype="float32")
        sf.write(other / f"{name}.wav", audio + 0.02 * rng.standard_normal(audio.shape), rate, subtype="FLOAT")
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_model_path):
    """A MUSHRA test prepared through the CLI: 4 trials (2 excerpts x vocals, drums), 6 conditions each."""
    tmp = tmp_path_factory.mktemp("listening")
    root = make_song(tmp)
    cfg = tmp / "test.toml"
    cfg.write_text(config_text(root, model=tiny_model_path))
    assert main(["listening-test", "create", str(cfg)]) == 0
    return tmp / "test"


def test_create_renders_every_condition_once_loudness_matched(prepared):
    m = read_manifest(prepared)
    assert [t.id for t in m.trials] == ["song-1-vocals", "song-1-drums", "song-2-vocals", "song-2-drums"]
    for trial in m.trials:
        ids = [c.id for c in trial.conditions]
        assert ids == [HIDDEN_REFERENCE, "anchor_3500", "anchor_7000", "system:tiny", "system:irm",
                       "system:other-tool"]
        assert trial.reference == trial.condition(HIDDEN_REFERENCE).file
        levels = []
        for c in trial.conditions:
            audio, rate = sf.read(prepared / c.file, dtype="float32", always_2d=True)
            assert rate == RATE and audio.shape == (RATE, 2)  # 1 s excerpts
            if np.any(audio):
                levels.append(conditions.integrated_loudness(audio.T, rate))
        assert max(levels) - min(levels) < 0.5 and abs(levels[0] - trial.loudness) < 0.5
        assert trial.condition("system:irm").objective is None  # objective = false
    cached = json.loads((prepared / "separations" / "tiny" / "song" / "source.json").read_text())
    assert cached["stems"] == sorted(SOURCES)


def test_create_again_reuses_the_cached_separations(prepared, tmp_path, capsys):
    import shutil

    shutil.copytree(prepared / "separations", tmp_path / "again" / "separations")
    cfg = prepared.parent / "test.toml"
    assert main(["listening-test", "create", str(cfg), "--folder", str(tmp_path / "again")]) == 0
    err = capsys.readouterr().err
    assert "tiny / song: cached" in err and "separating" not in err
    assert read_manifest(tmp_path / "again").data["trials"] == read_manifest(prepared).data["trials"]


def test_create_scores_each_system_on_each_excerpt_when_true_stems_exist(tmp_path):
    root = make_song(tmp_path)
    cfg = tmp_path / "obj.toml"
    cfg.write_text(config_text(root, stems='["vocals"]', excerpts="[[1.0, 2.0]]", objective="true", oracle=False))
    assert main(["listening-test", "create", str(cfg)]) == 0
    (trial,) = read_manifest(tmp_path / "obj").trials
    scores = trial.condition("system:other-tool").objective
    # one 1 s frame: BSSEval's SDR is the SNR of the estimate against the true stem over it
    ref = sf.read(root / "train" / "track00" / "vocals.wav", dtype="float64")[0][RATE:2 * RATE]
    est = sf.read(tmp_path / "other" / "song" / "vocals.wav", dtype="float64")[0][RATE:2 * RATE]
    snr = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2))
    assert scores["SDR"] == pytest.approx(snr, abs=0.01)
    assert set(scores) == {"SDR", "SIR", "SAR"} and all(v is not None for v in scores.values())


def open_window(qtbot, folder):
    win = ListeningWindow(folder, dialogs=RecordingDialogs(), enable_audio=False)
    qtbot.addWidget(win)
    return win


def score_for(listener, trial, condition):
    """What the scripted listener answers: the reference high, anchors low, systems by a fixed rule."""
    if condition == HIDDEN_REFERENCE:
        return 100 if listener != "careless" else 50
    if condition.startswith("anchor"):
        return 10 + len(trial) % 7
    return 40 + (sum(map(ord, listener + trial + condition)) % 50)


def rate_trial(qtbot, win, listener, block=1024):
    """Play, visit every condition (the playhead moves on between switches), rate, submit."""
    expected = {}
    qtbot.mouseClick(win.play_button, Qt.LeftButton)
    for i, button in enumerate(win.condition_buttons):
        assert not win.submit_button.isEnabled()  # something is still unheard
        qtbot.mouseClick(button, Qt.LeftButton)
        win.player.render(block)
        value = score_for(listener, win.trial.id, win.conditions[i])
        win.sliders[i].setValue(value)
        expected[win.conditions[i]] = value
    assert win.reference_button is not None
    qtbot.mouseClick(win.reference_button, Qt.LeftButton)
    win.player.render(block)
    assert win.submit_button.isEnabled()
    trial = win.trial.id
    qtbot.mouseClick(win.submit_button, Qt.LeftButton)
    return trial, expected


def db_rows(folder):
    con = sqlite3.connect(folder / "results.sqlite")
    try:
        trials = con.execute("SELECT listener, trial, position, condition_order, reference_plays FROM trials").fetchall()
        ratings = con.execute("SELECT listener, trial, condition, label, rating, plays FROM ratings").fetchall()
    finally:
        con.close()
    return trials, ratings


def test_scripted_listeners_run_the_whole_test_and_every_rating_is_stored_exactly(qtbot, prepared):
    m = read_manifest(prepared)
    expected = {}
    for listener in ("ann", "bob"):
        win = open_window(qtbot, prepared)
        win.name_edit.setText(listener)
        qtbot.mouseClick(win.start_button, Qt.LeftButton)
        seen = []
        while win.trial is not None:
            trial, values = rate_trial(qtbot, win, listener)
            seen.append(trial)
            expected[(listener, trial)] = values
        assert "Thank you" in win.done_label.text()
        assert seen == design.trial_order([t.id for t in m.trials], m.seed, listener)
        win.close()
    trials, ratings = db_rows(prepared)
    ours = [r for r in ratings if r[0] in ("ann", "bob")]  # other tests add their own listeners
    assert len(ours) == 2 * 4 * 6
    for listener, trial, condition, label, rating, plays in ours:
        assert rating == expected[(listener, trial)][condition]  # exactly what the slider said
        assert plays >= 1
        order = design.condition_order([c.id for c in m.trial(trial).conditions], m.seed, listener, trial)
        assert label == design.labels(6)[order.index(condition)]
    rows = {(t[0], t[1]): t for t in trials}
    for listener in ("ann", "bob"):
        order = design.trial_order([t.id for t in m.trials], m.seed, listener)
        for position, trial in enumerate(order):
            _, _, stored_position, stored_order, reference_plays = rows[(listener, trial)]
            assert stored_position == position and reference_plays == 1
            assert json.loads(stored_order) == design.condition_order(
                [c.id for c in m.trial(trial).conditions], m.seed, listener, trial)
    # randomised per listener: the two listeners do not share every order
    ann = [json.loads(rows[("ann", t.id)][3]) for t in m.trials]
    bob = [json.loads(rows[("bob", t.id)][3]) for t in m.trials]
    assert ann != bob


def test_switching_is_sample_accurate_on_one_playhead_with_a_short_crossfade(qtbot, prepared):
    win = open_window(qtbot, prepared)
    win.start("switcher")
    lanes = win.player._audio  # (reference + conditions, 2, samples) as loaded from the WAV files
    first = win.conditions[0]
    assert np.array_equal(lanes[1], sf.read(prepared / win.trial.condition(first).file, dtype="float32")[0].T)
    ramp = int(round(SWITCH_RAMP_SECONDS * RATE))
    win.player.ramp_samples = 1  # no fade-in at play, so the first block is exact too
    win.player._ramp.ramp_samples = 1
    win.toggle_play()
    out = win.player.render(4000)
    np.testing.assert_array_equal(out, lanes[1][:, :4000])
    win.player._ramp.ramp_samples = ramp
    qtbot.mouseClick(win.condition_buttons[2], Qt.LeftButton)  # C, mid-block boundary of the playhead
    out = win.player.render(4000)
    np.testing.assert_array_equal(out[:, ramp:], lanes[3][:, 4000 + ramp:8000])  # same playhead, exact samples
    w = np.arange(1, ramp + 1) / ramp  # the linear crossfade in between: no step, so no click
    np.testing.assert_allclose(out[:, :ramp], lanes[1][:, 4000:4000 + ramp] * (1 - w) + lanes[3][:, 4000:4000 + ramp] * w,
                               atol=1e-6)
    assert win.player.position == 8000
    qtbot.mouseClick(win.reference_button, Qt.LeftButton)
    assert win.selected == REFERENCE
    out = win.player.render(4000)
    np.testing.assert_array_equal(out[:, ramp:], lanes[0][:, 8000 + ramp:12000])
    win.close()


def test_loop_region_is_selectable_and_wraps_for_every_condition(qtbot, prepared):
    win = open_window(qtbot, prepared)
    win.start("looper")
    win.set_loop(0.25, 0.5)
    assert win.player.loop == (RATE // 4, RATE // 2) and win.player.loop_enabled
    assert win.player.position == RATE // 4  # moved into the loop
    win.player._ramp.ramp_samples = 1
    win.toggle_play()
    win.player.render(RATE // 4 - 100)
    out = win.player.render(200)  # 100 samples before the loop's end, 100 after its start
    lane = win.player._audio[1]
    np.testing.assert_allclose(out[:, 100:], lane[:, RATE // 4:RATE // 4 + 100], atol=1e-6)
    win.loop_check.setChecked(False)
    assert not win.player.loop_enabled
    win.close()


def test_resume_after_a_crash_continues_at_the_unsubmitted_trial(qtbot, prepared):
    m = read_manifest(prepared)
    order = design.trial_order([t.id for t in m.trials], m.seed, "carol")
    win = open_window(qtbot, prepared)
    win.start("carol")
    done = [rate_trial(qtbot, win, "carol")[0] for _ in range(2)]
    assert done == order[:2]
    # half-way through the third trial the app goes away: ratings moved, nothing submitted
    qtbot.mouseClick(win.play_button, Qt.LeftButton)
    win.sliders[0].setValue(77)
    win.close()
    trials, _ = db_rows(prepared)
    assert sorted(t[1] for t in trials if t[0] == "carol") == sorted(order[:2])

    again = open_window(qtbot, prepared)
    assert "carol (2/4)" in again.progress_label.text()
    again.name_edit.setText("carol")
    qtbot.mouseClick(again.start_button, Qt.LeftButton)
    assert again.trial.id == order[2]  # the crashed trial starts again, same order as before
    assert again.title_label.text().startswith("<h3>Trial 3 of 4")
    assert again.sliders[0].value() == 0 and not again.submit_button.isEnabled()
    rest = [rate_trial(qtbot, again, "carol")[0] for _ in range(2)]
    assert rest == order[2:] and again.trial is None
    trials, ratings = db_rows(prepared)
    carol = sorted((t[2], t[1]) for t in trials if t[0] == "carol")
    assert carol == list(enumerate(order))
    assert sum(1 for r in ratings if r[0] == "carol") == 4 * 6
    again.close()


def test_submit_stays_disabled_until_every_condition_was_played(qtbot, prepared):
    win = open_window(qtbot, prepared)
    win.start("impatient")
    for button in win.condition_buttons:  # visiting without playing does not count
        qtbot.mouseClick(button, Qt.LeftButton)
    assert not win.submit_button.isEnabled() and not win.submit()
    assert "Still to play: A, B, C, D, E, F" == win.hint_label.text()
    win.toggle_play()
    assert win.missing() == win.labels[:-1]  # playing counts the condition on now (the last one clicked)
    win.close()


def test_report_of_the_scripted_test_through_the_cli(qtbot, prepared, capsys):
    win = open_window(qtbot, prepared)
    win.start("reporter")
    while win.trial is not None:
        rate_trial(qtbot, win, "reporter")
    win.close()
    assert main(["listening-test", "report", str(prepared / "results.sqlite"), "--out", str(prepared / "rep")]) == 0
    text = capsys.readouterr().out
    assert "| all | hidden reference |" in text and "| vocals | irm |" in text
    for name in ("summary.csv", "listeners.csv", "ratings.csv", "correlation.csv", "ratings.png", "report.md"):
        assert (prepared / "rep" / name).is_file()


def test_mos_mode_rates_one_to_five_one_stimulus_at_a_time(qtbot, tmp_path):
    root = make_song(tmp_path)
    cfg = tmp_path / "mos.toml"
    cfg.write_text(config_text(root, mode="mos", anchors="[]", stems='["vocals"]', excerpts="[[0.5, 1.5]]"))
    assert main(["listening-test", "create", str(cfg)]) == 0
    folder = tmp_path / "mos"
    m = read_manifest(folder)
    assert [t.id for t in m.trials] == ["song-1-vocals-hidden_reference", "song-1-vocals-system_irm",
                                        "song-1-vocals-system_other-tool"]
    assert all(t.reference is None and len(t.conditions) == 1 for t in m.trials)
    win = open_window(qtbot, folder)
    win.start("dee")
    seen, expected = [], {}
    for score in (5, 3, 1):
        assert win.reference_button is None and not win.sliders and len(win.acr_groups) == 1
        assert not win.submit_button.isEnabled()
        win.acr_groups[0].button(score).click()
        assert not win.submit_button.isEnabled()  # rated, not yet heard
        win.toggle_play()
        win.player.render(1024)
        assert win.submit_button.isEnabled()
        seen.append(win.trial.id)
        expected[win.trial.id] = float(score)
        qtbot.mouseClick(win.submit_button, Qt.LeftButton)
    assert win.trial is None and seen == design.trial_order([t.id for t in m.trials], m.seed, "dee")
    _, ratings = db_rows(folder)
    assert {r[1]: r[4] for r in ratings} == expected
    win.close()
    assert main(["listening-test", "report", str(folder / "results.sqlite"), "--no-plot"]) == 0


def test_tools_menu_opens_the_test_window(qtbot, prepared, tmp_path):
    from PySide6.QtCore import QSettings

    from stemgui.gui.cache import StemCache
    from stemgui.gui.main_window import MainWindow
    from stemgui.gui.settings import AppSettings

    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    win = MainWindow(settings, RecordingDialogs(), StemCache(tmp_path / "cache"), enable_audio=False)
    qtbot.addWidget(win)
    assert win.listening_action.text() == "Listening test…"
    assert win.listening_action in win.tools_menu.actions()
    test = win.open_listening_test(str(prepared / "manifest.json"))
    assert test is not None and test.isVisible() and win.listening_window is test
    test.close()
    assert win.open_listening_test(str(tmp_path / "nothing" / "manifest.json")) is None
    assert win.dialogs.messages[-1][0] == "error" and "no prepared listening test" in win.dialogs.messages[-1][2]


def test_create_refuses_a_folder_that_already_holds_results(prepared, capsys):
    from stemgui.listening.store import ResultStore

    ResultStore(prepared / "results.sqlite", read_manifest(prepared)).close()
    cfg = prepared.parent / "test.toml"
    assert main(["listening-test", "create", str(cfg)]) == 1
    assert "already holds results" in capsys.readouterr().err


@pytest.mark.audio_device
def test_real_playback_switches_conditions_while_the_stream_runs(qtbot, prepared, jack_dummy):
    import time

    win = ListeningWindow(prepared, dialogs=RecordingDialogs(), enable_audio=True)
    qtbot.addWidget(win)
    assert win.audio_ok, win.audio_reason
    win.start("on-air")
    win.toggle_play()
    assert win.player.stream_open and not win.dialogs.messages
    for button in win.condition_buttons:  # switch every 100 ms while the device pulls blocks
        qtbot.mouseClick(button, Qt.LeftButton)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.1:
            qtbot.wait(10)
    assert win.submit_button.isEnabled()  # every condition was heard on the running stream
    assert win.player.frames_rendered > RATE // 2 and win.player.master_levels.max() > 0
    assert all(seconds > 0 for seconds in win.heard.values())
    win.close()
    assert not win.player.stream_open


def test_the_shipped_example_is_created_with_the_bundled_and_the_ablation_models(tmp_path):
    """Issue 19 item 5: `listening-test create example` works from the shipped files alone (no study to train)."""
    from stemgui.listening.config import load_config
    from stemgui.models.card import read_card
    from stemgui.paths import resource

    cfg = load_config(resource("listening", "example.toml"))
    models = {s.name: s.model for s in cfg.systems if s.kind == "model"}
    assert set(models) == {"bundled", "L1-only", "L1+STFT+GAN"}
    for name in ("L1-only", "L1+STFT+GAN"):
        card = read_card(models[name])
        assert card["stored_dtype"] == "float16" and card["origin"]["run"] in ("l1", "l1+stft+gan")
        assert card["training"]["preset"] == ("l1" if name == "L1-only" else "l1+stft+gan")
    assert main(["listening-test", "create", "example", "--folder", str(tmp_path / "ex")]) == 0
    m = read_manifest(tmp_path / "ex")
    assert [t.id for t in m.trials] == ["example-1-vocals", "example-1-drums"]
    for trial in m.trials:
        ids = {c.id for c in trial.conditions}
        assert {"system:bundled", "system:L1-only", "system:L1+STFT+GAN", "system:oracle-IRM",
                "system:mixture", HIDDEN_REFERENCE} <= ids and len(ids) == 8
