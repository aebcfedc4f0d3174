"""Shared fixtures: isolated user dirs, a tiny random-weight model, short test audio."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.is_dir():  # CI clones next to shared/ as well; a developer checkout may be one level deeper
    SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """No test reads or writes the real user data/cache dirs."""
    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("STEMGUI_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("STEMGUI_CACHE_DIR", str(base / "cache"))
    monkeypatch.setenv("STEMGUI_LOG_DIR", str(base / "log"))


def make_tiny_model(sources=("drums", "bass", "other", "vocals"), seed: int = 0, **kwargs):
    """A Hybrid Demucs small enough to run in milliseconds; random weights (tests only)."""
    import torch

    from stemgui.models.hdemucs import HDemucs

    torch.manual_seed(seed)
    args = dict(channels=4, segment=2.0, dconv_attn=9, dconv_lstm=9)  # no LSTM/attention layers: fast
    args.update(kwargs)
    return HDemucs(list(sources), **args)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny random-weight model saved as safetensors + card, shared by the whole test session."""
    from stemgui.models.card import save_model

    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_model(make_tiny_model(), path, {"name": "tiny", "training": {"note": "random weights, tests only"}})
    return path


@pytest.fixture
def stereo_noise():
    """3.3 s of seeded stereo noise at 44.1 kHz, a length that is not a multiple of anything."""
    rng = np.random.default_rng(1)
    return (0.1 * rng.standard_normal((2, 145_531))).astype(np.float32)
