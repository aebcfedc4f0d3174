"""Published-model paths end to end: an HTDemucs `.th` written by the `demucs` package imports to a card and
separates through our engine exactly as the reference `apply_model` does (segments capped at the model's
training length, the last one padded with the audio before it); a six-source HTDemucs keeps its sources."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from stemgui.models.card import load_model
from stemgui.models.legacy import import_to_card
from stemgui.separate import SeparationSettings, Separator

from reference import import_demucs

SR = 44100
FOUR = ["drums", "bass", "other", "vocals"]
SIX = FOUR + ["guitar", "piano"]
SMALL = {"channels": 8, "depth": 4, "t_layers": 1, "bottom_channels": 0, "t_heads": 2, "segment": 1.0}


def _write_th(folder: Path, sources, seed: int = 0, **kwargs) -> tuple[Path, torch.nn.Module]:
    import_demucs()
    from demucs.htdemucs import HTDemucs
    from demucs.states import save_with_checksum, serialize_model
    from omegaconf import OmegaConf

    torch.manual_seed(seed)
    model = HTDemucs(list(sources), **{**SMALL, **kwargs})
    save_with_checksum(serialize_model(model, OmegaConf.create({"seed": seed})), folder / "955717e8.th")
    (path,) = folder.glob("955717e8-*.th")
    return path, model


@pytest.mark.parametrize("shifts, segment", [(0, None), (1, None), (0, 5.0)])
def test_imported_htdemucs_matches_reference_apply_model(tmp_path, shifts, segment):
    import_demucs()
    import demucs.apply
    from demucs.states import load_model as demucs_load

    th, _ = _write_th(tmp_path, FOUR)
    out = import_to_card(th, tmp_path / "models", "ht")
    model, card = load_model(out)
    assert card["architecture"] == "htdemucs" and model.segment == 1.0
    ref = demucs_load(torch.load(th, map_location="cpu", weights_only=False)).float().eval()
    mix = (0.1 * np.random.default_rng(0).standard_normal((2, int(SR * 2.7)))).astype(np.float32)
    sep = Separator(model, SeparationSettings(segment=segment, shifts=shifts, seed=9, device="cpu"), card)
    assert sep.member_segments() == [1.0], "HTDemucs cannot run beyond its training segment: capped"
    ours = sep.separate(mix)
    random.seed(9)
    with torch.no_grad():
        expected = demucs.apply.apply_model(ref, torch.from_numpy(mix)[None], shifts=shifts, split=True,
                                            overlap=0.25)[0].numpy()
    assert np.abs(ours - expected).max() <= 1e-4


def test_six_source_htdemucs_imports_with_its_sources(tmp_path):
    th, _ = _write_th(tmp_path, SIX, seed=1)
    model, card = load_model(import_to_card(th, tmp_path / "models", "six"))
    assert card["sources"] == SIX and model.sources == SIX
    stems = Separator(model, SeparationSettings(device="cpu")).separate(np.zeros((2, SR), np.float32))
    assert stems.shape == (6, 2, SR)
