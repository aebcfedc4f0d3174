"""Studies: a grid of training runs on one dataset, scored on one held-out set, compared with confidence intervals.

`config` reads and checks the study TOML into a plan of runs, `runner` trains them one after another (resumable
after kill -9), `evaluate` scores every run and the oracle baselines on the same held-out songs, `stats` holds the
paired bootstrap, `report` writes REPORT.md, CSV, JSON and figures. Qt-free; `stemgui study` is the command.
"""
