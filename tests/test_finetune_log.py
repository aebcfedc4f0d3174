"""The fine-tune panel's Qt-free parts: log tailing and folding, failure messages, commands, run locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from stemgui.train.finetune_log import LogTail, TrainingHistory, format_duration, summarize_failure
from stemgui.train.finetune_runs import (
    RunLock,
    RunPaths,
    RunState,
    TrainingBusyError,
    TrainRequest,
    active_training,
    card_summary,
    check_name,
    launch_command,
    pid_alive,
    resume_arguments,
)


def _line(**record) -> str:
    return json.dumps({"time": 0.0, **record}) + "\n"


def test_tail_reads_only_complete_new_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    tail = LogTail(log)
    assert tail.read() == []  # no file yet
    log.write_text(_line(event="start", step=0, steps=10) + '{"event": "train", "st', encoding="utf-8")
    assert [r["event"] for r in tail.read()] == ["start"]
    with open(log, "a", encoding="utf-8") as f:
        f.write('ep": 1, "l1": 0.5}\nnot json\n[1, 2]\n')
    records = tail.read()
    assert records == [{"event": "train", "step": 1, "l1": 0.5}]
    assert tail.bad_lines == 2
    assert tail.read() == []


def test_tail_starts_over_when_the_file_is_replaced(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text(_line(event="start", step=0) + _line(event="train", step=1, l1=1.0), encoding="utf-8")
    tail = LogTail(log)
    assert len(tail.read()) == 2
    tmp = tmp_path / "new.jsonl"
    tmp.write_text(_line(event="start", step=0), encoding="utf-8")
    os.replace(tmp, log)
    assert [r["event"] for r in tail.read()] == ["start"]


def _records():
    yield {"event": "start", "step": 0, "steps": 6, "sources": ["drums", "vocals"], "device": "cpu"}
    for step in range(1, 5):
        rec = {"event": "train", "step": step, "l1": 1.0 / step, "stft": 2.0, "loss": 1.5, "steps_per_s": 2.0,
               "samples_per_s": 8.0, "eta_s": (6 - step) / 2.0}
        if step >= 3:
            rec.update(d_loss=0.5, adv=0.9, fm=0.01)
        yield rec
        if step % 2 == 0:
            yield {"event": "valid", "step": step, "valid_sdr": {"drums": step, "vocals": -step},
                   "valid_sdr_mean": 0.0}
            yield {"event": "checkpoint", "step": step, "path": "x"}


def test_history_folds_losses_validation_and_status():
    h = TrainingHistory()
    h.extend(list(_records()))
    assert h.generator["l1"].steps == [1, 2, 3, 4]
    assert h.generator["l1"].values == [1.0, 0.5, pytest.approx(1 / 3), 0.25]
    assert h.generator["adv"].steps == [3, 4] and h.discriminator["d_loss"].values == [0.5, 0.5]
    assert h.validation["drums"].values == [2.0, 4.0] and h.validation["vocals"].steps == [2, 4]
    assert h.validation["mean"].values == [0.0, 0.0]
    assert (h.step, h.total_steps, h.checkpoint_step, h.status) == (4, 6, 4, "running")
    line = h.status_line()
    assert "Step 4 / 6" in line and "2.00 steps/s" in line and "ETA 1 s" in line and "SDR 0.00 dB" in line
    h.add({"event": "stopped", "step": 4})
    assert h.status == "stopped" and "ETA" not in h.status_line()


def test_history_resume_replaces_steps_after_the_checkpoint():
    """A run killed at step 4 with its checkpoint at step 2 replays steps 3-4: no duplicate points."""
    h = TrainingHistory()
    h.extend(list(_records()))
    h.add({"event": "start", "step": 2, "steps": 6})
    assert h.generator["l1"].steps == [1, 2]
    assert h.validation["drums"].steps == [2]
    h.add({"event": "train", "step": 3, "l1": 0.3, "loss": float("nan")})  # non-finite values are skipped
    h.add({"event": "end", "step": 6, "out": "m.safetensors"})
    assert h.generator["l1"].steps == [1, 2, 3] and h.generator["loss"].steps == [1, 2]
    assert (h.status, h.step, h.out) == ("finished", 6, "m.safetensors")


def test_format_duration():
    assert format_duration(5.4) == "5 s"
    assert format_duration(200) == "3 min 20 s"
    assert format_duration(7500) == "2 h 05 min"


def test_failure_message_prefers_the_cli_error_line():
    stderr = "training:  10%|#         | 1/10 [00:01<00:09, 1.00step/s]\nstemgui: error: data/x: missing stem 'bass'\n"
    assert summarize_failure(stderr, 1) == "Training failed: data/x: missing stem 'bass'"


def test_failure_message_from_a_traceback_and_out_of_memory():
    trace = ("Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n"
             "    boom()\nValueError: bad thing happened\n")
    assert summarize_failure(trace, 1) == "Training crashed: ValueError: bad thing happened"
    oom = trace.replace("ValueError: bad thing happened",
                        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    message = summarize_failure(oom, 1)
    assert message.startswith("Training ran out of memory") and "Tried to allocate 2.00 GiB" in message
    assert len(summarize_failure("x" * 5000, 1)) <= 400


def test_failure_message_when_killed_or_silent():
    assert "killed" in summarize_failure("", None, killed=True)
    assert summarize_failure("", 3) == "Training stopped with exit code 3 and printed nothing."
    assert summarize_failure("something odd\n", 3) == "Training stopped with exit code 3: something odd"


def test_request_becomes_cli_options_the_real_parser_accepts(tmp_path, monkeypatch):
    """The command the panel builds parses with `stemgui train`'s own parser into the intended config."""
    from stemgui.cli import build_parser
    from stemgui.cli.train import build_config

    paths = RunPaths(tmp_path / "run", "mine")
    req = TrainRequest(dataset=str(tmp_path / "ds"), name="mine", base_model=str(tmp_path / "base.safetensors"),
                       preset="l1+stft+gan", l1=2.0, stft=0.5, adversarial=0.25, feature_matching=0.125,
                       steps=300, segment=2.5, batch_size=6, lr=1e-4, device="cpu", extra=["--seed", "7"])
    args = req.arguments(paths)
    cfg = build_config(build_parser().parse_args(args))
    assert cfg.data.dataset == str(tmp_path / "ds") and cfg.data.segment == 2.5
    assert (cfg.loss.preset, cfg.loss.l1, cfg.loss.stft, cfg.loss.adversarial, cfg.loss.feature_matching) == \
        ("l1+stft+gan", 2.0, 0.5, 0.25, 0.125)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.train.device, cfg.train.seed) == (300, 6, "cpu", 7)
    assert cfg.train.out == str(paths.model) and cfg.train.run_dir == str(paths.checkpoints)
    assert cfg.train.log == str(paths.log) and cfg.train.progress is False
    assert (cfg.train.checkpoint_every, cfg.train.valid_every, cfg.train.log_every) == (30, 30, 1)
    assert cfg.finetune.base_model == str(tmp_path / "base.safetensors") and cfg.finetune.lr == 1e-4

    gan = TrainRequest(dataset="d", name="n", steps=300, d_every=2, d_channels=8, spectral_norm=True)
    cfg = build_config(build_parser().parse_args(gan.arguments(paths)))
    assert (cfg.discriminator.d_warmup_steps, cfg.discriminator.d_every, cfg.discriminator.channels,
            cfg.discriminator.spectral_norm) == (60, 2, 8, True)
    gan.d_warmup_steps = 0
    assert build_config(build_parser().parse_args(gan.arguments(paths))).discriminator.d_warmup_steps == 0

    scratch = TrainRequest(dataset="d", name="n", preset="l1", lr=3e-4, steps=10).arguments(paths)
    cfg = build_config(build_parser().parse_args(scratch))
    assert cfg.optim.lr == 3e-4 and not cfg.finetune.base_model and cfg.loss.preset == "l1"


def test_launch_command_uses_torchrun_for_several_gpus(tmp_path):
    args = TrainRequest(dataset="d", name="n", gpus=4, batch_size=8).arguments(RunPaths(tmp_path, "n"))
    assert args[args.index("--device") + 1] == "cuda"
    program, pargs = launch_command(args, gpus=4)
    assert program == sys.executable
    assert pargs[:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert pargs[5:7] == ["stemgui", "train"]
    assert launch_command(args, gpus=1) == (sys.executable, ["-m", "stemgui", *args])


def test_resume_arguments_add_resume_and_the_new_step_total():
    args = ["train", "--steps", "100", "--out", "m"]
    assert resume_arguments(args) == ["train", "--steps", "100", "--out", "m", "--resume"]
    assert resume_arguments(args, steps=250)[2] == "250"
    assert resume_arguments(args + ["--resume"], steps=50) == ["train", "--steps", "50", "--out", "m", "--resume"]


def test_run_state_round_trip(tmp_path):
    paths = RunPaths(tmp_path / "r", "r")
    RunState("r", "python", ["train"], request={"steps": 5}, status="stopped").save(paths)
    state = RunState.load(paths)
    assert (state.name, state.arguments, state.request, state.status) == ("r", ["train"], {"steps": 5}, "stopped")
    paths.state.write_text("{broken", encoding="utf-8")
    assert RunState.load(paths) is None


def test_lock_blocks_a_second_training_until_its_process_is_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("STEMGUI_DATA_DIR", str(tmp_path))
    paths = RunPaths.for_name("first")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = RunLock(paths.lock)
        lock.acquire("first")
        lock.set_child(sleeper.pid)
        other = RunLock(paths.lock)
        with pytest.raises(TrainingBusyError, match="already running"):
            other.acquire("first")
        found = active_training()
        assert found is not None and found[0].name == "first" and found[1]["child_pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not pid_alive(sleeper.pid)
    # the training process is gone and the lock is stale: another window may take it
    assert active_training() is None
    RunLock(paths.lock).acquire("first")
    RunLock(paths.lock).release()
    assert not paths.lock.exists()


def test_check_name_and_card_summary():
    assert check_name("my-model_2.1") is None
    assert "usable" in check_name("bad name/x")
    assert check_name("") == "enter a name for the new model"
    card = {"name": "mine", "training": {"steps": 40, "preset": "l1+stft", "data": {"dataset": "/x/ds",
                                                                                   "train_tracks": 9}},
            "metrics": {"valid_sdr_mean": 3.25, "valid_sdr": {"drums": 4.0, "vocals": 2.5}}}
    assert card_summary(card) == ("mine · data ds (9 tracks) · 40 steps · losses L1 + MR-STFT · "
                                  "validation SDR 3.25 dB (drums 4.0, vocals 2.5)")


@pytest.mark.parametrize("architecture, fields", [
    ("hdemucs", {"channels": 8, "depth": 5, "nfft": 2048}),
    ("htdemucs", {"channels": 8, "depth": 3, "nfft": 2048}),
    ("demucs", {"channels": 8, "depth": 4}),
])
def test_a_model_from_scratch_is_built_as_the_form_checked_it(tmp_path, architecture, fields):
    """The size fields the dock checks become `stemgui train` options that build the same generator arguments."""
    from stemgui.cli import build_parser
    from stemgui.cli.train import build_config

    req = TrainRequest(dataset="d", name="n", architecture=architecture, segment=2.0, **fields)
    assert req.model_fields() == fields
    cfg = build_config(build_parser().parse_args(req.arguments(RunPaths(tmp_path, "n"))))
    assert cfg.model.architecture == architecture
    assert (cfg.model.architecture, cfg.generator_args()) == req.scratch_model()
    assert all(cfg.generator_args()[key] == value for key, value in fields.items())
