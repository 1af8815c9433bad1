"""Measured features of one segmented nodule: size, attenuation, shape and margin, from pixels only.

The same function serves ``lungai run`` (the scan's HU around a segmented lesion and its mask)
and training and evaluation (an LIDC VOI and the mask LungAI's own ``resunet3d`` predicts on
it), so the scorers that read these features see identical numbers in both. Reader ratings and
the readers' diameter never enter. The method:

1. **Crop.** The HU and mask are cut to the mask's bounding box grown by
   :attr:`NoduleFeatureConfig.context_mm` (and clipped to the array): the margin features see at
   most that much of the surroundings, whether the input is a whole scan or a tight VOI.
2. **Size.** Log volume (``log(1 + mm³)``) and the Lung-RADS axial long and short axis
   (:func:`lungai.preprocessing.measurements.axial_diameters`).
3. **Attenuation** inside the mask: mean and standard deviation, the 10th, 50th and 95th
   percentiles, the fraction at or above :attr:`~NoduleFeatureConfig.calcium_hu` (calcium),
   the solid fraction of the eroded core (:func:`lungai.preprocessing.measurements.classify_type`,
   the HU rule the nodule type comes from) and the fraction within
   :attr:`~NoduleFeatureConfig.fat_hu` (fat, and partial volume of lung with tissue).
4. **Shape**: sphericity of the marching-cubes surface, solidity (volume over the convex hull's),
   elongation and flatness (square roots of the principal-axis variance ratios), and the
   coefficient of variation of the surface's distance from the centroid (lobulation, spicules).
5. **Margin**: the HU step across the boundary (mean of a shell
   :attr:`~NoduleFeatureConfig.margin_mm` thick outside the mask minus one inside) and the mean
   HU gradient magnitude on the boundary voxels (sharp versus ill-defined edges).

A mask of fewer than :attr:`~NoduleFeatureConfig.min_voxels` voxels gets the neutral shape
values of a sphere (1, 1, 1, 1, 0) and no margin step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, spatial
from skimage import measure

from lungai.preprocessing.measurements import axial_diameters, classify_type

#: The features, in the order :func:`feature_vector` returns them.
FEATURE_NAMES: tuple[str, ...] = (
    "log_volume", "long_axis", "short_axis",
    "mean_hu", "hu_sd", "hu_p10", "hu_p50", "hu_p95", "calcified_fraction", "solid_fraction", "fat_fraction",
    "sphericity", "solidity", "elongation", "flatness", "radial_cv",
    "margin_contrast", "margin_gradient",
)

_FACE_CONNECTED = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class NoduleFeatureConfig:
    """Settings of the measured features (see the module docstring).

    Attributes:
        context_mm: surroundings kept around the mask's bounding box.
        margin_mm: thickness of the inner and outer shells of the margin step.
        calcium_hu: voxels at or above this count as calcium.
        fat_hu: (low, high) HU range counted as fat.
        min_voxels: masks smaller than this get neutral shape values.
    """

    context_mm: float = 3.0
    margin_mm: float = 1.5
    calcium_hu: float = 200.0
    fat_hu: tuple[float, float] = (-120.0, -40.0)
    min_voxels: int = 8


def nodule_features(hu: np.ndarray, mask: np.ndarray, spacing_zyx: tuple[float, float, float],
                    config: NoduleFeatureConfig = NoduleFeatureConfig()) -> dict[str, float]:
    """The measured features of one nodule, by name (:data:`FEATURE_NAMES`).

    Args:
        hu: ``(z, y, x)`` HU around the nodule (a scan box or a VOI).
        mask: the nodule's mask on the same grid.
        spacing_zyx: voxel spacing in mm.
        config: the feature settings.

    Raises:
        ValueError: the mask is empty or not on the HU grid.
    """
    if hu.shape != mask.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the HU shape {hu.shape}")
    if not mask.any():
        raise ValueError("cannot measure an empty nodule mask")
    image, inside = _cropped(np.asarray(hu, np.float32), mask.astype(bool), spacing_zyx, config.context_mm)
    values = {**_size(inside, spacing_zyx), **_attenuation(image, inside, config),
              **_shape(inside, spacing_zyx, config.min_voxels), **_margin(image, inside, spacing_zyx, config)}
    return {name: float(values[name]) for name in FEATURE_NAMES}


def feature_vector(features: dict[str, float]) -> np.ndarray:
    """The features as a float64 vector in :data:`FEATURE_NAMES` order."""
    return np.array([features[name] for name in FEATURE_NAMES], float)


def _cropped(hu: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float],
             context_mm: float) -> tuple[np.ndarray, np.ndarray]:
    bbox = ndimage.find_objects(mask.astype(np.uint8))[0]
    box = tuple(slice(max(0, b.start - math.ceil(context_mm / s)), min(n, b.stop + math.ceil(context_mm / s)))
                for b, s, n in zip(bbox, spacing, mask.shape))
    return hu[box], mask[box]


def _size(mask: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    diameters = axial_diameters(mask, spacing)
    volume = float(mask.sum() * np.prod(spacing))
    return {"log_volume": math.log1p(volume), "long_axis": diameters.long_axis_mm,
            "short_axis": diameters.short_axis_mm}


def _attenuation(hu: np.ndarray, mask: np.ndarray, config: NoduleFeatureConfig) -> dict[str, float]:
    values = hu[mask]
    p10, p50, p95 = np.percentile(values, [10, 50, 95])
    _, solid_fraction, _ = classify_type(hu, mask)
    low, high = config.fat_hu
    return {"mean_hu": values.mean(), "hu_sd": values.std(), "hu_p10": p10, "hu_p50": p50, "hu_p95": p95,
            "calcified_fraction": np.mean(values >= config.calcium_hu), "solid_fraction": solid_fraction,
            "fat_fraction": np.mean((values >= low) & (values <= high))}


def _shape(mask: np.ndarray, spacing: tuple[float, float, float], min_voxels: int) -> dict[str, float]:
    if mask.sum() < min_voxels:
        return {"sphericity": 1.0, "solidity": 1.0, "elongation": 1.0, "flatness": 1.0, "radial_cv": 0.0}
    step = np.asarray(spacing, float)
    vertices, faces, _, _ = measure.marching_cubes(np.pad(mask, 1).astype(np.float32), 0.5, spacing=tuple(step))
    volume = float(mask.sum() * step.prod())
    area = float(measure.mesh_surface_area(vertices, faces))
    try:
        solidity = min(1.0, volume / spatial.ConvexHull(vertices).volume)
    except spatial.QhullError:  # a flat mask
        solidity = 1.0
    points = np.argwhere(mask) * step
    variances = np.sort(np.linalg.eigvalsh(np.cov(points.T)))[::-1].clip(1e-9)
    radii = np.linalg.norm(vertices - (points.mean(0) + step), axis=1)  # the pad shifts the mesh by one voxel
    return {"sphericity": np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area if area > 0 else 1.0,
            "solidity": solidity, "elongation": np.sqrt(variances[1] / variances[0]),
            "flatness": np.sqrt(variances[2] / variances[0]), "radial_cv": radii.std() / radii.mean()}


def _margin(hu: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float],
            config: NoduleFeatureConfig) -> dict[str, float]:
    shell = max(1, round(config.margin_mm / min(spacing)))
    outer = ndimage.binary_dilation(mask, _FACE_CONNECTED, iterations=shell) & ~mask
    inner = mask & ~ndimage.binary_erosion(mask, _FACE_CONNECTED, iterations=shell)
    contrast = float(hu[outer].mean() - hu[inner].mean()) if outer.any() and inner.any() else 0.0
    gradient = np.linalg.norm(np.stack(np.gradient(hu, *spacing)), axis=0) if min(hu.shape) > 1 else np.zeros_like(hu)
    boundary = mask & ~ndimage.binary_erosion(mask, _FACE_CONNECTED)
    return {"margin_contrast": contrast, "margin_gradient": float(gradient[boundary].mean())}
