"""Fine-tuning runs on disk: the `stemgui train` command a request becomes, the run folder, its lock and state.

Qt-free so it is tested on its own. A run lives in `<user data>/training/<name>/`:
    <name>.safetensors/.json   the model the trainer writes at the end (or when stopped)
    checkpoints/               the trainer's resumable checkpoints
    log.jsonl                  the trainer's JSON-lines log the panel plots
    run.json                   the exact command and the panel's settings, so Resume works after a restart
    train.lock                 who is training this run right now (app pid, child pid)
Only one training runs at a time: a live lock in any run folder blocks a second one, across app instances.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stemgui.atomic import atomic_write_text
from stemgui.errors import ConfigError, ModelError, StemGUIError
from stemgui.paths import user_data_dir

PRESETS = {"l1": "L1", "l1+stft": "L1 + MR-STFT", "l1+stft+gan": "L1 + MR-STFT + GAN"}
# the size fields the panel offers for a model trained from scratch, per architecture, with their defaults
MODEL_FIELDS: dict[str, dict[str, int]] = {
    "hdemucs": {"channels": 48, "depth": 6, "nfft": 4096},
    "htdemucs": {"channels": 48, "depth": 4, "nfft": 4096},
    "demucs": {"channels": 64, "depth": 6},
}
MINUTES_STEP_CAP = 1_000_000  # "train for about N minutes": the trainer fixes the real count from its speed
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TrainingBusyError(StemGUIError):
    """Another training is already running (in this window or another StemGUI instance)."""


def runs_dir() -> Path:
    """Where the panel keeps its training runs (inside the user data dir, so STEMGUI_DATA_DIR moves it)."""
    return user_data_dir() / "training"


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder."""

    root: Path
    name: str

    @classmethod
    def for_name(cls, name: str) -> "RunPaths":
        return cls(runs_dir() / name, name)

    @property
    def model(self) -> Path:
        return self.root / f"{self.name}.safetensors"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def state(self) -> Path:
        return self.root / "run.json"

    @property
    def lock(self) -> Path:
        return self.root / "train.lock"

    def has_checkpoint(self) -> bool:
        return (self.checkpoints / "latest.json").is_file()


def check_name(name: str) -> str | None:
    """Why `name` cannot name a model, or None when it can."""
    if not name:
        return "enter a name for the new model"
    if not NAME_PATTERN.match(name):
        return f"'{name}' is not a usable model name (letters, digits, '.', '_' and '-' only, up to 64)"
    return None


# -------------------------------------------------------------------------------------------------- command
@dataclass
class TrainRequest:
    """What the panel's form asks for; `arguments()` turns it into `stemgui train` options."""

    dataset: str
    name: str
    base_model: str = ""  # model file to fine-tune (`path:K`: member K of a bag); "" trains from scratch
    architecture: str = "hdemucs"  # from scratch only: the architecture and its size fields (MODEL_FIELDS)
    channels: int = 48
    depth: int = 6
    nfft: int = 4096
    model_extra: str = ""  # from scratch: further constructor arguments, `key = value, ...` (TOML)
    preset: str = "l1+stft+gan"
    l1: float = 1.0
    stft: float = 0.01
    adversarial: float = 0.01
    feature_matching: float = 0.02
    steps: int = 1000
    minutes: float = 0.0  # > 0: train for about this long (steps follow from the first steps' speed)
    segment: float = 4.0
    batch_size: int = 4
    lr: float = 5e-5
    device: str = "auto"
    gpus: int = 1
    checkpoint_every: int = 0  # 0 = chosen from steps
    valid_every: int = 0  # 0 = chosen from steps
    log_every: int = 0  # 0 = chosen from steps
    d_warmup_steps: int = -1  # generator-only steps before D starts; -1 = a fifth of the steps, at most 1000
    d_every: int = 1  # update D every N steps
    d_channels: int = 16  # discriminator width: smaller = lighter D
    spectral_norm: bool = False
    # optional (vocals, accompaniment) pairs, e.g. a cappellas with their instrumentals or MIR-1K: every
    # `two_stem_every`-th step trains on them with the loss on grouped stems (stemgui.train.grouping)
    two_stem_dataset: str = ""
    two_stem_every: int = 2
    extra: list[str] = field(default_factory=list)  # further `stemgui train` options (advanced, tests)

    def model_fields(self) -> dict[str, int]:
        """The size fields of `architecture` (from scratch) with this request's values."""
        return {key: int(getattr(self, key)) for key in MODEL_FIELDS.get(self.architecture, {})}

    def extra_settings(self) -> dict[str, Any]:
        """`model_extra` as a dict (ConfigError naming the text when it is not `key = value, ...`)."""
        return parse_settings(self.model_extra)

    def _extra_table(self) -> dict[str, Any]:
        """What goes into `model.extra`: the size fields (except HDemucs's, which have options) and the rest."""
        fields = {} if self.architecture == "hdemucs" else self.model_fields()
        return {**fields, **self.extra_settings()}

    def scratch_model(self) -> tuple[str, dict]:
        """(architecture, constructor arguments without sources) of the model trained from scratch, exactly as
        `stemgui train` builds it from `arguments()`."""
        from stemgui.train.config import Config

        cfg = Config()
        cfg.set("model.architecture", self.architecture)
        cfg.set("data.segment", float(self.segment))
        if self.architecture == "hdemucs":
            for key, value in self.model_fields().items():
                cfg.set(f"model.{key}", value)
        cfg.set("model.extra", self._extra_table())
        return cfg.model.architecture, cfg.generator_args()

    def arguments(self, paths: RunPaths) -> list[str]:
        """The options after `stemgui` (starting with `train`), fresh start (no --resume)."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}")
        timed = self.minutes > 0
        steps = MINUTES_STEP_CAP if timed else max(1, int(self.steps))
        # a timed run does not know its steps yet: checkpoints, validation and log lines at fixed intervals
        every = self.checkpoint_every or (100 if timed else max(1, min(500, steps // 10)))
        valid = self.valid_every or (250 if timed else max(1, min(1000, steps // 10)))
        log_every = self.log_every or (5 if timed else max(1, min(10, steps // 200)))
        device = "cuda" if self.gpus > 1 else self.device
        args = ["train", "--dataset", str(self.dataset), "--preset", self.preset, "--steps", str(steps),
                "--segment", f"{self.segment:g}", "--batch-size", str(self.batch_size),
                "--out", str(paths.model), "--run-dir", str(paths.checkpoints), "--log", str(paths.log),
                "--device", device, "--checkpoint-every", str(every), "--valid-every", str(valid),
                "--no-progress", "--set", f"train.log_every={log_every}", "--set", f"loss.l1={self.l1:g}"]
        if timed:
            args += ["--minutes", f"{self.minutes:g}"]
        if self.preset != "l1":
            args += ["--set", f"loss.stft={self.stft:g}"]
        if self.preset == "l1+stft+gan":
            # auto: a fifth of the steps, at most 1000 (a timed run: the trainer cuts 1000 to a fifth)
            warmup = self.d_warmup_steps if self.d_warmup_steps >= 0 else min(1000, steps // 5)
            args += ["--set", f"loss.adversarial={self.adversarial:g}",
                     "--set", f"loss.feature_matching={self.feature_matching:g}",
                     "--d-warmup-steps", str(warmup), "--d-every", str(max(1, self.d_every)),
                     "--d-channels", str(self.d_channels)]
            if self.spectral_norm:
                args.append("--spectral-norm")
        if self.two_stem_dataset:
            args += ["--set", f"data.two_stem_dataset={self.two_stem_dataset}",
                     "--set", f"data.two_stem_every={max(2, int(self.two_stem_every))}"]
        if self.base_model:
            args += ["--base-model", str(self.base_model), "--finetune-lr", f"{self.lr:g}"]
        else:
            args += ["--lr", f"{self.lr:g}", "--architecture", self.architecture]
            if self.architecture == "hdemucs":
                names = {"channels": "--model-channels", "depth": "--depth", "nfft": "--nfft"}
                for key, value in self.model_fields().items():
                    args += [names[key], str(value)]
            try:
                table = self._extra_table()
            except StemGUIError as exc:
                raise ValueError(str(exc)) from None
            if table:
                args += ["--set", f"model.extra={{{format_settings(table)}}}"]
        return args + list(self.extra)


def parse_settings(text: str) -> dict[str, Any]:
    """`channels = 8, t_layers = 2, output = "direct"` (a TOML inline table without braces) -> a dict."""
    import tomllib

    text = text.strip().strip("{}").strip()
    if not text:
        return {}
    try:
        return dict(tomllib.loads(f"v = {{{text}}}")["v"])
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"other settings '{text}': write them as key = value, ... ({exc})") from None


def format_settings(values: dict[str, Any]) -> str:
    """The inverse of `parse_settings` (TOML values: strings quoted, true/false, lists)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + format_settings(v) + "}"
        return repr(v)

    return ", ".join(f"{key} = {value(v)}" for key, v in values.items())


def launch_command(arguments: list[str], gpus: int = 1) -> tuple[str, list[str]]:
    """(program, args) for QProcess: `python -m stemgui ...`, or under torchrun for several GPUs.

    `python -m torch.distributed.run` is torchrun itself, found through the same interpreter (no PATH lookup).
    """
    if gpus > 1:
        return sys.executable, ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                                "-m", "stemgui", *arguments]
    return sys.executable, ["-m", "stemgui", *arguments]


def resume_arguments(arguments: list[str], steps: int | None = None, minutes: float | None = None) -> list[str]:
    """The saved arguments with --resume and, when given, a new total of `steps`: more trains longer; not more
    than the checkpoint's step ends the run at once and writes the model (the trainer's rule). A timed run
    (`--minutes`) resumes for about `minutes` more (its step cap stays)."""
    args = [a for a in arguments if a != "--resume"]
    if "--minutes" in args:
        if minutes is not None and minutes > 0:
            args[args.index("--minutes") + 1] = f"{minutes:g}"
    elif steps is not None and "--steps" in args:
        args[args.index("--steps") + 1] = str(int(steps))
    return args + ["--resume"]


# ---------------------------------------------------------------------------------------------------- state
def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


@dataclass
class RunState:
    """run.json: everything needed to show, resume or register a run after the app restarts."""

    name: str
    program: str
    arguments: list[str]
    gpus: int = 1
    request: dict[str, Any] = field(default_factory=dict)
    status: str = "new"  # new, running, stopped, failed, finished
    message: str = ""
    registered: str = ""  # path of the registered model, once registered
    registered_step: int = -1
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    def save(self, paths: RunPaths) -> None:
        self.updated = time.time()
        _write_json(paths.state, asdict(self))

    @classmethod
    def load(cls, paths: RunPaths) -> "RunState | None":
        try:
            data = json.loads(paths.state.read_text(encoding="utf-8"))
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            return cls(**known)
        except (OSError, ValueError, TypeError):
            return None


# ----------------------------------------------------------------------------------------------------- lock
def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """train.lock in a run folder: the app pid that launched the training and the training's own pid.

    Created exclusively (O_EXCL), so two windows cannot both take it; a lock whose processes are all gone
    (the app and its child were killed) is stale and is taken over.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def holder(self) -> dict[str, Any] | None:
        """The live holder's record, or None when free (a stale lock is removed)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            data = {}
        child = data.get("child_pid")
        app = data.get("app_pid")
        launching = child is None and time.time() - float(data.get("time", 0)) < 60
        if pid_alive(child) or (launching and pid_alive(app)):
            return data
        self.path.unlink(missing_ok=True)
        return None

    def acquire(self, name: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is not None:
                    raise TrainingBusyError(busy_message(name, holder)) from None
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"run": name, "app_pid": os.getpid(), "child_pid": None, "time": time.time()}, f)
            return
        raise TrainingBusyError(f"{self.path}: cannot take the training lock")

    def set_child(self, pid: int) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {"app_pid": os.getpid()}
        data.update(child_pid=int(pid), time=time.time())
        _write_json(self.path, data)

    def release(self) -> None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if data.get("app_pid") in (None, os.getpid()):
            self.path.unlink(missing_ok=True)


def busy_message(name: str, holder: dict[str, Any]) -> str:
    run = holder.get("run", name)
    pid = holder.get("child_pid") or holder.get("app_pid")
    where = "in this window" if holder.get("app_pid") == os.getpid() else f"in another process (pid {pid})"
    return f"Training '{run}' is already running {where}; only one training runs at a time — stop it first."


def active_training() -> tuple[RunPaths, dict[str, Any]] | None:
    """A run that is training right now anywhere on this machine (by its live lock), or None."""
    base = runs_dir()
    if not base.is_dir():
        return None
    for lock_file in sorted(base.glob("*/train.lock")):
        holder = RunLock(lock_file).holder()
        if holder is not None:
            return RunPaths(lock_file.parent, lock_file.parent.name), holder
    return None


# --------------------------------------------------------------------------------------------- card / export
def card_summary(card: dict[str, Any]) -> str:
    """What a model card says about its training, in one line: data, steps, losses, validation SDR."""
    training = card.get("training") or {}
    metrics = card.get("metrics") or {}
    parts = [str(card.get("name", "model"))]
    data = training.get("data") or {}
    if data.get("dataset"):
        tracks = data.get("train_tracks")
        parts.append(f"data {Path(str(data['dataset'])).name}" + (f" ({tracks} tracks)" if tracks else ""))
    if training.get("steps") is not None:
        parts.append(f"{training['steps']} steps")
    if training.get("preset"):
        parts.append(f"losses {PRESETS.get(training['preset'], training['preset'])}")
    sdr = metrics.get("valid_sdr_mean")
    if isinstance(sdr, (int, float)):
        per = metrics.get("valid_sdr") or {}
        detail = ", ".join(f"{k} {v:.1f}" for k, v in per.items() if isinstance(v, (int, float)))
        parts.append(f"validation SDR {sdr:.2f} dB" + (f" ({detail})" if detail else ""))
    return " · ".join(parts)


def export_latest_checkpoint(paths: RunPaths) -> Path:
    """Write the run's model from its newest checkpoint (EMA weights when kept), for use before training ends."""
    from stemgui.models.card import save_model
    from stemgui.train import checkpoint as ckpt_io
    from stemgui.train.config import Config
    from stemgui.train.trainer import build_generator
    from stemgui.train.training_card import training_card

    latest = ckpt_io.latest_checkpoint(paths.checkpoints)
    if latest is None:
        raise ModelError(f"{paths.checkpoints}: no checkpoint yet — wait for the first one "
                         "(they are written every few steps)")
    state = ckpt_io.load_checkpoint(latest)
    cfg = Config.from_dict(state["config"], where=str(latest))
    model, note = build_generator(cfg, list(state["sources"]))
    model.load_state_dict(state["ema"] if state.get("ema") is not None else state["g"])
    card = training_card(cfg, name=paths.name, steps=int(state["step"]), metrics=state.get("metrics"),
                         finetune=state.get("finetune") or note, wall_time_s=state.get("wall_time"),
                         from_checkpoint=latest.name)
    # beside, not over, the file the trainer itself writes when it ends
    folder = paths.root / "from-checkpoint"
    folder.mkdir(parents=True, exist_ok=True)
    return save_model(model, folder / paths.model.name, card)


# ----------------------------------------------------------------------------------------------- model checks
def model_check_message(spec: dict[str, Any]) -> str:
    """The one-line reason the model `spec` describes cannot run, "" when its dry run passes.

    `spec`: architecture, sources, args, segment, where (`stemgui.models.check.check_model_config`'s arguments)
    and error (a reason known without building, e.g. an unreadable card)."""
    from stemgui.models.check import check_model_config

    if spec.get("error"):
        return str(spec["error"])
    where = str(spec.get("where") or "[model]")
    try:
        check_model_config(str(spec["architecture"]), list(spec["sources"]), dict(spec["args"]),
                           segment=spec.get("segment"), where=where)
    except StemGUIError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a check must never take its caller down
        return f"{where} cannot be checked ({type(exc).__name__}: {exc})"
    return ""


MODEL_CHECK_SERVER = "from stemgui.train.finetune_runs import serve_model_checks; serve_model_checks()"


def serve_model_checks(requests=None, replies=None) -> None:
    """The Fine-tune dock's model-check process: JSON lines `{"key", "spec"}` in, `{"key", "message"}` out.

    Checks run in their own process, so building and dry-running a big model never holds the app's GIL (no
    event-loop stall) and a crash there cannot take the window down. One torch thread: it is a small job."""
    import torch

    torch.set_num_threads(1)
    requests = requests if requests is not None else sys.stdin
    replies = replies if replies is not None else sys.stdout
    for line in requests:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            key, message = str(request["key"]), model_check_message(dict(request["spec"]))
        except (ValueError, KeyError, TypeError) as exc:
            key, message = "", f"[model] bad check request ({exc})"
        replies.write(json.dumps({"key": key, "message": message}) + "\n")
        replies.flush()
