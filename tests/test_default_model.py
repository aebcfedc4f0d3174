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


def test_separates_the_example_song_better_than_the_mixture_for_every_stem():
    """uSDR of each estimated stem beats using the mixture itself as the estimate (the trivial baseline)."""
    from stemgui.audio import load_audio
    from stemgui.data.layout import read_stems
    from stemgui.eval.metrics import usdr
    from stemgui.separate import SeparationSettings, Separator

    sep = Separator.from_path(MODEL, SeparationSettings(device="cpu"))
    mix, _ = load_audio(EXAMPLE / "example.wav", samplerate=sep.samplerate)
    truth, _ = read_stems(EXAMPLE / "example_stems", sep.sources)
    estimate = sep.separate(mix)
    model_sdr = usdr(truth, estimate)
    mixture_sdr = usdr(truth, np.broadcast_to(mix, truth.shape))
    for name, ours, baseline in zip(sep.sources, model_sdr, mixture_sdr):
        assert ours > baseline, f"{name}: model {ours:.2f} dB <= mixture {baseline:.2f} dB"
        assert ours > 0.5, f"{name}: model {ours:.2f} dB: no better than silence, not a separator"
