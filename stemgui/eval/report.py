"""Evaluation outputs: museval-compatible per-track JSON, SiSEC-style summary tables, box plots, spectrograms.

Aggregation follows the published conventions so numbers can be compared with papers:
BSSEval metrics (SDR, ISR, SIR, SAR) are the median over 1 s frames, then the median over tracks (SiSEC);
uSDR and SI-SDR are the mean over tracks (MDX challenge); GNSDR is the length-weighted mean of NSDR.
The "overall" row is the mean over sources of the per-source values (as MDX and Demucs report it).
Figures are drawn with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

from stemgui.atomic import atomic_write, atomic_write_bytes, atomic_write_text
from stemgui.errors import ConfigError
from stemgui.eval.metrics import gnsdr, nanmedian_rows
from stemgui.eval.oracle import ORACLE_LABELS

BSS_METRICS = ("SDR", "ISR", "SIR", "SAR")
TRACK_METRICS = ("uSDR", "SI-SDR", "NSDR")
TABLE_METRICS = ("SDR", "ISR", "SIR", "SAR", "uSDR", "SI-SDR", "GNSDR")
MUSEVAL_VERSION = "0.4.1"
"""The museval JSON format version our per-track files follow."""


@dataclass
class TrackScores:
    """All scores of one system on one track: BSSEval per frame, whole-track metrics per source."""

    system: str
    track: str
    sources: list[str]
    samplerate: int
    length: int
    """Track length in samples (GNSDR weights)."""
    framewise: dict[str, np.ndarray]
    """BSS metric -> (sources, frames) in dB, NaN for skipped frames."""
    track_metrics: dict[str, np.ndarray] = field(default_factory=dict)
    """uSDR / SI-SDR / NSDR -> (sources,)."""
    win: float = 1.0
    hop: float = 1.0

    def frame_median(self, metric: str) -> np.ndarray:
        """Per source, the median over frames (museval's per-track number)."""
        return nanmedian_rows(self.framewise[metric])


def _quantize(value: float) -> float:
    """museval stores 5 decimals and turns +-inf into NaN."""
    value = float(value)
    if not math.isfinite(value):
        return math.nan
    return float(Decimal(value).quantize(Decimal(".00001")))


def museval_dict(scores: TrackScores) -> dict:
    """The museval TrackStore JSON structure (readable by `museval.aggregate.json2df` / `EvalStore`), plus a
    `stemgui` entry with the whole-track metrics that museval has no place for."""
    targets = []
    for i, name in enumerate(scores.sources):
        nframes = scores.framewise["SDR"].shape[1]
        frames = [
            {
                "time": t * scores.hop,
                "duration": scores.win,
                "metrics": {m: _quantize(scores.framewise[m][i, t]) for m in ("SDR", "SIR", "SAR", "ISR")},
            }
            for t in range(nframes)
        ]
        targets.append({"name": name, "frames": frames})
    extra = {
        "system": scores.system,
        "track": scores.track,
        "samplerate": scores.samplerate,
        "length": scores.length,
        "metrics": {
            name: {m: _quantize(v[i]) for m, v in scores.track_metrics.items()} for i, name in enumerate(scores.sources)
        },
    }
    return {"targets": targets, "museval_version": MUSEVAL_VERSION, "stemgui": extra}


def write_track_json(path: str | Path, scores: TrackScores) -> Path:
    """Write one track's scores as museval JSON (NaN written as `NaN`, like museval), atomically."""
    return atomic_write_text(path, json.dumps(museval_dict(scores), indent=2, allow_nan=True))


@dataclass
class SummaryRow:
    system: str
    source: str
    values: dict[str, float]
    tracks: int


def _nanmedian(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(np.median(arr)) if arr.size else math.nan


def _nanmean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(np.mean(arr)) if arr.size else math.nan


def per_track_values(tracks: list[TrackScores], metric: str, source: str) -> list[float]:
    """One number per track for `metric` and `source` (frame median for BSS metrics), NaN if absent."""
    out = []
    for scores in tracks:
        if source not in scores.sources:
            continue
        i = scores.sources.index(source)
        if metric in BSS_METRICS:
            out.append(float(scores.frame_median(metric)[i]))
        elif metric == "GNSDR":
            out.append(float(scores.track_metrics.get("NSDR", np.full(len(scores.sources), np.nan))[i]))
        else:
            out.append(float(scores.track_metrics.get(metric, np.full(len(scores.sources), np.nan))[i]))
    return out


def sources_in(tracks: list[TrackScores]) -> list[str]:
    """Every source any of `tracks` scores, in the order they first appear."""
    sources: list[str] = []
    for scores in tracks:
        sources += [s for s in scores.sources if s not in sources]
    return sources


def summarize(systems: dict[str, list[TrackScores]]) -> list[SummaryRow]:
    """Rows (system, source) in order, then an "overall" row per system (mean over sources)."""
    rows: list[SummaryRow] = []
    for system, tracks in systems.items():
        sources = sources_in(tracks)
        system_rows = []
        for source in sources:
            values = {}
            for metric in TABLE_METRICS:
                per_track = per_track_values(tracks, metric, source)
                if metric in BSS_METRICS:
                    values[metric] = _nanmedian(per_track)
                elif metric == "GNSDR":
                    lengths = [t.length for t in tracks if source in t.sources]
                    values[metric] = float(gnsdr(np.array(per_track)[:, None], np.array(lengths))[0]) if per_track else math.nan
                else:
                    values[metric] = _nanmean(per_track)
            count = sum(source in t.sources for t in tracks)
            system_rows.append(SummaryRow(system, source, values, count))
        overall = {m: _nanmean([r.values[m] for r in system_rows]) for m in TABLE_METRICS}
        rows += system_rows
        rows.append(SummaryRow(system, "overall", overall, len(tracks)))
    return rows


LEAK_PREFIX = "leak:"
"""Track metrics `leak:<source>`: that source's level inside each estimate (bsseval.leakage), dB."""


@dataclass
class LeakageRow:
    system: str
    estimate: str
    levels: dict[str, float]
    """interfering source -> mean over tracks of its level in this estimate (dB against the estimate's source)."""


def leakage_rows(systems: dict[str, list[TrackScores]]) -> list[LeakageRow]:
    """Per system and estimated source, the mean over tracks of every other source's level in it (dB)."""
    rows = []
    for system, tracks in systems.items():
        sources = sources_in(tracks)
        for estimate in sources:
            levels = {other: _nanmean(per_track_values(tracks, LEAK_PREFIX + other, estimate))
                      for other in sources if other != estimate}
            if any(math.isfinite(v) for v in levels.values()):
                rows.append(LeakageRow(system, estimate, levels))
    return rows


def _leak_sources(rows: list[LeakageRow]) -> list[str]:
    out: list[str] = []
    for row in rows:
        out += [s for s in [row.estimate, *row.levels] if s not in out]
    return out


def leakage_markdown(rows: list[LeakageRow]) -> str:
    sources = _leak_sources(rows)
    lines = ["| system | estimate | " + " | ".join(f"{s} in it (dB)" for s in sources) + " |",
             "|---|---|" + "---:|" * len(sources)]
    for row in rows:
        cells = ["" if s == row.estimate else _fmt(row.levels.get(s, math.nan)) for s in sources]
        lines.append(f"| {row.system} | {row.estimate} | " + " | ".join(cells) + " |")
    lines += ["", "Leakage: each other source's part of the estimate (its BSSEval v4 whole-track projection, "
              "512-tap filters) against the estimate's own source, dB; mean over tracks. Lower is cleaner: "
              "-20 means that source is 20 dB under the wanted one."]
    return "\n".join(lines) + "\n"


def leakage_text(rows: list[LeakageRow]) -> str:
    sources = _leak_sources(rows)
    header = ["system", "estimate", *(f"{s} in it" for s in sources)]
    body = [[r.system, r.estimate, *("" if s == r.estimate else _fmt(r.levels.get(s, math.nan)) for s in sources)]
            for r in rows]
    return "leakage (dB against the estimate's own source, mean over tracks):\n" + _aligned_text(header, body)


def write_leakage(out_dir: str | Path, rows: list[LeakageRow]) -> list[Path]:
    """`leakage.csv` (system, estimate, source, dB) and `leakage.md` in `out_dir`, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["system", "estimate", "source_in_it", "level_db"])
    for row in rows:
        for source, level in row.levels.items():
            writer.writerow([row.system, row.estimate, source, _fmt(level)])
    out = Path(out_dir)
    return [atomic_write_text(out / "leakage.csv", buffer.getvalue()),
            atomic_write_text(out / "leakage.md", leakage_markdown(rows))]


def _present_metrics(rows: list[SummaryRow]) -> list[str]:
    """Table columns: metrics that have a number somewhere (museval files carry no uSDR, for example)."""
    return [m for m in TABLE_METRICS if any(math.isfinite(r.values.get(m, math.nan)) for r in rows)] or list(BSS_METRICS)


def _fmt(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.3f}"


def table_csv(rows: list[SummaryRow]) -> str:
    metrics = _present_metrics(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["system", "source", *metrics, "tracks"])
    for row in rows:
        writer.writerow([row.system, row.source, *(_fmt(row.values[m]) for m in metrics), row.tracks])
    return buffer.getvalue()


def table_markdown(rows: list[SummaryRow]) -> str:
    metrics = _present_metrics(rows)
    lines = [
        "| system | source | " + " | ".join(f"{m} (dB)" for m in metrics) + " | tracks |",
        "|---|---|" + "---:|" * len(metrics) + "---:|",
    ]
    for row in rows:
        source = f"**{row.source}**" if row.source == "overall" else row.source
        lines.append(f"| {row.system} | {source} | " + " | ".join(_fmt(row.values[m]) for m in metrics) + f" | {row.tracks} |")
    lines += [
        "",
        "SDR/ISR/SIR/SAR: BSSEval v4 (museval), median over 1 s frames then median over tracks. "
        "uSDR, SI-SDR: mean over tracks. GNSDR: length-weighted mean of NSDR = uSDR(estimate) - uSDR(mixture). "
        "overall: mean over sources.",
    ]
    return "\n".join(lines) + "\n"


def table_text(rows: list[SummaryRow]) -> str:
    """Aligned plain-text table for the terminal."""
    metrics = _present_metrics(rows)
    header = ["system", "source", *metrics, "tracks"]
    body = [[r.system, r.source, *(_fmt(r.values[m]) for m in metrics), str(r.tracks)] for r in rows]
    return _aligned_text(header, body)


def _aligned_text(header: list[str], body: list[list[str]]) -> str:
    """Columns padded to their widest cell (the first two, names, to the left; numbers to the right), with a
    rule under the header."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    out = []
    for k, line in enumerate([header, *body]):
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))]
        out.append("  ".join(cells))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def write_tables(out_dir: str | Path, rows: list[SummaryRow]) -> tuple[Path, Path]:
    out = Path(out_dir)
    return (
        # bytes, so the CSV module's \r\n line ends reach the file unchanged on every platform
        atomic_write_bytes(out / "summary.csv", table_csv(rows).encode("utf-8")),
        atomic_write_text(out / "summary.md", table_markdown(rows)),
    )


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("matplotlib is not installed: figures need it (pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")


REFERENCE_SYSTEMS = tuple(ORACLE_LABELS.values())  # drawn grey: bounds to read the others against
GROUPED_MAX_SYSTEMS = 4  # up to this many systems share one panel (grouped by source); more get a panel per source


def system_colors(names: list[str]) -> dict[str, tuple]:
    """One colour per system, the same in every panel: tab10 (tab20 past nine systems) without its greys, which
    are the references'."""
    plt = _pyplot()
    own = [n for n in names if n not in REFERENCE_SYSTEMS]
    palette = [c for c in plt.get_cmap("tab10" if len(own) <= 9 else "tab20").colors if len(set(c)) > 1]
    colors = {n: palette[i % len(palette)] for i, n in enumerate(own)}
    colors.update({n: (0.62, 0.62, 0.62) for n in names if n in REFERENCE_SYSTEMS})
    return colors


def _draw_boxes(ax, values: list[list[float]], positions: list[float], width: float, colors: list) -> None:
    parts = ax.boxplot([v or [math.nan] for v in values], positions=positions, widths=width, patch_artist=True,
                       showfliers=True)
    for box, color in zip(parts["boxes"], colors):
        box.set_facecolor(color)
        box.set_alpha(0.75)
    for median in parts["medians"]:
        median.set_color("black")


def box_plots(systems: dict[str, list[TrackScores]], out_dir: str | Path, metrics=TABLE_METRICS,
              colors: dict[str, tuple] | None = None) -> list[Path]:
    """One PNG per metric of the per-track values: one box per system and source.

    A few systems share one panel, grouped by source; more (a study's runs beside the baselines) get one panel per
    source with the systems side by side and named under their boxes, so a dozen boxes stay readable. `colors`
    (system -> colour) overrides `system_colors` (a study colours its runs by cell).
    """
    plt = _pyplot()
    out = Path(out_dir)
    names = list(systems)
    sources = sources_in([scores for tracks in systems.values() for scores in tracks])
    colors = {**system_colors(names), **(colors or {})}
    written = []
    for metric in metrics:
        key = "NSDR" if metric == "GNSDR" else metric
        data = {(n, s): [v for v in per_track_values(systems[n], key, s) if math.isfinite(v)] for n in names for s in sources}
        if not any(data.values()):
            continue
        label = "NSDR" if metric == "GNSDR" else metric
        what = "median over frames, per track" if metric in BSS_METRICS else "per track"
        if len(names) <= GROUPED_MAX_SYSTEMS:
            fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(sources) * max(1, len(names)) * 0.6 + 2), 4.2))
            width = 0.8 / len(names)
            for k, name in enumerate(names):
                positions = [i + (k - (len(names) - 1) / 2) * width for i in range(len(sources))]
                _draw_boxes(ax, [data[(name, s)] for s in sources], positions, width * 0.85, [colors[name]] * len(sources))
                ax.plot([], [], color=colors[name], lw=8, alpha=0.75, label=name)
            ax.set_xticks(range(len(sources)), sources)
            ax.set_xlim(-0.6, len(sources) - 0.4)
            ax.set_ylabel(f"{label} (dB)")
            ax.set_title(f"{label} ({what})")
            ax.grid(axis="y", alpha=0.3)
            ax.legend(loc="best", fontsize=8)
        else:
            columns = min(2, len(sources))
            rows = math.ceil(len(sources) / columns)
            fig, axes = plt.subplots(rows, columns, figsize=(columns * max(5.0, 0.48 * len(names) + 1.2), 3.4 * rows + 0.9),
                                     sharey=True, squeeze=False)
            for ax, source in zip(axes.flat, sources):
                _draw_boxes(ax, [data[(n, source)] for n in names], list(range(len(names))), 0.6,
                            [colors[n] for n in names])
                ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
                ax.set_title(source)
                ax.grid(axis="y", alpha=0.3)
            for ax in axes[:, 0]:
                ax.set_ylabel(f"{label} (dB)")
            for ax in list(axes.flat)[len(sources):]:
                ax.set_visible(False)
            fig.suptitle(f"{label} ({what}; grey: reference systems)" if set(names) & set(REFERENCE_SYSTEMS)
                         else f"{label} ({what})")
        fig.tight_layout()
        written.append(_save_figure(fig, out / f"boxplot_{label}.png"))
        plt.close(fig)
    return written


def mel_filterbank(samplerate: int, nfft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular HTK-mel filters (n_mels, nfft//2+1), each normalised to unit area (Slaney style)."""
    fmax = samplerate / 2 if fmax is None else fmax

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    freqs = np.linspace(0, samplerate / 2, nfft // 2 + 1)
    lower = (freqs[None, :] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - freqs[None, :]) / (edges[2:, None] - edges[1:-1, None])
    bank = np.maximum(0.0, np.minimum(lower, upper))
    bank *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return bank


def log_mel(wav: np.ndarray, samplerate: int, nfft: int = 2048, hop: int = 512, n_mels: int = 128) -> np.ndarray:
    """Log-mel power spectrogram in dB (n_mels, frames) of a (channels, samples) or (samples,) signal,
    channels averaged in power."""
    from scipy.signal import stft

    wav = np.atleast_2d(np.asarray(wav, dtype=np.float64))
    if wav.shape[-1] < nfft:
        wav = np.pad(wav, [(0, 0), (0, nfft - wav.shape[-1])])
    _, _, spec = stft(wav, nperseg=nfft, noverlap=nfft - hop, window="hann", boundary=None, padded=False)
    power = (np.abs(spec) ** 2).mean(axis=0)
    mel = mel_filterbank(samplerate, nfft, n_mels) @ power
    return 10.0 * np.log10(np.maximum(mel, 1e-12))


def loudest_excerpt(mixture: np.ndarray, samplerate: int, seconds: float) -> slice:
    """The `seconds`-long stretch of a (channels, samples) mixture with the most energy (the part a plot
    should show), on a 0.5 s grid."""
    length = mixture.shape[-1]
    size = int(seconds * samplerate)
    if size >= length:
        return slice(0, length)
    energy = np.cumsum(np.concatenate([[0.0], (np.asarray(mixture, dtype=np.float64) ** 2).sum(axis=0)]))
    step = max(1, samplerate // 2)
    starts = np.arange(0, length - size + 1, step)
    best = int(starts[np.argmax(energy[starts + size] - energy[starts])])
    return slice(best, best + size)


def spectrogram_figure(
    path: str | Path,
    references: np.ndarray,
    estimates: np.ndarray,
    sources: list[str],
    samplerate: int,
    title: str = "",
    seconds: float = 10.0,
) -> Path:
    """Rows = stems; columns = log-mel of the reference, of the estimate, and estimate minus reference in dB
    (red: energy the estimate adds, e.g. leakage from other stems; blue: energy it lost)."""
    plt = _pyplot()
    references = np.asarray(references)
    estimates = np.asarray(estimates)
    span = loudest_excerpt(references.sum(axis=0), samplerate, seconds)
    nsrc = len(sources)
    fig, axes = plt.subplots(
        nsrc, 3, figsize=(13, 2.3 * nsrc + 0.8), squeeze=False, sharex=True, sharey=True, layout="constrained"
    )
    hop = 512
    t0 = span.start / samplerate
    for i, name in enumerate(sources):
        ref = log_mel(references[i][..., span], samplerate, hop=hop)
        est = log_mel(estimates[i][..., span], samplerate, hop=hop)
        top = max(ref.max(), est.max())
        extent = (t0, t0 + ref.shape[1] * hop / samplerate, 0, ref.shape[0])
        for k, (image, label) in enumerate(((ref, "reference"), (est, "estimate"))):
            im = axes[i, k].imshow(image, origin="lower", aspect="auto", cmap="magma", vmin=top - 80, vmax=top, extent=extent)
            axes[i, k].set_title(f"{name}: {label}", fontsize=9)
        fig.colorbar(im, ax=axes[i, 1], pad=0.01, label="dB")
        diff = np.clip(est, top - 80, None) - np.clip(ref, top - 80, None)
        diff_im = axes[i, 2].imshow(diff, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-30, vmax=30, extent=extent)
        axes[i, 2].set_title(f"{name}: estimate - reference", fontsize=9)
        fig.colorbar(diff_im, ax=axes[i, 2], pad=0.01, label="dB (est - ref)")
        axes[i, 0].set_ylabel("mel band")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    written = _save_figure(fig, Path(path))
    plt.close(fig)
    return written


def real_voice_markdown(summaries: dict[str, dict]) -> str:
    """The real-voice check as a Markdown table: one row per system, GNSDR of vocals and accompaniment."""
    lines = ["| system | vocals GNSDR (dB) | accompaniment GNSDR (dB) | clips | seconds |", "|---|---:|---:|---:|---:|"]
    for name, s in summaries.items():
        g = s["gnsdr"]
        lines.append(f"| {name} | {_fmt(g['vocals'])} | {_fmt(g['accompaniment'])} | {s['clips']} | {s['seconds']} |")
    lines += ["", "Real-voice check: MIR-1K clips of held-out singers (stemgui.data.mir1k.HELD_OUT_SINGERS), "
              "resampled to 44.1 kHz; accompaniment = sum of the model's non-vocal stems. "
              "GNSDR: length-weighted mean of NSDR = uSDR(estimate) - uSDR(mixture)."]
    return "\n".join(lines) + "\n"
