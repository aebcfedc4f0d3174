"""`stemgui synth-dataset`: render a synthetic multitrack dataset in the MUSDB18-HQ folder layout."""

from __future__ import annotations

import argparse
import time


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
                   help="General MIDI SoundFont (default: $STEMGUI_SOUNDFONT or FluidR3_GM.sf2)")
    p.add_argument("--overwrite", action="store_true", help="re-render songs that already exist")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from stemgui.data.synth import SynthSettings, find_soundfont, synth_dataset

    settings = SynthSettings(
        seconds=float(args.seconds), seed=int(args.seed), subset=args.subset, fmt=args.fmt,
        soundfont=str(find_soundfont(args.soundfont or None)), vocals_dir=args.vocals,
    )
    start = time.perf_counter()
    folders = synth_dataset(args.out, args.songs, settings, jobs=max(1, int(args.jobs)), overwrite=args.overwrite)
    elapsed = time.perf_counter() - start
    audio = len(folders) * settings.seconds
    print(f"wrote {len(folders)} songs ({audio:.0f} s of audio) to {folders[0].parent} in {elapsed:.1f} s "
          f"({audio / max(elapsed, 1e-9):.1f}x real time)", file=sys.stderr)
    return 0
