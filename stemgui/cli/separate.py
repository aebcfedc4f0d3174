"""`stemgui separate`: songs in, one folder of stems per song out.

The song streams in (decoded and resampled block by block) and the stems stream out to disk as regions finish,
so memory does not grow with the song's length.
Each song's folder is assembled under a temporary name and renamed into place when complete: an interrupted
run (Ctrl-C, error, a full disk, kill -9) never leaves a folder that looks finished, and the next run of that
song removes what a killed one left (tests/test_kill9.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from stemgui.refine import REFINE_CHOICES

FORMATS = ("wav", "flac", "mp3")
CLIP_MODES = ("rescale", "clamp")
HEADROOM = 0.99  # a rescaled song peaks here, not at 1.0: no rounding up to full scale, room for mp3's overshoot


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
    p.add_argument("--bit-depth", choices=("16", "24", "32"), default=None,
                   help="wav/flac sample size; 32 = float wav (default: 32 for a float wav song, else 16)")
    p.add_argument("--clip", choices=CLIP_MODES, default="rescale",
                   help="stems above full scale in integer/mp3 output: rescale all stems by one factor (recorded "
                        "in separation.json) or clamp the peaks (default: rescale)")
    p.add_argument("--stems", default=None, help="comma-separated stems to write, e.g. vocals,drums")
    p.add_argument("--two-stems", default=None, metavar="STEM",
                   help="write STEM and no_STEM (= song minus STEM), e.g. --two-stems vocals for karaoke")
    p.add_argument("--exact-sum", action="store_true", help="stems sum exactly to the input (residual -> other)")
    p.add_argument("--refine", choices=REFINE_CHOICES, default="auto",
                   help="share the song's own spectrogram out by the stems: ratio, wiener, vocals (cleaner vocals "
                   "stem), vocals-strict (cleanest, duller), off; auto = what the model card recommends "
                   "(default: auto)")
    p.add_argument("--reference", default=None, metavar="DIR",
                   help="folder with the true stems (<stem>.wav): print SDR per stem")
    p.add_argument("--backend", choices=("auto", "eager", "compile", "onnx"), default="auto",
                   help="how the model runs (default: auto, the fastest valid path; recorded in separation.json)")
    p.add_argument("--precision", choices=("auto", "fp32", "int8", "fp16", "bf16"), default="auto",
                   help="arithmetic precision (default: auto = fp32; fp16/bf16 on CUDA, int8 with eager on a CPU)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stemgui.errors import StemGUIError
    from stemgui.separate import SeparationSettings, Separator

    settings = SeparationSettings(segment=args.segment, overlap=args.overlap, shifts=args.shifts,
                                  batch_size=args.batch_size, device=args.device, seed=args.seed,
                                  exact_sum=args.exact_sum, refine=args.refine)
    separator = Separator.from_path(args.model, settings, backend=args.backend, precision=args.precision)
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


STREAM_BLOCK = 1 << 16  # input frames decoded and resampled at a time
MIN_SECONDS = 1.0  # shorter songs are separated padded with silence (models need a few strides of input)


def separate_one(separator, song: Path, out_root: Path, wanted: list[str], args: argparse.Namespace) -> Path:
    """Separate `song` into `out_root/<song name>/`, streaming every stem to disk; returns that folder.

    The song is streamed too: decoded, resampled and separated block by block (`Separator.separate_stream`),
    so memory does not grow with its length. A first decode-only pass counts its samples exactly (headers
    can lie; mp3/aac lengths are estimates) and rejects a corrupt file before any work starts.
    """
    import time

    import numpy as np
    from tqdm import tqdm

    from stemgui.audio import StreamResampler, audio_info, count_frames, iter_blocks

    started = time.perf_counter()
    info = audio_info(song)
    rate, channels = separator.samplerate, separator.audio_channels
    total = count_frames(song, rate)

    padded = max(total, int(MIN_SECONDS * rate))  # a very short sound is padded with silence, cut after

    def source():
        yield from _exactly(iter_blocks(song, STREAM_BLOCK, samplerate=rate, channels=channels), total, song)
        if padded > total:
            yield np.zeros((channels, padded - total), dtype=np.float32)

    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / song.stem
    _recover_interrupted(out_root, song.stem)
    sources = separator.sources
    two = args.two_stems
    depth = int(args.bit_depth) if args.bit_depth else (32 if args.format == "wav" and _is_float(info) else 16)
    _check_space_for(final, total, info.samplerate / rate, channels, len(wanted), depth, args)
    staging = Path(tempfile.mkdtemp(prefix=f".{song.stem}.partial-{os.getpid()}-", dir=out_root))
    outputs = None
    resamplers: dict[str, StreamResampler] = {}
    try:
        outputs = _Outputs(staging, wanted, args.format, info.samplerate, channels, depth, args.clip)

        def write_region(start: int, end: int, stems: np.ndarray, mix: np.ndarray) -> None:
            if start >= total:  # the silence a very short song was padded with
                return
            if end > total:
                stems, mix, end = stems[..., : total - start], mix[..., : total - start], total
            if start == 0:  # the first region, or an out-of-memory retry starting over: fresh files
                outputs.restart()
                if info.samplerate != rate:
                    resamplers.update({name: StreamResampler(rate, info.samplerate, channels) for name in wanted})
            for name in wanted:
                if two and name == f"no_{two}":
                    block = mix - stems[sources.index(two)]
                else:
                    block = stems[sources.index(name)]
                if name in resamplers:
                    block = resamplers[name].process(block, last=end == total)
                if block.shape[-1]:
                    outputs.write(name, block)

        with tqdm(total=100, desc=song.name[:30], unit="%", file=sys.stderr, leave=True,
                  bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
                  disable=None) as bar:
            def progress(p) -> None:
                bar.n = round(100 * p.fraction, 1)
                if p.message:
                    bar.set_postfix_str(p.message)
                bar.refresh()

            separator.separate_stream(source, padded, progress=progress, on_chunk=write_region, with_mix=True)
        clip = outputs.close(song)
        sidecar = separator.sidecar(song, time.perf_counter() - started)
        sidecar["clip"] = clip
        sidecar["outputs"] = {name: f"{name}.{args.format}" for name in wanted}
        sidecar["input"].update({"samplerate": info.samplerate, "channels": info.channels,
                                 "duration": info.duration})
        (staging / "separation.json").write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
        _move_into_place(staging, final)
        return final
    except BaseException as exc:
        if outputs is not None:
            outputs.abort()
        shutil.rmtree(staging, ignore_errors=True)
        _raise_if_disk_full(exc, final)
        raise


def _is_float(info) -> bool:
    """A song stored as float samples (which may exceed full scale and still be exactly what the artist made)."""
    return info.codec.startswith("pcm_f")


class _Outputs:
    """The stem files of one song, and what is done with samples beyond full scale.

    Float wav keeps every sample. Integer and mp3 output either clamp (written directly, peaks cut) or, by
    default, rescale: all stems are spooled to raw float32 files beside the staging folder's stems, and only
    once the whole song's peak is known are they written out, divided by one common factor (so the stems still
    sum to the song, scaled) when that peak exceeds full scale. Either way one warning says what happened.
    """

    def __init__(self, staging: Path, names: list[str], fmt: str, rate: int, channels: int, depth: int,
                 clip: str) -> None:
        from stemgui.audio import AudioWriter

        self.staging, self.names, self.fmt, self.rate, self.channels, self.depth = (
            staging, names, fmt, rate, channels, depth)
        self.float_output = fmt == "wav" and depth == 32
        self.mode = "none" if self.float_output else clip
        self.writers: dict[str, AudioWriter] = {}
        self.spools: dict[str, object] = {}
        self.restart()

    def restart(self) -> None:
        """(Re)open every stem file empty."""
        self.abort()
        self.peak = 0.0
        self.writers, self.spools = {}, {}
        if self.mode == "rescale":
            self.spools = {name: open(self.staging / f".{name}.f32", "wb") for name in self.names}
        else:
            self.writers = {name: self._writer(name) for name in self.names}

    def _writer(self, name: str):
        from stemgui.audio import AudioWriter

        return AudioWriter(self.staging / f"{name}.{self.fmt}", self.rate, self.channels, bit_depth=self.depth)

    def write(self, name: str, block) -> None:
        import numpy as np

        if block.size:
            self.peak = max(self.peak, float(np.max(np.abs(block))))
        if self.mode == "rescale":
            self.spools[name].write(np.ascontiguousarray(block.T, dtype=np.float32).tobytes())
        elif self.mode == "clamp":
            self.writers[name].write(np.clip(block, -1.0, 1.0))
        else:
            self.writers[name].write(block)

    def close(self, song: Path) -> dict:
        """Finish every stem file; returns the sidecar's record of the peak and what was done about it."""
        import warnings

        import numpy as np

        what = "float wav" if self.float_output else (
            "mp3" if self.fmt == "mp3" else f"{self.depth}-bit {self.fmt}")
        factor = 1.0
        if self.mode == "rescale":
            factor = HEADROOM / self.peak if self.peak > 1.0 else 1.0
            block = 1 << 16
            for name in self.names:
                self.spools[name].close()
                raw = self.staging / f".{name}.f32"
                writer = self.writers[name] = self._writer(name)
                with open(raw, "rb") as f:
                    while True:
                        data = np.fromfile(f, dtype=np.float32, count=block * self.channels)
                        if data.size == 0:
                            break
                        frames = data.reshape(-1, self.channels).T
                        writer.write(frames * np.float32(factor) if factor != 1.0 else frames)
                writer.close()
                raw.unlink()
        else:
            for writer in self.writers.values():
                writer.close()
        if self.peak > 1.0 and self.mode == "rescale":
            warnings.warn(f"{song}: the stems peak at {self.peak:.3f}, above the full scale of {what}; all stems "
                          f"scaled by {factor:.4f} ({20 * np.log10(factor):.1f} dB) to fit (--bit-depth 32 keeps "
                          "float stems, --clip clamp cuts the peaks instead).", UserWarning, stacklevel=2)
        elif self.peak > 1.0 and self.mode == "clamp":
            warnings.warn(f"{song}: the stems peak at {self.peak:.3f}, above the full scale of {what}; peaks "
                          "clamped to full scale (--clip rescale or --bit-depth 32 keeps them).", UserWarning,
                          stacklevel=2)
        return {"mode": self.mode, "output": what, "peak": round(self.peak, 6), "factor": factor}

    def abort(self) -> None:
        for spool in self.spools.values():
            spool.close()
        for writer in self.writers.values():
            writer.abort()


def _exactly(blocks, total: int, song: Path):
    """`blocks` cut or zero-padded to `total` samples; a file that changed under us is an error, not a guess."""
    import numpy as np

    from stemgui.errors import AudioError

    have, rows = 0, 2
    for block in blocks:
        rows = block.shape[0]
        block = block[:, : total - have]
        have += block.shape[1]
        if block.shape[1]:
            yield block
        if have >= total:
            return
    if total - have > 64:  # more than resampler rounding: the file was changed while it was read
        raise AudioError(f"{song}: the file changed while it was being read (decoded {have} of {total} samples).")
    if have < total:
        yield np.zeros((rows, total - have), dtype=np.float32)


def _move_into_place(staging: Path, final: Path) -> None:
    """Replace `final` with the finished `staging` folder so a reader sees the old or the new, never a mix."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp made it 0700; the result is as open as any folder the user makes
    backup = None
    if final.exists():
        backup = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, backup)
    os.replace(staging, final)  # a kill between the two renames leaves only `backup`: see _recover_interrupted
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process: alive
        return True
    return True


def _leftover_pid(name: str, prefix: str) -> int | None:
    """The pid in '.<song>.partial-<pid>-XXXX' or '.<song>.old-<pid>' after `prefix`, or None."""
    try:
        return int(name[len(prefix):].split("-", 1)[0])
    except ValueError:
        return None


def _recover_interrupted(out_root: Path, name: str) -> None:
    """Clean up after a run of `name` that was killed (kill -9, power loss): nothing else can.

    Its staging folders (`.<name>.partial-<pid>-*`) are removed once that pid is gone; a previous folder it had
    moved aside (`.<name>.old-<pid>`) is moved back when no `<name>/` replaced it, else removed.
    """
    import logging

    final = out_root / name
    for leftover in out_root.iterdir():
        for marker in (".partial-", ".old-"):
            prefix = f".{name}{marker}"
            pid = _leftover_pid(leftover.name, prefix) if leftover.name.startswith(prefix) else None
            if pid is None or _pid_alive(pid):
                continue
            if marker == ".old-" and not final.exists():
                os.replace(leftover, final)
                logging.getLogger(__name__).info("%s: restored the stems an interrupted run had moved aside",
                                                 final)
            else:
                shutil.rmtree(leftover, ignore_errors=True)


def _check_space_for(final: Path, frames: int, rate_ratio: float, channels: int, stems: int, depth: int,
                     args: argparse.Namespace) -> None:
    """Refuse before separating when the stems cannot fit: minutes of work would end in a full disk."""
    from stemgui.diskspace import check_free_space

    out_frames = int(frames * rate_ratio) + 1
    per_stem = out_frames * channels * depth // 8 // {"wav": 1, "flac": 2, "mp3": 8}[args.format]
    spool = out_frames * channels * 4 if args.clip == "rescale" and not (args.format == "wav" and depth == 32) else 0
    needed = (stems * spool + per_stem if spool else stems * per_stem) + (1 << 20)
    check_free_space(final, needed)


def _raise_if_disk_full(exc: BaseException, final: Path) -> None:
    """Turn a write that failed (full disk or another I/O error) into one line naming the output folder."""
    from stemgui.diskspace import is_disk_full
    from stemgui.errors import AudioError, StemGUIError

    if not isinstance(exc, (OSError, StemGUIError)):
        return
    kept = " (the previous stems there are unchanged)" if final.exists() else ""
    if is_disk_full(exc, final.parent):
        raise AudioError(f"{final}: the disk is full; nothing was written{kept}.") from exc
    if isinstance(exc, OSError):
        raise AudioError(f"{final}: cannot be written ({exc.strerror or exc}){kept}.") from exc


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
