"""`stemgui synth-dataset`: render a synthetic multitrack dataset in the MUSDB18-HQ folder layout."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth-dataset",
        help="render generated songs (FluidSynth + real MIR-1K singing) as MUSDB18-HQ-style stems",
        description="Render generated arrangements into OUT/<subset>/<song>/{mixture,drums,bass,other,vocals}.wav "
        "(44.1 kHz stereo; the mixture is exactly the sum of the stems). Finished songs with the same "
        "settings are kept, so an interrupted run resumes.",
    )
    p.add_argument("out", metavar="OUT", help="dataset root folder (created if missing)")
    p.add_argument("--songs", type=int, default=10, help="number of songs (default 10)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of each song in seconds (default 30)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed; song i uses seed (SEED, i) (default 0)")
    p.add_argument("--subset", choices=("train", "test", "valid"), default="train",
                   help="subfolder; test uses held-out MIR-1K singers (default train)")
    p.add_argument("--jobs", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--format", dest="fmt", choices=("float", "pcm16"), default="float",
                   help="sample format of the WAV files: 32-bit float or 16-bit (both sum exactly; default float)")
    p.add_argument("--vocals", metavar="DIR", default="",
                   help="MIR-1K folder (default: $STEMGUI_MIR1K or ../shared/datasets/mir-1k-subset)")
    p.add_argument("--soundfont", metavar="SF2", default="",
                   help="General MIDI SoundFont(s), comma-separated, one drawn per song (default: $STEMGUI_SOUNDFONT, "
                   "or FluidR3_GM.sf2 plus MuseScore General when installed)")
    p.add_argument("--config", metavar="FILE", default="",
                   help="YAML/JSON table of generator settings (the names --set takes), e.g. from scripts/data_ab.py")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="one generator setting: production (true/false), drums (soundfont|recorded|mixed), "
                   "voice_air (exciter|fold|lowpass|mixed|none), doubling, harmonies, lufs_min, lufs_max, instrumental "
                   "(share of songs without singing, 0-1); repeatable")
    p.add_argument("--overwrite", action="store_true", help="re-render songs that already exist")
    p.set_defaults(func=run)


def read_config(path: str) -> dict:
    """A generator-settings table from a YAML or JSON file; DatasetError naming the file otherwise."""
    import yaml

    from stemgui.errors import DatasetError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read the synth config ({exc}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a synth config is a table of settings (name: value).")
    return data


def parse_sets(items: list[str]) -> dict:
    from stemgui.errors import DatasetError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DatasetError(f"--set {item!r}: expected KEY=VALUE.")
        out[key.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    from stemgui.data.synth import SynthSettings, settings_from, soundfonts, synth_dataset

    values = read_config(args.config) if args.config else {}
    values.update(parse_sets(args.sets))
    base = SynthSettings(seconds=float(args.seconds), seed=int(args.seed), subset=args.subset, fmt=args.fmt,
                         soundfont=",".join(str(f) for f in soundfonts(args.soundfont)) if args.soundfont else "",
                         vocals_dir=args.vocals)
    settings = settings_from(base, values)
    start = time.perf_counter()
    folders = synth_dataset(args.out, args.songs, settings, jobs=max(1, int(args.jobs)), overwrite=args.overwrite)
    elapsed = time.perf_counter() - start
    audio = len(folders) * settings.seconds
    print(f"wrote {len(folders)} songs ({audio:.0f} s of audio) to {folders[0].parent} in {elapsed:.1f} s "
          f"({audio / max(elapsed, 1e-9):.1f}x real time)", file=sys.stderr)
    return 0
