"""`stemgui train`: train or fine-tune a separator (generative optimization), resumable, torchrun-ready.

Settings come from, in order: defaults, the checkpoint being resumed, `--config FILE` (TOML/YAML), the named
options below, and `--set section.key=value` overrides. `--print-config` shows the result as TOML.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# option -> config key; each is applied only when given, so a resumed run keeps its own settings otherwise.
OPTION_KEYS = {
    "dataset": "data.dataset", "format": "data.format", "sources": "data.sources", "segment": "data.segment",
    "workers": "data.num_workers", "valid_fraction": "data.valid_fraction",
    "preset": "loss.preset", "steps": "train.steps", "minutes": "train.minutes", "batch_size": "train.batch_size",
    "out": "train.out",
    "run_dir": "train.run_dir", "log": "train.log", "device": "train.device", "seed": "train.seed",
    "checkpoint_every": "train.checkpoint_every", "valid_every": "train.valid_every",
    "lr": "optim.lr", "base_model": "finetune.base_model", "finetune_lr": "finetune.lr",
    "freeze_encoder": "finetune.freeze_encoder", "architecture": "model.architecture",
    "model_channels": "model.channels", "depth": "model.depth",
    "nfft": "model.nfft", "growth": "model.growth", "d_warmup_steps": "discriminator.d_warmup_steps",
    "d_every": "discriminator.d_every", "discriminator": "discriminator.kind",
    "d_channels": "discriminator.channels", "spectral_norm": "discriminator.spectral_norm",
}


def register(subparsers) -> None:
    from stemgui.models.architectures import architecture_names
    from stemgui.train.config import PRESETS

    p = subparsers.add_parser(
        "train", help="train or fine-tune a separation model",
        description="Train a separator (Hybrid Demucs unless --architecture says otherwise) with L1 + "
                    "multi-resolution STFT + least-squares GAN losses. Under torchrun it runs data-parallel (DDP).",
    )
    p.add_argument("--config", metavar="FILE", help="TOML or YAML file with [data], [model], [loss], ... sections")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--print-config", action="store_true", help="print the effective configuration and exit")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", metavar="DIR", help="MUSDB18-HQ folder, .stem.mp4 folder, MIR-1K or multitracks")
    g.add_argument("--format", choices=("auto", "musdb", "stem-mp4", "mir1k", "folder"))
    g.add_argument("--sources", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   help="comma-separated source names (default drums,bass,other,vocals)")
    g.add_argument("--stem-map", metavar="SRC=FILE,...", help="folder format: file name of each source in a track")
    g.add_argument("--segment", type=float, metavar="SECONDS", help="training segment length")
    g.add_argument("--workers", type=int, metavar="N", help="DataLoader worker processes")
    g.add_argument("--valid-fraction", type=float, metavar="F", help="share of tracks held out for validation")
    g = p.add_argument_group("training")
    g.add_argument("--preset", choices=PRESETS,
                   help="loss preset (default l1+stft+gan; drnn / unet: the masking papers' spectrogram losses)")
    g.add_argument("--steps", type=int, metavar="N", help="total optimizer steps")
    g.add_argument("--minutes", type=float, metavar="M",
                   help="train for about M minutes: the speed of the first steps fixes the step count (at most "
                        "--steps)")
    g.add_argument("--batch-size", type=int, metavar="B", help="global batch size")
    g.add_argument("--lr", type=float, help="generator learning rate")
    g.add_argument("--out", metavar="MODEL_PATH", help="output model (NAME.safetensors + NAME.json)")
    g.add_argument("--run-dir", metavar="DIR", help="checkpoint folder (default MODEL_PATH without suffix + .run)")
    g.add_argument("--log", metavar="FILE", help="JSON-lines log (default RUN_DIR/log.jsonl)")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    g.add_argument("--seed", type=int)
    g.add_argument("--checkpoint-every", type=int, metavar="N")
    g.add_argument("--valid-every", type=int, metavar="N")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--base-model", metavar="MODEL[:K]",
                   help="start from this model (name or path; NAME:K = member K of a bag); sources are mapped "
                        "by name")
    g.add_argument("--finetune-lr", type=float, help="learning rate when fine-tuning (default 5e-5)")
    g.add_argument("--freeze-encoder", type=int, metavar="N", help="freeze the first N encoder layers")
    g = p.add_argument_group("generator")
    g.add_argument("--architecture", metavar="NAME",
                   help=f"generator architecture: {', '.join(n for n in architecture_names() if n != 'bag')} (default hdemucs); size options below are "
                        "HDemucs's, others take --set model.extra=...")
    g.add_argument("--model-channels", type=int, metavar="C", help="HDemucs channels of the first layer")
    g.add_argument("--depth", type=int, help="HDemucs depth")
    g.add_argument("--nfft", type=int, help="HDemucs STFT size")
    g.add_argument("--growth", type=float, help="HDemucs channel growth per layer")
    g = p.add_argument_group("discriminator")
    g.add_argument("--discriminator", choices=("stylemelgan", "mrsd", "both"))
    g.add_argument("--d-channels", type=int, metavar="C", help="discriminator width (lighter D = smaller)")
    g.add_argument("--spectral-norm", action="store_const", const=True, help="spectral norm instead of weight norm")
    g.add_argument("--d-warmup-steps", type=int, metavar="N", help="generator-only steps before D starts")
    g.add_argument("--d-every", type=int, metavar="N", help="update D every N steps")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """Merge defaults, resumed checkpoint, config file, named options and --set overrides."""
    from stemgui.errors import ConfigError
    from stemgui.train import checkpoint as ckpt_io
    from stemgui.train.config import Config, load_config, parse_override

    cfg = load_config(args.config) if args.config else Config()
    explicit: list[tuple[str, object]] = []
    for option, key in OPTION_KEYS.items():
        value = getattr(args, option, None)
        if value is not None:
            explicit.append((key, value))
    if getattr(args, "stem_map", None):
        mapping = {}
        for item in args.stem_map.split(","):
            if "=" not in item:
                raise ConfigError(f"--stem-map entry '{item}' must look like source=file.wav")
            k, v = item.split("=", 1)
            mapping[k.strip()] = v.strip()
        explicit.append(("data.stem_map", mapping))
    if getattr(args, "no_progress", False):
        explicit.append(("train.progress", False))
    explicit.extend(parse_override(text) for text in args.overrides)
    for key, value in explicit:
        cfg.set(key, value, where="command line")
    if args.resume and cfg.train.out:
        out = Path(cfg.train.out).with_suffix(".safetensors")
        run_dir = Path(cfg.train.run_dir) if cfg.train.run_dir else out.with_name(out.stem + ".run")
        latest = ckpt_io.latest_checkpoint(run_dir)
        if latest is not None:
            resumed = Config.from_dict(ckpt_io.read_checkpoint_config(latest), where=str(latest))
            if args.config:
                resumed.update(load_config(args.config).to_dict(), where=args.config)
            for key, value in explicit:
                resumed.set(key, value, where="command line")
            cfg = resumed
    return cfg


def run(args: argparse.Namespace) -> int:
    import sys

    cfg = build_config(args)
    if args.print_config:
        sys.stdout.write(cfg.to_toml())
        return 0
    if not cfg.finetune.base_model:  # a model that cannot run is one line before any data is loaded
        from stemgui import SOURCES
        from stemgui.models.check import check_model_config

        sources = list(cfg.data.sources or SOURCES)
        check_model_config(cfg.model.architecture, sources, cfg.generator_args(), segment=cfg.data.segment)
    from stemgui.train.trainer import train

    result = train(cfg, resume=args.resume)
    if result.out is not None:
        sdr = result.metrics.get("valid_sdr_mean")
        extra = f", validation SDR {sdr:.2f} dB" if isinstance(sdr, (int, float)) else ""
        print(f"wrote {result.out} after {result.steps} steps{extra}", file=sys.stderr)
    return 0
