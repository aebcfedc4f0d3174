"""`stemgui study CONFIG.toml`: train a grid of runs, score them on one held-out set, report with intervals.

See `stemgui.study` for the file format and the folder it writes; `studies/` holds the shipped studies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "study", help="train a grid of runs and compare them on held-out songs (REPORT.md with 95 %% intervals)",
        description="Train every run of a study file (architecture x loss preset x any setting x seeds) one after "
                    "another on one dataset and budget, score them with the ideal-ratio-mask and mixture baselines "
                    "on the same held-out songs, and write REPORT.md, CSV, JSON and figures into the study folder. "
                    "Killed at any point, --resume continues: finished runs are never trained again.",
    )
    p.add_argument("config", metavar="CONFIG.toml", help="study file (see studies/ for examples)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="study folder (default: ./<study name>.study)")
    p.add_argument("--resume", action="store_true", help="continue the study in --out where it stopped")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="held-out songs scored in parallel processes (training runs one after another; default 1)")
    p.add_argument("--check", action="store_true",
                   help="check the study file, build every run's model once (a model that cannot run is one line "
                        "now, not after hours), list the runs and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stemgui.study.config import load_study

    plan = load_study(args.config)
    folder = Path(args.out) if args.out else Path(f"{plan.name}.study")
    if args.check:
        from stemgui.study.runner import check_models

        parameters = check_models(plan)
        print(f"{args.config}: {len(plan.runs)} runs in {len(plan.cells)} cells, {plan.budget_text()}; "
              f"baseline {plan.baseline}")
        for spec in plan.runs:
            print(f"  {spec.name}  ({parameters[spec.cell]:,} parameters)")
        return 0
    from stemgui.study.runner import run_study

    report = run_study(plan, folder, resume=args.resume, jobs=args.jobs, progress=not args.no_progress)
    print(f"study {plan.name}: report in {report}", file=sys.stderr)
    return 0
