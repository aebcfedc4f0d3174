"""Bags of models: the card round trip, validation, and parity with the reference `apply_model` on a
`BagOfModels` (per-source weights, each member with its own segment and its own random shifts)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from stemgui.errors import ModelError
from stemgui.models.architectures import build_model
from stemgui.models.bag import BagOfModels, is_bag
from stemgui.models.card import load_model, save_model
from stemgui.separate import SeparationSettings, Separator

SR = 44100
SOURCES = ["drums", "bass", "other", "vocals"]
WEIGHTS = [[1.0, 0.5, 0.0, 2.0], [0.5, 1.0, 1.0, 1.0]]


def small_args(segment: float) -> dict:
    return {"channels": 4, "depth": 6, "segment": segment, "dconv_attn": 9, "dconv_lstm": 9}


def make_bag(segments=(2.0, 2.0), weights=WEIGHTS, bag_segment=None) -> BagOfModels:
    torch.manual_seed(0)
    members = [{"architecture": "hdemucs", "args": small_args(seg)} for seg in segments]
    return build_model("bag", SOURCES, {"members": members, "weights": weights, "segment": bag_segment}).eval()


def reference_bag(bag: BagOfModels):
    from reference import import_demucs

    import_demucs()
    import demucs.apply
    import demucs.hdemucs

    refs = []
    for member in bag.models:
        ref = demucs.hdemucs.HDemucs(SOURCES, **{k: v for k, v in member.init_kwargs.items() if k != "sources"})
        ref.load_state_dict(member.state_dict())
        refs.append(ref.eval())
    return demucs.apply.BagOfModels(refs, bag.weights), demucs.apply


def test_bag_card_round_trip(tmp_path):
    bag = make_bag()
    path = save_model(bag, tmp_path / "two")
    loaded, card = load_model(path)
    assert is_bag(loaded) and card["architecture"] == "bag"
    assert [m["architecture"] for m in card["args"]["members"]] == ["hdemucs", "hdemucs"]
    assert card["args"]["weights"] == WEIGHTS
    x = 0.1 * torch.randn(1, 2, SR)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), bag(x))


@pytest.mark.parametrize("shifts", [0, 1])
def test_bag_matches_reference_apply_model(shifts):
    bag = make_bag()
    ref_bag, apply = reference_bag(bag)
    mix = (0.1 * np.random.default_rng(1).standard_normal((2, int(SR * 4.3)))).astype(np.float32)
    settings = SeparationSettings(segment=2.0, overlap=0.25, shifts=shifts, seed=5, batch_size=2, device="cpu")
    ours = Separator(bag, settings).separate(mix)
    random.seed(5)
    with torch.no_grad():
        ref = apply.apply_model(ref_bag, torch.from_numpy(mix)[None], shifts=shifts, split=True, overlap=0.25,
                                segment=2.0)[0].numpy()
    assert np.abs(ours - ref).max() <= 1e-4


def test_members_keep_their_own_segments():
    """With no segment given, each member runs at its own segment, as in the reference."""
    bag = make_bag(segments=(1.5, 2.5))
    ref_bag, apply = reference_bag(bag)
    mix = (0.1 * np.random.default_rng(2).standard_normal((2, int(SR * 5.1)))).astype(np.float32)
    sep = Separator(bag, SeparationSettings(shifts=1, seed=3, device="cpu"))
    assert sep.member_segments() == [1.5, 2.5]
    chunks: list[tuple[int, int]] = []
    ours = sep.separate(mix, on_chunk=lambda a, b, _: chunks.append((a, b)))
    assert chunks[0][0] == 0 and chunks[-1][1] == mix.shape[1] and len(chunks) > 1
    random.seed(3)
    with torch.no_grad():
        ref = apply.apply_model(ref_bag, torch.from_numpy(mix)[None], shifts=1, split=True)[0].numpy()
    assert np.abs(ours - ref).max() <= 1e-4


def test_bag_segment_overrides_members():
    bag = make_bag(segments=(1.5, 2.5), bag_segment=2.0)
    assert [m.segment for m in bag.models] == [2.0, 2.0]


@pytest.mark.parametrize("weights, message", [
    ([[1.0, 1.0, 1.0, 1.0]], "2 rows of 4"),
    ([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]], "2 rows of 4"),
    ([[1.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]], "positive weight for source 'bass'"),
    ([[1.0, -1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]], "negative"),
])
def test_bad_bag_weights_are_one_clear_error(weights, message):
    with pytest.raises(ModelError, match=message):
        make_bag(weights=weights)


def test_bag_members_must_agree_on_sources():
    members = [{"architecture": "hdemucs", "args": small_args(2.0)},
               {"architecture": "hdemucs", "args": small_args(2.0), "sources": ["vocals", "accompaniment"]}]
    with pytest.raises(ModelError, match="member 1 separates"):
        build_model("bag", SOURCES, {"members": members})
