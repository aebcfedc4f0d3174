"""Score every finished run of a study, and the oracle baselines, on the same held-out songs.

The baselines give each number its context: the ideal ratio mask (STFT masks from the true stems, the ceiling of
a masking separator) and the mixture used as every estimate (the floor: doing nothing). Each (system, song) is
written as museval JSON to `eval/<system>/<subset>/<song>.json` by the same code as `stemgui evaluate` and read
back from there, so a killed evaluation resumes where it stopped and a fresh and a resumed study give the same
numbers. The held-out songs are read through the training data's track discovery, so every dataset layout the
trainer reads (MUSDB18-HQ folders, .stem.mp4, MIR-1K clips, stem folders) is scored the same way; the mixture is
the sum of the stems.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stemgui.eval.oracle import ORACLE_LABELS
from stemgui.eval.report import BSS_METRICS, TrackScores, write_track_json
from stemgui.study.config import StudyPlan
from stemgui.study.runner import read_done
from stemgui.train.data import Track, discover_tracks, read_ref

log = logging.getLogger(__name__)

EVAL = "eval"
BACKEND = "eager"
"""Models are scored with plain eager torch, the engine's reference path, so the numbers never depend on which
accelerated backend a machine happens to pick."""


@dataclass(frozen=True)
class System:
    """One thing to score: a run's model (`kind` "model", `target` its weights) or an oracle (irm | mix)."""

    name: str
    kind: str
    target: str


BASELINES = tuple(System(ORACLE_LABELS[o], "oracle", o) for o in ("irm", "mix"))


def systems_for(plan: StudyPlan, folder: Path) -> list[System]:
    """The finished runs (in plan order), then the ideal ratio mask and the mixture."""
    systems = []
    for run in plan.runs:
        done = read_done(folder, run)
        if done and done.get("model"):
            systems.append(System(run.name, "model", str(done["model"])))
    return systems + list(BASELINES)


def heldout_tracks(plan: StudyPlan, folder: Path) -> tuple[list[Track], list[str]]:
    """The held-out songs (the first `heldout_tracks` by name when set) and the sources scored."""
    from stemgui.train.data import dataset_sources

    cfg = plan.base.copy()
    root = plan.dataset(folder)
    cfg.data.dataset = str(root)
    sources = dataset_sources(root, cfg)
    cfg.data.sources = sources
    tracks = discover_tracks(root, cfg, plan.heldout)
    if plan.heldout_tracks:
        tracks = tracks[: plan.heldout_tracks]
    return tracks, sources


def read_track(track: Track, sources: list[str]) -> np.ndarray:
    """(sources, channels, samples) float32 true stems of a held-out song at its own rate."""
    stems = [read_ref(track.stems[s], 0, track.frames) for s in sources]
    channels = max(s.shape[0] for s in stems)
    return np.stack([np.repeat(s, channels, axis=0) if s.shape[0] < channels else s for s in stems])


def track_json(folder: Path, system: str, subset: str, track: str) -> Path:
    return folder / EVAL / system / subset / f"{track}.json"


def score_track(system: System, track: Track, sources: list[str], folder: Path, subset: str, frames: str,
                device: str = "cpu", shifts: int = 0) -> TrackScores:
    """Separate (or apply the oracle to) one held-out song, score it, write its JSON, return what the JSON says."""
    from stemgui.eval import bsseval, metrics

    path = track_json(folder, system.name, subset, track.name)
    if path.is_file():
        return read_track_json(path)
    stems = read_track(track, sources)
    mixture = stems.sum(axis=0)
    estimates = estimate(system, stems, mixture, track.samplerate, sources, device, shifts)
    win = stems.shape[-1] if frames == "whole" else track.samplerate
    sdr, isr, sir, sar = bsseval.evaluate(stems.transpose(0, 2, 1), estimates.transpose(0, 2, 1), win=win, hop=win)
    scores = TrackScores(
        system=system.name, track=track.name, sources=list(sources), samplerate=track.samplerate,
        length=stems.shape[-1], framewise={"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar},
        track_metrics={"uSDR": metrics.usdr(stems, estimates), "SI-SDR": metrics.si_sdr(stems, estimates),
                       "NSDR": metrics.nsdr(stems, estimates, mixture)},
        win=win / track.samplerate, hop=win / track.samplerate,
    )
    write_track_json(path, scores)
    return read_track_json(path)


_SEPARATORS: dict[tuple[str, str, int], object] = {}


def _separator(target: str, device: str, shifts: int):
    """One Separator per model and process (kept: every held-out song is separated by the same model)."""
    key = (target, device, shifts)
    if key not in _SEPARATORS:
        from stemgui.separate import SeparationSettings, Separator

        settings = SeparationSettings(device=device, shifts=shifts)
        extra = {"backend": BACKEND} if "backend" in inspect.signature(Separator.from_path).parameters else {}
        _SEPARATORS[key] = Separator.from_path(target, settings, **extra)
    return _SEPARATORS[key]


def estimate(system: System, stems: np.ndarray, mixture: np.ndarray, samplerate: int, sources: list[str],
             device: str = "cpu", shifts: int = 0) -> np.ndarray:
    """Estimates (sources, channels, samples) of `system` for one song, at the song's rate and channel count."""
    from stemgui.errors import ModelError
    from stemgui.eval.fit import separate_like
    from stemgui.eval.oracle import oracle_estimates

    if system.kind == "oracle":
        return oracle_estimates(stems, system.target)
    separator = _separator(system.target, device, shifts)
    missing = [s for s in sources if s not in separator.sources]
    if missing:
        raise ModelError(f"{system.target}: model has no stem {', '.join(missing)} (it has "
                         f"{', '.join(separator.sources)})")
    out = separate_like(separator, mixture, samplerate, stems.shape[1], stems.shape[-1])
    return np.stack([out[separator.sources.index(s)] for s in sources]).astype(np.float32)


def read_track_json(path: Path) -> TrackScores:
    """A museval JSON written by `write_track_json` back as TrackScores (NaN where museval writes NaN)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    extra = doc["stemgui"]
    sources = [t["name"] for t in doc["targets"]]
    framewise = {m: np.array([[_number(f["metrics"].get(m)) for f in t["frames"]] for t in doc["targets"]],
                             dtype=np.float64).reshape(len(sources), -1) for m in BSS_METRICS}
    names = sorted({m for values in extra["metrics"].values() for m in values})
    track_metrics = {m: np.array([_number(extra["metrics"][s].get(m)) for s in sources]) for m in names}
    first = doc["targets"][0]["frames"] if doc["targets"] and doc["targets"][0]["frames"] else []
    win = float(first[0]["duration"]) if first else 1.0
    return TrackScores(system=extra["system"], track=extra["track"], sources=sources,
                       samplerate=int(extra["samplerate"]), length=int(extra["length"]), framewise=framewise,
                       track_metrics=track_metrics, win=win, hop=win)


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core (see the design notes on linalg solves and threads)


def evaluate_study(plan: StudyPlan, folder: Path, systems: list[System], *, jobs: int = 1,
                   progress: Callable[[float, str], None] | None = None) -> dict[str, list[TrackScores]]:
    """Scores per system (in `systems` order), per held-out song (in name order); `jobs` songs in parallel."""
    tracks, sources = heldout_tracks(plan, folder)
    tasks = [(system, track) for system in systems for track in tracks]
    results: dict[tuple[str, str], TrackScores] = {}
    args = (sources, folder, plan.heldout, plan.frames, plan.device, plan.shifts)
    done = 0

    def finished(system: System, track: Track, scores: TrackScores) -> None:
        nonlocal done
        results[(system.name, track.name)] = scores
        done += 1
        if progress is not None:
            progress(done / len(tracks), f"{system.name}: {track.name}")

    if jobs == 1 or len(tasks) <= 1:
        for system, track in tasks:
            finished(system, track, score_track(system, track, *args))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
            futures = {pool.submit(score_track, system, track, *args): (system, track) for system, track in tasks}
            try:
                for future in as_completed(futures):
                    finished(*futures[future], future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    log.info("scored %d systems on %d held-out songs", len(systems), len(tracks))
    return {s.name: [results[(s.name, t.name)] for t in tracks] for s in systems}
