"""The Fine-tune panel (pytest-qt, offscreen): dataset checks, a real tiny fine-tune in a child process with
curves, stop, resume after a restart, the new model registered and separating, and a killed child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QSettings, QTimer

from stemgui import SOURCES
from stemgui.train.validate_dataset import check_dataset

pytest.importorskip("pytestqt")

SR = 44100
SHARED = Path(__file__).resolve().parents[2] / "shared"
# a few seconds per step on a busy 2-core machine; a child process also needs to import torch
TRAIN_TIMEOUT_MS = 300_000


def write_track(folder: Path, seconds: float = 3.0, seed: int = 0, sources=SOURCES, rate: int = SR,
                rates: dict[str, int] | None = None) -> None:
    """A MUSDB-layout track of sines and gated noise (stems sum to mixture.wav)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    total = 0.0
    for i, name in enumerate(sources):
        if name == "drums":
            mono = 0.2 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 2 * t) > 0)
        else:
            mono = 0.3 * np.sin(2 * np.pi * 110 * (i + 1) * (seed + 1) * t)
        wav = np.stack([mono, mono], axis=1).astype(np.float32)
        sr = (rates or {}).get(name, rate)
        sf.write(folder / f"{name}.wav", wav if sr == rate else wav[: int(seconds * sr)], sr)
        total = total + wav
    sf.write(folder / "mixture.wav", total, rate)


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "ds"
    for k in range(2):
        write_track(root / "train" / f"track{k}", seed=k)
    return root


@pytest.fixture
def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def base_model(tiny_model_path) -> Path:
    from stemgui.models.registry import register_user_model

    return register_user_model(tiny_model_path, "tiny-base")


def make_panel(qtbot, settings):
    from stemgui.gui.finetune import FineTunePanel

    panel = FineTunePanel(settings=settings)
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    return panel


def fast_settings(panel, dataset: Path, name: str, steps: int) -> None:
    """A tiny fine-tune: 0.5 s segments, batch 1, a checkpoint and a validation every 2 steps."""
    assert panel.form.set_dataset(dataset).ok
    assert panel.form.select_base_model("tiny-base")
    panel.form.set_preset("l1+stft")
    panel.form.name_edit.setText(name)
    panel.form.set_steps(steps)
    panel.form.segment_spin.setValue(0.5)
    panel.form.batch_spin.setValue(1)
    panel.form.checkpoint_spin.setValue(2)
    panel.form.valid_spin.setValue(2)
    panel.form.device_combo.setCurrentIndex(panel.form.device_combo.findData("cpu"))
    panel.extra_train_args = ["--set", "train.threads=1", "--set", "data.valid_seconds=1",
                              "--set", "train.log_every=1"]


# ------------------------------------------------------------------------------------------- dataset checks
def test_check_dataset_describes_a_good_folder(dataset):
    check = check_dataset(dataset, segment=4.0)
    assert check.ok and len(check.tracks) == 2
    assert check.summary() == ("2 tracks (MUSDB18-HQ layout), 4 stems per track (drums, bass, other, vocals), "
                               "3.0 s–3.0 s each, 6.0 s in all, 44100 Hz")
    assert any("shorter than the 4 s training segment" in n for n in check.notes)


def test_check_dataset_empty_and_missing_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    check = check_dataset(empty)
    assert not check.ok and len(check.problems) == 1 and "no tracks found" in check.problems[0]
    assert "drums.wav" in check.problems[0]
    missing = check_dataset(tmp_path / "nope")
    assert missing.problems == [f"{tmp_path / 'nope'}: folder not found"]
    (tmp_path / "file.wav").write_bytes(b"")
    assert "not a folder" in check_dataset(tmp_path / "file.wav").problems[0]


def test_check_dataset_names_every_broken_track(tmp_path):
    root = tmp_path / "ds"
    write_track(root / "good", seed=0)
    write_track(root / "no_bass_vocals", seed=1)
    (root / "no_bass_vocals" / "bass.wav").unlink()
    (root / "no_bass_vocals" / "vocals.wav").rename(root / "no_bass_vocals" / "vocal.wav")
    write_track(root / "rates", seed=2, rates={"vocals": 48000})
    write_track(root / "lengths", seed=3)
    sf.write(root / "lengths" / "other.wav", np.zeros((SR, 2), np.float32), SR)
    write_track(root / "broken", seed=4)
    (root / "broken" / "drums.wav").write_bytes(b"not audio at all")
    (root / "notes").mkdir()
    sf.write(root / "notes" / "take1.wav", np.zeros((100, 2), np.float32), SR)

    check = check_dataset(root)
    assert not check.ok and [t.name for t in check.tracks] == ["good"]
    problems = "\n".join(check.problems)
    assert len(check.problems) == 4, problems
    assert "no_bass_vocals: missing stems bass, vocals — expected bass.wav or bass.flac (found also vocal.wav)" \
        in problems
    assert "rates/vocals.wav: sample rate 48000 Hz differs from drums.wav (44100 Hz)" in problems
    assert "lengths/other.wav: 1.00 s (44100 samples), but drums.wav has 132300 samples" in problems
    assert "broken/drums.wav: cannot read audio" in problems
    assert any("ignored 1 folder with audio but no file named" in n and "notes" in n for n in check.notes)


@pytest.mark.skipif(not (SHARED / "datasets" / "mir-1k-subset" / "Wavfile").is_dir(), reason="no MIR-1K subset")
def test_check_dataset_reads_the_real_mir1k_clips():
    check = check_dataset(SHARED / "datasets" / "mir-1k-subset", segment=4.0)
    assert check.ok and check.format == "MIR-1K" and check.sources == ["accompaniment", "vocals"]
    assert len(check.tracks) == 500 and check.samplerates == [16000]
    assert any("16000 Hz is resampled to 44100 Hz" in n for n in check.notes)
    assert any(n.startswith("62 clips of the real-voice check's singers") for n in check.notes)


def test_panel_shows_problems_and_keeps_start_disabled(qtbot, settings, tmp_path):
    panel = make_panel(qtbot, settings)
    empty = tmp_path / "empty"
    empty.mkdir()
    panel.form.set_dataset(empty)
    assert "no tracks found" in panel.form.dataset_label.text()
    assert not panel.start_button.isEnabled()
    assert panel.start() is False and "The dataset cannot be used" in panel.message
    write_track(tmp_path / "mixed" / "a", rates={"bass": 22050})
    panel.form.set_dataset(tmp_path / "mixed")
    assert "a/bass.wav: sample rate 22050 Hz differs" in panel.form.dataset_label.text()
    assert not panel.start_button.isEnabled()


# ------------------------------------------------------------------------------------------- training
def test_only_one_training_at_a_time_across_instances(qtbot, settings, dataset, base_model):
    """A live lock of another app instance's training blocks Start with a clear message."""
    from stemgui.train.finetune_runs import RunLock, RunPaths

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other = RunPaths.for_name("someone-else")
        other.root.mkdir(parents=True)
        other.lock.write_text(f'{{"run": "someone-else", "app_pid": {sleeper.pid}, "child_pid": {sleeper.pid}, '
                              f'"time": 0}}', encoding="utf-8")
        panel = make_panel(qtbot, settings)
        fast_settings(panel, dataset, "mine", steps=4)
        assert panel.start() is False
        assert panel.message == (f"Training 'someone-else' is already running in another process (pid {sleeper.pid}); "
                                 "only one training runs at a time — stop it first.")
        assert not panel.is_training()
        assert RunLock(other.lock).holder() is not None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_fine_tune_curves_stop_resume_register_and_separate(qtbot, settings, dataset, base_model):
    from stemgui.models.registry import list_models
    from stemgui.separate import Separator

    panel = make_panel(qtbot, settings)
    fast_settings(panel, dataset, "my-finetune", steps=200)
    states = []
    panel.trainingStateChanged.connect(states.append)
    assert panel.start() is True
    assert panel.is_training() and not panel.start_button.isEnabled() and panel.stop_button.isEnabled()
    # refuses a second one while this runs
    assert panel.start() is False and "already running" in panel.message

    qtbot.waitUntil(lambda: len(panel.history.generator["l1"]) >= 2, timeout=TRAIN_TIMEOUT_MS)
    assert panel.history.generator["stft"].steps[:2] == [1, 2]
    assert panel.plots.shown_steps("generator", "l1")[:2] == [1, 2]  # the plot shows the points
    assert panel.status_label.text().startswith("Step ") and "/ 200" in panel.status_label.text()

    # "Use latest checkpoint" while it trains: the model as it is now joins the registry
    qtbot.waitUntil(lambda: panel.history.checkpoint_step is not None and panel.use_button.isEnabled(),
                    timeout=TRAIN_TIMEOUT_MS)
    with qtbot.waitSignal(panel.modelRegistered, timeout=60_000) as early:
        panel.use_latest_checkpoint()
    early_card = {e.name: e for e in list_models()}["my-finetune"].card
    assert early.args[0].stem == "my-finetune" and early_card["training"]["from_checkpoint"].startswith("ckpt-")
    assert early_card["training"]["steps"] >= 2 and early_card["training"]["preset"] == "l1+stft"

    panel.stop()
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=TRAIN_TIMEOUT_MS)
    assert states == [True, False]
    assert panel.history.status == "stopped", panel.message
    assert panel.message.startswith("Stopped at step"), panel.message
    paths = panel.run_paths
    assert paths.has_checkpoint() and not paths.lock.exists()
    stopped_at = panel.history.step
    assert panel.resume_button.isEnabled() and panel.use_button.isEnabled()

    # the app is closed and opened again: the run is shown with its curves and can be resumed
    panel.close()
    again = make_panel(qtbot, settings)
    assert again.run_paths == paths
    assert f"my-finetune' stopped at step {stopped_at}" in again.message
    assert len(again.history.generator["l1"]) == len(panel.history.generator["l1"])
    assert again.resume_button.isEnabled()
    again.form.steps_spin.setValue(stopped_at + 2)  # two more steps, then the model is written
    with qtbot.waitSignal(again.modelRegistered, timeout=TRAIN_TIMEOUT_MS) as registered:
        assert again.resume() is True
    qtbot.waitUntil(lambda: not again.is_training(), timeout=30_000)
    model_path = registered.args[0]
    assert again.history.status == "finished" and again.history.step == stopped_at + 2
    steps = again.history.generator["l1"].steps
    assert steps == sorted(set(steps)) and steps[-1] == stopped_at + 2
    assert "Registered model: my-finetune" in again.card_label.text()
    assert f"{stopped_at + 2} steps" in again.card_label.text()

    entry = {e.name: e for e in list_models()}["my-finetune"]
    assert entry.path == model_path and not entry.bundled
    assert entry.card["training"]["steps"] == stopped_at + 2 and "from_checkpoint" not in entry.card["training"]
    assert again.form.base_combo.findData(str(model_path)) >= 0  # the picker lists it
    separator = Separator.from_path(model_path)
    mix = (0.1 * np.random.default_rng(0).standard_normal((2, SR))).astype(np.float32)
    stems = separator.separate(mix)
    assert stems.shape == (4, 2, SR) and np.isfinite(stems).all()


def test_killed_training_process_gives_a_message_and_the_panel_stays_responsive(qtbot, settings, dataset,
                                                                                base_model):
    panel = make_panel(qtbot, settings)
    fast_settings(panel, dataset, "doomed", steps=200)
    assert panel.start() is True
    qtbot.waitUntil(lambda: panel.process_id is not None and panel.process_id > 0, timeout=30_000)
    qtbot.waitUntil(lambda: panel.run_paths.lock.is_file() and '"child_pid": null' not in
                    panel.run_paths.lock.read_text(), timeout=30_000)
    os.kill(panel.process_id, signal.SIGKILL)
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=30_000)
    assert panel.message.startswith("The training process was killed before it finished"), panel.message
    assert "Resume" in panel.message
    assert panel.message_label.styleSheet().startswith("color: #ff8a80")
    assert not panel.run_paths.lock.exists()
    # still responsive: timers fire, the form works, a new start is possible
    fired = []
    QTimer.singleShot(10, lambda: fired.append(True))
    qtbot.waitUntil(lambda: fired == [True], timeout=2000)
    assert panel.form.set_dataset(dataset).ok
    qtbot.waitUntil(panel.start_button.isEnabled, timeout=30_000)  # after the model check


FAKE_TRAINER = r'''
import json, signal, sys, time
log, steps = sys.argv[1], int(sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
def write(**r):
    with open(log, "a") as f:
        f.write(json.dumps({"time": time.time(), **r}) + "\n")
write(event="start", step=0, steps=steps, sources=["drums", "bass", "other", "vocals"], device="cpu")
for step in range(1, steps + 1):
    time.sleep(0.05)
    write(event="train", step=step, l1=1.0 / step, loss=1.0 / step, steps_per_s=20.0, samples_per_s=20.0,
          eta_s=(steps - step) / 20.0)
    if stop:
        write(event="checkpoint", step=step, path="x")
        write(event="stopped", step=step, out=None)
        sys.exit(130)
'''


def test_a_training_left_running_by_a_killed_app_is_watched_and_stopped(qtbot, settings, tmp_path):
    """The app died while its training went on: the next window shows that run live and can stop it."""
    from stemgui.train.finetune_runs import RunPaths, RunState

    paths = RunPaths.for_name("orphan")
    paths.root.mkdir(parents=True)
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER, encoding="utf-8")
    child = subprocess.Popen([sys.executable, str(script), str(paths.log), "100000"])
    try:
        RunState("orphan", sys.executable, ["train", "--steps", "100000"], request={"name": "orphan"},
                 status="running").save(paths)
        paths.lock.write_text(f'{{"run": "orphan", "app_pid": 999999999, "child_pid": {child.pid}, "time": 0}}',
                              encoding="utf-8")
        settings.setValue("finetune/last_run", str(paths.root))
        panel = make_panel(qtbot, settings)
        assert panel.is_training() and panel.process_id == child.pid
        assert panel.message.startswith(f"'orphan' is training in another process (pid {child.pid})")
        assert panel.stop_button.isEnabled() and not panel.start_button.isEnabled()
        qtbot.waitUntil(lambda: len(panel.history.generator["l1"]) >= 5, timeout=30_000)
        seen = len(panel.history.generator["l1"])
        qtbot.waitUntil(lambda: len(panel.history.generator["l1"]) > seen, timeout=30_000)  # live
        with qtbot.waitSignal(panel.trainingStateChanged, timeout=30_000) as ended:
            panel.stop()
        assert ended.args == [False]
        assert child.wait(timeout=10) == 130
        assert panel.history.status == "stopped" and "stopped at step" in panel.message
        assert panel.resume_button.isEnabled()
        assert RunState.load(paths).status == "stopped"
    finally:
        child.kill()
        child.wait()


def test_install_docks_the_panel_and_selects_a_registered_model(qtbot, tmp_path, tiny_model_path):
    """The main window docks the panel; a model registered by it lands in the window's picker, selected."""
    from stemgui.gui.cache import StemCache
    from stemgui.gui.main_window import MainWindow
    from stemgui.gui.settings import AppSettings
    from stemgui.models.registry import register_user_model

    settings = AppSettings(QSettings(str(tmp_path / "app.ini"), QSettings.IniFormat))
    window = MainWindow(settings, cache=StemCache(tmp_path / "cache"), enable_audio=False)
    qtbot.addWidget(window)
    try:
        panel = window.finetune_panel
        assert window.finetune_dock.widget() is panel and window.finetune_dock.isHidden()
        assert window.finetune_dock.toggleViewAction() in window.view_menu.actions()
        path = register_user_model(tiny_model_path, "fresh-model")
        panel.modelRegistered.emit(path)
        assert window.settings_panel.model_combo.currentData() == str(path)
        assert "fresh-model" in window.statusBar().currentMessage()
    finally:
        window.shutdown()


def test_shutdown_stops_a_running_training_and_leaves_it_resumable(qtbot, settings, dataset, base_model):
    """Closing the window mid-run: shutdown() stops the child (checkpoint when it can) and frees the lock."""
    panel = make_panel(qtbot, settings)
    fast_settings(panel, dataset, "closing", steps=200)
    assert panel.start() is True
    qtbot.waitUntil(lambda: panel.process_id is not None and panel.process_id > 0, timeout=30_000)
    pid = panel.process_id
    panel.shutdown(wait_ms=60_000)
    assert not panel.is_training() and not panel.run_paths.lock.exists()
    from stemgui.train.finetune_runs import RunState, pid_alive

    assert not pid_alive(pid)
    assert RunState.load(panel.run_paths).status == "stopped"
    assert panel.resume_button.isEnabled()


def test_a_long_session_of_qt_calls_does_not_leak_none_references(qtbot, settings):
    """PySide6 6.12 on Python 3.11 lost a reference to None per void Qt call (CPython aborted after a few
    thousand); requirements pin 6.11, and this guards the pin: hours of curve repaints must stay harmless."""
    from PySide6.QtWidgets import QLabel

    make_panel(qtbot, settings)
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for _ in range(50_000):
        label.setText("x")
    assert abs(sys.getrefcount(None) - before) < 1000


def test_a_failing_trainer_shows_its_error_line(qtbot, settings, dataset, tiny_model_path):
    """The child's own one-line error (here: the base model vanished) becomes the panel's message."""
    from stemgui.models.registry import register_user_model

    doomed = register_user_model(tiny_model_path, "tiny-base")
    panel = make_panel(qtbot, settings)
    fast_settings(panel, dataset, "no-base", steps=4)
    doomed.unlink()
    with qtbot.waitSignal(panel.trainingStateChanged, timeout=TRAIN_TIMEOUT_MS,
                          check_params_cb=lambda running: not running):
        assert panel.start() is True
    assert panel.message.startswith("Training failed: "), panel.message
    assert "tiny-base" in panel.message and "Traceback" not in panel.message
    assert "\n" not in panel.message.split(" Resume")[0]
    assert panel.start_button.isEnabled()


def test_vocal_instrumental_pairs_are_checked_and_reach_the_trainer(qtbot, settings, dataset, base_model, tmp_path):
    """The optional pairs folder: checked when chosen, blocks Start when unusable, and becomes the trainer's
    data.two_stem_dataset (every second step); remembered with the form."""
    from stemgui.train.finetune_runs import RunPaths

    panel = make_panel(qtbot, settings)
    fast_settings(panel, dataset, "with-pairs", 4)
    pairs = tmp_path / "pairs"
    for k in range(2):
        write_track(pairs / f"song{k}", seed=k, sources=("vocals", "accompaniment"))
    broken = tmp_path / "broken"
    write_track(broken / "song0", sources=("vocals",))  # no instrumental
    panel.form.set_pairs(broken)
    assert "accompaniment" in panel.form.pairs_label.text() and not panel.form.pairs_ok
    qtbot.waitUntil(lambda: not panel.form.model_checking, timeout=60_000)
    panel._update_buttons()
    assert not panel.start_button.isEnabled() and "pairs" in panel.start_button.toolTip()
    assert "pairs cannot be used" in panel.form.problem(panel.form.request())

    panel.form.set_pairs(pairs)
    assert panel.form.pairs_ok and "2 tracks" in panel.form.pairs_label.text()
    request = panel.form.request()
    assert request.two_stem_dataset == str(pairs) and panel.form.problem(request) is None
    args = request.arguments(RunPaths(tmp_path / "run", "with-pairs"))
    assert f"data.two_stem_dataset={pairs}" in args and "data.two_stem_every=2" in args
    panel.form.save(settings)
    again = make_panel(qtbot, settings)
    assert again.form.pairs_edit.text() == str(pairs) and again.form.pairs_ok
    panel.form.set_pairs("")
    assert panel.form.pairs_ok and panel.form.request().two_stem_dataset == ""
    assert not any("two_stem" in a for a in panel.form.request().arguments(RunPaths(tmp_path / "run", "with-pairs")))
