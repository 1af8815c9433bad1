"""The emphysema models' input: a CT's lungs cropped, windowed and resized, and LAA-950.

Training (:mod:`lungai.data.emphysema_dataset`) and inference (:mod:`lungai.inference.emphysema`)
prepare scans the same way, so the preparation lives here, below both; so does the -950 HU
threshold that the densitometry, the simulator and the low-attenuation map share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai.io.volume_arrays import to_lps
from lungai.preprocessing.roi import resample

#: Voxels strictly below this (HU) are low-attenuation areas (LAA-950).
LAA_THRESHOLD_HU = -950
HU_WINDOW = (-1024.0, -400.0)
SLICES = 35


def laa_percent(hu: np.ndarray, lung: np.ndarray, threshold_hu: float = LAA_THRESHOLD_HU) -> float:
    """Percentage of lung voxels strictly below ``threshold_hu`` (as the densitometry counts)."""
    values = hu[lung]
    if values.size == 0:
        raise ValueError("the lung mask is empty")
    return float(np.count_nonzero(values < threshold_hu)) * 100.0 / values.size


def image_arrays(image: sitk.Image, lung_labels: sitk.Image
                 ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A CT and its lung labels as LPS ``(z, y, x)`` arrays (HU int16, bool mask) and the spacing."""
    image, lung_labels = to_lps(image), to_lps(lung_labels)
    spacing = image.GetSpacing()
    return (sitk.GetArrayFromImage(image).astype(np.int16), sitk.GetArrayFromImage(lung_labels) > 0,
            (spacing[2], spacing[1], spacing[0]))


def input_shape(model_config: object) -> tuple[int, int, int]:
    """``(35, 16 gh, 16 gw)`` for a model whose last feature grid is ``(.., gh, gw)``."""
    grid = getattr(model_config, "feature_grid")
    return (SLICES, 16 * int(grid[-2]), 16 * int(grid[-1]))


@dataclass(frozen=True)
class PreparedVolume:
    """A scan made ready for the emphysema models.

    Attributes:
        volume: ``(35, H, W)`` uint8, the window scaled to 0..255 (stored small; see
            :func:`lungai.inference.emphysema.to_tensor`).
        laa950_percent: LAA-950 of the whole lung mask at native resolution (the densitometry baseline).
    """

    volume: np.ndarray
    laa950_percent: float


def prepare_volume(image: sitk.Image, lung_labels: sitk.Image, shape: tuple[int, int, int]) -> PreparedVolume:
    """Lung-mask, crop, window and resize a CT (the paper's preprocessing).

    Args:
        image: CT in HU.
        lung_labels: its lung labels (any non-zero value is lung), same grid.
        shape: the model's input ``(D, H, W)``.

    Returns:
        The prepared volume and the scan's LAA-950.

    Raises:
        ValueError: the lung labels are empty.
    """
    hu, lung, _ = image_arrays(image, lung_labels)
    return prepare_arrays(hu, lung, shape)


def prepare_arrays(hu: np.ndarray, lung: np.ndarray, shape: tuple[int, int, int]) -> PreparedVolume:
    """:func:`prepare_volume` on LPS ``(z, y, x)`` arrays: HU and a boolean lung mask."""
    laa = laa_percent(hu, lung)
    occupied = np.nonzero(lung)
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in occupied)
    low, high = HU_WINDOW
    scaled = (np.clip(hu[box].astype(np.float32), low, high) - low) / (high - low)
    scaled[~lung[box]] = 1.0
    factors = [n / s for n, s in zip(scaled.shape[1:], shape[1:])]
    sigma = [0.0] + [0.5 * f if f > 1 else 0.0 for f in factors]
    if any(sigma):
        scaled = ndimage.gaussian_filter(scaled, sigma, mode="nearest")
    resized = resample(scaled, shape, order=1)
    return PreparedVolume(np.clip(np.rint(resized * 255.0), 0, 255).astype(np.uint8), laa)
