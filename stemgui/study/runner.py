"""Train a study's runs one after another, each in its own folder with its own card, resumable after kill -9.

Study folder layout:

    study.toml            the study file as it was run
    plan.json             every run's complete training config (a resumed study must match it)
    data/                 the dataset, when the study renders ([synth]) or splits ([mir1k]) its own
    runs/<run>/           <run>.safetensors + <run>.json (the card), train/ (checkpoints, log.jsonl), done.json
    models.json           the finished runs, for the app's model picker (see stemgui.models.registry)
    eval/, figures/, REPORT.md, results.csv, comparisons.csv, study.json   (see `evaluate` and `report`)

A run is finished when its `done.json` exists (written atomically after the card): finished runs are never
trained again. An unfinished run with a checkpoint continues from it (the trainer's bit-exact resume); one
without a checkpoint starts over in a clean `train/` folder. A kill at any instant therefore loses at most the
steps since the last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from stemgui.atomic import atomic_write_text
from stemgui.errors import ConfigError, StemGUIError
from stemgui.study.config import REPORT_ONLY_KEYS, STUDY_DATA, RunSpec, StudyPlan
from stemgui.train.config import Config

log = logging.getLogger(__name__)

DONE = "done.json"
FAILED = "failed.json"
PLAN = "plan.json"
LOCK = ".lock"
MODELS = "models.json"
"""The manifest of finished runs the model registry reads: {"study": name, "models": [{"name", "path"}]}."""

Progress = Callable[[float, str], None]
"""progress(units done so far in this stage, label)."""


def run_folder(folder: Path, run: RunSpec) -> Path:
    return folder / "runs" / run.name


def run_state(folder: Path, run: RunSpec) -> str:
    """"done", "failed", "partial" (a checkpoint to resume from) or "new"."""
    from stemgui.train.checkpoint import latest_checkpoint

    here = run_folder(folder, run)
    if (here / DONE).is_file():
        return "done"
    if (here / FAILED).is_file():
        return "failed"
    return "partial" if latest_checkpoint(here / "train") is not None else "new"


def read_done(folder: Path, run: RunSpec) -> dict[str, Any] | None:
    path = run_folder(folder, run) / DONE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -------------------------------------------------------------------------------------------- study folder
def open_study_folder(plan: StudyPlan, folder: Path, resume: bool) -> None:
    """Create the folder (or check that a resumed one ran this same study file) and record the plan.

    A resumed study must come from the same study file (compared as parsed TOML, so comments and layout do not
    matter; the [study] keys that only change the report, REPORT_ONLY_KEYS, may differ and are then recorded);
    the complete run configs in plan.json are the record of what ran, not the test, so a newer StemGUI with more
    settings can still resume."""
    import tomllib

    plan_path = folder / PLAN
    if plan_path.is_file():
        if not resume:
            raise ConfigError(f"{folder}: a study already ran here; pass --resume to continue it or choose "
                              "another --out folder")
        try:
            earlier = tomllib.loads((folder / "study.toml").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(f"{folder / 'study.toml'}: cannot read the study file this study ran; delete the "
                              "folder to start over") from None
        text = plan.path.read_text(encoding="utf-8")
        now = tomllib.loads(text)
        if _what_runs(earlier) != _what_runs(now):
            raise ConfigError(f"{plan.path}: differs from the study file {folder / 'study.toml'} this study started "
                              "with; resume with that file or choose another --out folder")
        if earlier != now:  # only what the report says changed (study.compare, description, budget)
            log.info("%s: the report's settings changed; recording the new study file", plan.path)
            atomic_write_text(folder / "study.toml", text)
        return
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(plan.path, folder / "study.toml")
    runs = {run.name: {"cell": run.cell, "seed": run.seed, "settings": run.settings,
                       "config": plan.run_config(run, folder).to_dict()} for run in plan.runs}
    atomic_write_text(plan_path, json.dumps({"study": plan.name, "runs": runs}, indent=1))


def _what_runs(doc: dict[str, Any]) -> dict[str, Any]:
    """A parsed study file without the [study] keys that change only the report (REPORT_ONLY_KEYS)."""
    study = {k: v for k, v in doc.get("study", {}).items() if k not in REPORT_ONLY_KEYS}
    return {**doc, "study": study}


def prepare_dataset(plan: StudyPlan, folder: Path) -> Path:
    """The study's dataset: rendered ([synth], finished songs kept), split by singer ([mir1k]) or the given one."""
    dataset = plan.dataset(folder)
    if plan.synth is not None:
        from stemgui.data.synth import SynthSettings, synth_dataset

        s = plan.synth
        for subset, songs, seed in (("train", s.get("train_songs", 24), s.get("seed", 0)),
                                    (plan.heldout, s.get("test_songs", 8), s.get("seed", 0) + 1)):
            settings = SynthSettings(seconds=float(s.get("seconds", 30.0)), seed=int(seed), subset=subset)
            synth_dataset(dataset, int(songs), settings, jobs=int(s.get("jobs", 1)), progress=False)
    elif plan.mir1k is not None:
        link_mir1k_split(plan, dataset)
    elif not dataset.is_dir():
        raise ConfigError(f"{plan.path}: dataset folder {dataset} not found")
    return dataset


def link_mir1k_split(plan: StudyPlan, dataset: Path) -> dict[str, list[str]]:
    """Link MIR-1K clips into dataset/Wavfile (train), valid/Wavfile and <heldout>/Wavfile by singer name, as
    scripts/drnn_mir1k.py does; test singers default to every singer not trained or validated on."""
    m = plan.mir1k or {}
    source = Path(m["dataset"])
    if not source.is_absolute():
        source = (plan.path.parent / source).resolve()
    clip_dir = source / "Wavfile" if (source / "Wavfile").is_dir() else source
    if not clip_dir.is_dir():
        raise ConfigError(f"{plan.path}: MIR-1K folder {source} not found ([mir1k] dataset)")
    clips = sorted(p for p in clip_dir.iterdir() if p.suffix.lower() in (".wav", ".flac"))
    train, valid = set(m.get("train_singers", [])), set(m.get("valid_singers", []))
    test = set(m.get("test_singers", [])) or {c.name.split("_")[0] for c in clips} - train - valid
    cap = int(m.get("max_test_clips_per_singer", 0))
    split: dict[str, list[Path]] = {"train": [], "valid": [], "test": []}
    taken: dict[str, int] = {}
    for clip in clips:
        singer = clip.name.split("_")[0]
        if singer in train:
            split["train"].append(clip)
        elif singer in valid:
            split["valid"].append(clip)
        elif singer in test and (not cap or taken.get(singer, 0) < cap):
            split["test"].append(clip)
            taken[singer] = taken.get(singer, 0) + 1
    if not split["train"] or not split["test"]:
        raise ConfigError(f"{plan.path}: the [mir1k] split leaves no training or no test clips in {clip_dir}")
    for name, files in split.items():
        target = dataset / "Wavfile" if name == "train" else dataset / (plan.heldout if name == "test" else name) / "Wavfile"
        target.mkdir(parents=True, exist_ok=True)
        for old in target.iterdir():
            old.unlink()
        for path in files:
            (target / path.name).symlink_to(path.resolve())
    return {name: [p.name for p in files] for name, files in split.items()}


def check_models(plan: StudyPlan) -> dict[str, int]:
    """Build (and run once) every cell's generator before any training: cell -> parameter count. The dataset's
    sources are not known yet, so MIR-1K studies are checked with its two and the others with the four."""
    from stemgui import SOURCES
    from stemgui.data.layout import MIR1K_SOURCES
    from stemgui.models.card import count_parameters
    from stemgui.models.check import check_model_config

    sources = list(MIR1K_SOURCES) if plan.mir1k is not None or plan.base.data.format == "mir1k" else list(SOURCES)
    counts: dict[str, int] = {}
    for run in plan.runs:
        if run.cell in counts:
            continue
        cfg = run.config
        try:
            model = check_model_config(cfg.model.architecture, sources, cfg.generator_args(), segment=cfg.data.segment,
                                       where=f"{plan.path}: run '{run.name}' [model]")
        except StemGUIError as exc:
            raise ConfigError(str(exc)) from None
        counts[run.cell] = count_parameters(model)
    return counts


# -------------------------------------------------------------------------------------------- one run
def run_config_for_training(plan: StudyPlan, run: RunSpec, folder: Path) -> tuple[Config, bool]:
    """The config to train `run` with and whether it resumes: a checkpoint's own config when there is one (it
    holds what the trainer fixed, e.g. a wall-clock budget's step count), else the plan's; a run without a
    checkpoint starts in a clean train/ folder (a killed run's partial log is dropped)."""
    from stemgui.train import checkpoint as ckpt_io

    cfg = plan.run_config(run, folder)
    train_dir = Path(cfg.train.run_dir)
    latest = ckpt_io.latest_checkpoint(train_dir)
    if latest is None:
        if train_dir.exists():
            shutil.rmtree(train_dir)
        return cfg, False
    resumed = Config.from_dict(ckpt_io.read_checkpoint_config(latest), where=str(latest))
    resumed.train.progress = False
    return resumed, True


def train_run(plan: StudyPlan, run: RunSpec, folder: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Train (or resume) one run to its budget and mark it done; returns its done record."""
    from stemgui.train.distributed import DistEnv, cleanup
    from stemgui.train.trainer import Trainer, TrainingDiverged

    cfg, resume = run_config_for_training(plan, run, folder)
    here = run_folder(folder, run)
    here.mkdir(parents=True, exist_ok=True)
    atomic_write_text(here / "config.toml", cfg.to_toml())
    env = DistEnv.from_env()
    started = time.perf_counter()
    try:
        trainer = Trainer(cfg, resume=resume, env=env)
        steps, cpu_budget = cfg.train.steps, cfg.train.cpu_minutes * 60

        def on_step(step: int, record: dict[str, float]) -> None:
            if progress is not None:
                done = step / max(steps, 1)
                if cpu_budget:
                    done = max(done, trainer.cpu_time / cpu_budget)
                progress(min(done, 1.0), f"{run.name} step {step}")

        trainer.on_step = on_step
        result = trainer.run()
    except TrainingDiverged as exc:
        log.warning("%s: %s", run.name, exc)
        atomic_write_text(here / FAILED, json.dumps({"run": run.name, "error": str(exc)}, indent=1))
        return {"run": run.name, "failed": str(exc)}
    finally:
        cleanup(env)
    card = json.loads((here / f"{run.name}.json").read_text(encoding="utf-8"))
    training = card.get("training", {})
    record = {
        "run": run.name, "cell": run.cell, "seed": run.seed, "model": str(result.out), "steps": result.steps,
        "wall_time_s": training.get("wall_time_s"), "cpu_time_s": training.get("cpu_time_s"),
        "parameters": card.get("parameters"), "metrics": result.metrics, "resumed": resume,
        "session_wall_s": round(time.perf_counter() - started, 1),
    }
    atomic_write_text(here / DONE, json.dumps(record, indent=1))
    return record


def write_models_manifest(plan: StudyPlan, folder: Path) -> Path:
    """models.json: the finished runs (name, weights path) the app's model picker lists."""
    models = []
    for run in plan.runs:
        done = read_done(folder, run)
        if done and done.get("model"):
            models.append({"name": run.name, "cell": run.cell, "path": str(Path(done["model"]).resolve())})
    return atomic_write_text(folder / MODELS, json.dumps({"study": plan.name, "models": models}, indent=1))


# -------------------------------------------------------------------------------------------- the study
def run_study(plan: StudyPlan, folder: str | Path, *, resume: bool = False, jobs: int = 1,
              progress: bool = True) -> Path:
    """Train every unfinished run, score all runs and the baselines on the held-out songs, write the report;
    returns REPORT.md's path."""
    from stemgui.models.registry import register_study

    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, not {jobs}")
    folder = Path(folder)
    with study_lock(folder):
        open_study_folder(plan, folder, resume)
        register_study(folder)
        return _run_locked(plan, folder, jobs, progress)


@contextlib.contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """One `stemgui study` per folder at a time: an exclusive lock on folder/.lock, released by the OS when the
    process ends in any way (kill -9 included), so a stale lock never blocks --resume."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not on Windows: no lock there
        yield
        return
    with open(folder / LOCK, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise ConfigError(f"{folder}: another `stemgui study` (pid {holder}) is running on this folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run_locked(plan: StudyPlan, folder: Path, jobs: int, progress: bool) -> Path:
    from tqdm import tqdm

    from stemgui.study.evaluate import evaluate_study, systems_for
    from stemgui.study.report import write_report

    total = len(plan.runs) + len(plan.runs) + 2  # training, then scoring every run and the two baselines
    bar = tqdm(total=total, desc=f"study {plan.name}", file=sys.stderr, disable=not progress, dynamic_ncols=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}")
    try:
        bar.set_postfix_str("preparing the dataset", refresh=True)
        prepare_dataset(plan, folder)
        base = 0.0
        for index, run in enumerate(plan.runs):
            state = run_state(folder, run)
            label = f"run {index + 1}/{len(plan.runs)}"
            if state in ("done", "failed"):
                log.info("%s: %s already %s, not trained again", label, run.name, state)
            else:
                def show(fraction: float, text: str, base=base) -> None:
                    bar.n = base + fraction
                    bar.set_postfix_str(f"{label} {text}", refresh=False)
                    bar.refresh()

                train_run(plan, run, folder, show)
                write_models_manifest(plan, folder)
            base += 1.0
            bar.n = base
            bar.refresh()
        write_models_manifest(plan, folder)
        systems = systems_for(plan, folder)

        def scored(done: float, text: str) -> None:
            bar.n = base + done
            bar.set_postfix_str(f"evaluate {text}", refresh=False)
            bar.refresh()

        results = evaluate_study(plan, folder, systems, jobs=jobs, progress=scored)
        bar.n = total
        bar.set_postfix_str("report", refresh=True)
        report = write_report(plan, folder, systems, results)
    finally:
        bar.close()
    return report


__all__ = ["run_study", "train_run", "run_state", "open_study_folder", "prepare_dataset", "link_mir1k_split",
           "write_models_manifest", "STUDY_DATA"]
