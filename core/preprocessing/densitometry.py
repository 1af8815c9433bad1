"""Emphysema densitometry: low-attenuation areas and the 15th percentile of lung density.

The standard quantitative CT measures of emphysema, per lung and for both lungs together:

- LAA-950 (and -910, -856): the percentage of lung voxels below the threshold, in HU. -950 is
  the usual emphysema threshold on inspiratory CT, -910 a milder one, -856 the air-trapping
  threshold on expiratory CT. "Below" is strict: a voxel of exactly -950 HU does not count.
- Perc15: the HU value below which 15% of the lung voxels lie (linear interpolation between
  voxel values, as ``numpy.percentile``).
- volume (mL) and mean density (HU).

The lung mask includes vessels and anything the closing brought in (nodules), as in the
usual whole-lung densitometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from lungai import labels


@dataclass(frozen=True)
class DensitometryConfig:
    """What to measure.

    Attributes:
        laa_thresholds_hu: thresholds of the low-attenuation-area percentages.
        percentile: the percentile of lung density reported (15 for Perc15).
    """

    laa_thresholds_hu: tuple[int, ...] = (-950, -910, -856)
    percentile: float = 15.0


@dataclass(frozen=True)
class LungDensity:
    """Densitometry of one lung region.

    Attributes:
        volume_ml: volume of the region.
        mean_hu: mean density.
        percentile_hu: the configured percentile of density (Perc15 by default).
        percentile: which percentile ``percentile_hu`` is.
        laa_percent: threshold (HU) -> percentage of voxels below it.
    """

    volume_ml: float
    mean_hu: float
    percentile_hu: float
    percentile: float
    laa_percent: dict[int, float]

    def to_dict(self) -> dict[str, float]:
        """JSON-ready measures.

        Keys: ``laa_950_percent`` (one per threshold), ``perc15_hu`` (named after the
        percentile), ``volume_ml`` and ``mean_hu``.
        """
        result = {f"laa_{abs(t)}_percent": value for t, value in self.laa_percent.items()}
        result[f"perc{self.percentile:g}_hu"] = self.percentile_hu
        result["volume_ml"] = self.volume_ml
        result["mean_hu"] = self.mean_hu
        return result


@dataclass(frozen=True)
class Densitometry:
    """Densitometry of the right lung, the left lung and both together.

    Attributes:
        right: the right lung, or ``None`` when the mask has no right lung.
        left: the left lung, or ``None`` when the mask has no left lung.
        total: both lungs.
    """

    right: LungDensity | None
    left: LungDensity | None
    total: LungDensity

    def to_dict(self) -> dict[str, dict[str, float] | None]:
        """JSON-ready ``{"right": {...}, "left": {...}, "total": {...}}``."""
        return {"right": self.right.to_dict() if self.right else None,
                "left": self.left.to_dict() if self.left else None,
                "total": self.total.to_dict()}


def measure_densitometry(image: sitk.Image, lung_labels: sitk.Image,
                         config: DensitometryConfig | None = None) -> Densitometry:
    """Measure LAA percentages, Perc15, volume and mean density of the lungs.

    Args:
        image: CT in HU.
        lung_labels: label image on the same grid (``labels.LUNG_RIGHT.value``,
            ``labels.LUNG_LEFT.value``), e.g. ``LungMask.labels``.
        config: thresholds and percentile; the defaults give LAA-950/-910/-856 and Perc15.

    Returns:
        The measures per lung and in total.

    Raises:
        ValueError: the images are not on the same grid, or the label image has no lung.
    """
    cfg = config or DensitometryConfig()
    _check_same_grid(image, lung_labels)
    hu = sitk.GetArrayViewFromImage(image)
    lungs = sitk.GetArrayViewFromImage(lung_labels)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    right = lungs == labels.LUNG_RIGHT.value
    left = lungs == labels.LUNG_LEFT.value
    if not right.any() and not left.any():
        raise ValueError("the lung label image contains no lung voxels")
    return Densitometry(right=_measure(hu[right], voxel_ml, cfg),
                        left=_measure(hu[left], voxel_ml, cfg),
                        total=_measure(hu[right | left], voxel_ml, cfg))


def _measure(values: np.ndarray, voxel_ml: float, cfg: DensitometryConfig) -> LungDensity | None:
    if values.size == 0:
        return None
    values = values.astype(np.float64)
    laa = {int(t): float(np.count_nonzero(values < t)) * 100.0 / values.size
           for t in cfg.laa_thresholds_hu}
    return LungDensity(volume_ml=values.size * voxel_ml, mean_hu=float(values.mean()),
                       percentile_hu=float(np.percentile(values, cfg.percentile)),
                       percentile=cfg.percentile, laa_percent=laa)


def _check_same_grid(image: sitk.Image, lung_labels: sitk.Image) -> None:
    same = (image.GetSize() == lung_labels.GetSize()
            and np.allclose(image.GetSpacing(), lung_labels.GetSpacing(), atol=1e-4)
            and np.allclose(image.GetOrigin(), lung_labels.GetOrigin(), atol=1e-3)
            and np.allclose(image.GetDirection(), lung_labels.GetDirection(), atol=1e-5))
    if not same:
        raise ValueError("the CT image and the lung labels are not on the same grid")
