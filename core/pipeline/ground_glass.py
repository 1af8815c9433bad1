"""The ground-glass scorer: which ground-glass candidates are subsolid nodules.

The second pool of the detector (:func:`lungai.pipeline.detection.detect_nodules`): the
strongest ``top`` candidates of :func:`lungai.preprocessing.ground_glass.find_ground_glass` per
scan, each scored by a logistic regression on what the filter measured
(:data:`lungai.preprocessing.ground_glass.FEATURES`), the logit of the ``convlstm_nodule`` ROI
score and the candidate's rank. Its probability is mapped onto the detector's score scale
piecewise linearly, so that its own thresholds for ``high`` / ``balanced`` / ``specific`` land on
the detector's: one score, one set of operating points, one FROC.

The regression and its thresholds are fitted by ``python benchmarks/ground_glass_pool.py fit``
(training-split subsolid VOIs pasted into the training backgrounds; thresholds on the validation
inserted-nodule scans) and stored beside this module in ``ground_glass_scorer.json`` with what
they were measured on. Torch-free.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lungai.pipeline.operating_points import OPERATING_POINTS
from lungai.preprocessing.ground_glass import FEATURES, GroundGlassCandidate

SCORER_FILE = Path(__file__).with_name("ground_glass_scorer.json")

MAX_SPACING_MM = (1.5, 1.5, 5.0)
"""The coarsest (x, y, z) spacing the pool runs on: in-plane, the filter's own 1.5 mm working grid
(finer scans are resampled to it; the scorer was fitted and calibrated on 0.84-0.98 mm); along z,
the thickest slices of its training backgrounds (2 and 5 mm). On coarser grids partial volume
makes much of the lung look like ground glass (a 4 mm thorax gave 20 detections above
``specific``), so the pool is off there."""

INPUTS = (*FEATURES, "roi_logit", "log_rank")
"""The regression's inputs, in order: the filter's measurements, the ROI score's logit, ``log(1 + rank)``."""


def applies_to(spacing_mm: Sequence[float]) -> bool:
    """Whether the ground-glass pool runs on a scan of this (x, y, z) spacing (:data:`MAX_SPACING_MM`)."""
    return all(float(s) <= limit + 1e-6 for s, limit in zip(spacing_mm, MAX_SPACING_MM))


def feature_matrix(candidates: Sequence[GroundGlassCandidate], roi: np.ndarray) -> np.ndarray:
    """``(N, len(INPUTS))`` inputs of candidates (strongest first) with their ROI scores."""
    if not len(candidates):
        return np.zeros((0, len(INPUTS)))
    clipped = np.clip(np.asarray(roi, float), 1e-4, 1 - 1e-4)
    return np.column_stack([np.array([c.features() for c in candidates]), np.log(clipped / (1 - clipped)),
                            np.log1p(np.arange(len(candidates)))])


@dataclass(frozen=True)
class GroundGlassScorer:
    """A fitted ground-glass scorer.

    Attributes:
        top: candidates scored per scan (the strongest).
        mean: per input, the standardisation mean.
        scale: per input, the standardisation scale.
        coefficients: per standardised input, the regression coefficient.
        intercept: the regression's intercept.
        thresholds: per operating point, the probability that maps onto the detector's threshold.
        source: what it was fitted and calibrated on.
    """

    top: int
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coefficients: tuple[float, ...]
    intercept: float
    thresholds: Mapping[str, float]
    source: str

    def probabilities(self, inputs: np.ndarray) -> np.ndarray:
        """The regression's probability for each row of :func:`feature_matrix`."""
        z = (inputs - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coefficients) + self.intercept)))

    def detection_scores(self, probabilities: np.ndarray) -> np.ndarray:
        """Probabilities on the detector's score scale: each operating point's probability threshold
        onto that point's detector threshold, linear in between, 0 -> 0 and 1 -> 1."""
        names = sorted(self.thresholds, key=lambda n: self.thresholds[n])
        knots = np.array([0.0, *(self.thresholds[n] for n in names), 1.0])
        targets = np.array([0.0, *(OPERATING_POINTS[n].threshold for n in names), 1.0])
        return np.interp(probabilities, knots, targets)

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": list(INPUTS), "top": self.top, "mean": list(self.mean), "scale": list(self.scale),
                "coefficients": list(self.coefficients), "intercept": self.intercept,
                "thresholds": dict(self.thresholds), "source": self.source}


def read_scorer(path: Path = SCORER_FILE) -> GroundGlassScorer:
    """Read a scorer file.

    Raises:
        ValueError: the file's inputs are not :data:`INPUTS`, or its thresholds do not rise from
            ``high`` to ``specific``.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    if tuple(data["inputs"]) != INPUTS:
        raise ValueError(f"{path}: the scorer's inputs {data['inputs']} are not {list(INPUTS)}")
    thresholds = {str(k): float(v) for k, v in data["thresholds"].items()}
    if not thresholds["high"] < thresholds["balanced"] < thresholds["specific"]:
        raise ValueError(f"{path}: thresholds must rise from high to specific, got {thresholds}")
    return GroundGlassScorer(top=int(data["top"]), mean=tuple(data["mean"]), scale=tuple(data["scale"]),
                             coefficients=tuple(data["coefficients"]), intercept=float(data["intercept"]),
                             thresholds=thresholds, source=str(data["source"]))
