"""Separation quality: BSSEval v4 as museval computes it, whole-track metrics, oracle baselines, reports.

`bsseval.evaluate` is a fast drop-in for `museval.evaluate`; `metrics` has uSDR (MDX), cSDR, SI-SDR, NSDR and
GNSDR; `oracle` the ideal ratio/binary masks and the mixture baseline; `report` the museval JSON, summary
tables and figures used by `stemgui evaluate` and by training validation.
"""

from stemgui.eval.bsseval import evaluate, framewise_sdr
from stemgui.eval.metrics import csdr, gnsdr, nsdr, si_sdr, usdr

__all__ = ["csdr", "evaluate", "framewise_sdr", "gnsdr", "nsdr", "si_sdr", "usdr"]
