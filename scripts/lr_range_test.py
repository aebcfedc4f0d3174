"""Learning-rate range test (Smith 2017, "Cyclical learning rates", section 3.3) for every run of a study file.

Why: a study that gives every architecture the same rate can end with some models that never left silence in
the budget (docs/studies/ablation-lr3e-4: Adam 3e-4 for 300 CPU steps), which says nothing about the models. This
trains each run's model from its random start for a few steps while the rate grows geometrically from --lr-min to
--lr-max, smooths the loss, and suggests a rate a tenth of the one at the smoothed minimum (the usual reading of
the test: the largest rate at which the loss still falls quickly, with a margin for a long run). Models trained by
fitting (NMF) are skipped.

The waveform term is the RMS error for every step (loss.rms_warmup_steps is raised to the test's length), so the
loss keeps one scale from start to end; the masking presets keep their spectral losses.

    python scripts/lr_range_test.py studies/seed-systems.toml --dataset runs/seed-systems.study/data \
        --out runs/lr-range.json [--steps 100] [--runs hdemucs,drnn]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("lr_range_test")


def geometric_rates(lr_min: float, lr_max: float, steps: int) -> np.ndarray:
    """`steps` rates from lr_min to lr_max, evenly spaced on a log scale."""
    return np.geomspace(lr_min, lr_max, steps)


def smoothed(losses: list[float], beta: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction (the first values are not pulled toward 0)."""
    out, avg = [], 0.0
    for k, value in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta ** k))
    return np.asarray(out)


def suggestion(rates: np.ndarray, losses: list[float], *, skip: int = 5) -> dict[str, float | None]:
    """The smoothed loss's minimum, the rate there, and the suggested rate
    (a tenth of the rate at the minimum). `skip` first steps are ignored (the average is still settling), and so
    is everything from the first non-finite loss on."""
    finite = np.isfinite(losses)
    if not finite.all():  # the steps from the first NaN / inf on (a diverged step) are not part of the curve
        losses = losses[:int(np.argmin(finite))]
    smooth = smoothed(losses)
    n = len(smooth)
    if n <= skip + 2:
        return {"lr_at_min": None, "suggested_lr": None, "min_loss": None}
    best = skip + int(np.argmin(smooth[skip:]))
    return {"lr_at_min": float(rates[best]), "suggested_lr": float(rates[best]) / 10,
            "min_loss": float(smooth[best]), "first_loss": float(smooth[skip])}


def range_test(cfg, rates: np.ndarray, diverge_factor: float = 4.0) -> dict:
    """Train cfg's model from scratch one step per rate; stops once the smoothed loss exceeds
    diverge_factor x its minimum. Returns the per-step losses and the suggestion."""
    import torch

    from stemgui.train.data import SegmentDataset
    from stemgui.train.trainer import Trainer

    cfg.train.steps = len(rates)
    cfg.loss.rms_warmup_steps = len(rates)
    cfg.optim.lr_decay, cfg.optim.warmup_steps, cfg.optim.ema_decay = "none", 0, 0.0
    trainer = Trainer(cfg)
    if trainer.opt_g is None:
        return {"skipped": "trained by fitting, not by gradient steps"}
    dataset = SegmentDataset(trainer.train_tracks, trainer.sources, trainer.cfg, length=len(rates) * cfg.train.batch_size)
    batch = cfg.train.batch_size
    losses: list[float] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    stopped = None
    for step, rate in enumerate(rates):
        trainer.cfg.optim.lr = float(rate)  # lr_at(step) is optim.lr without decay or warm-up
        items = [dataset[step * batch + k] for k in range(batch)]
        mix = torch.stack([m for m, _ in items])
        stems = torch.stack([s for _, s in items])
        record = trainer.train_step(mix, stems)
        loss = float(record["loss"])
        losses.append(loss)
        smooth = smoothed(losses)
        if not math.isfinite(loss) or (step > 10 and smooth[-1] > diverge_factor * smooth[5:].min()):
            stopped = f"diverged at lr {rate:.2e} (step {step})"
            break
    result = {
        "architecture": getattr(trainer.G, "architecture", "?"),
        "parameters": sum(p.numel() for p in trainer.G.parameters()),
        "preset": cfg.loss.preset,
        "rates": [float(r) for r in rates[:len(losses)]],
        "losses": losses,
        "stopped": stopped,
        "wall_s": round(time.perf_counter() - started, 1),
        "cpu_s": round(time.process_time() - cpu_started, 1),
    }
    result.update(suggestion(rates[:len(losses)], losses))
    return result


def plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name, r in results.items():
        if "losses" not in r:
            continue
        smooth = smoothed(r["losses"])
        ax.plot(r["rates"], smooth / smooth[min(5, len(smooth) - 1)], label=f"{name} (suggested {r['suggested_lr']:.1e})"
                if r.get("suggested_lr") else name)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (grows geometrically, one step each)")
    ax.set_ylabel("smoothed training loss / its value at step 5")
    ax.set_ylim(0, 2.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Learning-rate range test, from a random start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", help="study file (its runs' models, losses and data settings are tested)")
    ap.add_argument("--dataset", required=True, help="a prepared dataset folder (e.g. the study's data/)")
    ap.add_argument("--out", required=True, help="JSON file for the curves and suggestions (a PNG beside it)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr-min", type=float, default=1e-5)
    ap.add_argument("--lr-max", type=float, default=1e-1)
    ap.add_argument("--runs", default="", help="comma-separated run names (default: every run's first seed)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from stemgui.errors import StemGUIError
    from stemgui.study.config import load_study

    try:
        plan = load_study(args.study)
    except StemGUIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wanted = [n for n in args.runs.split(",") if n]
    runs, seen = [], set()
    for run in plan.runs:
        if run.cell in seen or (wanted and run.name not in wanted and run.cell not in wanted):
            continue
        seen.add(run.cell)
        runs.append(run)
    out = Path(args.out)
    results: dict[str, dict] = json.loads(out.read_text()) if out.is_file() else {}  # resumable per run
    rates = geometric_rates(args.lr_min, args.lr_max, args.steps)
    for run in runs:
        if run.cell in results:
            log.info("%s: done before, kept", run.cell)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cfg = plan.run_config(run, Path(tmp))
            cfg.data.dataset = str(Path(args.dataset).resolve())
            log.info("%s: range test over %d steps", run.cell, args.steps)
            results[run.cell] = range_test(cfg, rates)
        r = results[run.cell]
        log.info("%s: %s", run.cell, r.get("skipped") or
                 f"min at {r['lr_at_min']:.2e}, suggested {r['suggested_lr']:.2e} ({r['wall_s']} s)")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
    plot(results, out.with_suffix(".png"))
    print(f"{'run':<14}{'arch':<12}{'params':>10}  {'lr at min':>10}  {'suggested':>10}  stopped")
    for name, r in results.items():
        if "losses" not in r:
            print(f"{name:<14}{'':<12}{'':>10}  {r.get('skipped', '')}")
            continue
        fmt = lambda v: f"{v:.2e}" if v else "-"  # noqa: E731
        print(f"{name:<14}{r['architecture']:<12}{r['parameters']:>10}  {fmt(r['lr_at_min']):>10}  "
              f"{fmt(r['suggested_lr']):>10}  {r['stopped'] or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
