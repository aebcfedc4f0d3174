#!/usr/bin/env python3
"""DRNN on MIR-1K as in Huang et al. (ISMIR 2014 / TASLP 2015): train on singers given by name, report GNSDR /
GSIR / GSAR on the other singers next to the mixture and ideal-ratio-mask baselines.

The split is by singer names, so the paper's split (train abjones + amy, test the other 17 singers) runs
unchanged on the full dataset:

    .venv/bin/python scripts/drnn_mir1k.py --dataset MIR-1K --train-singers abjones,amy --minutes 600

The training and validation clips are linked into `<out>.split/` (MIR-1K layout: `Wavfile/` for training,
`valid/Wavfile/` for validation) and trained through the ordinary trainer (`stemgui.train.trainer.train`,
architecture `drnn`, preset `drnn`, 16 kHz mono). Evaluation follows the paper: each test clip's mixture is
the sum of its two channels; BSS Eval on the whole clip (one frame, 512-tap distortion filters; StemGUI's
museval-compatible BSS Eval v4 with the clip as the window); NSDR = SDR(estimate) - SDR(mixture); GNSDR,
GSIR, GSAR are means weighted by clip length.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def singer(path: Path) -> str:
    return path.name.split("_")[0]


def clips(dataset: Path) -> list[Path]:
    folder = dataset / "Wavfile" if (dataset / "Wavfile").is_dir() else dataset
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac"))


def link_split(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for path in files:
        (folder / path.name).symlink_to(path.resolve())


def train_model(args, train_files, valid_files) -> Path:
    from stemgui.train.config import Config
    from stemgui.train.trainer import train

    split = Path(args.out).with_suffix(".split")
    link_split(train_files, split / "Wavfile")
    link_split(valid_files, split / "valid" / "Wavfile")
    cfg = Config()
    cfg.data.dataset, cfg.data.format, cfg.data.valid_subset = str(split), "mir1k", "valid" if valid_files else ""
    cfg.data.valid_fraction = 0.0
    cfg.data.mir1k_held_out_singers = True  # the split is given by singer names here
    cfg.data.segment = args.segment
    cfg.data.valid_seconds = 4.0
    cfg.model.architecture = "drnn"
    cfg.model.extra = {"hidden": args.hidden, "recurrent": args.recurrent, "context": args.context,
                       "segment": args.segment}
    cfg.loss.preset = "drnn"
    cfg.loss.divergence = args.divergence
    cfg.loss.discriminative = args.discriminative
    cfg.augment.remix = False  # voice and accompaniment of the same clip, circularly shifted against each other
    cfg.augment.shift = 0.0
    cfg.augment.circular_shift = True
    cfg.augment.channel_swap = False
    cfg.optim.lr = args.lr
    cfg.optim.ema_decay = 0.0
    cfg.train.steps = args.steps
    cfg.train.minutes = args.minutes
    cfg.train.batch_size = args.batch_size
    cfg.train.out = str(args.out)
    cfg.train.valid_every = max(1, args.steps // 4)
    cfg.train.checkpoint_every = 200
    cfg.train.log_every = 20
    cfg.train.threads = args.threads
    result = train(cfg)
    return result.out


def bss(refs: np.ndarray, ests: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-clip SDR, SIR, SAR (sources,) of mono (sources, samples) signals."""
    from stemgui.eval.bsseval import evaluate

    length = refs.shape[-1]
    sdr, _, sir, sar = evaluate(refs[..., None], ests[..., None], win=length, hop=length)
    return sdr[:, 0], sir[:, 0], sar[:, 0]


def evaluate_clips(model, files: list[Path]) -> dict:
    from stemgui.eval.metrics import gnsdr
    from stemgui.models.masking import istft, stft

    order = [model.sources.index(s) for s in ("vocals", "accompaniment")]
    rows: dict[str, list] = {"drnn": [], "mixture": [], "irm": []}
    lengths = []
    for path in files:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        assert rate == model.samplerate, (path, rate)
        refs = np.stack([audio[:, 1], audio[:, 0]])  # vocals (right), accompaniment (left)
        mix = refs.sum(axis=0)
        with torch.inference_mode():
            est = model(torch.from_numpy(mix)[None, None])[0, :, 0].numpy()[order]
            spec = stft(torch.from_numpy(refs), model.nfft, model.hop)
            mix_spec = stft(torch.from_numpy(mix), model.nfft, model.hop)
            mags = spec.abs()
            irm = (mags / mags.sum(0).clamp_min(1e-12)) * mix_spec
            irm_est = istft(irm, model.nfft, model.hop, mix.shape[-1]).numpy()
        base = bss(refs, np.stack([mix, mix]))
        for name, values in (("drnn", bss(refs, est)), ("mixture", base), ("irm", bss(refs, irm_est))):
            rows[name].append(np.stack([values[0] - base[0], values[1], values[2], values[0]]))  # NSDR SIR SAR SDR
        lengths.append(mix.shape[-1])
    weights = np.asarray(lengths, dtype=np.float64)
    report = {}
    for name, values in rows.items():
        table = np.stack(values)  # (clips, 4, sources)
        entry = {}
        for s, source in enumerate(("vocals", "accompaniment")):
            entry[source] = {"GNSDR": float(gnsdr(table[:, 0, s:s + 1], weights)[0]),
                             "GSIR": float(gnsdr(table[:, 1, s:s + 1], weights)[0]),
                             "GSAR": float(gnsdr(table[:, 2, s:s + 1], weights)[0]),
                             "mean SDR": float(np.nanmean(table[:, 3, s]))}
        report[name] = entry
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, default=REPO.parent / "shared" / "datasets" / "mir-1k-subset")
    p.add_argument("--train-singers", default="abjones,amy", help="comma-separated singer names (file prefixes)")
    p.add_argument("--valid-singers", default="", help="singers held out for the trainer's validation")
    p.add_argument("--test-singers", default="", help="default: every singer not used for training/validation")
    p.add_argument("--max-test-clips-per-singer", type=int, default=0, help="0 = all (the paper)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "drnn_mir1k" / "drnn.safetensors")
    p.add_argument("--steps", type=int, default=100000)
    p.add_argument("--minutes", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--segment", type=float, default=4.0)
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--recurrent", type=int, default=2)
    p.add_argument("--context", type=int, default=1)
    p.add_argument("--divergence", default="mse")
    p.add_argument("--discriminative", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--eval-only", action="store_true", help="evaluate --out without training")
    p.add_argument("--report", type=Path, default=None, help="JSON report (default <out>.eval.json)")
    args = p.parse_args(argv)

    from stemgui.models.card import load_model

    files = clips(args.dataset)
    names = lambda text: {s.strip() for s in text.split(",") if s.strip()}  # noqa: E731
    train_set, valid_set = names(args.train_singers), names(args.valid_singers)
    test_set = names(args.test_singers) or {singer(f) for f in files} - train_set - valid_set
    train_files = [f for f in files if singer(f) in train_set]
    valid_files = [f for f in files if singer(f) in valid_set]
    test_files = [f for f in files if singer(f) in test_set]
    if args.max_test_clips_per_singer:
        kept: dict[str, int] = {}
        test_files = [f for f in test_files
                      if kept.setdefault(singer(f), 0) < args.max_test_clips_per_singer
                      and not kept.__setitem__(singer(f), kept[singer(f)] + 1)]
    print(f"train {len(train_files)} clips ({', '.join(sorted({singer(f) for f in train_files}))}), valid "
          f"{len(valid_files)}, test {len(test_files)} ({len(test_set)} singers)", file=sys.stderr)
    if not train_files and not args.eval_only:
        raise SystemExit("no training clips: check --train-singers against the file names")
    started = time.perf_counter()
    out = args.out if args.eval_only else train_model(args, train_files, valid_files)
    train_s = time.perf_counter() - started
    model, card = load_model(out)
    started = time.perf_counter()
    report = evaluate_clips(model, test_files)
    report["setup"] = {"train_singers": sorted({singer(f) for f in train_files}), "train_clips": len(train_files),
                       "valid_singers": sorted(valid_set), "test_singers": sorted(test_set),
                       "test_clips": len(test_files), "steps": card["training"].get("steps"),
                       "train_wall_s": round(train_s, 1), "eval_wall_s": round(time.perf_counter() - started, 1),
                       "model": card["args"], "losses": card["training"].get("losses")}
    target = args.report or Path(out).with_suffix(".eval.json")
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
