"""The training loop: a generator of any registered architecture + per-source discriminators, resumable
bit-for-bit, DDP-ready.

One step: separate the batch; if the GAN is active update D on (real, detached fake) with the least-squares
loss (`discriminator_step`); then update G on its objective (`generator_step`: L1 + MR-STFT, + adversarial +
feature matching once D is on), clip, guard against NaN/Inf, update the EMA. Randomness inside a step (D's
random windows) comes from a generator seeded by (seed, step) and the data from (seed, sample index), so a
resumed run and N DDP ranks reproduce a single unbroken run exactly. Checkpoints (rank 0) hold G, D, both
optimizers, the AMP scaler, the EMA, the step and every RNG state. Fine-tuning surgery lives in `surgery`, the
objective in `losses`, the output card in `training_card`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from stemgui.devices import pick_device
from stemgui.errors import Cancelled, ConfigError, ModelError, StemGUIError
from stemgui.eval.metrics import usdr
from stemgui.models.check import check_model_config
from stemgui.refine import refine_batch
from stemgui.train import checkpoint as ckpt_io
from stemgui.train.config import Config
from stemgui.train.data import (
    SegmentDataset,
    StepBatchSampler,
    StepMixedDataset,
    ValidationDataset,
    load_splits,
    load_two_stem_tracks,
)
from stemgui.train.distributed import (
    DistEnv,
    any_rank,
    average_gradients,
    barrier,
    broadcast_module,
    cleanup,
    init_process_group,
)
from stemgui.train.ema import EMA
from stemgui.train.grouping import TWO_STEM_SOURCES, TwoStemSteps, group_stems, grouping_matrix
from stemgui.train.losses import GeneratorObjective, discriminator_loss
from stemgui.train.surgery import finetune_generator
from stemgui.train.training_card import training_card

log = logging.getLogger(__name__)


class TrainingDiverged(StemGUIError):
    """The loss or gradients stayed NaN/Inf for too many consecutive steps."""


@dataclass
class TrainResult:
    out: Path | None
    run_dir: Path
    steps: int
    metrics: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False


# ------------------------------------------------------------------------------------------------------ helpers
def training_device(name: str, env: DistEnv) -> torch.device:
    """`train.device` as a torch device (this rank's GPU for auto/cuda); unusable choices are a ConfigError."""
    try:
        return pick_device(name, local_rank=env.local_rank)
    except StemGUIError as exc:
        raise ConfigError(f"train.device: {exc}") from None


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision (always on CPU unless asked)."""
    if mode == "off":
        return None
    if mode == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    return torch.bfloat16 if mode == "bf16" else torch.float16


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator for the randomness inside step `step` (same on every rank and after resume)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))


# Excerpts where a source is silent (below -80 dBFS) are left out of its validation mean: uSDR against silence
# is 10·log10(eps / error energy), tens of dB below zero for any output at all, and a few silent excerpts (a
# verse without drums) would otherwise swamp the mean and hide real progress.
SILENT_POWER = 1e-8


def build_generator(cfg: Config, sources: list[str]) -> tuple[nn.Module, dict[str, Any]]:
    """The generator: fresh (`model.architecture` with the [model] settings, checked to run before any step) or
    from `finetune.base_model` (see `surgery`), and the card's note on the fine-tune ({} from scratch)."""
    ft = cfg.finetune
    if ft.base_model:
        return finetune_generator(ft.base_model, sources, segment=cfg.data.segment,
                                  samplerate=cfg.data.samplerate, freeze_encoder=ft.freeze_encoder)
    try:
        return check_model_config(cfg.model.architecture, sources, cfg.generator_args(), segment=cfg.data.segment,
                                  where="[model]"), {}
    except ModelError as exc:
        raise ConfigError(str(exc)) from None


Judged = tuple[list[Any], list[Any]]  # (real part, fake part) of D's scores or of its feature lists


def _split_rows(outputs: Sequence[torch.Tensor], rows: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """D's outputs on cat([real, fake]) -> (real part, fake part): the first `rows` rows are the real ones."""
    return [o[:rows] for o in outputs], [o[rows:] for o in outputs]


class StopRequest:
    """SIGTERM/SIGINT (the GUI's Stop) -> finish the step, checkpoint, exit."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ------------------------------------------------------------------------------------------------------ trainer
BEST_MODEL = "best.safetensors"
BEST_BY = "mean of the real-voice check's vocals and accompaniment GNSDR when it runs, else valid_sdr_mean"


def validation_score(metrics: dict[str, Any]) -> float | None:
    """The number train.keep_best ranks validations by (higher is better): the real-voice check when it ran
    (real singing is what the vocals stem is for, and synthetic songs can miss a collapse on it), else the
    synthetic validation's mean SDR."""
    real = metrics.get("real_voice")
    if real and real.get("gnsdr"):
        return float(np.mean([float(v) for v in real["gnsdr"].values()]))
    value = metrics.get("valid_sdr_mean")
    return None if value is None else float(value)


class Trainer:
    """Owns models, optimizers, data and the loop; `run()` trains to cfg.train.steps."""

    def __init__(self, cfg: Config, *, resume: bool = False, env: DistEnv | None = None,
                 on_step: Callable[[int, dict[str, float]], None] | None = None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.env = env or DistEnv.from_env()
        self.on_step = on_step
        t = cfg.train
        if not t.out:
            raise ConfigError("train.out is not set (use --out MODEL_PATH)")
        self.out = Path(t.out)
        if self.out.suffix not in (".safetensors", ""):
            raise ConfigError(f"{self.out}: the output model path must end in .safetensors")
        self.out = self.out.with_suffix(".safetensors")
        self.run_dir = Path(t.run_dir) if t.run_dir else self.out.with_name(self.out.stem + ".run")
        self.log_path = Path(t.log) if t.log else self.run_dir / "log.jsonl"
        self.device = training_device(t.device, self.env)
        if t.threads:
            torch.set_num_threads(t.threads)
        init_process_group(self.env, self.device)
        if t.batch_size % self.env.world_size:
            raise ConfigError(f"train.batch_size {t.batch_size} is not divisible by {self.env.world_size} processes")

        checkpoint_path = ckpt_io.latest_checkpoint(self.run_dir)
        if checkpoint_path is not None and not resume:
            raise ConfigError(f"{self.run_dir}: a checkpoint from an earlier run exists; pass --resume to continue "
                              "it or choose another run folder / output")
        state = ckpt_io.load_checkpoint(checkpoint_path) if (resume and checkpoint_path) else None
        self.resumed_from = checkpoint_path if state else None

        _seed_everything(t.seed)
        self.train_tracks, self.valid_tracks, self.sources = load_splits(cfg)
        if state is not None and list(state["sources"]) != self.sources:
            raise ConfigError(f"{checkpoint_path}: the checkpoint was trained on {state['sources']}, "
                              f"the dataset gives {self.sources}")
        self.G, self.finetune_note = build_generator(cfg, self.sources)
        self.G.to(self.device)
        model_format = (int(getattr(self.G, "samplerate", cfg.data.samplerate)),
                        int(getattr(self.G, "audio_channels", cfg.data.channels)))
        if model_format != (cfg.data.samplerate, cfg.data.channels):  # e.g. DRNN's 16 kHz mono: the data are
            log.info("reading the data at the model's %d Hz, %d channel(s)", *model_format)  # converted on the fly
            cfg.data.samplerate, cfg.data.channels = model_format
        log.info("training %s (%s, sources %s) on %s", self.out.name, getattr(self.G, "architecture", "?"),
                 ", ".join(self.sources), self.device)
        self.two_stem_steps = TwoStemSteps(cfg.data.two_stem_every)
        self.two_stem_tracks: list = []
        self.two_stem_cfg: Config | None = None
        self.group_matrix: torch.Tensor | None = None
        if cfg.data.two_stem_every:  # after the model fixed the data's rate and channels
            self.group_matrix = grouping_matrix(self.sources)
            self.two_stem_tracks, self.two_stem_cfg = load_two_stem_tracks(cfg)
            log.info("every %d. step trains on %d two-stem tracks of %s (vocals vs the sum of the other stems)",
                     cfg.data.two_stem_every, len(self.two_stem_tracks), cfg.data.two_stem_dataset)
        self.D = None
        if cfg.use_gan:
            from stemgui.models.discriminators import SourceDiscriminators

            self.D = SourceDiscriminators(self.sources, **cfg.discriminator_args()).to(self.device)
        o = cfg.optim
        g_params = [p for p in self.G.parameters() if p.requires_grad]
        self.opt_g = (torch.optim.AdamW(g_params, lr=cfg.base_lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
                      if g_params else None)  # None: a model trained by fitting (NMF), not by gradient steps
        self.opt_d = None
        if self.D is not None:
            self.opt_d = torch.optim.AdamW(self.D.parameters(), lr=o.d_lr, betas=tuple(o.d_betas),
                                           weight_decay=o.d_weight_decay)
        self.amp = amp_dtype(o.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.ema = EMA(self.G, o.ema_decay, warmup=o.ema_warmup) if o.ema_decay > 0 else None
        self.objective = GeneratorObjective(cfg.loss, cfg.use_stft, getattr(self.G, "spec_params", None))

        self.step = 0
        self.wall_time = 0.0
        self.cpu_time = 0.0  # process CPU seconds (every thread) spent in the loop, summed over resumes
        self.bad_steps = 0
        self.skipped = 0
        self.metrics: dict[str, Any] = {}
        if state is not None:
            self._load_state(state)
        else:
            broadcast_module(self.G, self.env)
            if self.D is not None:
                broadcast_module(self.D, self.env)
            if self.ema is not None:
                self.ema.load_state_dict(self.G.state_dict())

    # -------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "sources": self.sources,
            "g": self.G.state_dict(),
            "d": self.D.state_dict() if self.D is not None else None,
            "opt_g": self.opt_g.state_dict() if self.opt_g is not None else None,
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "sampler": {"next_step": self.step, "global_batch": self.cfg.train.batch_size},
            "wall_time": self.wall_time,
            "cpu_time": self.cpu_time,
            "skipped": self.skipped,
            "metrics": self.metrics,
            "finetune": self.finetune_note,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["g"])
        if self.D is not None:
            if state.get("d") is None:
                raise ConfigError("the checkpoint has no discriminator; resume with the preset it was started with")
            self.D.load_state_dict(state["d"])
        if self.opt_g is not None:
            self.opt_g.load_state_dict(state["opt_g"])
        if self.opt_d is not None and state.get("opt_d") is not None:
            self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["g"])
            self.ema.updates = int(state["step"])  # one update per step: the warm-up goes on where it was
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        py = rng["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.step = int(state["step"])
        self.wall_time = float(state.get("wall_time", 0.0))
        self.cpu_time = float(state.get("cpu_time", 0.0))
        self.skipped = int(state.get("skipped", 0))
        self.metrics = dict(state.get("metrics") or {})
        if state.get("finetune"):
            self.finetune_note = state["finetune"]

    def save_checkpoint(self) -> None:
        if self.env.is_main:
            ckpt_io.save_checkpoint(self.run_dir, self.step, self.state_dict(), self.cfg.train.keep_checkpoints)
            self._log({"event": "checkpoint", "step": self.step, "path": str(self.run_dir)})
        barrier(self.env)

    # -------------------------------------------------------------------------------------------- logging
    def _log(self, record: dict[str, Any]) -> None:
        if not self.env.is_main:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        record = {"time": round(time.time(), 3), **record}
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # -------------------------------------------------------------------------------------------- one step
    def _autocast(self):
        if self.amp is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def _clip(self, params, max_norm: float) -> torch.Tensor:
        params = [p for p in params if p.grad is not None]
        return torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))

    def _gan_on(self, step: int) -> bool:
        """Whether the adversarial game runs at `step` (after D's warm-up of generator-only steps)."""
        return self.D is not None and step >= self.cfg.discriminator.d_warmup_steps

    def _d_update_due(self, step: int) -> bool:
        """Whether D is updated at `step`: the game is on and this is one of its every-`d_every` updates."""
        d = self.cfg.discriminator
        return self._gan_on(step) and (step - d.d_warmup_steps) % d.d_every == 0

    def _judge(self, stems: torch.Tensor, estimate: torch.Tensor, stream: int) -> tuple[Judged, Judged]:
        """D on real and estimated stems in one batch; returns (real, fake) scores and (real, fake) features.

        `stream` picks the step's random windows: 2·step for D's own update, 2·step + 1 for G's.
        """
        rows = stems.shape[0] * stems.shape[2]  # D judges every (item, channel) as its own mono row
        with self._autocast():
            scores, feats = self.D(torch.cat([stems, estimate]), step_generator(self.cfg.train.seed, stream))
        per_disc = [_split_rows(f, rows) for f in feats]
        return _split_rows(scores, rows), ([real for real, _ in per_disc], [fake for _, fake in per_disc])

    def discriminator_step(self, stems: torch.Tensor, fake: torch.Tensor, step: int) -> dict[str, float]:
        """One least-squares update of D on the real stems against G's detached estimate."""
        cfg = self.cfg
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        (real_scores, fake_scores), _ = self._judge(stems, fake, 2 * step)
        d_loss = discriminator_loss(real_scores, fake_scores)
        self.scaler.scale(d_loss).backward()
        average_gradients(self.D, self.env)
        self.scaler.unscale_(self.opt_d)
        d_norm = self._clip(self.D.parameters(), cfg.optim.d_grad_clip)
        record: dict[str, float] = {}
        if torch.isfinite(d_norm) and torch.isfinite(d_loss):
            self.scaler.step(self.opt_d)
        else:
            self.opt_d.zero_grad(set_to_none=True)
            record["d_skipped"] = 1.0
        record.update(d_loss=float(d_loss.detach()), d_lr=cfg.optim.d_lr)
        return record

    def generator_step(self, stems: torch.Tensor, estimate: torch.Tensor, step: int,
                       adversarial: bool = True) -> dict[str, float]:
        """One update of G on its objective (adversarial terms once D is on, unless `adversarial` is False); a
        non-finite step is skipped, and `train.max_bad_steps` of them in a row end the run."""
        cfg = self.cfg
        self.opt_g.zero_grad(set_to_none=True)
        total, record = self.objective.reconstruction(estimate, stems, step)
        if adversarial and self._gan_on(step):
            self.D.requires_grad_(False)
            (_, fake_scores), (real_feats, fake_feats) = self._judge(stems, estimate, 2 * step + 1)
            adversarial, terms = self.objective.adversarial(fake_scores, real_feats, fake_feats)
            total = total + adversarial
            record.update(terms)
        record["loss"] = float(total.detach())
        self.scaler.scale(total).backward()
        average_gradients(self.G, self.env)
        self.scaler.unscale_(self.opt_g)
        g_norm = self._clip(self.G.parameters(), cfg.optim.grad_clip)
        record["grad_norm"] = float(g_norm)
        if torch.isfinite(g_norm) and math.isfinite(record["loss"]):
            self.scaler.step(self.opt_g)
            self.bad_steps = 0
        else:
            self.opt_g.zero_grad(set_to_none=True)
            self.bad_steps += 1
            self.skipped += 1
            record["skipped"] = 1.0
            if self.bad_steps >= cfg.train.max_bad_steps:
                raise TrainingDiverged(
                    f"training diverged: loss or gradients were NaN/Inf for {self.bad_steps} consecutive steps "
                    f"(at step {step + 1}); lower optim.lr or the loss weights, or resume from the last checkpoint"
                )
        return record

    def _refined(self, estimate: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """loss.refine: the stems (batch, sources, channels, time) after the mixture refinement the app will
        apply, so training, validation and the real-voice check score what users hear; else as they are."""
        if self.cfg.loss.refine == "off":
            return estimate
        vocals = self.sources.index("vocals") if "vocals" in self.sources else None
        return refine_batch(estimate, mix, self.cfg.loss.refine, vocals, samplerate=self.cfg.data.samplerate)

    def train_step(self, mix: torch.Tensor, stems: torch.Tensor) -> dict[str, float]:
        """Separate the batch, update D (when due) then G, the AMP scale and the EMA; returns the step's log."""
        step = self.step
        mix = mix.to(self.device, non_blocking=True)
        stems = stems.to(self.device, non_blocking=True)
        lr = self.cfg.lr_at(step)
        for group in self.opt_g.param_groups:
            group["lr"] = lr
        record: dict[str, float] = {"lr": lr}

        self.G.train()
        with self._autocast():
            estimate = self.G(mix)
        estimate = self._refined(estimate.float(), mix.float())
        if self.two_stem_steps(step):  # real two-stem material: grouped reconstruction only, D sits out
            record["two_stem"] = 1.0  # (its discriminators judge single stems, which these batches lack)
            record.update(self.generator_step(stems, group_stems(estimate, self.group_matrix), step,
                                              adversarial=False))
        else:
            if self._d_update_due(step):
                record.update(self.discriminator_step(stems, estimate.detach(), step))
            record.update(self.generator_step(stems, estimate, step))
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.G)
        self.step += 1
        return record

    # -------------------------------------------------------------------------------------------- validation
    @torch.inference_mode()
    def validate(self) -> dict[str, Any]:
        """SDR per source (dB, mean over validation tracks) of the EMA generator; rank 0 only."""
        if not self.valid_tracks:
            return {}
        model = self.ema.shadow if self.ema is not None else self.G
        was_training = model.training
        model.eval()
        dataset = ValidationDataset(self.valid_tracks, self.sources, self.cfg)
        per_source: list[list[float]] = [[] for _ in self.sources]
        everything: list[list[float]] = [[] for _ in self.sources]
        for index in range(len(dataset)):
            mix, stems = dataset[index]
            with self._autocast():
                batch = mix[None].to(self.device)
                estimate = self._refined(model(batch).float(), batch.float())[0].cpu()
            values = [float(v) for v in usdr(stems.numpy(), estimate.numpy())]
            audible = stems.float().square().mean(dim=tuple(range(1, stems.dim()))) > SILENT_POWER
            for i, v in enumerate(values):
                everything[i].append(v)
                if audible[i]:
                    per_source[i].append(v)
        real_voice = self._real_voice(model) if self.cfg.data.real_voice else None
        model.train(was_training)
        sdr = {name: round(float(np.mean(v or every)), 4)  # a source silent everywhere: plain mean
               for name, v, every in zip(self.sources, per_source, everything)}
        out = {"valid_sdr": sdr, "valid_sdr_mean": round(float(np.mean(list(sdr.values()))), 4),
               "valid_tracks": len(dataset), "valid_step": self.step}
        if real_voice is not None:
            out["real_voice"] = real_voice
        return out

    def _real_voice(self, model: nn.Module) -> dict[str, Any] | None:
        """data.real_voice: GNSDR of vocals and accompaniment on MIR-1K's held-out singers (stemgui.eval.real_voice)."""
        from stemgui.eval.real_voice import clips_from, evaluate_real_voice, has_vocals

        if not has_vocals(self.sources):
            log.warning("data.real_voice: the model has no vocals stem (%s): check skipped", ", ".join(self.sources))
            return None
        d = self.cfg.data

        def separate(mix: np.ndarray) -> np.ndarray:  # whole clips (4-13 s), as the excerpts above
            with self._autocast():
                batch = torch.from_numpy(mix)[None].to(self.device)
                return self._refined(model(batch).float(), batch.float())[0].cpu().numpy()

        result = evaluate_real_voice(separate, self.sources, clips_from(d.real_voice_dir or None, d.real_voice_clips),
                                     int(getattr(model, "samplerate", d.samplerate)), d.channels)
        return {**result.summary(), "singers": "held-out MIR-1K (stemgui.data.mir1k.HELD_OUT_SINGERS)"}

    def _validate_and_log(self) -> None:
        if self.env.is_main:
            metrics = self.validate()
            if metrics:
                self.metrics = metrics
                self._log({"event": "valid", "step": self.step, **metrics})
                if self.cfg.train.keep_best:
                    self._keep_if_best(metrics)
        barrier(self.env)

    def _keep_if_best(self, metrics: dict[str, Any]) -> None:
        """train.keep_best: export the model to run_dir/best.safetensors when this validation beats the best so
        far. The best score lives in that file's card, so a resumed run compares with it."""
        from stemgui.models.card import read_card

        score = validation_score(metrics)
        if score is None or not math.isfinite(score):
            return
        path = self.run_dir / BEST_MODEL
        if path.is_file():
            try:
                best = float(read_card(path)["training"]["best"]["score"])
            except (StemGUIError, KeyError, TypeError, ValueError):
                best = -math.inf  # an unreadable best is replaced
            if score <= best:
                return
        self.export(out=path, best={"step": self.step, "score": round(score, 4), "by": BEST_BY})
        self._log({"event": "best", "step": self.step, "score": round(score, 4), "path": str(path)})

    # -------------------------------------------------------------------------------------------- output
    def export(self, stopped: bool = False, out: Path | None = None,
               best: dict[str, Any] | None = None) -> Path | None:
        """The model (EMA weights when kept) and its card to `out` (default: train.out)."""
        if not self.env.is_main:
            return None
        from stemgui.models.card import save_model

        model = self.ema.shadow if self.ema is not None else self.G
        card = training_card(self.cfg, name=self.out.stem, steps=self.step, metrics=self.metrics,
                             finetune=self.finetune_note, train_tracks=len(self.train_tracks),
                             valid_tracks=len(self.valid_tracks), wall_time_s=self.wall_time,
                             world_size=self.env.world_size, device=str(self.device), stopped_early=stopped)
        card["training"]["cpu_time_s"] = round(self.cpu_time, 1)
        if self.two_stem_cfg is not None:
            card["training"]["data"]["two_stem"]["tracks"] = len(self.two_stem_tracks)
        if self.cfg.train.cpu_minutes:
            card["training"]["cpu_budget_s"] = round(self.cfg.train.cpu_minutes * 60, 1)
        if getattr(model, "paper", None):
            card["paper"] = model.paper
        paper_args = getattr(model, "paper_args", None) or {}
        here = dict(getattr(model, "init_kwargs", {}) or {})
        differs = {key: {"paper": value, "here": here.get(key)} for key, value in paper_args.items()
                   if key in here and here[key] != value}
        if paper_args:  # what was shrunk or changed against the paper's settings
            card["paper_settings"] = {"same": sorted(set(paper_args) - set(differs)), "differs": differs}
        if self.cfg.loss.preset == "drnn":
            card["training"]["losses"].update(divergence=self.cfg.loss.divergence,
                                              discriminative=self.cfg.loss.discriminative)
        if best is not None:
            card["training"]["best"] = best
        if self.cfg.loss.refine != "off":
            card["training"]["losses"]["refine"] = self.cfg.loss.refine
            card["separation"] = {"refine": self.cfg.loss.refine}
        return save_model(model, out or self.out, card)

    def _cpu_budget_spent(self) -> bool:
        """train.cpu_minutes: whether this run's process CPU time has reached its budget (any rank decides)."""
        minutes = self.cfg.train.cpu_minutes
        if not minutes:  # the same on every rank: no collective call per step without a budget
            return False
        return any_rank(self.cpu_time >= minutes * 60, self.env)

    def _apply_budget(self, budget: "TimeBudget", now: float) -> None:
        """train.minutes: once the first steps are measured, fix train.steps to what fits in the time left."""
        t, d = self.cfg.train, self.cfg.discriminator
        ready = any_rank(budget.calibrated(self.step, now), self.env)
        if not ready:
            return
        steps = budget.total_steps(self.step, now, cap=t.steps)
        if self.env.enabled:  # every rank ends at rank 0's count
            value = torch.tensor([steps], dtype=torch.int64,
                                 device=self.device if self.device.type == "cuda" else "cpu")
            torch.distributed.broadcast(value, 0)
            steps = int(value.item())
        t.steps, budget.pending = steps, False
        t.minutes = 0.0  # the checkpoints keep the fixed plan
        if d.d_warmup_steps > steps // 5:  # the adversarial part must run in the budget too
            d.d_warmup_steps = steps // 5
        self._log({"event": "budget", "step": self.step, "steps": steps, "minutes": budget.minutes,
                   "steps_per_s": round(budget.rate(self.step, now), 4), "d_warmup_steps": d.d_warmup_steps})

    # -------------------------------------------------------------------------------------------- loop
    def _train_dataset(self) -> torch.utils.data.Dataset:
        """The loop's segments: the dataset's, with data.two_stem_dataset's batches on two-stem steps."""
        t = self.cfg.train
        main = SegmentDataset(self.train_tracks, self.sources, self.cfg, length=t.steps * t.batch_size)
        if self.two_stem_cfg is None:
            return main
        pairs = SegmentDataset(self.two_stem_tracks, TWO_STEM_SOURCES, self.two_stem_cfg, length=len(main))
        return StepMixedDataset(main, pairs, t.batch_size, self.two_stem_steps)

    def fit(self) -> TrainResult:
        """A model trained by fitting (`trained_by_fitting`: NMF's dictionary learning) instead of gradient steps:
        `model.fit` on the train.steps x train.batch_size segments the loop would have read, within what is left
        of train.cpu_minutes (reading the segments counts), then the same validation, checkpoint and card."""
        t = self.cfg.train
        started, cpu_started = time.perf_counter(), time.process_time()
        dataset = SegmentDataset(self.train_tracks, self.sources, self.cfg, length=t.steps * t.batch_size)
        stems = torch.stack([dataset[index][1] for index in range(len(dataset))])
        cpu_left = None
        if t.cpu_minutes:
            cpu_left = t.cpu_minutes * 60 - self.cpu_time - (time.process_time() - cpu_started)
        history = self.G.fit(stems.to(self.device), cpu_seconds=cpu_left)
        if self.ema is not None:
            self.ema.load_state_dict(self.G.state_dict())
        self.step = t.steps
        self.wall_time += time.perf_counter() - started
        self.cpu_time += time.process_time() - cpu_started
        self._log({"event": "fit", "step": self.step, "segments": len(dataset), "wall_time_s": round(self.wall_time, 2),
                   "cpu_time_s": round(self.cpu_time, 2),
                   "divergence": {name: values[-1] for name, values in history.items()},
                   "updates": {name: len(values) - 1 for name, values in history.items()}})
        self._validate_and_log()
        self.save_checkpoint()
        out = self.export()
        self._log({"event": "end", "step": self.step, "out": str(out) if out else None, **self.metrics})
        return TrainResult(out, self.run_dir, self.step, self.metrics)

    def run(self) -> TrainResult:
        cfg, t = self.cfg, self.cfg.train
        if getattr(self.G, "trained_by_fitting", False) and self.step < t.steps:
            return self.fit()
        if self.step >= t.steps or self._cpu_budget_spent():
            self._log({"event": "end", "step": self.step, "note": "already at train.steps or train.cpu_minutes"})
            out = self.export()
            return TrainResult(out, self.run_dir, self.step, self.metrics)
        dataset = self._train_dataset()
        sampler = StepBatchSampler(t.batch_size, self.step, t.steps, self.env.rank, self.env.world_size)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, num_workers=cfg.data.num_workers,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            prefetch_factor=4 if cfg.data.num_workers else None,
            worker_init_fn=_ignore_stop_signals if cfg.data.num_workers else None,
        )
        self._log({"event": "start", "step": self.step, "steps": t.steps, "resumed_from": str(self.resumed_from)
                   if self.resumed_from else None, "sources": self.sources, "device": str(self.device),
                   "world_size": self.env.world_size, "train_tracks": len(self.train_tracks),
                   "valid_tracks": len(self.valid_tracks), "preset": cfg.loss.preset,
                   "minutes": t.minutes or None})
        progress = None
        if self.env.is_main and t.progress:
            from tqdm import tqdm

            progress = tqdm(total=t.steps, initial=self.step, desc="training", unit="step", dynamic_ncols=True)
        stopped = False
        window_start = time.perf_counter()
        window_steps = 0
        last = time.perf_counter()
        cpu_last = time.process_time()
        budget = TimeBudget(t.minutes, self.step, window_start)
        with StopRequest() as stop:
            try:
                for mix, stems in loader:
                    record = self.train_step(mix, stems)
                    now = time.perf_counter()
                    self.wall_time += now - last
                    last = now
                    cpu_now = time.process_time()
                    self.cpu_time += cpu_now - cpu_last
                    cpu_last = cpu_now
                    cpu_spent = self._cpu_budget_spent()
                    if cpu_spent:
                        self._log({"event": "cpu_budget", "step": self.step, "cpu_time_s": round(self.cpu_time, 2),
                                   "cpu_minutes": t.cpu_minutes})
                    window_steps += 1
                    if budget.pending:
                        self._apply_budget(budget, now)
                    if self.on_step is not None:
                        self.on_step(self.step, record)
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                    if self.step % t.log_every == 0 or self.step == t.steps or self.step == budget.first_step + 1:
                        elapsed = now - window_start
                        rate = window_steps / elapsed if elapsed > 0 else 0.0
                        eta = budget.left(now) if budget.pending else (t.steps - self.step) / rate if rate else None
                        self._log({"event": "train", "step": self.step, **{k: round(v, 6) for k, v in record.items()},
                                   "steps_per_s": round(rate, 4), "samples_per_s": round(rate * t.batch_size, 3),
                                   "eta_s": round(eta, 1) if eta is not None else None,
                                   "wall_time_s": round(self.wall_time, 2), "cpu_time_s": round(self.cpu_time, 2),
                                   "skipped_total": self.skipped})
                        window_start, window_steps = now, 0
                    if self.step % t.valid_every == 0 or self.step == t.steps or cpu_spent:
                        self._validate_and_log()
                    if any_rank(stop.requested, self.env):
                        stopped = True
                        break
                    if self.step % t.checkpoint_every == 0 and self.step != t.steps and not cpu_spent:
                        self.save_checkpoint()
                        last = time.perf_counter()
                    if self.step >= t.steps or cpu_spent:  # a time budget can end the run before the sampler does
                        break
            finally:
                if progress is not None:
                    progress.close()
        self.save_checkpoint()
        out = self.export(stopped=stopped)
        self._log({"event": "stopped" if stopped else "end", "step": self.step, "out": str(out) if out else None,
                   **self.metrics})
        if stopped:
            raise Cancelled(f"training stopped at step {self.step}/{t.steps}: checkpoint saved in {self.run_dir}, "
                            f"model written to {self.out}; continue with --resume")
        return TrainResult(out, self.run_dir, self.step, self.metrics, stopped)


class TimeBudget:
    """`train.minutes` as steps: the speed of this session's first steps (at least CALIBRATION_STEPS of them and
    CALIBRATION_S seconds, loading included) sets how many more fit in the minutes left."""

    CALIBRATION_STEPS = 3
    CALIBRATION_S = 10.0

    def __init__(self, minutes: float, first_step: int, start: float) -> None:
        self.minutes = float(minutes or 0.0)
        self.pending = self.minutes > 0
        self.first_step = first_step
        self.start = start

    def left(self, now: float) -> float:
        return max(0.0, self.minutes * 60 - (now - self.start))

    def rate(self, step: int, now: float) -> float:
        return (step - self.first_step) / max(now - self.start, 1e-9)

    def calibrated(self, step: int, now: float) -> bool:
        done = step - self.first_step
        return done >= 1 and (now - self.start >= self.minutes * 60
                              or (done >= self.CALIBRATION_STEPS and now - self.start >= self.CALIBRATION_S))

    def total_steps(self, step: int, now: float, cap: int) -> int:
        """The step to end at: now plus what the measured rate fits in the time left, at most `cap`."""
        return max(step, min(int(cap), step + int(self.left(now) * self.rate(step, now))))


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers ignore SIGINT/SIGTERM: a Ctrl+C or Stop sent to the whole process group must reach only the
    main process, which checkpoints and then shuts the workers down (a killed worker would crash the run)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(cfg: Config, *, resume: bool = False,
          on_step: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train as `cfg` says (DDP when launched by torchrun); returns where the model went."""
    env = DistEnv.from_env()
    try:
        trainer = Trainer(cfg, resume=resume, env=env, on_step=on_step)
        return trainer.run()
    finally:
        cleanup(env)

