"""Calibration of probabilities: expected calibration error, Brier score, reliability diagram.

* **ECE** (expected calibration error): the probabilities are put into :data:`ECE_BINS` (10)
  equal-width bins on [0, 1] (the last bin closed); per non-empty bin the absolute gap between
  the mean predicted probability and the observed fraction of positives, weighted by the bin's
  share of the cases, summed.
* **Brier score**: the mean squared difference between probability and outcome (0/1).
* **Reliability diagram**: per non-empty bin, mean predicted probability against observed
  fraction, drawn over the diagonal of perfect calibration, with the bin counts as bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ECE_BINS = 10


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability diagram.

    Attributes:
        low: the bin's lower edge.
        high: its upper edge.
        count: cases in it.
        mean_probability: their mean predicted probability.
        observed: their fraction of positives.
    """

    low: float
    high: float
    count: int
    mean_probability: float
    observed: float


def reliability_bins(probability: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """The non-empty equal-width bins of the probabilities (see the module docstring)."""
    p, y = np.asarray(probability, float), np.asarray(labels, float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            out.append(ReliabilityBin(b / bins, (b + 1) / bins, int(inside.sum()), float(p[inside].mean()),
                                      float(y[inside].mean())))
    return out


def expected_calibration_error(probability: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width bins (see the module docstring)."""
    table = reliability_bins(probability, labels, bins)
    total = sum(b.count for b in table)
    return float(sum(b.count / total * abs(b.mean_probability - b.observed) for b in table))


def brier_score(probability: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared error of the probabilities against the 0/1 outcomes."""
    return float(np.mean((np.asarray(probability, float) - np.asarray(labels, float)) ** 2))


def reliability_png(probability: np.ndarray, labels: np.ndarray, path: Path, title: str) -> Path:
    """Draw the reliability diagram (Agg canvas) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    table = reliability_bins(probability, labels)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    top.plot([b.mean_probability for b in table], [b.observed for b in table], marker="o", color="tab:blue",
             label=f"model (ECE {expected_calibration_error(probability, labels):.3f})")
    top.set(ylabel="observed fraction", xlim=(0, 1), ylim=(0, 1), title=title)
    top.legend(loc="upper left", fontsize=8)
    bottom.bar([(b.low + b.high) / 2 for b in table], [b.count for b in table], width=0.09, color="tab:blue")
    bottom.set(xlabel="predicted probability (10 bins)", ylabel="nodules")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
