"""`stemgui remix`: render a mix (karaoke, acapella, practice tracks) from a folder of separated stems.

Uses the very mixer of the app (`stemgui.mix.render_mix`) and the app's mix writer, so the app's "mix as you
hear it" export and this command write the same samples for the same settings. Tempo and transpose go through
Rubber Band, as in the app's export.
"""

from __future__ import annotations

import argparse
from pathlib import Path

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
PRESET_CHOICES = ("karaoke", "acapella", "drumless", "bassless", "all")


def register(sub) -> None:
    p = sub.add_parser("remix", help="render a mix (karaoke, acapella, practice) from separated stems",
                       description="Mix the stems of a folder written by `stemgui separate` (one <stem>.wav/.flac/"
                                   ".mp3 per stem) with volumes, mutes, pans, tempo and transpose, as the app does.")
    p.add_argument("stems_dir", metavar="STEMS_DIR", help="folder with one audio file per stem")
    p.add_argument("--preset", choices=PRESET_CHOICES, help="start from a preset (default: all stems)")
    p.add_argument("--gain", action="append", default=[], metavar="STEM=DB", help="volume in dB, e.g. vocals=-6")
    p.add_argument("--mute", action="append", default=[], metavar="STEM", help="mute a stem (repeatable)")
    p.add_argument("--solo", action="append", default=[], metavar="STEM", help="solo a stem (repeatable)")
    p.add_argument("--pan", action="append", default=[], metavar="STEM=P", help="pan -1 (left) .. 1 (right)")
    p.add_argument("--tempo", type=float, default=1.0, help="speed, 0.5-1.5 (0.9 = 90%%: 1/0.9 as long)")
    p.add_argument("--transpose", type=float, default=0.0, help="semitones, -12..12 (fractions are cents)")
    p.add_argument("--cents", type=float, default=0.0, help="added to --transpose, in cents")
    p.add_argument("--loop", nargs=2, type=float, metavar=("A", "B"), help="only seconds A..B of the song")
    p.add_argument("--bit-depth", default="24", choices=("16", "24", "float"), help="for wav/flac")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file: .wav, .flac or .mp3")
    p.add_argument("-y", "--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def find_stems(folder: Path) -> list[Path]:
    """The stem files of a separated folder, in the app's lane order (drums, bass, other, vocals, then others)."""
    from stemgui import SOURCES
    from stemgui.errors import AudioError

    if not folder.is_dir():
        raise AudioError(f"{folder}: no such folder.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith("."))
    by_name: dict[str, Path] = {}
    for f in files:
        by_name.setdefault(f.stem, f)
    by_name.pop("mix", None)
    if not by_name:
        raise AudioError(f"{folder}: holds no stems (expected drums.wav, bass.wav, ... as `stemgui separate` writes).")
    order = [n for n in SOURCES if n in by_name] + sorted(n for n in by_name if n not in SOURCES)
    return [by_name[n] for n in order]


def _pairs(values: list[str], what: str, names: list[str]) -> dict[str, float]:
    from stemgui.errors import StemGUIError

    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep:
            raise StemGUIError(f"--{what} {item!r}: expected STEM=VALUE, e.g. vocals=-6")
        _check_name(name, what, names)
        try:
            out[name] = float(value)
        except ValueError:
            raise StemGUIError(f"--{what} {item!r}: {value!r} is not a number") from None
    return out


def _check_name(name: str, what: str, names: list[str]) -> None:
    from stemgui.errors import StemGUIError

    if name not in names:
        raise StemGUIError(f"--{what}: no stem {name!r} in the folder (it has {', '.join(names)})")


def lanes_from_args(args: argparse.Namespace, names: list[str]):
    """The LaneMix per stem for the command's options (preset first, then gains, pans, mutes and solos)."""
    from stemgui.mix import PRESET_ALIASES, LaneMix, apply_preset

    lanes = [LaneMix() for _ in names]
    if args.preset:
        lanes = apply_preset(PRESET_ALIASES[args.preset], names, lanes)
    gains, pans = _pairs(args.gain, "gain", names), _pairs(args.pan, "pan", names)
    for flag in ("mute", "solo"):
        for n in getattr(args, flag):
            _check_name(n, flag, names)
    out = []
    for name, lane in zip(names, lanes):
        changes = {}
        if name in gains:
            changes["gain"] = float(10 ** (gains[name] / 20))
        if name in pans:
            changes["pan"] = max(-1.0, min(1.0, pans[name]))
        if name in args.mute:
            changes["mute"] = True
        if name in args.solo:
            changes["solo"] = True
        out.append(lane.with_(**changes))
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np

    from stemgui.audio import load_audio
    from stemgui.errors import AudioError, StemGUIError
    from stemgui.gui.export import FORMATS, export_mix
    from stemgui.mix import Playback

    out = Path(args.output)
    if out.suffix.lstrip(".").lower() not in FORMATS:
        raise AudioError(f"{out}: choose a .wav, .flac or .mp3 output.")
    if out.exists() and not args.overwrite:
        raise StemGUIError(f"{out}: already exists (pass -y to replace it).")
    files = find_stems(Path(args.stems_dir))
    names = [f.stem for f in files]
    stems, rate = [], None
    for f in files:
        wav, sr = load_audio(f, samplerate=rate, channels=2)  # every stem at the first one's rate
        rate = rate or sr
        stems.append(wav)
    frames = min(s.shape[1] for s in stems)
    audio = np.stack([s[:, :frames] for s in stems]).astype(np.float32, copy=False)
    lanes = lanes_from_args(args, names)
    try:
        playback = Playback(args.tempo, args.transpose + args.cents / 100).checked()
    except ValueError as exc:
        raise StemGUIError(str(exc)) from None
    region = None
    if args.loop:
        a, b = sorted(args.loop)
        region = (max(0, int(round(a * rate))), min(frames, int(round(b * rate))))
        if region[1] - region[0] < 1:
            raise StemGUIError(f"--loop {args.loop[0]:g} {args.loop[1]:g}: the region is empty")
    depth = "float" if args.bit_depth == "float" else int(args.bit_depth)
    path = export_mix(audio, lanes, rate, out, region, bit_depth=depth, confirm_overwrite=lambda _p: True,
                      playback=playback)
    heard = [n for n, lane in zip(names, lanes) if not lane.mute and (lane.solo or not any(x.solo for x in lanes))]
    print(f"{path}: {' + '.join(heard) or 'silence'}, tempo {playback.tempo:g}, transpose {playback.semitones:+g}",
          file=sys.stderr)
    return 0
