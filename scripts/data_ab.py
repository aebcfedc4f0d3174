#!/usr/bin/env python3
"""Paired A/B of two synth-dataset configurations: same songs' seeds, same training steps and seed, same model.

Each arm renders its own training set with `stemgui synth-dataset` settings A or B (everything else equal:
song seeds, lengths, singers), trains the same generator for the same steps from the same seed, and is then
judged on the same two things: the real-voice check (MIR-1K's held-out singers, GNSDR of vocals and
accompaniment; stemgui.eval.real_voice) and one synthetic test set rendered once with the current default
settings (uSDR per stem, mean over songs); with --instrumental-songs N also N instrumentals (no singing, the tune on
an instrument), where whatever the vocals stem holds is a false voice (its level against the mix, dB). The table goes to OUT/ab.md and OUT/ab.json. Rerunning reuses the
rendered songs and finished models (delete OUT/<arm> to redo an arm).

    .venv/bin/python scripts/data_ab.py --out /work/runs/ab-air \\
        --a "voice_air=exciter" --b "voice_air=lowpass" --songs 60 --steps 1500
    .venv/bin/python scripts/data_ab.py --out /tmp/ab --a a.yaml --b b.yaml    # config files (YAML/JSON tables)

A fine-tune of the bundled model with and without real singing on every 2nd step (one shared training set):

    .venv/bin/python scripts/data_ab.py --out /work/runs/ab-real --base-model resources/models/default.safetensors \\
        --lr 5e-4 --songs 40 --seconds 30 --steps 500 --jobs 2 \\
        --b "train:data.two_stem_dataset=../shared/datasets/mir-1k-subset,train:data.two_stem_every=2"

A smoke run (seconds, proves the plumbing only, its numbers mean nothing):

    .venv/bin/python scripts/data_ab.py --out /tmp/ab-smoke --a production=false --b production=true \\
        --songs 2 --test-songs 1 --seconds 3 --steps 2 --channels 4 --depth 3 --nfft 256 --real-voice-clips 2
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stemgui import SOURCES  # noqa: E402
from stemgui.atomic import atomic_write_text  # noqa: E402

TRAIN_PREFIX = "train:"  # an arm item `train:section.key=value` changes the training config, not the songs


def arm_settings(spec: str) -> tuple[dict, dict]:
    """(generator settings, training settings) of an arm: `key=value[,key=value...]` (training items prefixed
    `train:`, e.g. `train:data.two_stem_every=2`) or a YAML/JSON file of generator settings."""
    from stemgui.cli.synth import parse_sets, read_config

    if spec and Path(spec).is_file():
        return read_config(spec), {}
    items = [item.strip() for item in spec.split(",") if item.strip()]
    train = dict(item[len(TRAIN_PREFIX):].split("=", 1) for item in items if item.startswith(TRAIN_PREFIX))
    synth = [item for item in items if not item.startswith(TRAIN_PREFIX)]
    return (parse_sets(synth) if synth else {}), train


def render(out: Path, songs: int, seconds: float, seed: int, subset: str, values: dict, jobs: int) -> Path:
    from stemgui.data.synth import SynthSettings, settings_from, synth_dataset

    settings = settings_from(SynthSettings(seconds=seconds, seed=seed, subset=subset), values)
    synth_dataset(out, songs, settings, jobs=jobs, progress=False)
    return out


def train_arm(dataset: Path, model_out: Path, args: argparse.Namespace, train_values: dict | None = None) -> Path:
    """The same generator (or --base-model), steps, batch and seed for both arms; only the arm's data or
    `train_values` (section.key -> value) differ."""
    from stemgui.train.config import Config
    from stemgui.train.trainer import train

    if model_out.is_file():
        return model_out
    cfg = Config()
    cfg.data.dataset = str(dataset)
    cfg.data.segment = args.segment
    cfg.data.valid_fraction = 0.0  # judged below on the shared sets, not on a split of the arm's own data
    cfg.model.channels, cfg.model.depth, cfg.model.nfft = args.channels, args.depth, args.nfft
    cfg.loss.preset = args.preset
    cfg.optim.lr = args.lr
    cfg.optim.betas = [0.9, 0.999]
    cfg.optim.ema_decay = args.ema
    cfg.loss.rms_warmup_steps = min(args.steps, 1000)
    cfg.train.steps = args.steps
    cfg.train.batch_size = args.batch
    cfg.train.seed = args.seed
    cfg.train.out = str(model_out)
    cfg.train.checkpoint_every = max(1, min(500, args.steps))
    cfg.train.valid_every = args.steps + 1
    cfg.train.threads = args.threads
    cfg.train.progress = False
    if args.base_model:  # a fine-tune of an existing model: its own architecture and size, lr as given
        cfg.finetune.base_model = str(args.base_model)
        cfg.finetune.lr = args.lr
        cfg.loss.rms_warmup_steps = 0  # a trained model does not start from silence
    for key, value in (train_values or {}).items():
        cfg.set(key, yaml_value(value), "arm")
    return Path(train(cfg, resume=(model_out.with_suffix(".run") / "latest.json").is_file()).out)


def yaml_value(text: str):
    """A command-line value as YAML reads it (numbers, booleans, strings)."""
    import yaml

    return yaml.safe_load(text)


def vocals_on_instrumentals(separator, songs: Path) -> float:
    """Mean over the instrumental songs of the vocals estimate's level against the mixture (dB; a silent vocals
    stem would be -inf, so each song's level is floored at -80 dB): the melody a model mistakes for a voice."""
    from stemgui.data.layout import find_tracks, read_mixture

    levels = []
    for track in find_tracks(songs, "test"):
        mix, _ = read_mixture(track)
        vocals = np.asarray(separator.separate(mix))[separator.sources.index("vocals"), ..., : mix.shape[-1]]
        ratio = float(np.mean(np.square(vocals, dtype=np.float64)) / max(np.mean(np.square(mix, dtype=np.float64)), 1e-20))
        levels.append(max(-80.0, 10 * np.log10(max(ratio, 1e-20))))
    return round(float(np.mean(levels)), 2)


def judge(model: Path, test_set: Path, args: argparse.Namespace, instrumentals: Path | None = None) -> dict:
    """Real-voice GNSDR, the synthetic test set's mean uSDR per stem and, given `instrumentals`, the vocals
    stem's level on songs without singing."""
    from stemgui.data.layout import find_tracks, read_mixture, read_stems
    from stemgui.eval import bsseval, real_voice
    from stemgui.eval.metrics import usdr
    from stemgui.separate import Separator

    separator = Separator.from_path(model)
    rv = real_voice.evaluate_separator(separator, real_voice.clips_from(args.mir1k or None, args.real_voice_clips))
    per_song, drums_in_vocals = [], []
    for track in find_tracks(test_set, "test"):
        stems, _ = read_stems(track)
        mix, _ = read_mixture(track)
        est = np.asarray(separator.separate(mix))[..., : stems.shape[-1]]
        order = [separator.sources.index(s) for s in SOURCES]
        per_song.append(usdr(stems, est[order]))
        refs, ests = bsseval.prepare(stems.transpose(0, 2, 1), est[order].transpose(0, 2, 1))
        leak = bsseval.leakage(refs, bsseval.distortion_filters(refs, ests)[0])
        drums_in_vocals.append(leak[SOURCES.index("vocals"), SOURCES.index("drums")])
    synthetic = {name: round(float(np.mean([s[i] for s in per_song])), 3) for i, name in enumerate(SOURCES)}
    out = {"real_voice": rv.summary(), "synthetic_usdr": synthetic, "synthetic_songs": len(per_song),
           "synthetic_drums_in_vocals_db": round(float(np.nanmean(drums_in_vocals)), 2),
           "synthetic_usdr_per_song": [[round(float(v), 4) for v in song] for song in per_song],
           "synthetic_drums_in_vocals_per_song": [round(float(v), 4) for v in drums_in_vocals]}
    if instrumentals is not None:
        out["vocals_on_instrumentals_db"] = vocals_on_instrumentals(separator, instrumentals)
    return out


def table(arms: dict[str, dict]) -> str:
    leak = all(arm["scores"].get("vocals_on_instrumentals_db") is not None for arm in arms.values())
    drums = all(arm["scores"].get("synthetic_drums_in_vocals_db") is not None for arm in arms.values())
    head = ("| arm | settings | real-voice vocals GNSDR | real-voice accomp. GNSDR | "
            + " | ".join(f"synthetic {s} uSDR" for s in SOURCES) + " |"
            + (" drums in synthetic vocals (dB, lower is better) |" if drums else "")
            + (" vocals on instrumentals (dB, lower is better) |" if leak else ""))
    lines = [head, "|---|---|" + "---:|" * (2 + len(SOURCES) + drums + leak)]

    def row(scores: dict) -> list[float]:
        g, syn = scores["real_voice"]["gnsdr"], scores["synthetic_usdr"]
        values = [g["vocals"], g["accompaniment"], *(syn[s] for s in SOURCES)]
        values += [scores["synthetic_drums_in_vocals_db"]] if drums else []
        return values + ([scores["vocals_on_instrumentals_db"]] if leak else [])

    for name, arm in arms.items():
        settings = ", ".join(f"{k}={v}" for k, v in arm["settings"].items()) or "defaults"
        lines.append(f"| {name} | {settings} | " + " | ".join(f"{v:.2f}" for v in row(arm["scores"])) + " |")
    if {"A", "B"} <= set(arms):
        diff = [b - a for a, b in zip(row(arms["A"]["scores"]), row(arms["B"]["scores"]))]
        lines.append("| B - A | | " + " | ".join(f"{v:+.2f}" for v in diff) + " |")
    return "\n".join(lines) + "\n"


def intervals(arms: dict[str, dict]) -> list[str]:
    """B against A on the synthetic test songs: the paired bootstrap 95 % interval of each column (one line
    each); empty unless both arms kept their per-song scores."""
    from stemgui.study.stats import describe, paired_bootstrap

    a, b = (arms.get(name, {}).get("scores", {}) for name in ("A", "B"))
    if not (a.get("synthetic_usdr_per_song") and b.get("synthetic_usdr_per_song")):
        return []
    lines = []
    for i, source in enumerate(SOURCES):
        pick = [[song[i] for song in arm["synthetic_usdr_per_song"]] for arm in (b, a)]
        lines.append("- " + describe(paired_bootstrap(*pick), f"B's synthetic {source} uSDR", "A"))
    pick = [arm["synthetic_drums_in_vocals_per_song"] for arm in (b, a)]
    lines.append("- " + describe(paired_bootstrap(*pick), "B's drums in the synthetic vocals (lower is cleaner)", "A"))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="working folder (datasets, models, table)")
    p.add_argument("--a", default="", help="arm A settings: key=value,... or a YAML/JSON file (default: defaults)")
    p.add_argument("--b", required=True, help="arm B settings: key=value,... or a YAML/JSON file")
    p.add_argument("--songs", type=int, default=40, help="training songs per arm (default 40)")
    p.add_argument("--test-songs", type=int, default=8, help="synthetic test songs, shared (default 8)")
    p.add_argument("--instrumental-songs", type=int, default=0,
                   help="also judge the vocals stem on this many instrumentals (no singing), shared (default 0)")
    p.add_argument("--seconds", type=float, default=30.0, help="song length (default 30)")
    p.add_argument("--steps", type=int, default=1000, help="training steps per arm (default 1000)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--segment", type=float, default=2.0)
    p.add_argument("--lr", type=float, default=1e-2, help="G learning rate (scripts/train_default.sh: 1e-2)")
    p.add_argument("--ema", type=float, default=0.99,
                   help="EMA decay of G's weights (default 0.99 as scripts/train_default.sh; 0.999 barely moves "
                        "in a short run)")
    p.add_argument("--preset", default="l1+stft", help="loss preset (default l1+stft: no GAN noise in a short A/B)")
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--nfft", type=int, default=4096)
    p.add_argument("--seed", type=int, default=42, help="training seed, the same for both arms")
    p.add_argument("--data-seed", type=int, default=1, help="song seeds of the training sets (both arms)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--jobs", type=int, default=1, help="processes rendering songs")
    p.add_argument("--base-model", type=Path, default=None,
                   help="fine-tune this model in both arms (its own size; --lr is the fine-tuning rate)")
    p.add_argument("--mir1k", default="", help="MIR-1K folder (default: $STEMGUI_MIR1K or the shared copy)")
    p.add_argument("--real-voice-clips", type=int, default=0, help="0 = every held-out clip")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from stemgui.errors import StemGUIError

    try:
        started = time.perf_counter()
        out: Path = args.out
        test_set = render(out / "test-set", args.test_songs, args.seconds, 1000, "test", {}, args.jobs)
        instrumentals = (render(out / "instrumental-set", args.instrumental_songs, args.seconds, 1001, "test",
                                {"instrumental": 1.0}, args.jobs) if args.instrumental_songs else None)
        arms: dict[str, dict] = {}
        rendered: dict[str, Path] = {}  # arms with the same generator settings share one training set
        for name, spec in (("A", args.a), ("B", args.b)):
            values, train_values = arm_settings(spec)
            key = json.dumps(values, sort_keys=True)
            if key not in rendered:
                rendered[key] = render(out / name / "data", args.songs, args.seconds, args.data_seed, "train",
                                       values, args.jobs)
            model = train_arm(rendered[key], out / name / "model.safetensors", args, train_values)
            arms[name] = {"settings": {**values, **{TRAIN_PREFIX + k: v for k, v in train_values.items()}},
                          "model": str(model), "scores": judge(model, test_set, args, instrumentals)}
            print(f"data_ab: arm {name} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    except StemGUIError as exc:
        print(f"data_ab: {exc}", file=sys.stderr)
        return 1
    setup = {"base_model": str(args.base_model) if args.base_model else None}
    setup |= {k: getattr(args, k) for k in ("songs", "test_songs", "instrumental_songs", "seconds", "steps", "batch",
                                           "segment", "lr", "preset", "ema", "channels", "depth", "nfft", "seed",
                                           "data_seed")}
    report = {"setup": setup, "arms": arms, "wall_s": round(time.perf_counter() - started, 1)}
    atomic_write_text(out / "ab.json", json.dumps(report, indent=1))
    notes = ["Paired: same song seeds, training seed, steps and model; only the generator or training settings "
             "differ. Real voice: MIR-1K held-out singers, GNSDR (dB). Synthetic: uSDR (dB), mean over "
             f"{arms['A']['scores']['synthetic_songs']} test songs rendered with the default settings. Drums in "
             "vocals: the drums' part of the vocals estimate against its voice part (stemgui.eval.bsseval.leakage), "
             "mean over the test songs."]
    if args.instrumental_songs:
        notes.append(f"Vocals on instrumentals: the vocals estimate's level against the mix on {args.instrumental_songs} "
                     "songs without singing (-80 dB floor), mean over songs.")
    paired = intervals(arms)
    if paired:
        notes += ["", "Paired over the synthetic test songs (bootstrap 95 % intervals of B - A):", *paired]
    md = table(arms) + "\n" + "\n".join(notes) + f"\nSetup: {json.dumps(setup)}\n"
    atomic_write_text(out / "ab.md", md)
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
