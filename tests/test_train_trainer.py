"""Trainer: learning on a fixture dataset, bit-for-bit resume, graceful stop, NaN guard, fine-tuning, output card.

The fine-tuning surgery itself (source mapping, bag members) is tested in test_train_surgery.py.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stemgui.errors import Cancelled, ConfigError
from stemgui.models.card import load_model, read_card
from stemgui.train import checkpoint as ckpt_io
from stemgui.train.trainer import Trainer, TrainingDiverged, train

from helpers import make_musdb, tiny_config

REPO = Path(__file__).resolve().parents[1]


class Crash(Exception):
    """Stands in for kill -9: the run dies after a step without writing anything more."""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_musdb(tmp_path_factory.mktemp("musdb"), tracks=3, seconds=2.0)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _final_state(run_dir):
    return ckpt_io.load_checkpoint(ckpt_io.latest_checkpoint(run_dir))


def test_tiny_run_lowers_the_loss_and_writes_a_model(dataset, tmp_path):
    cfg = tiny_config(dataset, tmp_path / "m.safetensors", preset="l1+stft", steps=24, batch=2)
    cfg.optim.lr = 3e-3
    cfg.optim.ema_decay = 0.0
    cfg.augment.remix = False
    trainer = Trainer(cfg)
    from stemgui.train.data import SegmentDataset

    probe = SegmentDataset(trainer.train_tracks, trainer.sources, cfg, length=10**6)
    batch = [probe[10**5 + i] for i in range(4)]  # fixed held-out segments
    mix = torch.stack([b[0] for b in batch])
    stems = torch.stack([b[1] for b in batch])

    def probe_loss():
        with torch.no_grad():
            est = trainer.G(mix)
        return (torch.nn.functional.l1_loss(est, stems) + 0.01 * trainer.objective.stft(est, stems)).item()

    before = probe_loss()
    result = trainer.run()
    after = probe_loss()
    assert after < 0.9 * before, (before, after)
    assert result.steps == 24 and result.out == tmp_path / "m.safetensors"
    model, card = load_model(result.out)
    assert card["architecture"] == "hdemucs" == cfg.model.architecture
    assert card["training"]["preset"] == "l1+stft" and card["training"]["steps"] == 24
    assert card["sources"] == ["drums", "bass", "other", "vocals"] and card["args"]["channels"] == 4
    assert set(card["metrics"]["valid_sdr"]) == set(card["sources"])
    assert "stft" in card["training"]["losses"] and "adversarial" not in card["training"]["losses"]
    log = [json.loads(line) for line in (tmp_path / "m.run" / "log.jsonl").read_text().splitlines()]
    train_lines = [r for r in log if r["event"] == "train"]
    assert len(train_lines) == 24
    assert {"step", "loss", "l1", "stft", "lr", "steps_per_s", "samples_per_s"} <= set(train_lines[0])
    assert any(r["event"] == "valid" and "valid_sdr" in r for r in log)


def test_resume_after_a_crash_is_bit_for_bit(dataset, tmp_path):
    """N steps straight == crash after step 3 (checkpoint at 2) + --resume, for G, D, EMA and optimizers."""
    straight = tiny_config(dataset, tmp_path / "a" / "m.safetensors", steps=4)
    train(straight)

    crashed = tiny_config(dataset, tmp_path / "b" / "m.safetensors", steps=4)

    def die(step, record):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train(crashed, on_step=die)
    assert ckpt_io.latest_checkpoint(tmp_path / "b" / "m.run").name == "ckpt-00000002.json"
    with pytest.raises(ConfigError, match="pass --resume"):
        Trainer(crashed)
    train(crashed, resume=True)

    a, b = _final_state(tmp_path / "a" / "m.run"), _final_state(tmp_path / "b" / "m.run")
    assert a["step"] == b["step"] == 4
    for part in ("g", "d", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    for key, value in a["opt_g"]["state"][0].items():
        assert torch.equal(value, b["opt_g"]["state"][0][key])
    wa, wb = _weights(tmp_path / "a" / "m.safetensors"), _weights(tmp_path / "b" / "m.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_sigterm_writes_a_checkpoint_and_stops(dataset, tmp_path):
    cfg = tiny_config(dataset, tmp_path / "m.safetensors", preset="l1", steps=50)
    cfg.train.checkpoint_every = 100

    def stop(step, record):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Cancelled, match="stopped at step 2/50"):
        train(cfg, on_step=stop)
    assert ckpt_io.latest_checkpoint(tmp_path / "m.run").name == "ckpt-00000002.json"
    assert read_card(tmp_path / "m.safetensors")["training"]["stopped_early"] is True
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_nan_guard_skips_then_stops(dataset, tmp_path, monkeypatch):
    import stemgui.train.losses as losses_module

    cfg = tiny_config(dataset, tmp_path / "m.safetensors", preset="l1", steps=10)
    cfg.train.max_bad_steps = 3
    calls = {"n": 0}
    real = losses_module.l1_loss

    def sometimes_nan(est, ref):
        calls["n"] += 1
        loss = real(est, ref)
        return loss * float("nan") if calls["n"] >= 2 else loss

    monkeypatch.setattr(losses_module, "l1_loss", sometimes_nan)
    records = []
    with pytest.raises(TrainingDiverged, match="NaN/Inf for 3 consecutive steps"):
        train(cfg, on_step=lambda step, rec: records.append(rec))
    assert [r.get("skipped", 0.0) for r in records] == [0.0, 1.0, 1.0]


def test_finetune_maps_sources_by_name_and_freezes(dataset, tmp_path):
    from stemgui.models.card import save_model
    from stemgui.models.hdemucs import HDemucs

    torch.manual_seed(0)
    base = HDemucs(["drums", "bass", "other", "vocals"], channels=4, depth=3, nfft=64)
    save_model(base, tmp_path / "base.safetensors", {"name": "base"})
    cfg = tiny_config(dataset, tmp_path / "ft.safetensors", preset="l1", steps=2)
    cfg.data.sources = ["vocals", "drums"]
    cfg.finetune.base_model = str(tmp_path / "base.safetensors")
    cfg.finetune.freeze_encoder = 1
    trainer = Trainer(cfg)
    assert trainer.opt_g.param_groups[0]["lr"] == cfg.finetune.lr
    frozen = {k: v.clone() for k, v in trainer.G.encoder[0].state_dict().items()}
    base_vocals = base.state_dict()["tdecoder.1.conv_tr.weight"][:, 3 * 2:4 * 2]  # (in, sources x channels, k)
    torch.testing.assert_close(trainer.G.state_dict()["tdecoder.1.conv_tr.weight"][:, :2], base_vocals)
    trainer.run()
    assert all(torch.equal(frozen[k], v) for k, v in trainer.G.encoder[0].state_dict().items())
    card = read_card(tmp_path / "ft.safetensors")
    assert card["sources"] == ["vocals", "drums"]
    assert card["training"]["finetune"]["mapped_sources"] == ["vocals", "drums"]
    assert card["training"]["finetune"]["base_architecture"] == "hdemucs"


def test_the_generator_is_built_through_the_architecture_registry(dataset, tmp_path):
    """model.architecture picks the class; its card names it, with the arguments from model.extra."""
    cfg = tiny_config(dataset, tmp_path / "v2.safetensors", preset="l1", steps=2, batch=1)
    cfg.model.architecture = "demucs"
    cfg.model.extra = {"channels": 8, "depth": 4}
    result = Trainer(cfg).run()
    model, card = load_model(result.out)
    assert card["architecture"] == "demucs" and type(model).__name__ == "Demucs"
    assert card["args"]["channels"] == 8 and card["args"]["segment"] == cfg.data.segment


def test_config_errors_name_the_setting(dataset, tmp_path):
    """An unknown architecture or device is one ConfigError naming the setting, before any work is done."""
    cfg = tiny_config(dataset, tmp_path / "x.safetensors", preset="l1", steps=1)
    cfg.model.architecture = "nope"
    with pytest.raises(ConfigError, match="model.architecture must be one of hdemucs"):
        Trainer(cfg)
    cfg.model.architecture = "hdemucs"
    cfg.train.device = "toaster"
    with pytest.raises(ConfigError, match="train.device: unknown device 'toaster'"):
        Trainer(cfg)
    cfg.train.device = "cpu"
    cfg.model.extra = {"no_such_argument": 1}
    with pytest.raises(ConfigError, match=r"\[model\] bad hdemucs architecture arguments"):
        Trainer(cfg)


def test_cli_kill9_then_resume(dataset, tmp_path):
    """A real `stemgui train` process killed with SIGKILL resumes from its last checkpoint and finishes."""
    out = tmp_path / "k.safetensors"
    cmd = [sys.executable, "-m", "stemgui", "train", "--dataset", str(dataset), "--preset", "l1", "--steps", "40",
           "--segment", "0.5", "--batch-size", "1", "--out", str(out), "--model-channels", "4", "--depth", "3",
           "--nfft", "64", "--checkpoint-every", "2", "--valid-every", "1000", "--no-progress",
           "--set", "train.threads=1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run_dir = tmp_path / "k.run"
    deadline = time.time() + 120
    while time.time() < deadline and ckpt_io.latest_checkpoint(run_dir) is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = json.loads((run_dir / "latest.json").read_text())["step"]
    assert 2 <= killed_at < 40
    resumed = subprocess.run([*cmd, "--resume", "--steps", "6" if killed_at < 6 else str(killed_at + 2)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    starts = [r for r in log if r["event"] == "start"]
    assert starts[-1]["step"] == killed_at and starts[-1]["resumed_from"]
    assert read_card(out)["training"]["steps"] == max(6, killed_at + 2)


def test_cli_stop_signal_to_the_process_group_checkpoints(dataset, tmp_path):
    """SIGTERM to the whole group (GUI Stop, Ctrl+C) reaches loader workers too; the run still checkpoints."""
    out = tmp_path / "s.safetensors"
    cmd = [sys.executable, "-m", "stemgui", "train", "--dataset", str(dataset), "--preset", "l1", "--steps", "200",
           "--segment", "0.5", "--batch-size", "1", "--out", str(out), "--model-channels", "4", "--depth", "3",
           "--nfft", "64", "--checkpoint-every", "1000", "--valid-every", "1000", "--workers", "1",
           "--no-progress", "--set", "train.threads=1", "--set", "train.log_every=1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    log = tmp_path / "s.run" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and '"event": "train"' in log.read_text()):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert "checkpoint saved" in err.decode()
    step = json.loads((tmp_path / "s.run" / "latest.json").read_text())["step"]
    assert 1 <= step < 200 and out.is_file()


def test_rms_warmup_replaces_l1_for_the_first_steps(dataset, tmp_path):
    """loss.rms_warmup_steps: the G objective's waveform term is the RMS error first, then L1; the card says so."""
    cfg = tiny_config(dataset, tmp_path / "w.safetensors", preset="l1", steps=3, batch=2)
    cfg.loss.rms_warmup_steps = 2
    trainer = Trainer(cfg)
    from stemgui.train.data import SegmentDataset

    data = SegmentDataset(trainer.train_tracks, trainer.sources, cfg, length=2)
    mix = torch.stack([data[i][0] for i in range(2)])
    stems = torch.stack([data[i][1] for i in range(2)])
    records = []
    for _ in range(3):
        records.append(trainer.train_step(mix, stems))  # advances trainer.step
    assert "rms_error" in records[0] and "rms_error" in records[1] and "rms_error" not in records[2]
    assert records[0]["loss"] == pytest.approx(records[0]["rms_error"], rel=1e-5)  # the whole l1-preset loss
    assert records[2]["loss"] == pytest.approx(records[2]["l1"], rel=1e-5)
    assert records[0]["rms_error"] > records[0]["l1"]  # RMS >= mean |error| always
    model_path = trainer.export()
    assert load_model(model_path)[1]["training"]["losses"]["rms_warmup_steps"] == 2


def test_validation_leaves_silent_excerpts_out_of_a_source_mean(dataset, tmp_path, monkeypatch):
    """uSDR against a silent reference is -(tens of dB) for any output; it must not swamp the validation mean."""
    import stemgui.train.trainer as trainer_module

    gen = torch.Generator().manual_seed(1)
    refs = [torch.randn(4, 2, 2000, generator=gen) for _ in range(2)]
    refs[0][1] = 0.0  # source 1 silent in the first excerpt
    refs[0][3] = refs[1][3] = 0.0  # source 3 silent in both

    class Items:
        def __init__(self, *args):
            pass

        def __len__(self):
            return 2

        def __getitem__(self, index):
            return refs[index].sum(0), refs[index]

    class Outputs(torch.nn.Module):
        """0.9 x the reference (20 dB) plus a little noise everywhere, even where the reference is silent."""

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, mix):
            out = 0.9 * refs[self.calls] + 1e-3
            self.calls += 1
            return out[None]

    cfg = tiny_config(dataset, tmp_path / "v.safetensors", preset="l1", steps=1, batch=2)
    trainer = Trainer(cfg)
    monkeypatch.setattr(trainer_module, "ValidationDataset", Items)
    trainer.ema, trainer.G = None, Outputs()
    result = trainer.validate()["valid_sdr"]
    assert result["drums"] == pytest.approx(20.0, abs=0.1)
    assert result["bass"] == pytest.approx(20.0, abs=0.1)  # the silent excerpt is left out
    assert result["vocals"] < -20  # silent in every excerpt: the plain mean, still reported


def test_keep_best_keeps_the_model_of_the_best_validation(dataset, tmp_path):
    """A late collapse (real singing lost while synthetic songs improved, session 13) cannot take the best model."""
    from stemgui.train.trainer import BEST_MODEL

    cfg = tiny_config(dataset, tmp_path / "m.safetensors", preset="l1", steps=6)
    cfg.train.valid_every = 1
    cfg.train.keep_best = True
    cfg.optim.lr = 3e-2  # big steps: the validation score moves both ways
    result = Trainer(cfg).run()
    records = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    valid = [r for r in records if r["event"] == "valid"]
    kept = [r for r in records if r["event"] == "best"]
    scores = [r["valid_sdr_mean"] for r in valid]
    assert len(valid) == 6 and kept
    best_step = valid[scores.index(max(scores))]["step"]
    assert kept[-1]["step"] == best_step
    assert all(b["score"] > a["score"] for a, b in zip(kept, kept[1:]))  # only improvements are written
    _, card = load_model(result.run_dir / BEST_MODEL)
    assert card["training"]["best"]["step"] == best_step
    assert card["training"]["best"]["score"] == round(max(scores), 4)
    assert card["training"]["steps"] == best_step
    _, final_card = load_model(result.out)
    assert final_card["training"]["steps"] == 6 and "best" not in final_card["training"]


def test_validation_score_prefers_the_real_voice_check():
    from stemgui.train.trainer import validation_score

    assert validation_score({"valid_sdr_mean": 2.5}) == 2.5
    assert validation_score({"valid_sdr_mean": 2.7, "real_voice": {"gnsdr": {"vocals": 1.0, "accompaniment": -5.0}}}) == -2.0
    assert validation_score({}) is None


def test_refinement_in_the_loop_scores_the_refined_stems_and_the_card_recommends_it(dataset, tmp_path, monkeypatch):
    """loss.refine: the objective sees the stems after the mixture refinement (they add up to the mix), the
    validation scores them too, and the exported card asks the app to refine the same way."""
    from stemgui.train import trainer as trainer_module

    cfg = tiny_config(dataset, tmp_path / "r.safetensors", preset="l1", steps=2, batch=2)
    cfg.loss.refine = "vocals"
    seen = []
    real = trainer_module.refine_batch

    def spy(estimate, mix, mode, vocals, *args, **kwargs):
        out = real(estimate, mix, mode, vocals, *args, **kwargs)
        seen.append((mode, vocals, float((out.sum(dim=1) - mix).abs().max())))
        return out

    monkeypatch.setattr(trainer_module, "refine_batch", spy)
    trainer = Trainer(cfg)
    from stemgui.train.data import SegmentDataset

    data = SegmentDataset(trainer.train_tracks, trainer.sources, cfg, length=2)
    trainer.train_step(torch.stack([data[i][0] for i in range(2)]), torch.stack([data[i][1] for i in range(2)]))
    assert seen and seen[0][:2] == ("vocals", 3) and seen[0][2] < 1e-4
    before = len(seen)
    trainer.validate()
    assert len(seen) > before  # validation refines too
    card = read_card(trainer.export())
    assert card["separation"] == {"refine": "vocals"} and card["training"]["losses"]["refine"] == "vocals"
    cfg.loss.refine = "sharpen"
    with pytest.raises(ConfigError, match="loss.refine must be one of off"):
        Trainer(cfg)
    cfg.loss.refine = "vocals-strict"
    cfg.data.sources = ["drums", "bass", "other"]
    with pytest.raises(ConfigError, match="needs a vocals source"):
        Trainer(cfg)
