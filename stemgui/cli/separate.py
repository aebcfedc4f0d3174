"""`stemgui separate`: songs in, one folder of stems per song out.

Stems stream to disk as regions finish, so memory does not grow with song length beyond the decoded input.
Each song's folder is assembled under a temporary name and renamed into place when complete: an interrupted
run (Ctrl-C, error) never leaves a folder that looks finished.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

FORMATS = ("wav", "flac", "mp3")


def register(sub) -> None:
    p = sub.add_parser("separate", help="split songs into stems",
                       description="Split songs into drums, bass, other and vocals; one folder per song.")
    p.add_argument("songs", nargs="+", metavar="SONG", help="audio files (wav, flac, ogg, mp3, m4a, ...)")
    p.add_argument("-o", "--out", default="separated", help="output folder (default: ./separated)")
    p.add_argument("--model", default=None, help="model name or path (default: the bundled default model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    p.add_argument("--shifts", type=int, default=0, help="random-shift passes to average (default: 0)")
    p.add_argument("--overlap", type=float, default=0.25, help="overlap between segments (default: 0.25)")
    p.add_argument("--segment", type=float, default=None, help="segment length in seconds (default: model's)")
    p.add_argument("--batch-size", type=int, default=4, help="segments per forward pass (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random shifts (default: 0)")
    p.add_argument("--format", choices=FORMATS, default="wav", help="output format (default: wav)")
    p.add_argument("--bit-depth", choices=("16", "24", "32"), default="16",
                   help="wav/flac sample size; 32 = float wav (default: 16)")
    p.add_argument("--stems", default=None, help="comma-separated stems to write, e.g. vocals,drums")
    p.add_argument("--two-stems", default=None, metavar="STEM",
                   help="write STEM and no_STEM (= song minus STEM), e.g. --two-stems vocals for karaoke")
    p.add_argument("--exact-sum", action="store_true", help="stems sum exactly to the input (residual -> other)")
    p.add_argument("--reference", default=None, metavar="DIR",
                   help="folder with the true stems (<stem>.wav): print SDR per stem")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stemgui.errors import StemGUIError
    from stemgui.separate import SeparationSettings, Separator

    settings = SeparationSettings(segment=args.segment, overlap=args.overlap, shifts=args.shifts,
                                  batch_size=args.batch_size, device=args.device, seed=args.seed,
                                  exact_sum=args.exact_sum)
    separator = Separator.from_path(args.model, settings)
    wanted = _wanted_stems(args, separator.sources)
    if args.reference and len(args.songs) != 1:
        raise StemGUIError("--reference compares one song with its true stems: pass exactly one SONG")
    out_root = Path(args.out)
    if out_root.exists() and not out_root.is_dir():
        raise StemGUIError(f"{out_root}: output path exists and is not a folder")
    failures = 0
    for song in args.songs:
        try:
            folder = separate_one(separator, Path(song), out_root, wanted, args)
        except StemGUIError as exc:
            print(f"stemgui: error: {exc}", file=sys.stderr)
            failures += 1
            continue
        print(f"{song}: stems written to {folder}", file=sys.stderr)
        if args.reference:
            print_reference_sdr(folder, Path(args.reference), separator.sources, args.format)
    return 1 if failures else 0


def _wanted_stems(args: argparse.Namespace, sources: list[str]) -> list[str]:
    from stemgui.errors import StemGUIError

    if args.two_stems:
        if args.two_stems not in sources:
            raise StemGUIError(f"--two-stems {args.two_stems}: the model has no such stem (it has {', '.join(sources)})")
        return [args.two_stems, f"no_{args.two_stems}"]
    if not args.stems:
        return list(sources)
    wanted = [s.strip() for s in args.stems.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in sources]
    if unknown:
        raise StemGUIError(f"--stems: unknown stem(s) {', '.join(unknown)} (the model has {', '.join(sources)})")
    return wanted


def separate_one(separator, song: Path, out_root: Path, wanted: list[str], args: argparse.Namespace) -> Path:
    """Separate `song` into `out_root/<song name>/`, streaming every stem to disk; returns that folder."""
    import time

    import numpy as np
    from tqdm import tqdm

    from stemgui.audio import AudioWriter, StreamResampler, audio_info, load_audio

    started = time.perf_counter()
    info = audio_info(song)
    wav, _ = load_audio(song, samplerate=separator.samplerate, channels=separator.audio_channels)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / song.stem
    staging = Path(tempfile.mkdtemp(prefix=f".{song.stem}.partial-", dir=out_root))
    sources = separator.sources
    two = args.two_stems
    depth = "float" if args.bit_depth == "32" else int(args.bit_depth)
    writers: dict[str, AudioWriter] = {}
    resamplers: dict[str, StreamResampler] = {}
    try:
        for name in wanted:
            writers[name] = AudioWriter(staging / f"{name}.{args.format}", info.samplerate,
                                        separator.audio_channels, bit_depth=32 if depth == "float" else depth)
            if info.samplerate != separator.samplerate:
                resamplers[name] = StreamResampler(separator.samplerate, info.samplerate, separator.audio_channels)

        def write_region(start: int, end: int, stems: np.ndarray) -> None:
            for name, writer in writers.items():
                if two and name == f"no_{two}":
                    block = wav[:, start:end] - stems[sources.index(two)]
                else:
                    block = stems[sources.index(name)]
                if name in resamplers:
                    block = resamplers[name].process(block, last=end == wav.shape[1])
                if block.shape[-1]:
                    writer.write(block)

        with tqdm(total=100, desc=song.name[:30], unit="%", file=sys.stderr, leave=True,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
                  disable=None) as bar:
            def progress(p) -> None:
                bar.n = round(100 * p.fraction, 1)
                if p.message:
                    bar.set_postfix_str(p.message)
                bar.refresh()

            separator.separate(wav, progress=progress, on_chunk=write_region, keep_output=False)
        for writer in writers.values():
            writer.close()
        sidecar = separator.sidecar(song, time.perf_counter() - started)
        sidecar["outputs"] = {name: f"{name}.{args.format}" for name in wanted}
        sidecar["input"].update({"samplerate": info.samplerate, "channels": info.channels,
                                 "duration": info.duration})
        (staging / "separation.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        _move_into_place(staging, final)
        return final
    except BaseException:
        for writer in writers.values():
            writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, final: Path) -> None:
    """Replace `final` with the finished `staging` folder so a reader sees the old or the new, never a mix."""
    backup = None
    if final.exists():
        backup = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, backup)
    os.replace(staging, final)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def print_reference_sdr(folder: Path, reference: Path, sources: list[str], fmt: str) -> None:
    """SDR (MDX definition, whole track) of each written stem against the true stem in `reference`."""
    from stemgui.audio import load_audio
    from stemgui.data.layout import stem_file
    from stemgui.errors import DatasetError
    from stemgui.eval.metrics import usdr

    rows = []
    for name in sources:
        est_path = folder / f"{name}.{fmt}"
        ref_path = stem_file(reference, name)
        if not est_path.is_file():
            continue
        if ref_path is None:
            raise DatasetError(f"{reference}: no true stem '{name}' (expected {name}.wav or {name}.flac)")
        ref, _ = load_audio(ref_path)
        est, _ = load_audio(est_path)
        n = min(ref.shape[-1], est.shape[-1])
        rows.append((name, float(usdr(ref[None, :, :n], est[None, :, :n])[0])))
    print("stem      SDR (dB)")
    for name, value in rows:
        print(f"{name:<9} {value:7.2f}")
    if rows:
        print(f"{'mean':<9} {sum(v for _, v in rows) / len(rows):7.2f}")
