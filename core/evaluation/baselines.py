"""Baselines every nodule model must beat: diameter-only malignancy and threshold segmentation.

* :class:`DiameterLogistic`: logistic regression of the malignancy label on ``diameter_mm``
  alone, fitted by maximum likelihood (scipy). In LIDC the diameter by itself separates the
  classes with an AUC of about 0.93, so a model that only measures size is worth nothing.
* :func:`threshold_segmentation`: voxels above -400 HU (the lung-tissue threshold of the nodule
  paper), then the connected component at the VOI centre (or the one nearest to it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage, optimize
from scipy.special import expit


@dataclass(frozen=True)
class DiameterLogistic:
    """``P(malignant) = sigmoid(intercept + slope * (d - mean) / std)`` for diameter ``d`` in mm.

    Attributes:
        intercept: fitted intercept.
        slope: fitted slope per standard deviation.
        mean: training mean of the diameter.
        std: training standard deviation of the diameter.
    """

    intercept: float
    slope: float
    mean: float
    std: float

    @classmethod
    def fit(cls, diameters: ArrayLike, labels: ArrayLike) -> DiameterLogistic:
        """Fit by maximum likelihood (no penalty).

        Args:
            diameters: training diameters in mm.
            labels: training labels (0/1).

        Returns:
            The fitted model.

        Raises:
            ValueError: fewer than two cases or a single class.
        """
        d = np.asarray(diameters, dtype=float)
        y = np.asarray(labels, dtype=float)
        if d.size < 2 or y.min() == y.max():
            raise ValueError("the diameter baseline needs at least two cases of both classes")
        mean, std = float(d.mean()), float(d.std() or 1.0)
        z = (d - mean) / std

        def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
            logits = params[0] + params[1] * z
            p = expit(logits)
            nll = float(np.sum(np.logaddexp(0.0, logits) - y * logits))
            residual = p - y
            return nll, np.array([residual.sum(), (residual * z).sum()])

        result = optimize.minimize(loss, np.zeros(2), jac=True, method="BFGS")
        return cls(float(result.x[0]), float(result.x[1]), mean, std)

    def predict(self, diameters: ArrayLike) -> np.ndarray:
        """Probability of malignancy for each diameter."""
        z = (np.asarray(diameters, dtype=float) - self.mean) / self.std
        return expit(self.intercept + self.slope * z)


@dataclass(frozen=True)
class ThresholdConfig:
    """The threshold segmentation baseline.

    Attributes:
        threshold_hu: voxels above it are tissue.
    """

    threshold_hu: float = -400.0


def threshold_segmentation(image_hu: np.ndarray, config: ThresholdConfig | None = None) -> np.ndarray:
    """Threshold the VOI and keep the connected component at (or nearest to) its centre.

    Args:
        image_hu: the VOI in HU, ``(z, y, x)``.
        config: the threshold.

    Returns:
        A binary mask (uint8) of the same shape; empty if nothing is above the threshold.
    """
    config = config or ThresholdConfig()
    labels, count = ndimage.label(image_hu > config.threshold_hu)
    if count == 0:
        return np.zeros(image_hu.shape, np.uint8)
    centre = tuple(n // 2 for n in image_hu.shape)
    chosen = labels[centre]
    if chosen == 0:
        _, nearest = ndimage.distance_transform_edt(labels == 0, return_indices=True)
        chosen = labels[tuple(index[centre] for index in nearest)]
    return (labels == chosen).astype(np.uint8)
