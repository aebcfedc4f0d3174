"""Checkpoints: atomic files with ordinary permissions, the newest `keep` kept, a round trip of nested state."""

import os

import numpy as np
import torch

from stemgui.models.card import card_path, save_model
from stemgui.train import checkpoint as ckpt_io


def _ordinary() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_checkpoints_round_trip_keep_the_newest_and_are_ordinary_files(tmp_path):
    run = tmp_path / "run"
    state = {"g": {"w": torch.arange(6.0).reshape(2, 3)}, "opt": {0: {"step": torch.tensor(3)}},
             "rng": (3, np.arange(4, dtype=np.uint32), None), "lr": float("inf")}
    for step in (2, 4, 6):
        ckpt_io.save_checkpoint(run, step, state, keep=2)
    assert sorted(p.name for p in run.iterdir()) == ["ckpt-00000004.json", "ckpt-00000004.safetensors",
                                                     "ckpt-00000006.json", "ckpt-00000006.safetensors",
                                                     "latest.json"]  # no temp files left behind
    assert all(p.stat().st_mode & 0o777 == _ordinary() for p in run.iterdir())
    loaded = ckpt_io.load_checkpoint(ckpt_io.latest_checkpoint(run))
    assert torch.equal(loaded["g"]["w"], state["g"]["w"]) and loaded["opt"][0]["step"].item() == 3
    assert loaded["rng"][0] == 3 and np.array_equal(loaded["rng"][1], state["rng"][1]) and loaded["lr"] == float("inf")


def test_a_saved_model_is_an_ordinary_file(tmp_path):
    path = save_model(torch.nn.Linear(2, 2), tmp_path / "m.safetensors", {"name": "m"})
    assert path.stat().st_mode & 0o777 == _ordinary()
    assert card_path(path).stat().st_mode & 0o777 == _ordinary()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
