"""`stemgui listening-test report DB`: tables, CSV files and a box/interval plot of a listening test's results.

Writes into the output folder: `summary.csv` (mean, 95 % CI and objective scores per condition, all stems and
per stem), `listeners.csv` (the per-listener table and post-screening), `ratings.csv` (every rating, for other
tools), `correlation.csv`, `ratings.png` (boxes of the ratings with the mean and its interval) and `report.md`.
Figures use matplotlib's Agg backend (no display, no Qt).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from stemgui.atomic import atomic_write, atomic_write_text
from stemgui.errors import StemGUIError
from stemgui.listening import stats
from stemgui.listening.store import open_results


@dataclass
class Report:
    mode: str
    screening: stats.Screening
    rows: list[stats.ConditionRow]
    listeners: list[stats.ListenerRow]
    correlations: list[stats.Correlation]
    observations: list[stats.Observation]
    files: list[Path]

    def text(self) -> str:
        return markdown(self)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def markdown(rep: Report) -> str:
    lines = [f"# Listening test ({rep.mode.upper()})", ""]
    if rep.mode == "mushra":
        lines.append(f"Post-screening (ITU-R BS.1534-3): a listener is excluded when the hidden reference is rated "
                     f"below {rep.screening.threshold:g} in more than {rep.screening.max_fraction:.0%} of trials.")
        lines.append(f"Kept {len(rep.screening.kept)} listener(s)"
                     + (f"; excluded: {', '.join(rep.screening.excluded)}." if rep.screening.excluded else "."))
        lines.append("")
    lines += ["| stem | condition | n | mean | 95 % CI | SDR | SIR | SAR |", "|---|---|---|---|---|---|---|---|"]
    for r in rep.rows:
        iv = r.interval
        ci = "-" if math.isnan(iv.low) else f"{iv.low:.1f} – {iv.high:.1f}"
        lines.append(f"| {r.stem} | {r.label} | {iv.n} | {_fmt(iv.mean)} | {ci} | {_fmt(r.objective.get('SDR'), 2)} "
                     f"| {_fmt(r.objective.get('SIR'), 2)} | {_fmt(r.objective.get('SAR'), 2)} |")
    lines += ["", "## Listeners", ""]
    labels = sorted({k for row in rep.listeners for k in row.means})
    lines.append("| listener | trials | hidden ref < threshold | excluded | " + " | ".join(labels) + " |")
    lines.append("|---" * (4 + len(labels)) + "|")
    for row in rep.listeners:
        frac = "-" if row.reference_below is None else f"{row.reference_below:.0%}"
        lines.append(f"| {row.listener} | {row.trials} | {frac} | {'yes' if row.excluded else 'no'} | "
                     + " | ".join(_fmt(row.means.get(k)) for k in labels) + " |")
    lines += ["", "## Subjective vs objective (per trial and system)", ""]
    lines += ["| metric | pairs | Pearson r | p | Spearman ρ | p |", "|---|---|---|---|---|---|"]
    for c in rep.correlations:
        lines.append(f"| {c.metric} | {c.n} | {_fmt(c.pearson, 3)} | {_fmt(c.pearson_p, 3)} | {_fmt(c.spearman, 3)} "
                     f"| {_fmt(c.spearman_p, 3)} |")
    return "\n".join(lines) + "\n"


def plot(rep: Report, path: Path, mode: str) -> Path:
    """Boxes of the kept ratings per condition (one panel per stem, first all stems), mean ± 95 % CI on top."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    groups = list(dict.fromkeys(r.stem for r in rep.rows))
    fig = Figure(figsize=(max(6.0, 1.1 * len({r.condition for r in rep.rows}) + 2), 3.6 * len(groups)))
    kept = set(rep.screening.kept)
    for i, group in enumerate(groups, start=1):
        ax = fig.add_subplot(len(groups), 1, i)
        rows = [r for r in rep.rows if r.stem == group]
        data = [[o.rating for o in rep.observations if o.listener in kept and o.condition == r.condition
                 and (group == stats.ALL_STEMS or o.stem == group)] for r in rows]
        positions = list(range(1, len(rows) + 1))
        ax.boxplot(data, positions=positions, widths=0.5, showfliers=True)
        means = [r.interval.mean for r in rows]
        errs = [0.0 if math.isnan(r.interval.half_width) else r.interval.half_width for r in rows]
        ax.errorbar(positions, means, yerr=errs, fmt="o", color="tab:red", capsize=5, label="mean ± 95 % CI")
        ax.set_xticks(positions, [r.label for r in rows], rotation=20)
        ax.set_ylim(*((0, 100) if mode == "mushra" else (1, 5)))
        ax.set_ylabel("MUSHRA score" if mode == "mushra" else "ACR score (MOS)")
        ax.set_title("all stems" if group == stats.ALL_STEMS else group)
        ax.grid(axis="y", alpha=0.3)
        if i == 1:
            ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110), suffix=".png")


def read_results(dbs: list[Path]) -> tuple:
    """(manifest, ratings, trial rows) of one test from one or several databases (listeners who took the test
    on different machines); every database must hold the same test, and a listener name only one of them."""
    manifest, ratings, trial_rows, owner = None, [], [], {}
    for db in dbs:
        with open_results(db) as store:
            if manifest is not None and (store.manifest.name != manifest.name
                                         or [t.id for t in store.manifest.trials] != [t.id for t in manifest.trials]):
                raise StemGUIError(f"{db}: holds another test than {dbs[0]} ('{store.manifest.name}')")
            manifest = manifest or store.manifest
            for row in store.trial_rows():
                if owner.setdefault(row["listener"], db) != db:
                    raise StemGUIError(f"{db}: listener '{row['listener']}' is also in {owner[row['listener']]}; "
                                       "rename one of them before merging")
                trial_rows.append(row)
            ratings += store.ratings()
    return manifest, ratings, trial_rows


def build_report(db: str | Path | list, out: str | Path | None = None, plot_figure: bool = True) -> Report:
    """Read the results database `db` (or a list of them, merged) and write the report files into `out`
    (default: the first database's folder/report)."""
    dbs = [Path(p) for p in (db if isinstance(db, (list, tuple)) else [db])]
    db = dbs[0]
    manifest, ratings, trial_rows = read_results(dbs)
    if not ratings:
        raise StemGUIError(f"{db}: no trial has been submitted yet")
    obs = stats.observations(ratings, manifest)
    screening = stats.post_screen(obs) if manifest.mode == "mushra" else stats.Screening(
        {o.listener: None for o in obs}, [])
    rows = stats.summarize(obs, screening.kept, list(manifest.stems))
    rep = Report(manifest.mode, screening, rows, stats.listener_table(obs, screening),
                 stats.correlations(obs, screening.kept), obs, [])
    folder = Path(out) if out else db.parent / "report"
    folder.mkdir(parents=True, exist_ok=True)
    summary = [["stem", "condition", "kind", "label", "n", "mean", "ci_low", "ci_high", "std", *stats.OBJECTIVE]]
    for r in rows:
        iv = r.interval
        summary.append([r.stem, r.condition, r.kind, r.label, iv.n, _num(iv.mean), _num(iv.low), _num(iv.high),
                        _num(iv.std), *[_num(r.objective.get(m)) for m in stats.OBJECTIVE]])
    labels = sorted({k for row in rep.listeners for k in row.means})
    listeners = [["listener", "trials", "hidden_reference_below_fraction", "excluded", *labels]]
    for row in rep.listeners:
        listeners.append([row.listener, row.trials, _num(row.reference_below), int(row.excluded),
                          *[_num(row.means.get(k)) for k in labels]])
    by_trial = {(t["listener"], t["trial"]): t for t in trial_rows}
    raw = [["listener", "trial", "position", "song", "stem", "condition", "kind", "label", "blind_label", "rating",
            "plays", "seconds_heard", "trial_seconds"]]
    for r, o in zip(ratings, obs):
        t = by_trial.get((r.listener, r.trial), {})
        raw.append([r.listener, r.trial, t.get("position", ""), o.song, o.stem, r.condition, o.kind, o.label, r.label,
                    r.rating, r.plays, round(r.seconds_heard, 3), round(float(t.get("seconds", 0.0)), 3)])
    corr = [["metric", "pairs", "pearson_r", "pearson_p", "spearman_rho", "spearman_p"]]
    for c in rep.correlations:
        corr.append([c.metric, c.n, _num(c.pearson), _num(c.pearson_p), _num(c.spearman), _num(c.spearman_p)])
    for name, table in (("summary.csv", summary), ("listeners.csv", listeners), ("ratings.csv", raw),
                        ("correlation.csv", corr)):
        rep.files.append(atomic_write_text(folder / name, _csv(table)))
    if plot_figure:
        rep.files.append(plot(rep, folder / "ratings.png", manifest.mode))
    rep.files.append(atomic_write_text(folder / "report.md", markdown(rep)))
    return rep


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)
