"""Paired volumetry: one nodule's volume on both scans, measured the same way.

Two independent segmentations of one nodule differ by more than its growth often does: the
scans have other slice thicknesses and noise, and a threshold on a blurred edge moves the
boundary. A 10 % volume error on a nodule growing by 30 % moves its doubling time by about
40 %. So the change of a matched nodule is measured on both scans with one method and one
nodule level:

1. **A region on each scan.** A mask from a segmentation at a mapped position
   (:mod:`lungai.followup.remeasure`; :attr:`Side.mapped`) is first cut to the other scan's mask
   mapped onto its grid by the registration (nearest neighbour, the transform of the nodule's
   lung) and dilated by :attr:`VolumetryConfig.margin_mm`, so that a segmentation merged with a
   neighbour does not count the neighbour. Each scan's region is then its own mask dilated by
   :attr:`VolumetryConfig.margin_mm` (the blurred edge), cut to a ball about the mask's centroid
   whose radius is :attr:`VolumetryConfig.ball_factor` times the mask's equivalent-sphere radius
   plus the margin (vessels and other structures attached to the mask), without the voxels of
   other lesions. The region of the earlier method, one region for both scans (the union of the
   two masks, dilated), held on the prior scan the structures next to the nodule that the grown
   nodule covers, which pulled the volume ratio of growing nodules towards 1.
2. **Two levels.** The background level of each scan is the median HU of the lung tissue
   (below :attr:`VolumetryConfig.tissue_below_hu`) in a shell :attr:`VolumetryConfig.shell_mm`
   wide around its region; the nodule level is one number for both scans, the
   :attr:`VolumetryConfig.core_percentile` percentile of the HU inside the mask of the scan with
   the thinner slices (the less blurred one).
3. **Partial-volume volume.** Each voxel of the region counts by the fraction
   ``clip((HU - background) / (nodule - background), 0, 1)``; the volume is the sum times the
   voxel volume. Resampling and blurring move attenuation between voxels but keep its sum, so
   this volume does not depend on the slice thickness the way a thresholded mask's does
   (the partial-volume method of nodule volumetry).

The volumes replace the segmented ones in the growth measures (change, doubling time) and the
growth flag uses the mean diameter scaled by the volume ratio's cube root
(:func:`consistent_diameters`); the per-scan segmentations stay in each scan's own findings.
The region (own mask, ball of 1.0 times the equivalent radius, mapped masks cut) was chosen on the
tune pairs of ``lungai data simulate-follow-up`` (docs/follow-up.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai.io.volume_arrays import spacing_zyx
from lungai.labels import NODULE_BASE_VALUE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VolumetryConfig:
    """Settings of the paired volumetry (see the module docstring).

    Attributes:
        margin_mm: dilation of each mask (and of the other scan's mask that cuts a mapped one).
        ball_factor: the region's ball about the mask's centroid has this many times the mask's
            equivalent-sphere radius plus ``margin_mm`` as its radius.
        shell_mm: width of the shell whose lung tissue gives the background level.
        tissue_below_hu: shell voxels above this are not lung tissue (vessels, wall).
        core_percentile: percentile of the mask's HU taken as the nodule level.
        min_contrast_hu: the smallest nodule-minus-background difference measured.
    """

    margin_mm: float = 2.0
    ball_factor: float = 1.0
    shell_mm: float = 3.0
    tissue_below_hu: float = -500.0
    core_percentile: float = 90.0
    min_contrast_hu: float = 150.0


@dataclass(frozen=True)
class PairedVolumes:
    """The two volumes of :func:`paired_volumes`.

    Attributes:
        prior_mm3: the volume on the prior scan.
        current_mm3: the volume on the current scan.
        background_hu: background level of prior and current.
        nodule_hu: the nodule level used for both.
    """

    prior_mm3: float
    current_mm3: float
    background_hu: tuple[float, float]
    nodule_hu: float

    @property
    def ratio(self) -> float:
        """Current over prior volume."""
        return self.current_mm3 / self.prior_mm3


@dataclass(frozen=True)
class Side:
    """One scan's part: its image, its label array and the nodule's label value.

    ``mapped``: the nodule's mask comes from a segmentation at a mapped position (its region is cut
    to the other scan's mask first, see the module docstring).
    """

    image: sitk.Image
    labels: np.ndarray
    value: int
    mapped: bool = False


def _box(mask: np.ndarray, pad: tuple[int, int, int]) -> tuple[slice, slice, slice]:
    found = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(0, s.start - p), min(n, s.stop + p))  # type: ignore[return-value]  # three slices
                 for s, p, n in zip(found, pad, mask.shape))


def _pad(image: sitk.Image, mm: float) -> tuple[int, int, int]:
    return tuple(int(np.ceil(mm / s)) + 1 for s in spacing_zyx(image))  # type: ignore[return-value]  # three axes


def _crop(image: sitk.Image, box: tuple[slice, slice, slice]) -> sitk.Image:
    """The sub-image of ``box`` (z, y, x), keeping its physical position."""
    index = [box[2].start, box[1].start, box[0].start]
    size = [box[2].stop - box[2].start, box[1].stop - box[1].start, box[0].stop - box[0].start]
    return sitk.RegionOfInterest(image, size, index)


def _mask_image(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(like)
    return image


def _moved(mask: sitk.Image, grid: sitk.Image, grid_to_mask: sitk.Transform) -> np.ndarray:
    """``mask`` resampled onto ``grid`` (nearest neighbour); ``grid_to_mask`` maps grid points into the mask's space."""
    return sitk.GetArrayFromImage(sitk.Resample(mask, grid, grid_to_mask, sitk.sitkNearestNeighbor, 0)).astype(bool)


def _dilated(mask: np.ndarray, spacing: tuple[float, float, float], mm: float) -> np.ndarray:
    """``mask`` grown by ``mm`` (an ellipsoid of that radius in voxels of each axis)."""
    radius = [max(0, int(round(mm / s))) for s in spacing]
    zz, yy, xx = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((a / max(r, 1)) ** 2 for a, r in zip((zz, yy, xx), radius)) <= 1.0
    return ndimage.binary_dilation(mask, structure=ball)


def _background(hu: np.ndarray, region: np.ndarray, spacing: tuple[float, float, float],
                config: VolumetryConfig) -> float:
    shell = _dilated(region, spacing, config.shell_mm) & ~region
    tissue = hu[shell & (hu < config.tissue_below_hu)]
    return float(np.median(tissue)) if tissue.size >= 10 else -850.0


def _volume(hu: np.ndarray, region: np.ndarray, background: float, nodule: float,
            spacing: tuple[float, float, float]) -> float:
    fraction = np.clip((hu[region].astype(np.float64) - background) / (nodule - background), 0.0, 1.0)
    return float(fraction.sum() * np.prod(spacing))


def _ball(mask: np.ndarray, spacing: tuple[float, float, float], factor: float, margin_mm: float) -> np.ndarray:
    """The voxels within ``factor`` x the equivalent-sphere radius of ``mask`` plus ``margin_mm`` of its centroid."""
    step = np.asarray(spacing, dtype=np.float64)
    centre = np.argwhere(mask).mean(axis=0) * step
    radius = factor * (3.0 * np.count_nonzero(mask) * float(np.prod(step)) / (4.0 * np.pi)) ** (1.0 / 3.0) + margin_mm
    axes = np.ogrid[tuple(slice(0, n) for n in mask.shape)]
    distance2 = sum((a * s - c) ** 2 for a, s, c in zip(axes, step, centre))
    return np.asarray(distance2 <= radius ** 2)


def _cut_to_other(side: Side, own: np.ndarray, other: Side, other_mask: np.ndarray, other_to_side: sitk.Transform,
                  margin_mm: float) -> np.ndarray:
    """``own`` (``side``'s mask) within ``other_mask`` mapped onto ``side``'s grid and dilated by ``margin_mm``.

    ``other_to_side`` maps points of ``side``'s space into ``other``'s (SimpleITK resampling).
    """
    other_box = _box(other_mask, _pad(other.image, margin_mm))
    box = _box(own, _pad(side.image, margin_mm))
    moved = _moved(_mask_image(other_mask[other_box], _crop(other.image, other_box)), _crop(side.image, box),
                   other_to_side)
    cut = np.zeros_like(own)
    cut[box] = own[box] & _dilated(moved, spacing_zyx(side.image), margin_mm)
    return cut


def _region(image: sitk.Image, labels: np.ndarray, mask: np.ndarray, config: VolumetryConfig
            ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """The crop box and, inside it, the measured region of one scan (see the module docstring, step 1)."""
    box = _box(mask, _pad(image, config.margin_mm + config.shell_mm))
    spacing = spacing_zyx(image)
    local = mask[box]
    region = (_dilated(local, spacing, config.margin_mm) & _ball(local, spacing, config.ball_factor, config.margin_mm)
              & ~((labels[box] > NODULE_BASE_VALUE) & ~local))
    return box, region


def paired_volumes(prior: Side, current: Side, current_to_prior: sitk.Transform,
                   config: VolumetryConfig | None = None) -> PairedVolumes | None:
    """Both volumes of one matched nodule, measured together (see the module docstring).

    Args:
        prior: the prior scan, its labels and the nodule's label value there.
        current: the same for the current scan.
        current_to_prior: the registration (current point -> prior point) of the nodule's lung.
        config: the settings.

    Returns:
        The two volumes, or ``None`` when a mask is empty (also after a mapped one is cut), the
        region leaves a scan, the nodule hardly differs from its background or a volume comes out
        as zero (nothing in its region above the background; then the segmented volumes stand).
    """
    cfg = config or VolumetryConfig()
    prior_own, current_own = prior.labels == prior.value, current.labels == current.value
    if not prior_own.any() or not current_own.any():
        return None
    prior_mask = (_cut_to_other(prior, prior_own, current, current_own, current_to_prior.GetInverse(), cfg.margin_mm)
                  if prior.mapped else prior_own)
    current_mask = (_cut_to_other(current, current_own, prior, prior_own, current_to_prior, cfg.margin_mm)
                    if current.mapped else current_own)
    if not prior_mask.any() or not current_mask.any():
        return None
    prior_box, p_region = _region(prior.image, prior.labels, prior_mask, cfg)
    current_box, c_region = _region(current.image, current.labels, current_mask, cfg)
    if _touches_edge(p_region) or _touches_edge(c_region):
        return None
    p_spacing, c_spacing = spacing_zyx(prior.image), spacing_zyx(current.image)
    p_hu = sitk.GetArrayViewFromImage(prior.image)[prior_box]
    c_hu = sitk.GetArrayViewFromImage(current.image)[current_box]
    backgrounds = (_background(p_hu, p_region, p_spacing, cfg), _background(c_hu, c_region, c_spacing, cfg))
    sharper_hu, sharper_mask = ((p_hu, prior_mask[prior_box]) if p_spacing[0] <= c_spacing[0]
                                else (c_hu, current_mask[current_box]))
    nodule = float(np.percentile(sharper_hu[sharper_mask], cfg.core_percentile))
    if nodule - max(backgrounds) < cfg.min_contrast_hu:
        return None
    volumes = (round(_volume(p_hu, p_region, backgrounds[0], nodule, p_spacing), 1),
               round(_volume(c_hu, c_region, backgrounds[1], nodule, c_spacing), 1))
    if min(volumes) <= 0.0:
        return None
    return PairedVolumes(volumes[0], volumes[1], (round(backgrounds[0], 1), round(backgrounds[1], 1)), round(nodule, 1))


def _touches_edge(region: np.ndarray) -> bool:
    """Whether ``region`` reaches a face of its array (the crop was too small or the scan ends)."""
    return bool(region[0].any() or region[-1].any() or region[:, 0].any() or region[:, -1].any()
                or region[:, :, 0].any() or region[:, :, -1].any())


def consistent_diameters(prior_mm: float, current_mm: float, ratio: float) -> tuple[float, float]:
    """Mean diameters then and now that agree with the volume ratio.

    The nodule is taken to scale alike in every direction, so the current diameter is the prior
    one times ``ratio ** (1/3)``; the prior diameter is the mean of the two scans' estimates of
    it (``prior_mm`` and ``current_mm / ratio ** (1/3)``).

    Returns:
        ``(prior, current)`` mean diameters, mm.
    """
    scale = float(ratio) ** (1.0 / 3.0)
    prior = (prior_mm + current_mm / scale) / 2.0
    return prior, prior * scale
