"""The evaluation box plots stay readable for a study's dozen systems, with one colour per system."""

from __future__ import annotations

import numpy as np

from stemgui.eval.report import REFERENCE_SYSTEMS, TrackScores, box_plots, system_colors

SOURCES = ["drums", "bass", "other", "vocals"]


def _scores(system: str, track: str, offset: float) -> TrackScores:
    rng = np.random.default_rng([ord(c) for c in system + track])
    framewise = {m: offset + rng.normal(size=(len(SOURCES), 6)) for m in ("SDR", "SIR", "SAR", "ISR")}
    return TrackScores(system, track, SOURCES, 44100, 44100 * 6, framewise,
                       {"uSDR": offset + rng.normal(size=len(SOURCES))})


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_a_dozen_systems_get_a_panel_per_source_of_a_readable_size(tmp_path):
    names = [f"run{i}" for i in range(9)] + ["oracle-IRM", "mixture"]
    systems = {n: [_scores(n, f"song{k}", i) for k in range(3)] for i, n in enumerate(names)}
    written = box_plots(systems, tmp_path, metrics=("SDR", "uSDR"))
    assert [p.name for p in written] == ["boxplot_SDR.png", "boxplot_uSDR.png"]
    width, height = _png_size(written[0])
    # one panel per source in two columns: about 1.4 by 1 rather than 8 by 1 for the grouped layout
    assert width < 1800 and height > 600 and width / height < 2.5, (width, height)


def test_few_systems_share_one_grouped_panel(tmp_path):
    systems = {n: [_scores(n, "song0", 0.0)] for n in ("a", "b")}
    width, height = _png_size(box_plots(systems, tmp_path, metrics=("SDR",))[0])
    assert height < 500 and width >= 660  # one row, sources side by side


def test_each_system_keeps_its_colour_and_the_references_are_grey():
    names = [f"run{i}" for i in range(12)] + list(REFERENCE_SYSTEMS)
    colors = system_colors(names)
    own = [colors[n] for n in names if n not in REFERENCE_SYSTEMS]
    assert len(set(own)) == 12  # past nine systems the palette is tab20, not a repeated tab10
    assert all(len(set(c)) > 1 for c in own)  # no system is grey like the references
    assert {colors[n] for n in REFERENCE_SYSTEMS} == {(0.62, 0.62, 0.62)}
    nine = system_colors([f"run{i}" for i in range(9)])
    assert len(set(nine.values())) == 9 and all(len(set(c)) > 1 for c in nine.values())
