"""The Fine-tune dock's model check, base models of every architecture (bags: the member to fine-tune), the
simple mode with Advanced folded away, "train for about N minutes", and the wheel that only moves clicked fields.

Issue 21: every edit of a model field runs `stemgui.models.check` off the GUI thread; a configuration that cannot
run shows its one line under the model and disables Start; fixing it enables Start again. Issue 12 item 8: any
installed model (HTDemucs, bags) is a base model; a bag offers its members and the run gets `NAME:K`.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication
from test_gui_finetune import make_panel, write_track

pytest.importorskip("pytestqt")
CHECK_MS = 60_000  # a dry run of a small model takes well under a second, but the machine is shared
SOURCES = ["drums", "bass", "other", "vocals"]


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "ds"
    for k in range(2):
        write_track(root / "train" / f"track{k}", seed=k)
    return root


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


def ready_panel(qtbot, settings, dataset):
    panel = make_panel(qtbot, settings)
    assert panel.form.set_dataset(dataset).ok
    panel.form.name_edit.setText("mine")
    return panel


def wait_checked(qtbot, panel) -> None:
    qtbot.waitUntil(lambda: not panel.form.model_checking, timeout=CHECK_MS)


def assert_blocked(qtbot, panel, *parts: str) -> None:
    wait_checked(qtbot, panel)
    text = panel.form.model_label.text()
    assert panel.form.model_label.isVisibleTo(panel) and "\n" not in text, text
    for part in parts:
        assert part in text, text
    assert panel.form.model_label.styleSheet() == "color: #ff8a80;"  # the error style
    assert not panel.start_button.isEnabled()
    assert "cannot run" in panel.start_button.toolTip()
    assert panel.start() is False and panel.message.startswith("The model cannot run: ")


def assert_runs(qtbot, panel) -> None:
    wait_checked(qtbot, panel)
    assert panel.form.model_problem is None
    assert not panel.form.model_label.isVisibleTo(panel)
    qtbot.waitUntil(panel.start_button.isEnabled, timeout=5000)


def save_small(path: Path, architecture: str, args: dict, name: str) -> Path:
    from stemgui.models.architectures import build_model
    from stemgui.models.card import save_model
    from stemgui.models.registry import register_user_model

    torch.manual_seed(0)
    model = build_model(architecture, SOURCES, args)
    return register_user_model(save_model(model, path / f"{name}.safetensors", {"name": name}), name)


HDEMUCS_SMALL = {"channels": 4, "depth": 6, "segment": 2.0, "dconv_attn": 9, "dconv_lstm": 9}


# ------------------------------------------------------------------------------------ from scratch, per architecture
@pytest.mark.parametrize("architecture, bad, parts, good", [
    ("hdemucs", {"depth": 4}, ["[model] depth=4 with nfft=4096", "(try depth >= 5)"], {"depth": 5, "channels": 4}),
    ("hdemucs", {"channels": 3}, ["[model] channels=3 with dconv_comp=4", "0 channels"], {"channels": 4}),
    ("hdemucs", {"nfft": 1000}, ["[model] nfft=1000: must be a power of two"], {"nfft": 4096, "channels": 4}),
    ("htdemucs", {"channels": 3}, ["[model] channels=3", "0 channels"], {"channels": 8}),
    ("htdemucs", {"nfft": 1000, "channels": 8}, ["[model] nfft=1000: must be a power of two"], {"nfft": 4096}),
    ("demucs", {"channels": 3}, ["[model] channels=3", "0 channels"], {"channels": 8, "depth": 4}),
])
def test_a_model_that_cannot_run_is_one_line_beside_it_and_blocks_start(qtbot, settings, dataset, architecture, bad,
                                                                         parts, good):
    from stemgui.train.finetune_runs import MODEL_FIELDS

    panel = ready_panel(qtbot, settings, dataset)
    panel.form.set_architecture(architecture)
    assert panel.form.base_model_spec() == ""
    spins = {"channels": panel.form.channels_spin, "depth": panel.form.depth_spin, "nfft": panel.form.nfft_spin}
    for key, spin in spins.items():  # only the architecture's own size fields are shown
        assert spin.isVisibleTo(panel) == (key in MODEL_FIELDS[architecture])
    for key, value in bad.items():
        spins[key].setValue(value)
    assert_blocked(qtbot, panel, *parts)
    for key, value in good.items():  # fixing the value enables Start again
        spins[key].setValue(value)
    assert_runs(qtbot, panel)
    req = panel.request()
    assert (req.architecture, req.base_model) == (architecture, "")
    assert all(getattr(req, key) == spin.value() for key, spin in spins.items())


def test_the_check_is_debounced_and_runs_off_the_gui_thread(qtbot, settings, dataset, monkeypatch):
    """Edits in quick succession give one check of the last value, in the check process; the event loop keeps
    running while a default-size model (seconds of building and a dry run) is checked."""
    from stemgui.gui.finetune_form import ModelCheckService

    submitted = []
    real = ModelCheckService.submit

    def counting(self, spec):
        submitted.append(dict(spec.args))
        return real(self, spec)

    monkeypatch.setattr(ModelCheckService, "submit", counting)
    panel = ready_panel(qtbot, settings, dataset)
    panel.form.set_architecture("hdemucs")
    wait_checked(qtbot, panel)
    submitted.clear()
    for depth in (2, 3, 4, 6):  # the last one is the default size: 48 channels, depth 6
        panel.form.depth_spin.setValue(depth)
        QApplication.processEvents()
    panel.form.segment_spin.setValue(3.0)  # a value not checked before
    def longest_gap(until) -> tuple[float, float]:
        started = time.perf_counter()
        longest, last = 0.0, started
        while not until(time.perf_counter() - started):
            QApplication.processEvents()
            now = time.perf_counter()
            longest, last = max(longest, now - last), now
            time.sleep(0.002)
        return longest, time.perf_counter() - started

    busy, took = longest_gap(lambda t: (not panel.form.model_checking and t > 0.3) or t > 60)
    assert [(c["depth"], c["segment"]) for c in submitted] == [(6, 3.0)]
    assert panel.form.model_problem is None and panel.start_button.isEnabled()
    idle, _ = longest_gap(lambda t: t > took)  # the same loop with nothing checked: the machine's own noise
    print(f"check {took:.1f} s: longest event-loop gap {busy * 1000:.0f} ms (idle: {idle * 1000:.0f} ms)")
    # the design's limit is 100 ms; on a loaded shared machine the idle loop alone can come near it
    assert busy < max(0.1, idle + 0.05), f"the event loop stalled {busy * 1000:.0f} ms during a model check"


def test_without_a_check_process_the_check_runs_in_a_thread(qtbot, settings, dataset, monkeypatch):
    from stemgui.gui.finetune_form import ModelCheckService

    monkeypatch.setattr(ModelCheckService, "shared", classmethod(lambda cls: None))
    panel = ready_panel(qtbot, settings, dataset)
    panel.form.set_architecture("hdemucs")
    panel.form.channels_spin.setValue(4)
    panel.form.depth_spin.setValue(3)
    assert_blocked(qtbot, panel, "depth=3")
    panel.form.depth_spin.setValue(6)
    assert_runs(qtbot, panel)


def test_a_check_process_that_dies_answers_with_one_line_and_is_restarted(qtbot, settings, dataset):
    from stemgui.gui.finetune_form import ModelCheckService

    panel = ready_panel(qtbot, settings, dataset)
    panel.form.set_architecture("htdemucs")
    wait_checked(qtbot, panel)
    service = ModelCheckService.shared()
    panel.form.channels_spin.setValue(64)  # a value not checked before
    qtbot.waitUntil(lambda: bool(panel.form._checking), timeout=5000)
    service._process.kill()
    assert_blocked(qtbot, panel, "the check of this configuration was killed")
    panel.form.channels_spin.setValue(8)
    assert_runs(qtbot, panel)


# --------------------------------------------------------------------------------------------------- base models
def test_a_base_model_whose_card_cannot_run_is_refused_in_the_dock(qtbot, settings, dataset, tmp_path):
    path = save_small(tmp_path / "models", "hdemucs", HDEMUCS_SMALL, "hand-edited")
    card_file = path.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["args"]["depth"] = 4  # edited by hand: the spectrogram branch never meets the time branch
    card_file.write_text(json.dumps(card))
    panel = ready_panel(qtbot, settings, dataset)
    panel.refresh_models()
    assert panel.form.select_base_model("hand-edited")
    assert_blocked(qtbot, panel, "base model hand-edited: depth=4 with nfft=4096", "(try depth >= 5)")
    card["args"]["depth"] = 6  # fixed on disk: choosing it again checks it again
    card_file.write_text(json.dumps(card))
    panel.form.select_base_model("default")
    panel.form.select_base_model("hand-edited")
    assert_runs(qtbot, panel)


def test_htdemucs_and_bags_are_base_models_and_a_bag_offers_its_members(qtbot, settings, dataset, tmp_path):
    from stemgui.cli import build_parser
    from stemgui.cli.train import build_config
    from stemgui.train.finetune_runs import RunPaths

    folder = tmp_path / "models"
    save_small(folder, "htdemucs", {"channels": 8, "depth": 4, "segment": 2.0, "t_layers": 1}, "small-ht")
    members = [{"architecture": "hdemucs", "args": HDEMUCS_SMALL} for _ in range(4)]
    weights = [[1.0 if i == k else 0.0 for i in range(4)] for k in range(4)]  # htdemucs_ft: one specialist each
    bag = save_small(folder, "bag", {"members": members, "weights": weights}, "small-ft")
    panel = ready_panel(qtbot, settings, dataset)
    panel.refresh_models()
    labels = [panel.form.base_combo.itemText(i) for i in range(panel.form.base_combo.count())]
    assert "small-ht (yours, htdemucs)" in labels and "small-ft (yours, bag of 4)" in labels

    assert panel.form.select_base_model("small-ht")
    assert not panel.form.member_combo.isVisibleTo(panel)
    assert_runs(qtbot, panel)

    assert panel.form.select_base_model("small-ft")
    combo = panel.form.member_combo
    assert combo.isVisibleTo(panel)
    assert [combo.itemText(i) for i in range(combo.count())] == [
        f"{k}: {name} specialist · Hybrid Demucs (v3)" for k, name in enumerate(SOURCES)]
    combo.setCurrentIndex(3)
    assert_runs(qtbot, panel)
    req = panel.request()
    assert req.base_model == f"{bag}:3"
    cfg = build_config(build_parser().parse_args(req.arguments(RunPaths(tmp_path / "run", "mine"))))
    assert cfg.finetune.base_model == f"{bag}:3"
    assert panel.form.select_base_model("small-ft:1") and combo.currentIndex() == 1  # a saved run's NAME:K
    assert not panel.form.channels_spin.isVisibleTo(panel)  # no size fields when a base model is chosen

    # a bag whose member cannot run: the member's own line
    members[2] = {"architecture": "hdemucs", "args": dict(HDEMUCS_SMALL, channels=4)}
    card_file = bag.with_suffix(".json")
    card = json.loads(card_file.read_text())
    card["args"]["members"][2]["args"]["depth"] = 3
    card_file.write_text(json.dumps(card))
    panel.refresh_models()
    assert panel.form.select_base_model("small-ft:2")
    assert_blocked(qtbot, panel, "base model small-ft:2: depth=3 with nfft=4096")


# ------------------------------------------------------------------------------------------------- simple mode
def test_the_dock_opens_simple_with_start_visible_and_advanced_folded(qtbot, settings, dataset):
    panel = ready_panel(qtbot, settings, dataset)
    panel.resize(1024, 330)
    panel.show()
    qtbot.waitExposed(panel)
    form = panel.form
    assert form.timed and form.minutes_spin.isVisibleTo(panel) and not form.steps_spin.isVisibleTo(panel)
    assert not form.advanced.isVisibleTo(panel)
    for hidden in (form.w_adv, form.d_warmup_spin, form.segment_spin, form.batch_spin, form.device_combo):
        assert not hidden.isVisibleTo(panel)
    # Start is on screen without scrolling: inside the panel, not clipped by the scroll area
    start = panel.start_button
    top_left = start.mapTo(panel, QPoint(0, 0))
    assert start.isVisible() and panel.rect().contains(top_left)
    assert panel.rect().contains(top_left + QPoint(start.width() - 1, start.height() - 1))
    form.set_advanced(True)
    assert form.advanced.isVisibleTo(panel) and form.w_adv.isVisibleTo(panel) and form.advanced_button.isChecked()
    form.set_advanced(False)
    assert not form.w_adv.isVisibleTo(panel)


def test_train_for_about_n_minutes_becomes_a_timed_run(qtbot, settings, dataset, tmp_path):
    from stemgui.cli import build_parser
    from stemgui.cli.train import build_config
    from stemgui.train.finetune_runs import MINUTES_STEP_CAP, RunPaths, resume_arguments

    panel = ready_panel(qtbot, settings, dataset)
    panel.form.set_minutes(25)
    req = panel.request()
    assert req.minutes == 25
    args = req.arguments(RunPaths(tmp_path / "run", "mine"))
    cfg = build_config(build_parser().parse_args(args))
    assert cfg.train.minutes == 25 and cfg.train.steps == MINUTES_STEP_CAP
    assert cfg.discriminator.d_warmup_steps == 1000  # the trainer cuts it to a fifth of the budgeted steps
    resumed = resume_arguments(args, steps=10, minutes=5)
    assert resumed[resumed.index("--minutes") + 1] == "5" and resumed[resumed.index("--steps") + 1] == str(
        MINUTES_STEP_CAP)
    panel.form.set_steps(300)
    assert panel.request().minutes == 0 and "--minutes" not in panel.request().arguments(RunPaths(tmp_path, "m"))
    panel.form.apply_request({"minutes": 7.0, "steps": 1000})
    assert panel.form.timed and panel.form.minutes_spin.value() == 7


def wheel(widget, delta: int = 120) -> None:
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(0, 0), QPoint(0, delta), Qt.NoButton,
                        Qt.NoModifier, Qt.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_mouse_wheel_changes_only_a_clicked_field(qtbot, settings, dataset):
    panel = ready_panel(qtbot, settings, dataset)
    panel.show()
    panel.activateWindow()
    qtbot.waitActive(panel)
    form = panel.form
    form.set_advanced(True)
    for widget in (form.minutes_spin, form.batch_spin, form.w_l1, form.preset_combo, form.base_combo):
        assert widget.focusPolicy() == Qt.StrongFocus
    before = (form.minutes_spin.value(), form.batch_spin.value(), form.preset_combo.currentIndex())
    panel.start_button.setFocus()
    for widget in (form.minutes_spin, form.batch_spin, form.preset_combo):
        wheel(widget, -120)
    assert (form.minutes_spin.value(), form.batch_spin.value(), form.preset_combo.currentIndex()) == before
    panel.scroll.ensureWidgetVisible(form.batch_spin)
    qtbot.mouseClick(form.batch_spin, Qt.LeftButton, pos=QPoint(8, form.batch_spin.height() // 2))
    qtbot.waitUntil(form.batch_spin.hasFocus, timeout=2000)
    wheel(form.batch_spin, 120)
    assert form.batch_spin.value() == before[1] + 1


def test_a_value_checked_before_is_answered_from_the_cache(qtbot, settings, dataset, monkeypatch):
    from stemgui.gui.finetune_form import ModelCheckService

    panel = ready_panel(qtbot, settings, dataset)
    panel.form.set_architecture("hdemucs")
    panel.form.channels_spin.setValue(4)
    assert_runs(qtbot, panel)
    panel.form.depth_spin.setValue(4)
    assert_blocked(qtbot, panel, "depth=4")
    monkeypatch.setattr(ModelCheckService, "submit", lambda self, spec: pytest.fail("checked again"))
    panel.form.depth_spin.setValue(6)
    assert not panel.start_button.isEnabled()  # until the debounced lookup
    assert_runs(qtbot, panel)


def _every_architecture():
    from test_model_checks import BAD, SMALL

    from stemgui.models.architectures import architecture_names

    names = [name for name in architecture_names() if name != "bag"]
    assert set(names) <= set(BAD), "every registered architecture has a table of bad settings"
    return [(name, SMALL[name], BAD[name][0]) for name in names]


@pytest.mark.parametrize("architecture, small, bad", _every_architecture(), ids=lambda v: v if isinstance(v, str)
                         else None)
def test_every_registered_architecture_can_be_refused_and_fixed_in_the_dock(qtbot, settings, dataset,
                                                                             architecture, small, bad):
    """From scratch: the architecture list, its other settings typed as `key = value, ...` (the first bad setting
    of the model-check table), the one line under the model, Start blocked; the small setting runs again."""
    from stemgui.train.finetune_runs import format_settings

    change, pattern = bad
    panel = ready_panel(qtbot, settings, dataset)
    panel.form.set_architecture(architecture)
    panel.form.extra_edit.setText(format_settings({**small, **change}))
    wait_checked(qtbot, panel)
    assert re.search(pattern, panel.form.model_label.text()), panel.form.model_label.text()
    assert_blocked(qtbot, panel, "[model] ")
    panel.form.extra_edit.setText(format_settings(small))
    assert_runs(qtbot, panel)
    arch, args = panel.request().scratch_model()
    assert arch == architecture and all(args[key] == value for key, value in small.items())


def test_other_settings_that_are_not_key_value_pairs_are_one_line(qtbot, settings, dataset):
    panel = ready_panel(qtbot, settings, dataset)
    panel.form.set_architecture("hdemucs")
    panel.form.extra_edit.setText("channels: 4")
    assert_blocked(qtbot, panel, "[model] other settings 'channels: 4': write them as key = value")
    panel.form.extra_edit.setText("channels = 4")
    assert_runs(qtbot, panel)


def test_member_labels_say_what_each_member_is_for():
    from stemgui.gui.finetune_form import member_labels

    members = [{"architecture": "demucs"}, {"architecture": "hdemucs"}, {"architecture": "htdemucs"}]
    card = {"sources": SOURCES, "args": {"members": members,
                                         "weights": [[1, 0, 0, 0], [1, 1, 0, 0], [2, 1, 1, 1]]}}
    assert member_labels(card) == ["0: drums specialist · Demucs v2 (waveform U-Net with BiLSTM)",
                                   "1: drums, bass · Hybrid Demucs (v3)",
                                   "2: mostly drums · Hybrid Transformer Demucs (v4)"]
    assert member_labels({"sources": SOURCES, "args": {"members": members[:1]}}) == [
        "0: all sources · Demucs v2 (waveform U-Net with BiLSTM)"]


def test_a_hidden_dock_checks_nothing_until_it_is_shown(qtbot, settings, dataset):
    """The app builds the dock hidden: no check (and no check process) until the user opens it."""
    from PySide6.QtWidgets import QMainWindow

    from stemgui.gui.finetune import FineTunePanel

    window = QMainWindow()
    qtbot.addWidget(window)
    window.show()
    panel = FineTunePanel(window, settings=settings)
    window.setCentralWidget(panel)
    panel.hide()
    panel.form.set_dataset(dataset)
    panel.form.set_architecture("hdemucs")
    panel.form.depth_spin.setValue(3)
    qtbot.wait(600)
    assert panel.form.model_checking and panel.form._checking == ""
    panel.show()
    assert_blocked(qtbot, panel, "depth=3")
