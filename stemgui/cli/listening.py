"""`stemgui listening-test create CONFIG.toml | report DB`: prepare a MUSHRA/MOS test, or report its results.

The test itself runs in the app (Tools > Listening test…), which opens the prepared folder.
"""

from __future__ import annotations

import argparse
import sys

EXAMPLE = "example"
"""`stemgui listening-test create example`: the shipped example test, prepared in ./listening-example."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "listening-test",
        help="prepare a MUSHRA / MOS listening test, or report its results",
        description="Blind listening tests of separated stems: MUSHRA (ITU-R BS.1534-3) or MOS/ACR (1-5). "
        "`create` separates the songs with every system and renders each condition once into the test folder; "
        "the app runs the test (Tools > Listening test…); `report` gives means, 95 % intervals, plots and CSV.",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="prepare a test from its TOML definition",
                       description="Read CONFIG.toml, separate its songs with each system, cut the excerpts, "
                       "build the anchors, match loudness (BS.1770) and write the test folder with manifest.json.")
    c.add_argument("config", metavar="CONFIG.toml", help="the test definition, or `example` for the shipped one (resources/listening/example.toml, "
                   "prepared in ./listening-example)")
    c.add_argument("--folder", default=None, help="test folder (default: test.folder, or beside the config)")
    c.set_defaults(func=run_create)
    r = sub.add_parser("report", help="statistics of a test's results database",
                       description="Post-screening (BS.1534-3), mean and 95 % confidence interval per system and "
                       "stem, per-listener table, box/interval plot, CSV export, objective SDR/SIR/SAR and their "
                       "correlation with the ratings.")
    r.add_argument("db", metavar="DB", nargs="+",
                   help="results database (results.sqlite in the test folder); several are merged (listeners "
                   "who took the same test on other machines)")
    r.add_argument("--out", default=None, help="output folder (default: report/ beside the database)")
    r.add_argument("--no-plot", action="store_true", help="skip the figure")
    r.set_defaults(func=run_report)


def run_create(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from stemgui.listening.config import load_config
    from stemgui.listening.prepare import create_test

    config, folder = Path(args.config), args.folder
    if args.config == EXAMPLE and not config.exists():  # the shipped example, wherever resources/ is installed
        from stemgui.paths import resource

        config, folder = resource("listening", "example.toml"), folder or "listening-example"
    cfg = load_config(config)
    if folder:
        cfg = dataclasses.replace(cfg, folder=Path(folder).resolve())
    manifest = create_test(cfg, progress=lambda text: print(text, file=sys.stderr))
    print(manifest)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from stemgui.listening.report import build_report

    rep = build_report(args.db, args.out, plot_figure=not args.no_plot)
    print(rep.text())
    for path in rep.files:
        print(f"wrote {path}", file=sys.stderr)
    return 0
