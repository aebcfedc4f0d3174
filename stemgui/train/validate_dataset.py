"""Check a training dataset folder up front and report every problem at once, reading headers only.

The trainer stops at the first problem it meets (one DatasetError). Someone choosing a folder in the fine-tune
panel wants the whole picture immediately: how many tracks, which stems, how long, at which sample rates, and a
sentence for each thing that would stop training. Only file headers are read (soundfile.info / PyAV metadata),
never samples, so a folder of a hundred songs checks in well under a second. The layout rules (suffixes, stem
files, format detection, MIR-1K's sources) come from stemgui.data.layout, as the trainer's do, so what passes
here trains there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from stemgui.data.layout import MIR1K_SOURCES, STEM_MP4_STREAMS, audio_files, dataset_sources, detect_format, stem_file

MODEL_SAMPLERATE = 44100


@dataclass
class TrackCheck:
    """One usable track: where it is, its stems, rate and length."""

    name: str
    path: Path
    stems: list[str]
    samplerate: int
    duration: float  # seconds


@dataclass
class DatasetCheck:
    """The outcome of check_dataset: usable tracks, blocking problems and informative notes."""

    root: Path
    format: str
    sources: list[str]
    tracks: list[TrackCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # each one stops training
    notes: list[str] = field(default_factory=list)  # worth knowing, not blocking

    @property
    def ok(self) -> bool:
        return bool(self.tracks) and not self.problems

    @property
    def total_duration(self) -> float:
        return sum(t.duration for t in self.tracks)

    @property
    def samplerates(self) -> list[int]:
        return sorted({t.samplerate for t in self.tracks})

    def summary(self) -> str:
        """One line: tracks, stems, durations and rates (what the panel shows under the folder)."""
        if not self.tracks:
            return "no usable tracks"
        durations = [t.duration for t in self.tracks]
        rates = ", ".join(f"{r} Hz" for r in self.samplerates)
        n = len(self.tracks)
        length = (f"{format_seconds(durations[0])}" if n == 1 else
                  f"{format_seconds(min(durations))}–{format_seconds(max(durations))} each, "
                  f"{format_seconds(self.total_duration)} in all")
        return (f"{n} track{'s' if n != 1 else ''} ({self.format}), {len(self.sources)} stems per track "
                f"({', '.join(self.sources)}), {length}, {rates}")


def format_seconds(seconds: float) -> str:
    """3.0 s, 4:05, 1:02:03: short durations stay readable, long ones compact."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def check_dataset(root: str | Path, sources: list[str] | tuple[str, ...] | None = None,
                  segment: float | None = None, subset: str = "train") -> DatasetCheck:
    """Everything about the dataset at `root` that decides whether (and how well) it can train."""
    base = Path(root).expanduser()
    if not base.exists():
        return DatasetCheck(base, "", [], problems=[f"{base}: folder not found"])
    if not base.is_dir():
        return DatasetCheck(base, "", [], problems=[f"{base}: not a folder (choose the folder holding the tracks)"])
    fmt = detect_format(base)
    wanted = dataset_sources(fmt, sources)
    if fmt == "mir1k":
        check = _check_mir1k(base, wanted)
    elif fmt == "stem-mp4":
        check = _check_stem_mp4(base, wanted)
    else:
        check = _check_musdb(base, wanted, subset)
    _add_general_notes(check, segment)
    return check


# ------------------------------------------------------------------------------------------------------- musdb
def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _candidate_tracks(base: Path) -> list[Path]:
    """Folders that hold audio files: `base` itself, its sub-folders, or their sub-folders (as find_tracks)."""
    if audio_files(base):
        return [base]
    direct = [p for p in _subfolders(base) if audio_files(p)]
    if direct:
        return direct
    return [p for s in _subfolders(base) for p in _subfolders(s) if audio_files(p)]


def _check_musdb(root: Path, sources: list[str], subset: str) -> DatasetCheck:
    check = DatasetCheck(root, "MUSDB18-HQ layout", sources)
    base = root
    if subset and (root / subset).is_dir():
        base = root / subset
        others = [p.name for p in _subfolders(root) if p.name != subset and _candidate_tracks(p)]
        if others:
            check.notes.append(f"training uses {subset}/ only (validation tracks are split off it); "
                               f"{', '.join(others)}/ not used")
    candidates = _candidate_tracks(base)
    if not candidates:
        check.problems.append(f"{base}: no tracks found — expected one folder per track holding "
                              f"{', '.join(f'{s}.wav' for s in sources)} (wav or flac)")
        return check
    ignored: list[str] = []
    for folder in candidates:
        found = {name: stem_file(folder, name) for name in sources}
        if not any(found.values()) and stem_file(folder, "mixture") is None:
            ignored.append(folder.name)
            continue
        missing = [name for name, path in found.items() if path is None]
        if missing:
            extra = [p.name for p in audio_files(folder)
                     if p.stem not in sources and p.stem != "mixture"]
            hint = f" (found also {', '.join(extra[:4])})" if extra else ""
            check.problems.append(f"{folder.name}: missing stem{'s' if len(missing) > 1 else ''} "
                                  f"{', '.join(missing)} — expected {missing[0]}.wav or {missing[0]}.flac{hint}")
            continue
        track = _probe_track(folder.name, folder, {name: path for name, path in found.items() if path}, check)
        if track is not None:
            check.tracks.append(track)
    if ignored:
        names = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        text = (f"{len(ignored)} folder{'s' if len(ignored) > 1 else ''} with audio but no file named "
                f"{'/'.join(sources)} or mixture: {names}")
        if check.tracks or check.problems:
            check.notes.append(f"ignored {text}")
        else:
            check.problems.append(f"{base}: no tracks found — {text}")
    return check


def _info(path: Path, check: DatasetCheck, track: str) -> sf._SoundFileInfo | None:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        check.problems.append(f"{track}/{path.name}: cannot read audio ({reason})")
        return None
    if info.frames <= 0:
        check.problems.append(f"{track}/{path.name}: the file holds no audio")
        return None
    return info


def _probe_track(name: str, folder: Path, files: dict[str, Path], check: DatasetCheck) -> TrackCheck | None:
    """Same rate and same length for every stem, as the trainer demands; one problem per mismatch."""
    first: tuple[str, int, int] | None = None
    good = True
    for source, path in files.items():
        info = _info(path, check, name)
        if info is None:
            good = False
            continue
        if first is None:
            first = (path.name, int(info.samplerate), int(info.frames))
            continue
        if info.samplerate != first[1]:
            check.problems.append(f"{name}/{path.name}: sample rate {info.samplerate} Hz differs from "
                                  f"{first[0]} ({first[1]} Hz)")
            good = False
        elif info.frames != first[2]:
            check.problems.append(f"{name}/{path.name}: {info.frames / info.samplerate:.2f} s "
                                  f"({info.frames} samples), but {first[0]} has {first[2]} samples")
            good = False
    if not good or first is None:
        return None
    return TrackCheck(name, folder, list(files), first[1], first[2] / first[1])


# ------------------------------------------------------------------------------------------------------ MIR-1K
def _check_mir1k(root: Path, sources: list[str]) -> DatasetCheck:
    check = DatasetCheck(root, "MIR-1K", sources)
    unknown = [s for s in sources if s not in MIR1K_SOURCES]
    if unknown:
        check.problems.append(f"{root}: MIR-1K has only the stems accompaniment and vocals, not {', '.join(unknown)}")
        return check
    folder = root / "Wavfile"
    files = audio_files(folder)
    if not files:
        check.problems.append(f"{folder}: no .wav or .flac clips found")
        return check
    for path in files:
        info = _info(path, check, "Wavfile")
        if info is None:
            continue
        if info.channels != 2:
            check.problems.append(f"Wavfile/{path.name}: {info.channels} channel(s); MIR-1K clips are stereo "
                                  "(left = accompaniment, right = voice)")
            continue
        check.tracks.append(TrackCheck(path.stem, path, list(sources), int(info.samplerate),
                                       info.frames / info.samplerate))
    from stemgui.data.mir1k import HELD_OUT_SINGERS, is_held_out_singer, singer_of

    held = sum(is_held_out_singer(singer_of(t.path)) for t in check.tracks)
    if held:
        check.notes.append(f"{held} clips of the real-voice check's singers ({', '.join(HELD_OUT_SINGERS)}) are "
                           "left out of training")
    return check


# ----------------------------------------------------------------------------------------------- MUSDB18 .mp4
def _check_stem_mp4(root: Path, sources: list[str]) -> DatasetCheck:
    check = DatasetCheck(root, "MUSDB18 .stem.mp4", sources)
    unknown = [s for s in sources if s not in STEM_MP4_STREAMS]
    if unknown:
        check.problems.append(f"{root}: .stem.mp4 files hold drums, bass, other and vocals, not {', '.join(unknown)}")
        return check
    import av

    for path in sorted(root.rglob("*.stem.mp4")):
        name = path.name[: -len(".stem.mp4")]
        try:
            with av.open(str(path)) as container:
                streams = container.streams.audio
                if len(streams) < 5:
                    check.problems.append(f"{path.name}: {len(streams)} audio streams, a .stem.mp4 needs 5 "
                                          "(mixture, drums, bass, other, vocals)")
                    continue
                rates = {s.rate for s in list(streams)[:5]}
                if len(rates) > 1:
                    check.problems.append(f"{path.name}: its stem streams have different sample rates "
                                          f"({', '.join(str(r) for r in sorted(rates))} Hz)")
                    continue
                seconds = container.duration / 1e6 if container.duration else 0.0
                check.tracks.append(TrackCheck(name, path, list(sources), int(streams[0].rate), seconds))
        except av.FFmpegError as exc:
            check.problems.append(f"{path.name}: cannot open ({exc})")
    return check


# --------------------------------------------------------------------------------------------------- general
def _add_general_notes(check: DatasetCheck, segment: float | None) -> None:
    if not check.tracks:
        if not check.problems:
            check.problems.append(f"{check.root}: no tracks found")
        return
    if len(check.tracks) == 1:
        check.notes.append("only one track: nothing is held out for validation, so there is no validation SDR")
    other_rates = [r for r in check.samplerates if r != MODEL_SAMPLERATE]
    if other_rates:
        check.notes.append(f"audio at {', '.join(f'{r} Hz' for r in other_rates)} is resampled to "
                           f"{MODEL_SAMPLERATE} Hz while training")
    if segment:
        short = [t.name for t in check.tracks if t.duration < segment]
        if short:
            names = ", ".join(short[:3]) + (f" and {len(short) - 3} more" if len(short) > 3 else "")
            check.notes.append(f"{len(short)} track{'s are' if len(short) > 1 else ' is'} shorter than the "
                               f"{segment:g} s training segment and padded with silence: {names}")
