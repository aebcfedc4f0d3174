"""The `training` part of a trained model's card, built in one place for every model a run writes.

The trainer's final (or stopped) model and the fine-tune panel's "model from the latest checkpoint" both say
how they were trained with this one function, so the two cards can never drift apart. What only a live run
knows (track counts, wall time, world size, device) is passed in when known and left out otherwise.
"""

from __future__ import annotations

from typing import Any

from stemgui.train.config import Config

__all__ = ["training_card"]


def _losses(cfg: Config) -> dict[str, Any]:
    loss = cfg.loss
    losses: dict[str, Any] = {"l1": loss.l1}
    if loss.rms_warmup_steps:
        losses["rms_warmup_steps"] = loss.rms_warmup_steps
    if cfg.use_stft:
        losses.update(stft=loss.stft, stft_resolutions=loss.stft_resolutions)
    if cfg.use_gan:
        losses.update(adversarial=loss.adversarial, feature_matching=loss.feature_matching,
                      discriminator=dict(cfg.discriminator_args(), d_warmup_steps=cfg.discriminator.d_warmup_steps,
                                         d_every=cfg.discriminator.d_every))
    return losses


def _optimizer(cfg: Config, steps: int) -> dict[str, Any]:
    o = cfg.optim
    optimizer: dict[str, Any] = {"lr": cfg.base_lr, "betas": o.betas, "d_lr": o.d_lr, "ema_decay": o.ema_decay,
                                  "ema_warmup": o.ema_warmup}
    if o.lr_decay != "none":
        optimizer.update(lr_decay=o.lr_decay, decay_start=o.decay_start, lr_min_ratio=o.lr_min_ratio,
                         lr_final=cfg.lr_at(max(steps - 1, 0)))
    return optimizer


def training_card(cfg: Config, *, name: str, steps: int, metrics: dict[str, Any] | None = None,
                  finetune: dict[str, Any] | None = None, train_tracks: int | None = None,
                  valid_tracks: int | None = None, wall_time_s: float | None = None, world_size: int | None = None,
                  device: str | None = None, stopped_early: bool | None = None,
                  from_checkpoint: str | None = None) -> dict[str, Any]:
    """The card fields (`name`, `training`, `metrics`) `save_model` adds to what the model itself knows.

    Arguments left as None are facts the caller does not have; they are left out of the card.
    """
    data: dict[str, Any] = {"dataset": str(cfg.data.dataset), "format": cfg.data.format}
    if train_tracks is not None:
        data["train_tracks"] = train_tracks
    if valid_tracks is not None:
        data["valid_tracks"] = valid_tracks
    data.update(segment=cfg.data.segment, augment=cfg.to_dict()["augment"])
    if cfg.data.two_stem_every:  # real (vocals, accompaniment) material on every n-th step (stemgui.train.grouping)
        data["two_stem"] = {"dataset": str(cfg.data.two_stem_dataset), "every": cfg.data.two_stem_every,
                            "steps": steps // cfg.data.two_stem_every}
    training: dict[str, Any] = {
        "method": "generative optimization" if cfg.use_gan else "regression",
        "preset": cfg.loss.preset,
        "losses": _losses(cfg),
        "data": data,
        "steps": int(steps),
        "batch_size": cfg.train.batch_size,
        "optimizer": _optimizer(cfg, steps),
    }
    run_facts = {"wall_time_s": None if wall_time_s is None else round(wall_time_s, 1), "world_size": world_size,
                 "device": device, "stopped_early": stopped_early, "from_checkpoint": from_checkpoint}
    training.update({key: value for key, value in run_facts.items() if value is not None})
    if finetune:
        training["finetune"] = finetune
    return {"name": name, "training": training, "metrics": dict(metrics or {})}
