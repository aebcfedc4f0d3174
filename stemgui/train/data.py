"""Training data: multitrack datasets read lazily as random segments.

Supported layouts: MUSDB18-HQ folders (`<track>/{drums,bass,other,vocals}.wav`), MUSDB18 `.stem.mp4` (stream 0
mixture, 1-4 drums/bass/other/vocals, decoded with PyAV), MIR-1K (16 kHz stereo clips, left = accompaniment,
right = voice) and any folder of multitracks with a `stem_map` naming each source's file. Only track metadata
is read up front; each sample seeks into the stem files for just its segment, resamples to the model rate
when needed, and the mixture is the sum of the (augmented) stems. A sample is a pure function of
(seed, index), which makes resume and DDP exact without saving loader state.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from stemgui.data.layout import (
    ACCOMPANIMENT,
    ACCOMPANIMENT_PARTS,
    MIR1K_SOURCES,
    STEM_MP4_STREAMS,
    audio_files,
    detect_format,
    find_tracks,
    stem_file,
)
from stemgui.data.layout import dataset_sources as layout_sources
from stemgui.errors import DatasetError
from stemgui.train.augment import augment_stems, boost_source, circular_shift, plan_segment, solo_sources
from stemgui.train.config import Config

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class StemRef:
    """Where one source of a track lives: a file, optionally one channel of it, or one stream of a .stem.mp4."""

    path: Path
    channel: int | None = None
    stream: int | None = None
    extra: tuple[Path, ...] = ()  # more files summed into this source (accompaniment = drums + bass + other)
    extra_streams: tuple[int, ...] = ()  # likewise, more streams of the same .stem.mp4


@dataclass
class Track:
    name: str
    stems: dict[str, StemRef]
    samplerate: int
    frames: int  # at the file's rate
    file_channels: dict[str, int] = field(default_factory=dict)

    def frames_at(self, rate: int) -> int:
        return int(self.frames * rate // self.samplerate)


# --------------------------------------------------------------------------------------------------- discovery
def dataset_sources(root: Path, cfg: Config) -> list[str]:
    """The sources a dataset provides: MIR-1K is two-stem; others use data.sources."""
    return layout_sources(detect_format(root, cfg.data.format, cfg.data.stem_map), cfg.data.sources)


def discover_tracks(root: str | Path, cfg: Config, subset: str | None) -> list[Track]:
    """Every track of the dataset (or its `subset` folder), with metadata checked; raises DatasetError."""
    base = Path(root)
    if not base.is_dir():
        raise DatasetError(f"{base}: dataset folder not found")
    fmt = detect_format(base, cfg.data.format, cfg.data.stem_map)
    sources = layout_sources(fmt, cfg.data.sources)
    if subset and (base / subset).is_dir():
        base = base / subset
    if fmt == "musdb":
        tracks = _musdb_tracks(base, sources)
    elif fmt == "folder":
        tracks = _folder_tracks(base, sources, cfg.data.stem_map)
    elif fmt == "mir1k":
        tracks = _mir1k_tracks(base, sources, keep_held_out=cfg.data.mir1k_held_out_singers)
    elif fmt == "stem-mp4":
        tracks = _mp4_tracks(base, sources)
    else:  # pragma: no cover - config validation rejects it
        raise DatasetError(f"{base}: unknown dataset format '{fmt}'")
    if not tracks:
        raise DatasetError(f"{base}: no {fmt} tracks found")
    return tracks


def _probe(path: Path) -> sf._SoundFileInfo:
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DatasetError(f"{path}: cannot read audio ({exc})") from None


def _track_from_files(name: str, refs: dict[str, StemRef]) -> Track:
    """Check that every stem file of a track has the same rate and length."""
    rate = frames = None
    first: Path | None = None
    chans: dict[str, int] = {}
    for source, ref in refs.items():
        for path in (ref.path, *ref.extra):
            info = _probe(path)
            if rate is None:
                rate, frames, first = info.samplerate, info.frames, path
            elif info.samplerate != rate:
                raise DatasetError(f"{path}: sample rate {info.samplerate} Hz differs from {first.name} ({rate} Hz)")
            elif info.frames != frames:
                raise DatasetError(f"{path}: {info.frames} samples, but {first.name} has {frames}")
        if ref.channel is not None and ref.channel >= info.channels:
            raise DatasetError(f"{ref.path}: needs channel {ref.channel + 1} but the file has {info.channels}")
        chans[source] = 1 if ref.channel is not None else info.channels
    return Track(name, refs, int(rate), int(frames), chans)


def _musdb_tracks(base: Path, sources: list[str]) -> list[Track]:
    tracks = []
    for folder in find_tracks(base, None, sources):
        refs = {}
        for source in sources:
            path = stem_file(folder, source)
            parts = [stem_file(folder, name) for name in ACCOMPANIMENT_PARTS]
            if path is None and source == ACCOMPANIMENT and all(parts):  # two-stem training on four stems
                refs[source] = StemRef(parts[0], extra=tuple(parts[1:]))
                continue
            if path is None:
                raise DatasetError(f"{folder}: missing stem '{source}' ({source}.wav or {source}.flac)")
            refs[source] = StemRef(path)
        tracks.append(_track_from_files(folder.name, refs))
    return tracks


def _folder_tracks(base: Path, sources: list[str], stem_map: dict[str, str]) -> list[Track]:
    missing = [s for s in sources if s not in stem_map]
    if missing:
        raise DatasetError(f"{base}: data.stem_map has no file name for source(s) {', '.join(missing)}")
    folders = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if any((base / stem_map[s]).is_file() for s in sources):
        folders = [base]
    tracks = []
    for folder in folders:
        refs = {}
        for source in sources:
            path = folder / stem_map[source]
            if not path.is_file():
                raise DatasetError(f"{path}: stem file for '{source}' not found")
            refs[source] = StemRef(path)
        tracks.append(_track_from_files(folder.name, refs))
    return tracks


def _mir1k_tracks(base: Path, sources: list[str], keep_held_out: bool = False) -> list[Track]:
    """MIR-1K clips as two-stem tracks; the real-voice check's singers are dropped unless `keep_held_out`."""
    from stemgui.data.mir1k import is_held_out_singer, singer_of

    unknown = [s for s in sources if s not in MIR1K_SOURCES]
    if unknown:
        raise DatasetError(f"{base}: MIR-1K has only the sources accompaniment and vocals, not {', '.join(unknown)}")
    folder = base / "Wavfile" if (base / "Wavfile").is_dir() else base
    files = audio_files(folder)
    if not keep_held_out:
        dropped = [p for p in files if is_held_out_singer(singer_of(p))]
        if dropped:
            log.info("%s: %d clips of the real-voice check's singers left out of training "
                     "(data.mir1k_held_out_singers = true keeps them)", folder, len(dropped))
            files = [p for p in files if p not in dropped]
    tracks = []
    for path in files:
        info = _probe(path)
        if info.channels != 2:
            raise DatasetError(f"{path}: MIR-1K clips are stereo (left accompaniment, right voice), "
                               f"this one has {info.channels} channel(s)")
        refs = {s: StemRef(path, channel=MIR1K_SOURCES.index(s)) for s in sources}
        tracks.append(Track(path.stem, refs, int(info.samplerate), int(info.frames), {s: 1 for s in sources}))
    return tracks


def _mp4_tracks(base: Path, sources: list[str]) -> list[Track]:
    import av

    unknown = [s for s in sources if s not in STEM_MP4_STREAMS and s != ACCOMPANIMENT]
    if unknown:
        raise DatasetError(f"{base}: .stem.mp4 files hold drums, bass, other and vocals, not {', '.join(unknown)}")
    streams_of = {s: [STEM_MP4_STREAMS[p] for p in ACCOMPANIMENT_PARTS] if s == ACCOMPANIMENT
                  else [STEM_MP4_STREAMS[s]] for s in sources}  # two-stem training: accompaniment sums three
    tracks = []
    for path in sorted(base.rglob("*.stem.mp4")):
        try:
            with av.open(str(path)) as container:
                streams = container.streams.audio
                if len(streams) < 5:
                    raise DatasetError(f"{path}: {len(streams)} audio streams, a .stem.mp4 needs 5 "
                                       "(mixture, drums, bass, other, vocals)")
                rate = streams[0].rate
                seconds = container.duration / 1e6 if container.duration else 0.0
                chans = {s: max(streams[i].channels for i in streams_of[s]) for s in sources}
                if any(streams[i].rate != rate for s in sources for i in streams_of[s]):
                    raise DatasetError(f"{path}: its stem streams have different sample rates")
        except av.FFmpegError as exc:
            raise DatasetError(f"{path}: cannot open ({exc})") from None
        refs = {s: StemRef(path, stream=streams_of[s][0], extra_streams=tuple(streams_of[s][1:])) for s in sources}
        tracks.append(Track(path.name[: -len(".stem.mp4")], refs, int(rate), int(seconds * rate), chans))
    return tracks


def split_tracks(tracks: list[Track], fraction: float, seed: int) -> tuple[list[Track], list[Track]]:
    """Deterministic train/valid split by seed: at least one valid track when there are two or more."""
    if fraction <= 0 or len(tracks) < 2:
        return list(tracks), []
    order = np.random.default_rng(seed).permutation(len(tracks))
    n_valid = min(len(tracks) - 1, max(1, round(fraction * len(tracks))))
    valid_idx = set(order[:n_valid].tolist())
    train = [t for i, t in enumerate(tracks) if i not in valid_idx]
    valid = [t for i, t in enumerate(tracks) if i in valid_idx]
    return train, valid


def load_splits(cfg: Config) -> tuple[list[Track], list[Track], list[str]]:
    """(train tracks, valid tracks, sources) as the config asks."""
    root = Path(cfg.data.dataset)
    sources = dataset_sources(root, cfg) if root.is_dir() else list(cfg.data.sources)
    tracks = discover_tracks(root, cfg, cfg.data.subset or None)
    if cfg.data.valid_subset:
        if not (root / cfg.data.valid_subset).is_dir():
            raise DatasetError(f"{root / cfg.data.valid_subset}: validation subset folder not found")
        return tracks, discover_tracks(root, cfg, cfg.data.valid_subset), sources
    train, valid = split_tracks(tracks, cfg.data.valid_fraction, cfg.train.seed)
    return train, valid, sources


# ------------------------------------------------------------------------------------------------------ reading
def read_ref(ref: StemRef, start: int, frames: int) -> np.ndarray:
    """float32 (channels, frames) from file frame `start`, zero-padded past either end."""
    if frames <= 0:
        raise ValueError("frames must be positive")
    if ref.stream is not None:
        return sum((_read_mp4(ref.path, stream, start, frames) for stream in ref.extra_streams),
                   _read_mp4(ref.path, ref.stream, start, frames))
    if ref.extra:
        return sum((read_ref(StemRef(path, ref.channel), start, frames) for path in ref.extra),
                   read_ref(StemRef(ref.path, ref.channel), start, frames))
    pad_front = max(0, -start)
    start = max(0, start)
    try:
        with sf.SoundFile(str(ref.path)) as f:
            f.seek(min(start, f.frames))
            data = f.read(frames - pad_front, dtype="float32", always_2d=True).T
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise DatasetError(f"{ref.path}: cannot read audio ({exc})") from None
    if ref.channel is not None:
        data = data[ref.channel:ref.channel + 1]
    if data.shape[1] < frames:
        data = np.pad(data, ((0, 0), (pad_front, frames - pad_front - data.shape[1])))
    return np.ascontiguousarray(data)


def _read_mp4(path: Path, stream_index: int, start: int, frames: int) -> np.ndarray:
    """Seek into one audio stream of a .stem.mp4 and decode just enough frames (planar float)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[stream_index]
            rate = stream.rate
            tb = stream.time_base
            container.seek(max(0, int(start / rate / tb)), stream=stream, backward=True, any_frame=False)
            resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=rate)
            chunks: list[np.ndarray] = []
            first: int | None = None
            have = 0
            for packet in container.demux(stream):
                for frame in packet.decode():
                    pos = round(float(frame.pts * tb) * rate) if frame.pts is not None else None
                    for out in resampler.resample(frame):
                        arr = out.to_ndarray()
                        if first is None:
                            first = pos if pos is not None else start
                        chunks.append(arr)
                        have += arr.shape[1]
                if first is not None and first + have >= start + frames:
                    break
    except av.FFmpegError as exc:
        raise DatasetError(f"{path}: cannot decode stream {stream_index} ({exc})") from None
    channels = stream.channels
    if not chunks:
        return np.zeros((channels, frames), np.float32)
    audio = np.concatenate(chunks, axis=1).astype(np.float32)
    offset = start - (first or 0)
    if offset < 0:
        audio = np.pad(audio, ((0, 0), (-offset, 0)))
        offset = 0
    audio = audio[:, offset:offset + frames]
    if audio.shape[1] < frames:
        audio = np.pad(audio, ((0, 0), (0, frames - audio.shape[1])))
    return audio


def read_source(track: Track, source: str, start: int, frames: int, rate: int, channels: int) -> np.ndarray:
    """One source as float32 (channels, frames) at the model `rate`; `start` is in model-rate frames."""
    ref = track.stems[source]
    if track.samplerate == rate:
        data = read_ref(ref, start, frames)
    else:
        import soxr

        # Start the file chunk on the grid where input and output samples coincide, so the resampled chunk
        # lines up exactly with full-file resampling; a margin absorbs the filter's edge transients.
        r_in = track.samplerate
        grid = r_in // math.gcd(r_in, rate)  # file frames between coinciding sample instants
        margin = int(math.ceil(0.02 * r_in / grid)) * grid
        file_start = (start * r_in // rate) // grid * grid - margin
        skip = start - file_start * rate // r_in  # exact: file_start is on the grid
        file_frames = int(math.ceil((frames + skip) * r_in / rate)) + margin
        raw = read_ref(ref, file_start, file_frames)
        out = soxr.resample(raw.T, r_in, rate, quality="HQ").T
        data = out[:, skip:skip + frames]
        if data.shape[1] < frames:
            data = np.pad(data, ((0, 0), (0, frames - data.shape[1])))
    if data.shape[0] == 1 and channels == 2:
        data = np.repeat(data, 2, axis=0)
    elif data.shape[0] > channels:
        data = data[:channels] if channels == 2 else data.mean(axis=0, keepdims=True)
    return np.ascontiguousarray(data, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------- datasets
class SegmentDataset(Dataset):
    """Random training segments; item `i` is the same (mixture, stems) on every run with the same seed."""

    def __init__(self, tracks: list[Track], sources: list[str], cfg: Config, length: int) -> None:
        if not tracks:
            raise DatasetError("no training tracks (the dataset is empty or everything went to validation)")
        self.tracks = tracks
        self.sources = list(sources)
        self.cfg = cfg
        self.rate = cfg.data.samplerate
        self.channels = cfg.data.channels
        self.frames = int(round(cfg.data.segment * self.rate))
        self.shift = int(round(cfg.augment.shift * self.rate))
        self.track_frames = [t.frames_at(self.rate) for t in tracks]
        self.seed = cfg.train.seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, int(index)])
        plan = plan_segment(rng, self.track_frames, len(self.sources), self.frames, self.shift,
                            self.cfg.augment.remix)
        stems = np.stack([
            read_source(self.tracks[t], source, start, self.frames, self.rate, self.channels)
            for source, (t, start) in zip(self.sources, plan)
        ])
        stems = augment_stems(stems, rng, self.cfg.augment)
        stems = boost_source(stems, rng, self.sources, self.cfg.augment)
        stems = solo_sources(stems, rng, self.sources, self.cfg.augment)
        if self.cfg.augment.circular_shift:
            stems = circular_shift(stems, rng, self.sources)
        stems_t = torch.from_numpy(stems)
        return stems_t.sum(dim=0), stems_t


class StepMixedDataset(Dataset):
    """The main segments, except on two-stem steps (`is_two_stem(step)`), whose whole batch comes from `two_stem`.

    Item `i` belongs to step i // global_batch (the StepBatchSampler's numbering), so every batch is one kind
    and an item stays a pure function of (seed, index).
    """

    def __init__(self, main: SegmentDataset, two_stem: SegmentDataset, global_batch: int,
                 is_two_stem: Callable[[int], bool]) -> None:
        self.main = main
        self.two_stem = two_stem
        self.global_batch = global_batch
        self.is_two_stem = is_two_stem

    def __len__(self) -> int:
        return len(self.main)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        source = self.two_stem if self.is_two_stem(int(index) // self.global_batch) else self.main
        return source[index]


def load_two_stem_tracks(cfg: Config) -> tuple[list[Track], Config]:
    """data.two_stem_dataset's tracks as (accompaniment, vocals) pairs and the config that reads them.

    MIR-1K's real-voice singers are dropped as always (data.mir1k_held_out_singers keeps them); a four-stem
    dataset gives accompaniment as the sum of its other stems. Raises DatasetError naming the folder.
    """
    import copy

    from stemgui.train.grouping import TWO_STEM_SOURCES

    two = copy.deepcopy(cfg)
    two.data.dataset = cfg.data.two_stem_dataset
    two.data.format = "auto"
    two.data.sources = list(TWO_STEM_SOURCES)
    two.data.stem_map = {}
    return discover_tracks(Path(two.data.dataset), two, two.data.subset or None), two


class ValidationDataset(Dataset):
    """Up to data.valid_seconds from the middle of each validation track, unaugmented."""

    def __init__(self, tracks: list[Track], sources: list[str], cfg: Config) -> None:
        self.tracks = tracks
        self.sources = list(sources)
        self.rate = cfg.data.samplerate
        self.channels = cfg.data.channels
        self.seconds = cfg.data.valid_seconds

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        track = self.tracks[index]
        total = track.frames_at(self.rate)
        frames = min(total, int(round(self.seconds * self.rate)))
        start = (total - frames) // 2
        stems = np.stack([read_source(track, s, start, frames, self.rate, self.channels) for s in self.sources])
        stems_t = torch.from_numpy(stems)
        return stems_t.sum(dim=0), stems_t


class StepBatchSampler(Sampler[list[int]]):
    """Batches by training step, sharded across DDP ranks (a DistributedSampler keyed by step).

    Step `s` uses sample indices [s*B, (s+1)*B) of the global batch B; rank r takes its contiguous share. So the
    sampler's whole state is the step number: resuming at step s replays exactly what an unbroken run would read,
    and N ranks together read what one process with the global batch reads.
    """

    def __init__(self, global_batch: int, start_step: int, end_step: int, rank: int = 0, world_size: int = 1):
        if global_batch % world_size:
            raise DatasetError(f"batch size {global_batch} is not divisible by the {world_size} DDP processes")
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.start_step = start_step
        self.end_step = end_step
        self.rank = rank

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __iter__(self):
        for step in range(self.start_step, self.end_step):
            base = step * self.global_batch + self.rank * self.local_batch
            yield list(range(base, base + self.local_batch))
