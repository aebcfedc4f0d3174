"""The waveform separators of the seed papers (issue 17): Wave-U-Net, Demucs v1, Conv-TasNet.

Tiny sizes throughout: shapes and gradients, the length rules the separator relies on (`valid_length`), save /
load round trips, a few optimizer steps lowering the loss on a fixed batch, every waveform loss preset through
the trainer, and a song separated through `stemgui separate` with a tiny saved model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemgui import SOURCES
from stemgui.models.architectures import ARCHITECTURES, build_model
from stemgui.models.card import load_model, save_model

from helpers import make_musdb, tiny_config

TINY = {
    "waveunet": {"levels": 3, "features": 4},
    "waveunet-same": {"levels": 3, "features": 4, "context": False, "output": "direct"},
    "demucs1": {"channels": 4, "depth": 3},
    "demucs1-padded": {"channels": 4, "depth": 3, "valid_context": False},
    "convtasnet": {"N": 16, "B": 8, "H": 16, "X": 2, "R": 1},
    "convtasnet-skip": {"N": 16, "B": 8, "H": 16, "X": 2, "R": 1, "skip": True, "mask_nonlinear": "softmax"},
}
ARCHS = ("waveunet", "demucs1", "convtasnet")
PAPERS = {"waveunet": "Stoller, Ewert, Dixon", "demucs1": "Défossez, Usunier, Bottou, Bach", "convtasnet": "Luo & Mesgarani"}


def _arch(name: str) -> str:
    return name.split("-")[0]


def _tiny(name: str, sources=SOURCES, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return build_model(_arch(name), list(sources), {**TINY[name], **extra})


def _noise(length: int, batch: int = 2, channels: int = 2, seed: int = 1) -> torch.Tensor:
    return 0.3 * torch.randn(batch, channels, length, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ interface
@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("length", [1, 999, 4410])
def test_shapes_and_gradients(name, length):
    model = _tiny(name)
    assert type(model).architecture == _arch(name) and _arch(name) in ARCHITECTURES
    assert model.sources == list(SOURCES) and model.audio_channels == 2 and model.samplerate == 44100
    mix = _noise(length).requires_grad_(True)
    out = model(mix)
    assert out.shape == (2, len(SOURCES), 2, length) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert mix.grad is not None and torch.isfinite(mix.grad).all()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in trainable) >= 0.8 * len(trainable)


@pytest.mark.parametrize("name", list(TINY))
def test_mono_and_two_stem_models(name):
    model = _tiny(name, sources=["vocals", "accompaniment"], audio_channels=1)
    assert model(_noise(3000, channels=1)).shape == (2, 2, 1, 3000)


def test_waveunet_difference_output_sums_to_the_mix():
    model = _tiny("waveunet")
    mix = _noise(2345)
    with torch.no_grad():
        out = model(mix)
    assert (out.sum(dim=1) - mix).abs().max() < 1e-5


def test_waveunet_lengths_are_the_papers():
    """L=12, f_d=15, f_u=5 with context: 147443 input samples for 16389 output samples (the authors' numbers)."""
    model = build_model("waveunet", SOURCES, {})
    assert (model.levels, model.init_kwargs["features"], model.kernel_down, model.kernel_up) == (12, 24, 15, 5)
    assert model.valid_length(16384) == 147443 and model.output_length(147443) == 16389
    same = build_model("waveunet", SOURCES, {"levels": 3, "features": 4, "context": False})
    assert same.valid_length(100) == 104 and same.valid_length(104) == 104


@pytest.mark.parametrize("length", [3000, 4411])
def test_waveunet_context_gives_the_same_centre_as_the_whole_signal(length):
    """What the separator does: pad a segment to valid_length with the audio around it, centre-trim the output.
    With the paper's context (valid convolutions) that margin is exactly the receptive field, so the centre
    equals what the model computes for the whole signal there, whenever the segment sits on the same
    decimation grid (a multiple of 2^levels apart). "Same" padding (M1/M2) sees zeros at every level's edges
    instead: that is what the paper's context fixes. (Demucs v1's BiLSTM sees the whole input: never exact.)"""
    model = _tiny("waveunet").eval()
    mix = _noise(20000, batch=1)
    target = model.valid_length(length)
    assert target >= length and model.valid_length(target) >= target
    offset = (target - length) // 2
    whole_pad = (model.valid_length(mix.shape[-1]) - mix.shape[-1]) // 2
    start = 8000
    start -= (start - offset + whole_pad) % (1 << model.levels)
    chunk = mix[..., start - offset : start - offset + target]
    with torch.no_grad():
        whole = model(mix)[..., start : start + length]
        part = model(chunk)[..., offset : offset + length]
    assert (part - whole).abs().max() < 1e-5


def test_demucs1_has_the_v1_settings():
    model = build_model("demucs1", SOURCES, {"channels": 4, "depth": 3})
    assert type(model).__name__ == "Demucs1"
    args = model.init_kwargs
    assert (args["lstm_layers"], args["kernel_size"], args["stride"], args["glu"], args["rescale"]) == (2, 8, 4, True, 0.1)
    assert not args["normalize"] and not args["resample"] and not args["gelu"] and args["dconv_mode"] == 0
    assert model.lstm is not None
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert all(layer[0].padding == (0,) and layer[0].kernel_size == (3,) for layer in model.decoder)
    defaults = build_model("demucs1", SOURCES, {"depth": 1, "lstm_layers": 0}).init_kwargs
    assert defaults["channels"] == 100 and defaults["segment"] == 10.0


def test_convtasnet_defaults_are_the_demucs_papers_baseline():
    import inspect

    from stemgui.models.convtasnet import ConvTasNet

    params = inspect.signature(ConvTasNet).parameters
    defaults = {k: params[k].default for k in ("N", "L", "B", "H", "P", "X", "R", "audio_channels", "norm_type")}
    assert defaults == {"N": 256, "L": 20, "B": 256, "H": 512, "P": 3, "X": 8, "R": 4, "audio_channels": 2,
                        "norm_type": "gLN"}
    model = _tiny("convtasnet")
    assert model.valid_length(1) == 20 and model.valid_length(21) == 30 and model.valid_length(30) == 30


# ------------------------------------------------------------------------------------------------ cards
@pytest.mark.parametrize("name", list(TINY))
def test_save_load_round_trip(name, tmp_path):
    model = _tiny(name).eval()
    path = save_model(model, tmp_path / f"{name}.safetensors", {"name": name})
    loaded, card = load_model(path)
    assert card["architecture"] == _arch(name) and type(loaded) is type(model)
    assert card["args"] == {k: v for k, v in model.init_kwargs.items() if k != "sources"} or \
        card["args"] == model.init_kwargs
    mix = _noise(3001)
    with torch.no_grad():
        assert torch.equal(loaded(mix), model(mix))


def test_a_model_stored_in_float16_loads_as_float32_and_separates_alike(tmp_path):
    from safetensors.torch import load_file

    model = _tiny("demucs1").eval()
    full = save_model(model, tmp_path / "full.safetensors", {"name": "full", "stored_dtype": "float16"})
    half = save_model(model, tmp_path / "half.safetensors", {"name": "half"}, stored_dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert {t.dtype for t in load_file(str(half)).values() if t.is_floating_point()} == {torch.float16}
    loaded, card = load_model(half)
    assert card["stored_dtype"] == "float16" and "stored_dtype" not in load_model(full)[1]  # a stale key goes
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    mix = _noise(3001)
    with torch.no_grad():
        ref, est = model(mix), loaded(mix)
    assert 10 * torch.log10(ref.pow(2).sum() / (ref - est).pow(2).sum()) > 40  # float16 rounding: >40 dB SDR


@pytest.mark.parametrize("name", ARCHS)
def test_fine_tune_surgery_maps_sources_by_name_and_freezes(name, tmp_path):
    """Per-source output slices are found by the surgery's probe build, so a 4-stem model becomes a 2-stem one."""
    from stemgui.train.surgery import finetune_generator

    base = _tiny(name).eval()
    path = save_model(base, tmp_path / f"base-{name}.safetensors", {"name": "base"})
    model, note = finetune_generator(str(path), ["vocals", "drums"], segment=0.25, samplerate=44100,
                                     freeze_encoder=1)
    assert note["mapped_sources"] == ["vocals", "drums"] and model.sources == ["vocals", "drums"]
    assert any(not p.requires_grad for p in model.encoder.parameters())
    with torch.no_grad():
        out = model.eval()(_noise(2000))
    assert out.shape == (2, 2, 2, 2000)


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("name", ARCHS)
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(name):
    model = _tiny(name, seed=3)
    model.train()
    gen = torch.Generator().manual_seed(7)
    stems = 0.2 * torch.randn(2, len(SOURCES), 2, 4000, generator=gen)
    stems[:, 1] = 0.3 * torch.sin(torch.arange(4000) / 20.0)  # something learnable
    mix = stems.sum(dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = torch.nn.functional.l1_loss(model(mix), stems)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.95 * losses[0], losses


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_musdb(tmp_path_factory.mktemp("musdb"), tracks=3, seconds=2.0)


# Every architecture with the full objective (L1 + MR-STFT + GAN: with demucs1 the seed study's "Demucs (v1) +
# GAN"), Demucs v1 with its own L1 and with L1 + STFT; the rest of the matrix is the same code path (slow).
PRESET_RUNS = [(name, "l1+stft+gan") for name in ARCHS] + [("demucs1", "l1"), ("demucs1", "l1+stft")] + [
    pytest.param(name, preset, marks=pytest.mark.slow)
    for name in ("waveunet", "convtasnet") for preset in ("l1", "l1+stft")]


@pytest.mark.parametrize("name, preset", PRESET_RUNS)
def test_trains_through_the_trainer_with_the_waveform_presets(name, preset, dataset, tmp_path):
    from stemgui.train.trainer import Trainer

    cfg = tiny_config(dataset, tmp_path / f"{name}.safetensors", preset=preset, steps=2, batch=1)
    cfg.data.segment = 0.25
    cfg.model.architecture = name
    cfg.model.extra = dict(TINY[name])
    cfg.discriminator.d_warmup_steps = 0
    result = Trainer(cfg).run()
    model, card = load_model(result.out)
    assert card["architecture"] == name and type(model).architecture == name
    assert card["args"]["segment"] == 0.25 and card["training"]["preset"] == preset
    assert card["training"]["steps"] == 2
    assert card["paper"].startswith(PAPERS[name]) and "settings other than the paper's" in card["paper"]
    if preset == "l1+stft+gan":
        assert card["training"]["method"] == "generative optimization"


def test_cli_train_takes_the_architecture_and_its_settings(dataset, tmp_path, capsys):
    from stemgui.cli import main

    out = tmp_path / "wun.safetensors"
    code = main(["train", "--dataset", str(dataset), "--architecture", "waveunet", "--preset", "l1",
                 "--set", "model.extra={levels = 2, features = 3}", "--segment", "0.2", "--steps", "1",
                 "--batch-size", "1", "--out", str(out), "--no-progress", "--set", "train.threads=1"])
    assert code == 0, capsys.readouterr().err
    _, card = load_model(out)
    assert card["architecture"] == "waveunet" and card["args"]["levels"] == 2


# ------------------------------------------------------------------------------------------------ separation
@pytest.fixture
def song(tmp_path) -> Path:
    rate = 44100
    t = np.arange(int(rate * 1.5)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] * np.ones((1, 2)) + 0.01 * np.random.default_rng(2).standard_normal((len(t), 2))
    path = tmp_path / "song.wav"
    sf.write(path, wav.astype(np.float32), rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("name", ARCHS)
def test_separates_a_song_through_the_cli(name, song, tmp_path):
    from stemgui.cli import main

    model = _tiny(name).eval()
    path = save_model(model, tmp_path / f"tiny-{name}.safetensors", {"name": f"tiny-{name}"})
    out = tmp_path / "out"
    assert main(["separate", str(song), "-o", str(out), "--model", str(path), "--device", "cpu",
                 "--segment", "0.5"]) == 0
    folder = out / "song"
    mix, _ = sf.read(song, dtype="float32")
    for source in SOURCES:
        stem, rate = sf.read(folder / f"{source}.wav", dtype="float32")
        assert rate == 44100 and stem.shape == mix.shape and np.isfinite(stem).all()
    if name == "waveunet":  # the difference output: the stems add up to the song
        total = sum(sf.read(folder / f"{s}.wav", dtype="float32")[0] for s in SOURCES)
        assert np.abs(total - mix).max() < 1e-3
