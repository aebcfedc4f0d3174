"""`stemgui evaluate`: score models and oracle baselines on a MUSDB18-HQ-layout dataset or `.stem.mp4` files.

For every system (a model, or an oracle: ideal ratio mask, ideal binary mask, mixture) and every track it
writes `OUT/<system>/<subset>/<track>.json` in museval's format (so museval's own aggregation reads them),
then a summary table (printed, `summary.csv`, `summary.md`), one box plot per metric with all systems side
by side and, with `--plots`, log-mel spectrogram comparisons per track.

The sources scored are the first model's (or `--sources`): a two-stem model (`vocals, accompaniment`) is scored
on a four-stem dataset against accompaniment = the sum of every stem but the vocals (stemgui.eval.dataset), the
oracles are computed for that same set, and a four-stem model compared with it gives its own non-vocal stems'
sum as its accompaniment.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from stemgui.eval.oracle import ORACLE_LABELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class System:
    """One thing to score: `kind` "model" (target = model name or path) or "oracle" (target = irm|ibm|mix);
    a model runs with mixture refinement `refine` (stemgui.refine)."""

    name: str
    kind: str
    target: str
    refine: str = "auto"


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score models and oracle baselines (SDR/SIR/SAR/ISR, uSDR, SI-SDR, NSDR)",
        description="Separate every track of a MUSDB18-HQ-layout dataset and score it with BSSEval v4 "
        "(museval-compatible), uSDR, SI-SDR and NSDR; compare models and oracle baselines.",
    )
    p.add_argument("--model", default=None, help="model name or path to evaluate")
    p.add_argument("--dataset", default=None,
                   help="dataset root (<root>/<subset>/<track>/<stem>.wav, or .stem.mp4 files) or one .stem.mp4 "
                   "file; optional with --real-voice")
    p.add_argument("--sources", default="", metavar="A,B",
                   help="sources to score, e.g. vocals,accompaniment (default: the first model's; the four stems "
                   "for oracles alone); accompaniment = every stem but vocals")
    p.add_argument("--out", required=True, help="output folder for JSON scores, tables and plots")
    p.add_argument("--subset", default="test", help="subset folder under the dataset root (default: test)")
    p.add_argument("--jobs", type=int, default=1, help="tracks scored in parallel processes (default: 1)")
    p.add_argument("--oracle", choices=("irm", "ibm", "mix"), default=None,
                   help="also score an oracle baseline: ideal ratio mask, ideal binary mask, or the mixture")
    p.add_argument("--compare", nargs="+", default=[], metavar="SYSTEM",
                   help="more systems side by side: model names/paths, or irm, ibm, mix")
    p.add_argument("--tracks", nargs="+", default=None, metavar="NAME", help="only these tracks (folder names)")
    p.add_argument("--plots", action="store_true",
                   help="draw log-mel spectrograms of reference, estimate and difference per stem for each track")
    p.add_argument("--plot-seconds", type=float, default=10.0, help="excerpt shown in --plots (default: 10)")
    p.add_argument("--device", default="cpu", help="device for models: cpu, cuda, auto (default: cpu)")
    p.add_argument("--shifts", type=int, default=0, help="random-shift passes for models (default: 0)")
    p.add_argument("--refine", default="auto", metavar="MODE[,MODE]",
                   help="mixture refinement of models' stems: auto (the model card's), off, ratio, wiener, vocals, "
                   "vocals-strict; "
                   "several, comma-separated, score each model once per mode, side by side (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--real-voice", action="store_true",
                   help="also score the real-voice check: MIR-1K's held-out singers, vocals vs the sum of the "
                   "other stems (GNSDR); models only")
    p.add_argument("--mir1k", default="", metavar="DIR",
                   help="MIR-1K folder for --real-voice (default: $STEMGUI_MIR1K or ../shared/datasets/mir-1k-subset)")
    p.add_argument("--real-voice-clips", type=int, default=0, metavar="N",
                   help="score only N clips, evenly spread (default: all clips of the held-out singers)")
    p.set_defaults(func=run)


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "system"


def refine_modes(text: str) -> list[str]:
    """`--refine`'s comma-separated modes, checked, in order, without repeats."""
    from stemgui.errors import ConfigError
    from stemgui.refine import REFINE_CHOICES

    modes = list(dict.fromkeys(m.strip().lower() for m in (text or "auto").split(",") if m.strip()))
    bad = [m for m in modes if m not in REFINE_CHOICES]
    if bad or not modes:
        raise ConfigError(f"--refine {text!r}: choose from {', '.join(REFINE_CHOICES)} (comma-separated)")
    return modes


def systems_from_args(args: argparse.Namespace) -> list[System]:
    """The systems to score, in table order, with unique folder-safe names; a model once per --refine mode
    (named MODEL+MODE, plain MODEL for a lone "auto")."""
    from stemgui.errors import ConfigError

    modes = refine_modes(getattr(args, "refine", "auto"))
    wanted: list[tuple[str, str]] = []
    if args.model:
        wanted.append(("model", args.model))
    if args.oracle:
        wanted.append(("oracle", args.oracle))
    for item in args.compare:
        wanted.append(("oracle", item.lower()) if item.lower() in ORACLE_LABELS else ("model", item))
    if not wanted:
        raise ConfigError("nothing to evaluate: give --model, --oracle or --compare")
    systems: list[System] = []
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    for kind, target in wanted:
        if (kind, target) in seen:
            continue
        seen.add((kind, target))
        base = ORACLE_LABELS[target] if kind == "oracle" else _safe_name(Path(target).stem if kind == "model" else target)
        for mode in (modes if kind == "model" else ["auto"]):
            label = base if modes == ["auto"] or kind != "model" else f"{base}+{mode}"
            name, k = label, 2
            while name in names:
                name, k = f"{label}-{k}", k + 1
            names.add(name)
            systems.append(System(name, kind, target, mode))
    return systems


def select_tracks(dataset: str, subset: str | None, names: list[str] | None):
    """The songs to score (stemgui.eval.dataset.EvalTrack), only `names` when given."""
    from stemgui.eval.dataset import find_eval_tracks

    return find_eval_tracks(dataset, subset, names)


def scored_sources(systems: list[System], args: argparse.Namespace) -> list[str]:
    """`--sources`, else the first model's sources, else (oracles alone) the four stems."""
    from stemgui import SOURCES
    from stemgui.errors import ConfigError

    if args.sources:
        sources = [s.strip() for s in args.sources.split(",") if s.strip()]
        if not sources or len(set(sources)) != len(sources):
            raise ConfigError(f"--sources {args.sources!r}: give distinct names separated by commas")
        return sources
    for system in systems:
        if system.kind == "model":
            return list(_separator(system, args.device, args.shifts).sources)
    return list(SOURCES)


def model_estimate_plan(target: str, model_sources: list[str], sources: list[str]) -> list[list[int]]:
    """For each source to score, the model outputs summed into its estimate: the source itself, or, for a
    model without an accompaniment stem, every stem but its vocals; raises ModelError when one is missing."""
    from stemgui.errors import ModelError
    from stemgui.eval.dataset import ACCOMPANIMENT

    plan, missing = [], []
    for source in sources:
        if source in model_sources:
            plan.append([model_sources.index(source)])
        elif source == ACCOMPANIMENT and "vocals" in model_sources and len(model_sources) > 1:
            plan.append([i for i, name in enumerate(model_sources) if name != "vocals"])
        else:
            missing.append(source)
    if missing:
        raise ModelError(f"{target}: model has no stem {', '.join(missing)} (it has {', '.join(model_sources)}); "
                         "--sources chooses what is scored")
    return plan


# ---------------------------------------------------------------- work done per (system, track), maybe in a worker

_SEPARATORS: dict[tuple[str, str, int, str], object] = {}


def _separator(system: System, device: str, shifts: int):
    """The Separator of a model system (its refinement included), loaded once per process."""
    key = (system.target, device, shifts, system.refine)
    if key not in _SEPARATORS:
        from stemgui.separate import SeparationSettings, Separator

        _SEPARATORS[key] = Separator.from_path(system.target, SeparationSettings(device=device, shifts=shifts,
                                                                                 refine=system.refine))
    return _SEPARATORS[key]


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core; never more threads (see design notes on linalg)


def estimate(system: System, track, sources: list[str], stems, mixture, samplerate: int, device: str, shifts: int):
    """Estimates (sources, channels, samples) of `system` for one track, at the track's rate; oracles are
    computed from the references of exactly `sources` (for two stems: vocals against the accompaniment)."""
    import numpy as np

    from stemgui.eval.fit import separate_like
    from stemgui.eval.oracle import oracle_estimates

    if system.kind == "oracle":
        return oracle_estimates(stems, system.target)
    separator = _separator(system, device, shifts)
    plan = model_estimate_plan(system.target, list(separator.sources), sources)
    out = separate_like(separator, mixture, samplerate, stems.shape[1], stems.shape[-1])
    picked = np.stack([out[rows].sum(axis=0) for rows in plan])
    return picked.astype(np.float32)


def score_track(
    system: System,
    track,
    sources: list[str],
    out_dir: Path,
    subset: str,
    device: str = "cpu",
    shifts: int = 0,
    plots: bool = False,
    plot_seconds: float = 10.0,
):
    """Separate (or apply the oracle to) one track (a stemgui.eval.dataset.EvalTrack), score it, write its
    JSON (and figure); return the scores."""
    from stemgui.errors import DatasetError
    from stemgui.eval import bsseval, metrics, report
    from stemgui.eval.dataset import read_references

    stems, mixture, samplerate = read_references(track, sources)
    if mixture.shape != stems.shape[1:]:
        raise DatasetError(
            f"{track.path}: mixture ({mixture.shape[0]} channels, {mixture.shape[-1]} samples) does not match the "
            f"stems ({stems.shape[1]} channels, {stems.shape[-1]} samples)"
        )
    estimates = estimate(system, track, sources, stems, mixture, samplerate, device, shifts)
    win = samplerate  # 1 s frames and hops, as SiSEC
    sdr, isr, sir, sar, leak = bsseval.evaluate_with_leakage(stems.transpose(0, 2, 1), estimates.transpose(0, 2, 1),
                                                             win=win, hop=win)
    scores = report.TrackScores(
        system=system.name,
        track=track.name,
        sources=list(sources),
        samplerate=samplerate,
        length=stems.shape[-1],
        framewise={"SDR": sdr, "ISR": isr, "SIR": sir, "SAR": sar},
        track_metrics={
            "uSDR": metrics.usdr(stems, estimates),
            "SI-SDR": metrics.si_sdr(stems, estimates),
            "NSDR": metrics.nsdr(stems, estimates, mixture),
            # how loud each other source is inside every estimate (a column per interfering source)
            **{report.LEAK_PREFIX + name: leak[:, i] for i, name in enumerate(sources)},
        },
    )
    report.write_track_json(out_dir / system.name / subset / f"{track.name}.json", scores)
    if plots:
        report.spectrogram_figure(
            out_dir / system.name / "plots" / f"{track.name}.png",
            stems,
            estimates,
            list(sources),
            samplerate,
            title=f"{system.name} - {track.name}",
            seconds=plot_seconds,
        )
    return scores


# ---------------------------------------------------------------- real-voice check


def run_real_voice(systems: list[System], args: argparse.Namespace, out_dir: Path) -> dict[str, dict]:
    """Score every model system on MIR-1K's held-out singers; write real_voice.json/.md and print the table."""
    import json

    from stemgui.atomic import atomic_write_text
    from stemgui.eval import real_voice, report

    clips = real_voice.clips_from(args.mir1k or None, args.real_voice_clips)
    summaries: dict[str, dict] = {}
    per_clip: dict[str, list[dict]] = {}
    for system in systems:
        if system.kind != "model":
            print(f"stemgui: note: real-voice check skips {system.name} (oracles need the true stems)", file=sys.stderr)
            continue
        separator = _separator(system, args.device, args.shifts)
        from tqdm import tqdm

        with tqdm(total=len(clips), desc=f"real voice {system.name}", unit="clip", file=sys.stderr,
                  disable=args.no_progress) as bar:
            result = real_voice.evaluate_separator(separator, clips, lambda k, n: bar.update())
        summaries[system.name] = result.summary()
        per_clip[system.name] = real_voice.per_clip_rows(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "real_voice.json", json.dumps({"summary": summaries, "clips": per_clip}, indent=1))
    table = report.real_voice_markdown(summaries)
    atomic_write_text(out_dir / "real_voice.md", table)
    print(table, end="")
    return summaries


# ---------------------------------------------------------------- command


def run(args: argparse.Namespace) -> int:
    from stemgui.errors import ConfigError
    from stemgui.eval import report
    from stemgui.eval.dataset import check_sources

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    systems = systems_from_args(args)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: output path exists and is not a folder")
    if not args.dataset and not args.real_voice:
        raise ConfigError("nothing to score: give --dataset DIR and/or --real-voice")
    if args.real_voice:
        run_real_voice(systems, args, out_dir)
        if not args.dataset:
            return 0
    tracks = select_tracks(args.dataset, args.subset, args.tracks)
    subset = args.subset or "test"
    sources = scored_sources(systems, args)
    first_model = next((s.target for s in systems if s.kind == "model"), None)
    wanted_by = "--sources" if args.sources else first_model or "the oracles (four stems unless --sources)"
    if not args.sources and first_model:  # e.g. a six-stem model on MUSDB: score the stems the dataset has
        held = {name for track in tracks for name in track.stems}
        present = [s for s in sources if s in held]
        if present and len(present) < len(sources):
            log.warning("%s: the dataset has no %s stem: scoring %s (--sources chooses)", args.dataset,
                        ", ".join(s for s in sources if s not in held), ", ".join(present))
            sources = present
    check_sources(args.dataset, tracks, sources, wanted_by)
    for system in systems:
        if system.kind == "model":
            model_estimate_plan(system.target, list(_separator(system, args.device, args.shifts).sources), sources)
    tasks = [(system, track) for system in systems for track in tracks]
    kwargs = dict(device=args.device, shifts=args.shifts, plots=args.plots, plot_seconds=args.plot_seconds)

    from tqdm import tqdm

    results: dict[tuple[str, str], object] = {}
    bar = tqdm(total=len(tasks), desc="evaluate", unit="track", file=sys.stderr, disable=args.no_progress)
    try:
        if args.jobs == 1 or len(tasks) == 1:
            for system, track in tasks:
                bar.set_postfix_str(f"{system.name}: {track.name}")
                results[(system.name, track.name)] = score_track(system, track, sources, out_dir, subset, **kwargs)
                bar.update()
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx, initializer=_worker_init) as pool:
                futures = {
                    pool.submit(score_track, system, track, sources, out_dir, subset, **kwargs): (system, track)
                    for system, track in tasks
                }
                try:
                    for future in as_completed(futures):
                        system, track = futures[future]
                        results[(system.name, track.name)] = future.result()
                        bar.update()
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    finally:
        bar.close()

    by_system = {s.name: [results[(s.name, t.name)] for t in tracks] for s in systems}
    rows = report.summarize(by_system)
    csv_path, md_path = report.write_tables(out_dir, rows)
    print(report.table_text(rows), end="")
    written = [csv_path, md_path]
    leak_rows = report.leakage_rows(by_system)
    if leak_rows:
        print(report.leakage_text(leak_rows), end="")
        written += report.write_leakage(out_dir, leak_rows)
    try:
        written += report.box_plots(by_system, out_dir)
    except ConfigError as exc:  # figures are extras: the scores are already written
        print(f"stemgui: warning: no box plots: {exc}", file=sys.stderr)
    print(f"scores: {out_dir}/<system>/{subset}/<track>.json; summary: {csv_path}, {md_path}", file=sys.stderr)
    return 0
