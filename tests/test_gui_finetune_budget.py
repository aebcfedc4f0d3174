""""Train for about N minutes" (the Fine-tune dock's simple mode, `stemgui train --minutes`): the trainer measures
its first steps and fixes the step count that fits; the log says so (a `budget` event) and logs the first step,
so the dock shows an ETA from the first step. Qt-free."""

from __future__ import annotations

import json

from stemgui.train.finetune_log import TrainingHistory
from stemgui.train.trainer import TimeBudget

from helpers import make_musdb, tiny_config


def test_time_budget_turns_the_measured_speed_into_steps():
    budget = TimeBudget(minutes=2, first_step=100, start=0.0)
    assert budget.pending and budget.left(30.0) == 90.0
    assert not budget.calibrated(102, 20.0)  # too few steps
    assert not budget.calibrated(110, 5.0)  # too short to trust
    assert budget.calibrated(103, 10.0)
    assert budget.rate(110, 20.0) == 0.5
    assert budget.total_steps(110, 20.0, cap=10_000) == 110 + 50  # 100 s left at 0.5 steps/s
    assert budget.total_steps(110, 20.0, cap=130) == 130  # --steps caps it
    assert budget.total_steps(110, 500.0, cap=10_000) == 110  # the time is up: end now
    assert budget.calibrated(101, 120.0)  # a step slower than the whole budget still ends the run
    assert not TimeBudget(0, 0, 0.0).pending


def test_history_shows_a_timed_run_until_its_steps_are_known():
    h = TrainingHistory()
    h.add({"event": "start", "step": 0, "steps": 1_000_000, "minutes": 10})
    h.add({"event": "train", "step": 1, "loss": 1.0, "steps_per_s": 0.5, "eta_s": 598.0})
    assert not h.steps_known
    assert h.status_line() == ("Step 1 · 0.50 steps/s · measuring the speed for a 10-minute run · "
                               "ETA 9 min 58 s")
    h.add({"event": "budget", "step": 4, "steps": 300, "minutes": 10, "steps_per_s": 0.5})
    h.add({"event": "train", "step": 5, "loss": 1.0, "steps_per_s": 0.5, "eta_s": 590.0})
    assert h.steps_known and h.total_steps == 300
    assert h.status_line() == "Step 5 / 300 · 0.50 steps/s · ETA 9 min 50 s"


def test_a_timed_training_ends_at_the_steps_its_first_steps_allow(tmp_path, monkeypatch):
    from stemgui.train import checkpoint as ckpt_io
    from stemgui.train.trainer import train

    monkeypatch.setattr(TimeBudget, "CALIBRATION_S", 0.5)
    data = make_musdb(tmp_path / "ds", tracks=3, seconds=2.0)
    cfg = tiny_config(data, tmp_path / "timed.safetensors", preset="l1+stft+gan", steps=100_000, batch=1)
    cfg.train.minutes = 0.15  # 9 s
    cfg.train.log_every = 50  # the first step is logged anyway
    cfg.train.checkpoint_every = 100_000
    cfg.discriminator.d_warmup_steps = 1000  # longer than the budget: cut to a fifth of its steps
    result = train(cfg)
    records = [json.loads(line) for line in (tmp_path / "timed.run" / "log.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["event"] == "start")
    assert start["minutes"] == 0.15 and start["steps"] == 100_000
    first = next(r for r in records if r["event"] == "train")
    assert first["step"] == 1 and first["eta_s"] is not None and first["eta_s"] <= 9.0  # an ETA from step 1
    budget = [r for r in records if r["event"] == "budget"]
    assert len(budget) == 1
    steps = budget[0]["steps"]
    # measured over the first steps, unless these alone took the whole budget (a very busy machine)
    assert budget[0]["step"] >= TimeBudget.CALIBRATION_STEPS or steps == budget[0]["step"]
    assert budget[0]["step"] <= steps < 100_000 and budget[0]["d_warmup_steps"] == steps // 5
    end = records[-1]
    assert end["event"] == "end" and end["step"] == steps == result.steps
    state = ckpt_io.load_checkpoint(ckpt_io.latest_checkpoint(tmp_path / "timed.run"))
    assert state["config"]["train"]["steps"] == steps and state["config"]["train"]["minutes"] == 0.0
    history = TrainingHistory()
    history.extend(records)
    assert history.steps_known and history.total_steps == steps and history.status == "finished"
