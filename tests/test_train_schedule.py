"""Learning-rate schedule: warm-up, cosine decay, resume-safe (a pure function of the step), bad settings rejected."""

import math

import pytest
import torch

from stemgui.errors import ConfigError
from stemgui.models.card import load_model
from stemgui.train.config import Config
from stemgui.train.schedule import learning_rate
from stemgui.train.trainer import Trainer

from helpers import make_musdb, tiny_config


def test_constant_and_warmup():
    assert learning_rate(1e-3, 0, total_steps=100) == 1e-3
    assert learning_rate(1e-3, 99, total_steps=100) == 1e-3
    assert learning_rate(1e-3, 0, total_steps=100, warmup_steps=4) == pytest.approx(2.5e-4)
    assert learning_rate(1e-3, 3, total_steps=100, warmup_steps=4) == pytest.approx(1e-3)


def test_cosine_runs_from_base_at_decay_start_to_the_floor_at_the_end():
    kw = dict(total_steps=1101, decay="cosine", decay_start=100, min_ratio=0.1)
    assert learning_rate(2.0, 50, **kw) == 2.0  # before the decay starts
    assert learning_rate(2.0, 100, **kw) == 2.0
    assert learning_rate(2.0, 600, **kw) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # half way: the mean
    assert learning_rate(2.0, 1100, **kw) == pytest.approx(0.2)
    assert learning_rate(2.0, 5000, **kw) == pytest.approx(0.2)  # held at the floor past the end
    rates = [learning_rate(2.0, s, **kw) for s in range(100, 1101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # never rises
    assert learning_rate(2.0, 350, **kw) == pytest.approx(2.0 * (0.1 + 0.45 * (1 + math.cos(math.pi / 4))))


def test_unknown_decay_is_rejected():
    with pytest.raises(ValueError, match="linear"):
        learning_rate(1.0, 1, total_steps=2, decay="linear")
    cfg = Config()
    cfg.data.dataset = "d"
    cfg.optim.lr_decay = "linear"
    with pytest.raises(ConfigError, match="optim.lr_decay"):
        cfg.validate()
    cfg.optim.lr_decay = "cosine"
    cfg.optim.lr_min_ratio = 1.5
    with pytest.raises(ConfigError, match="optim.lr_min_ratio"):
        cfg.validate()


def test_trainer_applies_the_schedule_and_the_card_records_it(tmp_path):
    dataset = make_musdb(tmp_path / "musdb", tracks=3, seconds=2.0)
    cfg = tiny_config(dataset, tmp_path / "w.safetensors", preset="l1", steps=4, batch=2)
    cfg.optim.lr = 1e-3
    cfg.optim.lr_decay = "cosine"
    cfg.optim.decay_start = 1
    cfg.optim.lr_min_ratio = 0.0
    trainer = Trainer(cfg)
    from stemgui.train.data import SegmentDataset

    data = SegmentDataset(trainer.train_tracks, trainer.sources, cfg, length=2)
    mix = torch.stack([data[i][0] for i in range(2)])
    stems = torch.stack([data[i][1] for i in range(2)])
    seen = [trainer.train_step(mix, stems)["lr"] for _ in range(4)]
    assert seen == pytest.approx([1e-3, 1e-3, 5e-4, 0.0], abs=1e-12)
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # what Adam actually used
    optimizer = load_model(trainer.export())[1]["training"]["optimizer"]
    assert optimizer["lr_decay"] == "cosine" and optimizer["decay_start"] == 1
    assert optimizer["lr_final"] == pytest.approx(0.0, abs=1e-12)
