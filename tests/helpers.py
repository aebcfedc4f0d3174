"""Helpers shared by the tests: a tiny generated MUSDB-layout dataset and a tiny training config.

Imported as `from helpers import ...` (pytest puts tests/ on sys.path); fixtures stay in conftest.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import soundfile as sf

from stemgui import SOURCES

RATE = 44100
REPO = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """A script of the repository (e.g. "scripts/data_ab.py") imported as a module, for testing its functions."""
    path = REPO / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_stems(rng: np.random.Generator, seconds: float, rate: int = RATE) -> np.ndarray:
    """(4, 2, T) float32: noise-burst drums, low sine bass, a chord for other, a vibrato tone for vocals."""
    t = np.arange(int(seconds * rate)) / rate
    drums = rng.standard_normal(t.size) * (np.mod(t, 0.25) < 0.03) * 0.3
    f0 = rng.uniform(50, 90)
    bass = 0.3 * np.sin(2 * np.pi * f0 * t)
    other = sum(0.1 * np.sin(2 * np.pi * f * t) for f in rng.uniform(300, 900, 3))
    fv = rng.uniform(200, 400)
    vocals = 0.2 * np.sin(2 * np.pi * fv * t + 3 * np.sin(2 * np.pi * 5 * t))
    stems = []
    for mono in (drums, bass, other, vocals):
        pan = rng.uniform(0.3, 0.7)
        stems.append(np.stack([mono * pan, mono * (1 - pan)]))
    return np.asarray(stems, dtype=np.float32)


def make_musdb(root: Path, tracks: int = 3, seconds: float = 3.0, seed: int = 0, subset: str = "train") -> Path:
    """root/subset/<track>/{mixture,drums,bass,other,vocals}.wav with stems summing to the mixture."""
    rng = np.random.default_rng(seed)
    for i in range(tracks):
        folder = root / subset / f"track{i:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        stems = make_stems(rng, seconds)
        for name, stem in zip(SOURCES, stems):
            sf.write(folder / f"{name}.wav", stem.T, RATE, subtype="FLOAT")
        sf.write(folder / "mixture.wav", stems.sum(0).T, RATE, subtype="FLOAT")
    return root


def tiny_config(dataset: Path, out: Path, preset: str = "l1+stft+gan", steps: int = 4, batch: int = 2):
    """A config small enough for unit tests: HDemucs with 4 channels, depth 3, nfft 64; 0.5 s segments."""
    from stemgui.train.config import Config

    cfg = Config()
    cfg.data.dataset = str(dataset)
    cfg.data.segment = 0.5
    cfg.data.valid_seconds = 1.0
    cfg.data.valid_fraction = 0.34
    cfg.model.channels = 4
    cfg.model.depth = 3
    cfg.model.nfft = 64
    cfg.loss.preset = preset
    cfg.discriminator.channels = 4
    cfg.discriminator.d_warmup_steps = 1
    cfg.discriminator.layers = 2
    cfg.optim.lr = 1e-3
    cfg.train.steps = steps
    cfg.train.batch_size = batch
    cfg.train.out = str(out)
    cfg.train.checkpoint_every = 2
    cfg.train.valid_every = 100
    cfg.train.log_every = 1
    cfg.train.progress = False
    cfg.train.threads = 1  # 2 shared cores: one thread per process is ~10x faster under load
    return cfg
