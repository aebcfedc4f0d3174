"""The Fine-tune panel's live curves: generator loss terms (log scale), the discriminator loss, validation SDR."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt

from stemgui.train.finetune_log import D_TERMS, G_TERMS, MEAN_KEY, TrainingHistory

G_COLOURS = {"loss": "#e4e6eb", "l1": "#5aa9ff", "stft": "#ffb347", "adv": "#ff6b6b", "fm": "#7ee081"}
D_COLOURS = {"d_loss": "#ff6b6b"}
SOURCE_COLOURS = {"drums": "#ff6b6b", "bass": "#ffb347", "other": "#4fc3f7", "vocals": "#c792ea",
                  "accompaniment": "#7ee081", MEAN_KEY: "#e4e6eb"}
EXTRA_COLOURS = ("#7ee081", "#f78fb3", "#ffd866", "#78dce8")
LOG_FLOOR = 1e-8  # a log axis cannot show zero


def _plot(title: str, log_y: bool = False) -> pg.PlotItem:
    plot = pg.PlotItem(title=title)
    plot.showGrid(x=True, y=True, alpha=0.25)
    plot.setLabel("bottom", "step")
    plot.setDownsampling(auto=True, mode="peak")  # long runs: tens of thousands of points stay fluid
    plot.setClipToView(True)
    plot.addLegend(offset=(-8, 8), labelTextSize="8pt", brush=pg.mkBrush(31, 34, 42, 215), pen=pg.mkPen("#3a3f4b"))
    if log_y:
        plot.setLogMode(False, True)
    return plot


class TrainingPlots(pg.GraphicsLayoutWidget):
    """Three plots drawn from a TrainingHistory; a curve appears the first time its series has a point."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(300)
        self.plots = {"generator": _plot("Generator losses (log scale)", log_y=True),
                      "discriminator": _plot("Discriminator loss"),
                      "validation": _plot("Validation SDR per source (dB)")}
        self.addItem(self.plots["generator"], row=0, col=0, colspan=2)
        self.addItem(self.plots["discriminator"], row=1, col=0)
        self.addItem(self.plots["validation"], row=1, col=1)
        self._curves: dict[tuple[str, str], pg.PlotDataItem] = {}

    def clear_curves(self) -> None:
        """Remove every curve (another run is shown next)."""
        for plot in self.plots.values():
            for item in list(plot.listDataItems()):
                plot.removeItem(item)
            if plot.legend is not None:
                plot.legend.clear()
        self._curves.clear()

    def show_history(self, history: TrainingHistory) -> None:
        """Draw every series of `history` (all points: the curves are replaced, not appended to)."""
        for key, series in history.generator.items():
            if series:
                values = [max(v, LOG_FLOOR) for v in series.values]
                self._curve("generator", key, G_TERMS[key], G_COLOURS[key]).setData(series.steps, values)
        for key, series in history.discriminator.items():
            if series:
                self._curve("discriminator", key, D_TERMS[key], D_COLOURS[key]).setData(series.steps, series.values)
        for i, (key, series) in enumerate(history.validation.items()):
            if series:
                colour = SOURCE_COLOURS.get(key, EXTRA_COLOURS[i % len(EXTRA_COLOURS)])
                self._curve("validation", key, key, colour).setData(series.steps, series.values)

    def shown_steps(self, plot: str, key: str) -> list[float]:
        """The steps the curve `key` of `plot` (generator, discriminator, validation) shows; [] when none."""
        curve = self._curves.get((plot, key))
        if curve is None:
            return []
        steps, _values = curve.getData()
        return [] if steps is None else steps.tolist()

    def _curve(self, plot: str, key: str, label: str, colour: str) -> pg.PlotDataItem:
        curve = self._curves.get((plot, key))
        if curve is None:
            width = 2.5 if key in ("loss", MEAN_KEY) else 1.6
            style = Qt.DashLine if key == MEAN_KEY else Qt.SolidLine
            symbol = "o" if plot == "validation" else None
            curve = self.plots[plot].plot([], [], name=label, pen=pg.mkPen(colour, width=width, style=style),
                                          symbol=symbol, symbolSize=5, symbolBrush=colour, symbolPen=None)
            self._curves[(plot, key)] = curve
        return curve
