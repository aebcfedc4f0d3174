"""`stemgui info`: what a song file holds, without decoding it."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("info", help="print duration, sample rate, channels and codec of songs")
    p.add_argument("songs", nargs="+", metavar="SONG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from stemgui.audio import audio_info
    from stemgui.errors import StemGUIError

    failures = 0
    for song in args.songs:
        try:
            info = audio_info(song)
        except StemGUIError as exc:
            print(f"stemgui: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        minutes, seconds = divmod(info.duration, 60)
        print(f"{song}: {int(minutes)}:{seconds:06.3f} ({info.frames} frames), {info.samplerate} Hz, "
              f"{info.channels} channel{'s' if info.channels != 1 else ''}, {info.codec} in {info.format}")
    return 1 if failures else 0
