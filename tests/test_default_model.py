"""The bundled default model: a complete card, a small file, and real separation of the example song."""

from __future__ import annotations

import numpy as np
import pytest

from stemgui.paths import resources_dir

MODEL = resources_dir() / "models" / "default.safetensors"
EXAMPLE = resources_dir() / "examples"

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="no bundled default model in resources/models/")


def test_registry_lists_the_default_first_with_its_card():
    from stemgui.models.registry import list_models, resolve_model

    first = list_models()[0]
    assert first.name == "default" and first.bundled and resolve_model(None) == first.path
    card = first.card
    assert card["sources"] == ["drums", "bass", "other", "vocals"]
    assert MODEL.stat().st_size < 60 * 1024 * 1024
    training = card["training"]
    for key in ("preset", "steps", "data"):
        assert key in training, key
    assert "test" in card["metrics"], "the card must state the held-out SDR"
    assert f"held-out uSDR {card['metrics']['test_usdr_mean']:.2f} dB" in first.summary


def _example_scores(refine: str):
    from stemgui.audio import load_audio
    from stemgui.data.layout import read_stems
    from stemgui.eval.metrics import usdr
    from stemgui.separate import SeparationSettings, Separator

    sep = Separator.from_path(MODEL, SeparationSettings(device="cpu", refine=refine))
    mix, _ = load_audio(EXAMPLE / "example.wav", samplerate=sep.samplerate)
    truth, _ = read_stems(EXAMPLE / "example_stems", sep.sources)
    estimate = sep.separate(mix)
    return sep, estimate, mix, usdr(truth, estimate), usdr(truth, np.broadcast_to(mix, truth.shape))


def test_separates_the_example_song_better_than_the_mixture_for_every_stem():
    """The model's own stems (no refinement): uSDR of each beats the mixture as the estimate (the trivial
    baseline) and silence."""
    sep, _, _, model_sdr, mixture_sdr = _example_scores("off")
    for name, ours, baseline in zip(sep.sources, model_sdr, mixture_sdr):
        assert ours > baseline, f"{name}: model {ours:.2f} dB <= mixture {baseline:.2f} dB"
        assert ours > 0.5, f"{name}: model {ours:.2f} dB: no better than silence, not a separator"


def test_the_card_refines_the_vocals_and_what_that_costs_on_the_example():
    """What the app runs by default (the card's `vocals` refinement): stems that add up to the song, each
    better than the mixture, vocals and drums better than raw. On this song 'other' pays for it (1.22 -> -0.62 dB
    uSDR; -0.09 dB on average over the 12 synthetic test songs, card metrics.refine): pinned so a change shows."""
    sep, estimate, mix, refined, mixture_sdr = _example_scores("auto")
    assert sep.refine_mode == "vocals"
    np.testing.assert_allclose(estimate.sum(axis=0), mix, atol=1e-4)
    _, _, _, raw, _ = _example_scores("off")
    for name, ours, baseline in zip(sep.sources, refined, mixture_sdr):
        assert ours > baseline, f"{name}: refined {ours:.2f} dB <= mixture {baseline:.2f} dB"
    index = {name: k for k, name in enumerate(sep.sources)}
    assert refined[index["vocals"]] > raw[index["vocals"]] and refined[index["drums"]] > raw[index["drums"]]
    assert -1.0 < refined[index["other"]] < raw[index["other"]] - 1.0
