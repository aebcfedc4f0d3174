"""The study's report: REPORT.md for a newcomer, results.csv / comparisons.csv / study.json for tools, figures.

REPORT.md says what was compared (the cells, what differs between them, what they share), on what (the dataset,
the held-out songs, the budget) and what it showed (each cell's difference to the baseline with its paired
bootstrap 95 % interval, "no difference" when the interval includes 0), then the full tables, the training cost
and the figures: box plots per source, learning curves of all runs on shared axes from the runs' own logs.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from stemgui.atomic import atomic_write_bytes, atomic_write_text
from stemgui.errors import ConfigError
from stemgui.eval.report import TrackScores, box_plots, per_track_values, summarize
from stemgui.study.config import StudyPlan
from stemgui.study.evaluate import System, heldout_tracks
from stemgui.study.runner import FAILED, read_done, run_folder
from stemgui.study.stats import NO_DIFFERENCE, Interval, db, describe, paired_bootstrap

TABLE_COLUMNS = ("SDR", "SIR", "SAR", "ISR", "uSDR", "SI-SDR")
COMPARED = ("SDR", "uSDR", "SIR", "SAR")
"""Metrics whose differences to the baseline get a bootstrap interval: museval's SDR and the MDX uSDR (quality),
SIR (leakage of the other sources) and SAR (artifacts): a claim such as "the GAN leaves less contamination" is
about the last two, not SDR."""
OVERALL = "overall"
SILENT_USDR_DB = 0.25
"""A run whose uSDR (mean over sources and songs) is within this of 0 dB scores like a silent output (uSDR of
silence is exactly 0 dB): it has not learned to separate, and its differences to other runs say nothing."""
FIGURES = "figures"


# ----------------------------------------------------------------------------------------------- per-song values
def song_values(tracks: list[TrackScores], metric: str, sources: list[str]) -> dict[str, list[float]]:
    """source -> one value per song (BSS metrics: median over frames), plus "overall": the mean over sources."""
    values = {s: per_track_values(tracks, metric, s) for s in sources}
    rows = np.array([values[s] for s in sources], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(rows)
        count = finite.sum(axis=0)
        overall = np.where(count == len(sources), np.where(finite, rows, 0).sum(axis=0) / max(len(sources), 1), np.nan)
    values[OVERALL] = [float(v) for v in overall]
    return values


def cell_values(per_run: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """A cell's per-song values: the mean over its seeds (NaN where any seed has none)."""
    out: dict[str, list[float]] = {}
    for key in per_run[0]:
        stacked = np.array([run[key] for run in per_run], dtype=np.float64)
        out[key] = [float(v) for v in stacked.mean(axis=0)]
    return out


def comparisons(plan: StudyPlan, results: dict[str, list[TrackScores]], sources: list[str]) -> list[dict[str, Any]]:
    """Every cell against the baseline cell (seed means per song), the study's extra cell pairs (study.compare),
    and every run against the baseline run of the same seed (or, without one, the baseline cell), for each
    compared metric and source."""
    runs = [r for r in plan.runs if r.name in results]
    base_runs = [r for r in runs if r.cell == plan.baseline]
    out: list[dict[str, Any]] = []
    if not base_runs:
        return out
    for metric in COMPARED:
        per_run = {r.name: song_values(results[r.name], metric, sources) for r in runs}
        cells = {c: cell_values([per_run[r.name] for r in runs if r.cell == c]) for c in plan.cells
                 if any(r.cell == c for r in runs)}
        base_cell = cells[plan.baseline]
        for cell, reference in plan.cell_pairs():
            if cell not in cells or reference not in cells:
                continue
            for key in [OVERALL, *sources]:
                ci = paired_bootstrap(cells[cell][key], cells[reference][key], resamples=plan.bootstrap,
                                      seed=plan.bootstrap_seed)
                out.append({"level": "cell", "system": cell, "baseline": reference, "metric": metric,
                            "source": key, **ci.to_dict()})
        if len(plan.seeds) > 1:
            by_seed = {r.seed: r.name for r in base_runs}
            for run in runs:
                if run.cell == plan.baseline:
                    continue
                base_name = by_seed.get(run.seed)
                base_values = per_run[base_name] if base_name else base_cell
                for key in [OVERALL, *sources]:
                    ci = paired_bootstrap(per_run[run.name][key], base_values[key], resamples=plan.bootstrap,
                                          seed=plan.bootstrap_seed)
                    out.append({"level": "run", "system": run.name, "baseline": base_name or plan.baseline,
                                "metric": metric, "source": key, **ci.to_dict()})
    return out


# ----------------------------------------------------------------------------------------------- training logs
def read_log(path: Path) -> dict[str, list[dict[str, Any]]]:
    """A run's log.jsonl as {"train": [...], "valid": [...]} by step, the last record of a step winning (a resumed
    run logs again the steps after its checkpoint); a torn last line (kill -9 mid-write) is skipped. A model trained
    by fitting (NMF) logs one "fit" record instead of training steps: it counts as its training record."""
    events: dict[str, dict[int, dict[str, Any]]] = {"train": {}, "valid": {}}
    if not path.is_file():
        return {k: [] for k in events}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        kind = "train" if record.get("event") == "fit" else record.get("event")
        if kind in events and isinstance(record.get("step"), int):
            events[kind][record["step"]] = record
    return {k: [v[s] for s in sorted(v)] for k, v in events.items()}


def _smooth(values: Sequence[float]) -> np.ndarray:
    """A running mean over ~2 % of the points, so curves of noisy per-step losses can be told apart."""
    arr = np.asarray(values, dtype=np.float64)
    width = max(1, arr.size // 50)
    if width == 1:
        return arr
    kernel = np.ones(width) / width
    padded = np.concatenate([np.full(width - 1, arr[0]), arr])
    return np.convolve(padded, kernel, mode="valid")


def run_colors(plan: StudyPlan) -> dict[str, tuple]:
    """Each run in its cell's colour (seeds of a cell alike), the same in the box plots and the learning curves."""
    from stemgui.eval.report import system_colors

    by_cell = system_colors(list(plan.cells))
    return {run.name: by_cell[run.cell] for run in plan.runs}


def learning_curves(plan: StudyPlan, folder: Path, out: Path, done: dict[str, dict[str, Any] | None]) -> Path | None:
    """One figure, all runs on shared axes: waveform L1 (every preset logs it), the total objective, validation SDR
    (and D's loss when a run has one); x is the step, or CPU minutes under a CPU-time budget. `done`: each run's
    done record (its total CPU time places a fitted run's validation)."""
    from stemgui.eval.report import _pyplot, _save_figure

    logs = {run.name: read_log(run_folder(folder, run) / "train" / "log.jsonl") for run in plan.runs}
    if not any(v["train"] for v in logs.values()):
        return None
    plt = _pyplot()
    panels = [("l1", "waveform L1 (train)"), ("loss", "total objective (train)"), ("valid", "validation SDR (dB)")]
    if any("d_loss" in r for v in logs.values() for r in v["train"]):
        panels.append(("d_loss", "discriminator loss (train)"))
    by_cpu = plan.budget_kind == "cpu"
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), sharex=True, squeeze=False)
    colors = run_colors(plan)
    styles = ["-", "--", ":", "-."]
    for run in plan.runs:
        color = colors[run.name]
        style = styles[plan.seeds.index(run.seed) % len(styles)] if run.seed in plan.seeds else "-"
        records = logs[run.name]
        for ax, (key, _) in zip(axes[0], panels):
            rows = records["valid"] if key == "valid" else [r for r in records["train"] if key in r]
            if not rows:
                continue
            x = [r.get("cpu_time_s", 0) / 60 if by_cpu else r["step"] for r in rows]
            if key == "valid":
                total = float((done.get(run.name) or {}).get("cpu_time_s", 0.0)) / 60
                x = [r["step"] for r in rows] if not by_cpu else _valid_cpu(rows, records["train"], total)
                y = np.asarray([r.get("valid_sdr_mean", math.nan) for r in rows], dtype=np.float64)
                ax.plot(x, y, style, color=color, marker="o", ms=3, label=run.name)
            else:
                ax.plot(x, _smooth([r[key] for r in rows]), style, color=color, lw=1.2, label=run.name)
    for ax, (key, title) in zip(axes[0], panels):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("CPU minutes" if by_cpu else "step")
        ax.grid(alpha=0.3)
        if key in ("l1", "loss", "d_loss"):
            ax.set_yscale("log")
    labelled = {}  # every run once, also those without a curve in the first panel (NMF logs no losses)
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            labelled.setdefault(label, handle)
    axes[0][0].legend(list(labelled.values()), list(labelled), fontsize=7, loc="best")
    fig.suptitle(f"Learning curves of study {plan.name} (colour: cell, line style: seed)", fontsize=11)
    fig.tight_layout()
    written = _save_figure(fig, out / "learning_curves.png")
    plt.close(fig)
    return written


def _valid_cpu(valid: list[dict[str, Any]], train: list[dict[str, Any]], total: float = 0.0) -> list[float]:
    """CPU minutes at each validation: those of the nearest logged training step at or before it (`total`, the
    run's CPU minutes, for a record that does not say: an NMF fit logged before it did)."""
    steps = [r["step"] for r in train]
    cpus = [r["cpu_time_s"] / 60 if "cpu_time_s" in r else total for r in train]
    out = []
    for record in valid:
        i = int(np.searchsorted(steps, record["step"], side="right")) - 1
        out.append(cpus[i] if i >= 0 else 0.0)
    return out


# ----------------------------------------------------------------------------------------------- writing
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _differing(plan: StudyPlan) -> dict[str, str]:
    """cell -> the settings that make it differ from the base config."""
    out: dict[str, str] = {}
    for run in plan.runs:
        if run.cell not in out:
            parts = [f"`{k} = {json.dumps(v)}`" for k, v in run.settings.items() if k != "train.seed"]
            out[run.cell] = ", ".join(parts) or "(the base config)"
    return out


def write_report(plan: StudyPlan, folder: Path, systems: list[System],
                 results: dict[str, list[TrackScores]]) -> Path:
    """REPORT.md, results.csv, comparisons.csv, study.json and figures/ in the study folder; returns REPORT.md."""
    folder = Path(folder)
    tracks, sources = heldout_tracks(plan, folder)
    rows = summarize(results)
    comps = comparisons(plan, results, sources)
    done = {run.name: read_done(folder, run) for run in plan.runs}
    finished = [name for name, record in done.items() if record]
    silent, quiet_stems = silent_runs(rows, finished), silent_stems(rows, finished)
    failed = [run.name for run in plan.runs if (run_folder(folder, run) / FAILED).is_file()]
    kinds = {s.name: ("run" if s.kind == "model" else "baseline") for s in systems}
    cell_of = {r.name: r.cell for r in plan.runs}
    seed_of = {r.name: r.seed for r in plan.runs}

    results_rows = [[r.system, kinds.get(r.system, "?"), cell_of.get(r.system, ""), seed_of.get(r.system, ""),
                     r.source, *(_fmt(r.values.get(m, math.nan), 3) for m in (*TABLE_COLUMNS, "GNSDR")), r.tracks]
                    for r in rows]
    atomic_write_bytes(folder / "results.csv", _csv(["system", "kind", "cell", "seed", "source", *TABLE_COLUMNS,
                                                     "GNSDR", "songs"], results_rows))
    atomic_write_bytes(folder / "comparisons.csv", _csv(
        ["level", "system", "baseline", "metric", "source", "mean_diff_db", "ci_low_db", "ci_high_db", "songs",
         "verdict"],
        [[c["level"], c["system"], c["baseline"], c["metric"], c["source"], _fmt(c["mean"], 3), _fmt(c["low"], 3),
          _fmt(c["high"], 3), c["songs"], c["verdict"]] for c in comps]))

    figures = folder / FIGURES
    written: list[Path] = []
    try:
        written += box_plots(results, figures, metrics=("SDR", "SIR", "SAR", "uSDR", "SI-SDR"), colors=run_colors(plan))
        curves = learning_curves(plan, folder, figures, done)
        written += [curves] if curves else []
    except ConfigError as exc:  # figures are extras: the numbers are already written
        written = []
        figure_note = f"No figures: {exc}"
    else:
        figure_note = ""

    summary = {
        "study": plan.name, "description": plan.description, "budget": plan.budget_text(),
        "sized_for": plan.budget_note, "baseline": plan.baseline, "cells": plan.cells, "seeds": plan.seeds,
        "seed_policy": plan.seed_policy, "dataset": str(plan.dataset(folder)), "heldout": plan.heldout,
        "heldout_songs": [t.name for t in tracks], "sources": sources, "frames": plan.frames,
        "bootstrap": {"resamples": plan.bootstrap, "seed": plan.bootstrap_seed, "confidence": 0.95},
        "runs": {name: done[name] for name in finished}, "failed": failed,
        "table": [{"system": r.system, "source": r.source, "songs": r.tracks,
                   **{m: (v if math.isfinite(v) else None) for m, v in r.values.items()}} for r in rows],
        "comparisons": comps,
        "silent_runs": silent,
        "silent_stems": quiet_stems,
        "per_song": {s: {m: song_values(results[s], m, sources) for m in COMPARED} for s in results},
        "figures": [str(p.relative_to(folder)) for p in written],
    }
    atomic_write_text(folder / "study.json", json.dumps(_jsonable(summary), indent=1))
    text = _markdown(plan, folder, tracks, sources, rows, comps, done, failed, kinds, written, figure_note,
                     silent, quiet_stems)
    return atomic_write_text(folder / "REPORT.md", text)


def silent_runs(rows, runs: list[str]) -> list[str]:
    """The runs (of `runs`) whose overall uSDR is within SILENT_USDR_DB of a silent output's 0 dB."""
    overall = {r.system: r.values.get("uSDR", math.nan) for r in rows if r.source == OVERALL}
    return [name for name in runs if abs(overall.get(name, math.nan)) < SILENT_USDR_DB]


def silent_stems(rows, runs: list[str]) -> dict[str, list[str]]:
    """Per run (of `runs`, not silent as a whole), the sources whose uSDR is within SILENT_USDR_DB of 0 dB: a model
    that has learned some stems and not yet the others, whose differences on those stems are about how far training
    got, not about a trained model."""
    by_run: dict[str, list[str]] = {}
    silent = set(silent_runs(rows, runs))
    for r in rows:
        if r.system in runs and r.system not in silent and r.source != OVERALL \
                and abs(r.values.get("uSDR", math.nan)) < SILENT_USDR_DB:
            by_run.setdefault(r.system, []).append(r.source)
    return {name: by_run[name] for name in runs if name in by_run}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _markdown(plan, folder, tracks, sources, rows, comps, done, failed, kinds, figures, figure_note, silent,
              stems) -> str:
    differing = _differing(plan)
    finished = [r for r in plan.runs if done.get(r.name)]
    lines = [f"# Study `{plan.name}`", ""]
    if plan.description:
        lines += [plan.description, ""]
    lines += ["## What was compared", ""]
    lines += ["| cell | what differs from the base config | runs |", "|---|---|---|"]
    for cell in plan.cells:
        names = [r.name for r in plan.runs if r.cell == cell]
        mark = " **(baseline)**" if cell == plan.baseline else ""
        lines.append(f"| `{cell}`{mark} | {differing.get(cell, '')} | {', '.join(names)} |")
    lines += [
        "",
        f"Shared by every run: {_shared(plan)}; budget: **{plan.budget_text()}**.",
        f"Seeds: {', '.join(map(str, plan.seeds))} (policy `{plan.seed_policy}`: "
        + ("a run's `train.seed` is its seed, so runs of the same seed see the same batches)."
           if plan.seed_policy == "same" else "every cell gets its own seeds)."),
    ]
    if plan.budget_note:
        lines.append(f"Sized for: {plan.budget_note}.")
    data = _card_data(plan, folder, done)
    counts = (f" ({data['train_tracks']} training tracks, {data['valid_tracks']} for the trainer's validation)"
              if "train_tracks" in data and "valid_tracks" in data else "")
    lines += [
        "",
        f"**On what.** Trained on `{plan.dataset(folder)}`{counts}; scored on the {len(tracks)} held-out songs of subset "
        f"`{plan.heldout}` ({', '.join(t.name for t in tracks[:12])}{' ...' if len(tracks) > 12 else ''}), "
        f"sources {', '.join(sources)}, BSSEval framing `{plan.frames}`. Every run, the ideal ratio mask "
        "(`oracle-IRM`) and the mixture as estimate (`mixture`) are scored on exactly these songs.",
        "",
        "## What it showed",
        "",
    ]
    if silent:
        lines += [
            f"**Warning: {len(silent)} of {len(finished)} runs have not learned to separate** "
            f"({', '.join(f'`{name}`' for name in silent)}): their uSDR (mean over sources) is within "
            f"{SILENT_USDR_DB} dB of 0 dB, the score of a silent output. Differences between such runs, however "
            "clear their intervals, say nothing about the compared settings: the budget (steps, learning rate) is "
            "too small for them. Raise the budget or the learning rate and run the study again.",
            "",
        ]
    if stems:
        lines += [
            f"**Stems that score like silence** (uSDR within {SILENT_USDR_DB} dB of 0 dB) in {len(stems)} of "
            f"{len(finished)} runs: " + "; ".join(f"`{name}`: {', '.join(quiet)}" for name, quiet in stems.items())
            + ". Those models had not started to separate these sources within the budget: a difference on such a "
            "source says how far training got, not how good a trained model would be.",
            "",
        ]
    cell_comps = [c for c in comps if c["level"] == "cell"]
    if not cell_comps:
        lines.append("There is only one cell (or the baseline did not finish): no comparison to report.")
    for cell, reference in plan.cell_pairs():
        mine = [c for c in cell_comps if c["system"] == cell and c["baseline"] == reference]
        label = f"`{cell}`" if reference == plan.baseline else f"`{cell}` against `{reference}`"
        for c in (c for c in mine if c["source"] == OVERALL):
            interval = Interval(c["mean"], c["low"], c["high"], c["songs"])
            lines.append(f"- {label}: " + describe(interval, f"{c['metric']} (mean over sources)", f"`{reference}`"))
        per_source = [c for c in mine if c["source"] != OVERALL and c["metric"] == "SDR"]
        if per_source:
            bits = [f"{c['source']} {db(c['mean'])} [{db(c['low'])}, {db(c['high'])}] "
                    f"{'=' if c['verdict'] == NO_DIFFERENCE else c['verdict']}" for c in per_source]
            lines.append(f"  - SDR by source (dB, 95 % CI; `=` no difference): {'; '.join(bits)}")
    lines += [
        "",
        "Each line is the mean over held-out songs of the per-song difference (cell minus baseline, or minus the "
        "named reference cell; a cell's "
        "per-song value is the mean over its seeds) with a paired bootstrap 95 % confidence interval over songs "
        f"({plan.bootstrap} resamples, seed {plan.bootstrap_seed}). An interval that includes 0 is reported as "
        "**no difference**: with these songs and this budget the data cannot tell the two apart. The converse "
        "does not hold: a difference of a few hundredths of a dB can be statistically clear and still inaudible. "
        "The score tables below give SDR, SIR and SAR as medians over songs (museval's convention), so a "
        "difference here (a mean over songs) need not equal the difference of two medians there.",
    ]
    if failed:
        lines += ["", f"Runs that failed (diverged) and are left out: {', '.join(failed)}."]
    missing = [r.name for r in plan.runs if not done.get(r.name) and r.name not in failed]
    if missing:
        lines += ["", f"Runs not finished yet (left out): {', '.join(missing)}."]

    lines += ["", "## Scores on the held-out songs (mean over sources)", ""]
    lines += _score_table([r for r in rows if r.source == OVERALL], kinds, with_source=False)
    lines += ["", "### By source", ""]
    lines += _score_table([r for r in rows if r.source != OVERALL], kinds, with_source=True)
    lines += [
        "",
        "SDR, SIR, SAR, ISR: BSSEval v4 as museval computes it (median over frames, then median over songs). uSDR "
        "(the MDX challenge's whole-song SDR) and SI-SDR: mean over songs. All in dB, higher is better. SIR measures "
        "leakage of the other sources, SAR artifacts. `oracle-IRM` (masks computed from the true stems) is what an "
        "ideal spectrogram mask reaches; `mixture` is the score of doing nothing.",
    ]
    if comps:
        lines += ["", "## Every difference (to the baseline, and the study's extra pairs)", "",
                  "| level | system | vs | metric | source | mean (dB) | 95 % CI (dB) | songs | verdict |",
                  "|---|---|---|---|---|---:|---|---:|---|"]
        for c in comps:
            lines.append(f"| {c['level']} | `{c['system']}` | `{c['baseline']}` | {c['metric']} | {c['source']} | "
                         f"{db(c['mean'])} | [{db(c['low'])}, {db(c['high'])}] | {c['songs']} | {c['verdict']} |")
    lines += ["", "## Training cost", "",
              "| run | steps | wall (s) | CPU (s) | CPU s / step | parameters | last validation SDR (dB) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for run in finished:
        d = done[run.name]
        steps, cpu = d.get("steps") or 0, d.get("cpu_time_s")
        per_step = cpu / steps if isinstance(cpu, (int, float)) and steps else None
        valid = (d.get("metrics") or {}).get("valid_sdr_mean")
        params = d.get("parameters")
        lines.append(f"| `{run.name}` | {steps} | {_fmt(d.get('wall_time_s'), 1)} | {_fmt(cpu, 1)} | "
                     f"{_fmt(per_step, 3)} | {f'{params:,}' if isinstance(params, int) else '–'} | "
                     f"{_fmt(valid)} |")
    lines += ["", "CPU time is the training process's CPU time (every thread, `time.process_time`, summed over "
              "resumes); wall time excludes checkpoint writing. Validation SDR is the trainer's own estimate on its "
              "validation excerpts, not the held-out score above."]
    lines += ["", "## Figures", ""]
    if figure_note:
        lines.append(figure_note)
    for path in figures:
        rel = path.relative_to(folder)
        lines += [f"![{path.stem}]({rel.as_posix()})", ""]
    lines += ["", "## Files", "",
              "`results.csv` (every system and source), `comparisons.csv` (every interval), `study.json` (all of it, "
              "with per-song values), `eval/<system>/<subset>/<song>.json` (museval format), `runs/<run>/` (model, "
              "card, config, training log and checkpoints), `study.toml` (the study file as run).", ""]
    return "\n".join(lines)


def _card_data(plan: StudyPlan, folder: Path, done: dict[str, Any]) -> dict[str, Any]:
    """The `training.data` part of the first finished run's card (track counts), {} when none finished."""
    for run in plan.runs:
        if done.get(run.name):
            try:
                card = json.loads((run_folder(folder, run) / f"{run.name}.json").read_text(encoding="utf-8"))
                return dict(card.get("training", {}).get("data", {}))
            except (OSError, ValueError):
                return {}
    return {}


def _shared(plan: StudyPlan) -> str:
    """The settings every run has in common that a newcomer needs to read the numbers (those not varied)."""
    varied = {key for run in plan.runs for key in run.settings}
    b = plan.base
    facts = [("model.architecture", f"architecture `{b.model.architecture}`"),
             ("loss.preset", f"loss preset `{b.loss.preset}`"),
             ("train.batch_size", f"batch {b.train.batch_size}"),
             ("data.segment", f"{b.data.segment:g} s segments"),
             ("optim.lr", f"learning rate {b.optim.lr:g}")]
    if b.model.architecture == "hdemucs" and not varied & {"model.architecture", "model.channels", "model.depth"}:
        facts.append(("model.channels", f"HDemucs channels {b.model.channels}, depth {b.model.depth}"))
    return ", ".join(text for key, text in facts if key not in varied)


def _score_table(rows, kinds, with_source: bool) -> list[str]:
    head = "| system | " + ("source | " if with_source else "") + " | ".join(f"{m}" for m in TABLE_COLUMNS) + " | songs |"
    rule = "|---|" + ("---|" if with_source else "") + "---:|" * len(TABLE_COLUMNS) + "---:|"
    out = [head, rule]
    ordered = sorted(rows, key=lambda r: (r.source if with_source else "", kinds.get(r.system) == "baseline"))
    for r in ordered:
        name = f"`{r.system}`" if kinds.get(r.system) == "run" else f"*{r.system}*"
        cells = " | ".join(_fmt(r.values.get(m, math.nan)) for m in TABLE_COLUMNS)
        out.append(f"| {name} | " + (f"{r.source} | " if with_source else "") + f"{cells} | {r.tracks} |")
    return out
