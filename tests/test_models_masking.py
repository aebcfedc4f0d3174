"""The spectrogram-masking models of the seed papers (DRNN, spectrogram U-Net, supervised NMF) and two-stem
training: shapes and gradients at tiny sizes, masks that sum to the mixture, NMF's monotone updates, the
spectral training presets, save/load round trips, training through `stemgui train` on 44.1 kHz stereo data
converted on the fly, and separating a 44.1 kHz stereo song through `stemgui separate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from stemgui.models.architectures import build_model
from stemgui.models.card import load_model, read_card, save_model
from stemgui.train.config import Config, LossConfig
from stemgui.train.losses import GeneratorObjective, spectral_loss

from helpers import make_musdb

TWO = ["vocals", "accompaniment"]
TINY = {
    "drnn": {"hidden": 12, "nfft": 64},
    "unet": {"channels": 2, "nfft": 128, "hop": 96},
    "nmf": {"components": 3, "nfft": 64, "hop": 32, "iterations": 5, "fit_iterations": 10},
}


def _mix(model, seconds=0.3, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, model.audio_channels, int(seconds * model.samplerate), generator=g)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_musdb(tmp_path_factory.mktemp("musdb"), tracks=3, seconds=2.0)


# ------------------------------------------------------------------------------------------- shapes, gradients
@pytest.mark.parametrize("arch, extra", [
    ("drnn", {}), ("drnn", {"recurrent": 1, "context": 0}), ("drnn", {"recurrent": 3}), ("drnn", {"recurrent": 0}),
    ("drnn", {"stacked": True}), ("unet", {}), ("nmf", {})])
def test_shapes_and_gradients(arch, extra):
    torch.manual_seed(0)
    model = build_model(arch, TWO, {**TINY[arch], **extra})
    assert model.architecture == arch and model.sources == TWO
    mix = _mix(model).requires_grad_(arch != "nmf")
    out = model(mix)
    assert out.shape == (2, 2, model.audio_channels, mix.shape[-1])
    if arch == "nmf":
        assert not list(model.parameters()) and "dictionaries" in model.state_dict()
        return
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_paper_defaults():
    drnn = build_model("drnn", TWO)
    assert (drnn.samplerate, drnn.audio_channels, drnn.nfft, drnn.hop, drnn.context) == (16000, 1, 1024, 512, 1)
    assert [type(m).__name__ for m in drnn.hidden] == ["Linear", "RNN", "Linear"]  # DRNN-2
    assert drnn.hidden[1].hidden_size == 1000 and drnn.hidden[0].in_features == 513 * 3
    assert [type(m).__name__ for m in build_model("drnn", TWO, {"stacked": True}).hidden] == ["RNN"] * 3
    unet = build_model("unet", TWO)
    assert (unet.samplerate, unet.nfft, unet.hop) == (8192, 1024, 768)
    assert [layer[0].out_channels for layer in unet.encoder] == [16, 32, 64, 128, 256, 512]
    assert all(layer[0].kernel_size == (5, 5) and layer[0].stride == (2, 2) for layer in unet.encoder)
    dropouts = [any(isinstance(m, torch.nn.Dropout) for m in layer) for layer in unet.decoder]
    assert dropouts == [True, True, True, False, False, False]
    assert unet.decoder[-1][0].out_channels == 2


# ------------------------------------------------------------------------------------------------ masking layer
@pytest.mark.parametrize("arch", ["drnn", "nmf"])
def test_masks_sum_to_one_and_estimates_to_the_mixture(arch):
    torch.manual_seed(1)
    model = build_model(arch, ["vocals", "drums", "bass"], TINY[arch]).eval()
    mix = _mix(model, seconds=0.4)
    with torch.no_grad():
        out = model(mix)
        if arch == "drnn":  # (frames, bins) per sequence -> (sources, N, frames, bins)
            masks = model.masks(torch.rand(3, 20, 33))
            total = masks.sum(dim=0)
        else:  # (bins, frames) -> (N, sources, bins, frames)
            masks = model.masks(torch.rand(3, 33, 20))
            total = masks.sum(dim=1)
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-6, rtol=0)
    assert (masks >= 0).all()
    assert (out.sum(dim=1) - mix).abs().max() < 1e-6


def test_unet_masks_are_sigmoids_and_the_pipeline_inverts():
    model = build_model("unet", TWO, TINY["unet"]).eval()
    mix = _mix(model, seconds=1.0)
    with torch.no_grad():
        masks = model.masks(torch.rand(2, 1, 64, 30))
        out = model(mix)
    assert masks.shape == (2, 2, 64, 30) and ((masks > 0) & (masks < 1)).all()
    assert out.abs().max() <= 2 * mix.abs().max()  # masks <= 1: no blow-up at the signal's ends (hop > nfft/2)


# ---------------------------------------------------------------------------------------------------------- NMF
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0, 3.0])
def test_nmf_updates_never_increase_the_divergence(beta):
    from stemgui.models.nmf import beta_divergence, update_activations

    model = build_model("nmf", TWO, {**TINY["nmf"], "beta": beta, "fit_iterations": 25})
    g = torch.Generator().manual_seed(2)
    stems = torch.randn(2, 2, 2, 4000, generator=g) * torch.tensor([1.0, 0.2])[None, :, None, None]
    history = model.fit(stems)
    for values in history.values():
        steps = np.diff(values)
        assert (steps <= 1e-9 * abs(values[0])).all(), (beta, steps.max())
        assert values[-1] < values[0]
    assert torch.allclose(model.dictionaries.sum(dim=1), torch.ones(2, 3))  # columns scaled to sum to one
    v = torch.rand(1, 33, 40, dtype=torch.float64) + 0.01  # activations with the dictionaries fixed
    w = model.dictionaries.permute(1, 0, 2).reshape(33, -1).double()
    h = torch.rand(1, 6, 40, dtype=torch.float64)
    values = []
    for _ in range(20):
        h = update_activations(v, w, h, beta)
        values.append(float(beta_divergence(v, w @ h, beta)))
    assert (np.diff(values) <= 1e-9 * values[0]).all()


def test_nmf_fit_shares_a_cpu_budget_evenly_between_the_sources(monkeypatch):
    """A study's CPU-time budget cuts every dictionary's updates alike (at least one each), not the last sources'."""
    import stemgui.models.nmf as nmf_module

    clock = iter(float(t) for t in range(10_000))  # a fake CPU clock: one second per reading
    monkeypatch.setattr(nmf_module.time, "process_time", lambda: next(clock))
    sources = ["a", "b", "c", "d"]
    model = build_model("nmf", sources, {**TINY["nmf"], "fit_iterations": 100})
    stems = torch.rand(2, 4, 2, 4000, generator=torch.Generator().manual_seed(3))
    updates = [len(v) - 1 for v in model.fit(stems, cpu_seconds=40).values()]
    assert all(1 < u < 100 for u in updates), updates
    assert min(updates) >= 5 and sum(updates) <= 40, updates  # ~10 s each (every clock reading costs a second)
    monkeypatch.undo()
    assert [len(v) - 1 for v in model.fit(stems, cpu_seconds=0).values()] == [1, 1, 1, 1]
    assert [len(v) - 1 for v in model.fit(stems).values()] == [100] * 4  # no budget: every iteration


def test_a_fitted_model_counts_its_dictionaries_as_its_parameters(tmp_path):
    from stemgui.models.card import count_parameters, read_card, save_model

    model = build_model("nmf", TWO, TINY["nmf"])  # 2 sources x 33 bins x 3 components, all buffers
    assert count_parameters(model) == 2 * 33 * 3
    save_model(model, tmp_path / "nmf.safetensors")
    assert read_card(tmp_path / "nmf.safetensors")["parameters"] == 2 * 33 * 3
    gradient_trained = build_model("unet", TWO, TINY["unet"])
    assert count_parameters(gradient_trained) == sum(p.numel() for p in gradient_trained.parameters())


def test_nmf_kl_shortcut_is_the_general_update():
    """For beta = 1 the updates skip V̂^0 (all ones): the same numbers as the general formula."""
    from stemgui.models.nmf import update_activations, update_dictionary

    g = torch.Generator().manual_seed(5)
    v = torch.rand(2, 33, 40, generator=g, dtype=torch.float64) + 0.01
    w = torch.rand(2, 33, 6, generator=g, dtype=torch.float64) + 0.1
    h = torch.rand(2, 6, 40, generator=g, dtype=torch.float64) + 0.1
    v_hat = w @ h
    general_h = h * (w.transpose(-1, -2) @ (v / v_hat)) / (w.transpose(-1, -2) @ torch.ones_like(v_hat))
    general_w = w * ((v / v_hat) @ h.transpose(-1, -2)) / (torch.ones_like(v_hat) @ h.transpose(-1, -2))
    torch.testing.assert_close(update_activations(v, w, h, 1.0), general_h, rtol=1e-12, atol=0)
    torch.testing.assert_close(update_dictionary(v, w, h, 1.0), general_w, rtol=1e-12, atol=0)


def test_nmf_dictionaries_separate_what_they_were_learned_on():
    """Two sources with disjoint spectra: dictionaries learned on each separate their mixture well."""
    rate = 8000
    t = torch.arange(rate) / rate
    low = 0.5 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(2 * torch.pi * 3 * t))
    high = 0.3 * torch.sin(2 * torch.pi * 2500 * t) * (1 + torch.cos(2 * torch.pi * 2 * t))
    model = build_model("nmf", ["low", "high"], {"samplerate": rate, "audio_channels": 1, "nfft": 256, "hop": 64,
                                                 "components": 4, "iterations": 30, "fit_iterations": 30})
    model.fit(torch.stack([low, high])[None, :, None])
    est = model(torch.roll(low + high, 1234)[None, None])[0, :, 0]
    for index, ref in enumerate((torch.roll(low, 1234), torch.roll(high, 1234))):
        sdr = 10 * torch.log10(ref.square().sum() / (ref - est[index]).square().sum())
        assert sdr > 15, float(sdr)


# ------------------------------------------------------------------------------------------------------ losses
def test_drnn_discriminative_term_is_the_papers():
    g = torch.Generator().manual_seed(3)
    est, ref = torch.rand(2, 2, 1, 800, generator=g), torch.rand(2, 2, 1, 800, generator=g)
    from stemgui.models.masking import stft

    e, r = stft(est, 64, 32).abs(), stft(ref, 64, 32).abs()
    mse = lambda a, b: (a - b).square().mean()  # noqa: E731
    paper = mse(e, r) - 0.1 * (mse(e[:, 0], r[:, 1]) + mse(e[:, 1], r[:, 0])) / 2
    torch.testing.assert_close(spectral_loss(est, ref, 64, 32, "mse", 0.1), paper)
    kl = spectral_loss(est, ref, 64, 32, "kl", 0.0)
    assert kl > 0 and spectral_loss(ref, ref, 64, 32, "kl", 0.0) < 1e-6
    torch.testing.assert_close(spectral_loss(est, ref, 64, 32, "l1"), (e - r).abs().mean())


@pytest.mark.parametrize("arch, preset, divergence", [
    ("drnn", "drnn", "mse"), ("drnn", "drnn", "kl"), ("unet", "unet", "mse"), ("drnn", "l1+stft", "mse")])
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(arch, preset, divergence):
    torch.manual_seed(4)
    model = build_model(arch, TWO, {**TINY[arch], "dropout": 0.0} if arch == "unet" else TINY[arch])
    weights = LossConfig(preset=preset, divergence=divergence)
    objective = GeneratorObjective(weights, use_stft=preset == "l1+stft", spec_params=model.spec_params)
    g = torch.Generator().manual_seed(5)
    length = int(0.5 * model.samplerate)
    t = torch.arange(length) / model.samplerate
    voice = 0.3 * torch.sin(2 * torch.pi * 440 * t + 2 * torch.sin(2 * torch.pi * 4 * t))
    stems = torch.stack([voice.expand(2, 1, length), 0.1 * torch.randn(2, 1, length, generator=g)], dim=1)
    mix = stems.sum(dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(12):
        total, _ = objective.reconstruction(model(mix), stems, step)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(float(total.detach()))
    assert losses[-1] < losses[0], losses


# ----------------------------------------------------------------------------------------------- save and load
@pytest.mark.parametrize("arch", ["drnn", "unet", "nmf"])
def test_save_load_round_trip(arch, tmp_path):
    torch.manual_seed(6)
    model = build_model(arch, TWO, TINY[arch]).eval()
    path = save_model(model, tmp_path / arch, {"paper": model.paper})
    loaded, card = load_model(path)
    assert card["architecture"] == arch and card["samplerate"] == model.samplerate and card["paper"]
    mix = _mix(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mix), model(mix))
    if arch == "nmf":
        from safetensors.torch import load_file

        assert torch.equal(load_file(str(path))["dictionaries"], model.dictionaries)


# --------------------------------------------------------------------------------------------------- two stems
def test_accompaniment_is_the_sum_of_the_non_vocal_stems_and_circular_shift(dataset):
    from stemgui.train.data import SegmentDataset, load_splits

    cfg = Config()
    cfg.data.dataset, cfg.data.sources, cfg.data.segment, cfg.data.valid_fraction = str(dataset), TWO, 0.5, 0.0
    cfg.augment = type(cfg.augment)(remix=False, shift=0.0, channel_swap=False, sign_flip=False, gain=False)
    tracks, _, sources = load_splits(cfg)
    assert sources == TWO and len(tracks) == 3
    plain = SegmentDataset(tracks, sources, cfg, length=4)
    mix, stems = plain[0]
    assert stems.shape == (2, 2, 22050)
    from stemgui.train.augment import plan_segment

    index, start = plan_segment(np.random.default_rng([cfg.train.seed, 0]), plain.track_frames, 2, 22050, 0,
                                False)[1]  # where the segment was cut (a sample is a function of its index)
    track = dataset / "train" / tracks[index].name
    full = {name: sf.read(track / f"{name}.wav", dtype="float32")[0].T for name in ("drums", "bass", "other")}
    accompaniment = sum(full.values())
    np.testing.assert_allclose(stems[1].numpy(), accompaniment[:, start:start + 22050], atol=1e-6)
    torch.testing.assert_close(mix, stems.sum(0))
    cfg.augment.circular_shift = True
    shifted_mix, shifted = SegmentDataset(tracks, sources, cfg, length=4)[0]
    torch.testing.assert_close(shifted[1], stems[1])  # the accompaniment stays, the voice is rotated
    assert not torch.equal(shifted[0], stems[0])
    offsets = [k for k in range(22050) if torch.equal(torch.roll(stems[0], k, -1), shifted[0])]
    assert len(offsets) == 1
    torch.testing.assert_close(shifted_mix, shifted.sum(0))


def test_mir1k_subset_is_read_as_two_stems():
    from conftest import SHARED

    root = SHARED / "datasets" / "mir-1k-subset"
    if not root.is_dir():
        pytest.skip("no MIR-1K subset here")
    from stemgui.train.data import dataset_sources

    cfg = Config()
    cfg.data.dataset = str(root)
    assert dataset_sources(root, cfg) == ["accompaniment", "vocals"]


# ------------------------------------------------------------------------------------------ trainer and CLI
def _train(dataset, out, arch, *extra):
    from stemgui.cli import main

    extra_args = {"drnn": "{hidden = 8, nfft = 64}", "unet": "{channels = 2, nfft = 128, hop = 96}",
                  "nmf": "{components = 3, nfft = 256, hop = 64, fit_iterations = 5, iterations = 5}"}[arch]
    code = main(["train", "--dataset", str(dataset), "--architecture", arch, "--sources", "vocals,accompaniment",
                 "--steps", "3", "--batch-size", "2", "--segment", "0.5", "--out", str(out), "--no-progress",
                 "--set", f"model.extra={extra_args}", "--set", "train.threads=1", "--set", "train.valid_every=3", "--set", "train.log_every=1",
                 "--set", "data.valid_seconds=0.5", "--set", "data.valid_fraction=0.34", *extra])
    assert code == 0
    return out.with_suffix(".safetensors")


@pytest.mark.parametrize("arch, preset", [("drnn", "drnn"), ("unet", "unet"), ("nmf", "l1")])
def test_trains_through_stemgui_train_on_converted_data(dataset, tmp_path, arch, preset):
    extra = ["--set", f"loss.preset={preset}"]
    if arch == "drnn":
        extra += ["--set", "augment.circular_shift=true", "--set", "loss.divergence=kl"]
    path = _train(dataset, tmp_path / f"{arch}.safetensors", arch, *extra)
    card = read_card(path)
    model, _ = load_model(path)
    rate = {"drnn": 16000, "unet": 8192, "nmf": 44100}[arch]
    assert card["architecture"] == arch and card["sources"] == TWO and card["samplerate"] == rate == model.samplerate
    assert card["audio_channels"] == (2 if arch == "nmf" else 1) and card["paper"]
    assert card["training"]["preset"] == preset and card["training"]["steps"] == 3
    assert set(card["metrics"]["valid_sdr"]) == set(TWO)
    log = [json.loads(line) for line in (tmp_path / f"{arch}.run" / "log.jsonl").read_text().splitlines()]
    if arch == "nmf":
        assert any(r["event"] == "fit" and r["segments"] == 6 for r in log)
        assert not torch.equal(model.dictionaries, build_model("nmf", TWO, card["args"]).dictionaries)
    else:
        assert len([r for r in log if r["event"] == "train" and "spectral" in r]) == 3
    if arch != "nmf":  # the card says what differs from the paper's settings (here: the tiny sizes)
        assert set(card["paper_settings"]["differs"]) >= {"nfft", "hop"} and "samplerate" in card["paper_settings"][
            "same"]
    if arch == "drnn":
        assert card["training"]["losses"]["divergence"] == "kl" and card["training"]["data"]["augment"][
            "circular_shift"]


@pytest.mark.parametrize("arch", ["drnn", "unet", "nmf"])
def test_a_model_at_its_own_rate_separates_a_44k_stereo_song_through_the_cli(tmp_path, arch):
    """DRNN (16 kHz mono), the U-Net (8192 Hz mono), NMF (here 22.05 kHz stereo): stems at the song's rate."""
    from stemgui.audio import audio_info
    from stemgui.cli import main

    torch.manual_seed(7)
    args = {**TINY[arch], "samplerate": 22050} if arch == "nmf" else TINY[arch]
    path = save_model(build_model(arch, TWO, args), tmp_path / arch)
    rng = np.random.default_rng(0)
    song = tmp_path / "song.wav"
    sf.write(song, (0.1 * rng.standard_normal((int(1.3 * 44100), 2))).astype(np.float32), 44100)
    out = tmp_path / "sep"
    assert main(["separate", str(song), "-o", str(out), "--model", str(path), "--device", "cpu"]) == 0
    for name in TWO:
        info = audio_info(out / "song" / f"{name}.wav")
        assert info.samplerate == 44100 and abs(info.duration - 1.3) < 0.01
    assert json.loads((out / "song" / "separation.json").read_text())["input"]["samplerate"] == 44100


@pytest.mark.slow
def test_the_mir1k_script_trains_and_reports_gnsdr(tmp_path):
    """scripts/drnn_mir1k.py end to end at a tiny size: singer-name split, training, GNSDR report."""
    import subprocess
    import sys
    from pathlib import Path

    from conftest import SHARED

    root = SHARED / "datasets" / "mir-1k-subset"
    if not root.is_dir():
        pytest.skip("no MIR-1K subset here")
    script = Path(__file__).resolve().parents[1] / "scripts" / "drnn_mir1k.py"
    out = tmp_path / "d.safetensors"
    subprocess.run([sys.executable, str(script), "--dataset", str(root), "--train-singers", "amy",
                    "--valid-singers", "tammy", "--test-singers", "bobon", "--max-test-clips-per-singer", "2",
                    "--steps", "2", "--hidden", "8", "--batch-size", "2", "--threads", "1", "--out", str(out)],
                   check=True, capture_output=True, timeout=600)
    report = json.loads(out.with_suffix(".eval.json").read_text())
    assert report["setup"]["train_singers"] == ["amy"] and report["setup"]["test_clips"] == 2
    assert abs(report["mixture"]["vocals"]["GNSDR"]) < 1e-9 and report["irm"]["vocals"]["GNSDR"] > 3
