"""Lesion insertion: real LIDC nodule VOIs pasted, with their masks, into real lung tissue.

A nodule VOI (``lidc_vois/``, HU crop + reader-consensus mask) is moved so that its mask
centroid lands on a chosen point of a background scan, resampled onto the background's grid,
and blended in: ``out = (1 - w) * background + w * voi`` with ``w`` the nodule mask smoothed by
a Gaussian of ``blend_sigma_mm`` (a soft partial-volume border, no hard seam), restricted to
where the VOI has data. Outside the pasted region the scan is unchanged, voxel for voxel.

Placement (:func:`place_nodules`) picks random lung voxels such that the whole pasted mask lies
inside the lung mask, away (``min_gap_mm``) from the other pasted nodules and from the excluded
regions of the background (its real tumours: those are not nodules to learn from and not
negatives either). A share of the nodules (``pleural_fraction``) is placed against the lung
boundary instead (juxtapleural: chest wall, mediastinum or diaphragm): the nodule's centre lies
``pleural_depth`` times its radius inside the lung, so that part of it reaches into the wall; at
least half of its mask stays in the lung, and there the blend keeps the wall's own tissue outside
the nodule's mask (no halo of the VOI's parenchyma in the wall).

Backgrounds (:func:`load_background`) are the project's non-test whole scans:
``elastix_chest`` (``backgrounds/elastix_chest.nrrd``; a right-lung tumour, excluded by a sphere
found by inspection, :data:`ELASTIX_TUMOUR`, and a small nodule, :data:`ELASTIX_NODULE`) and
``A0001`` (``lung_pet_ct_dx/A0001/dicom.zip``; an adenocarcinoma whose per-slice boxes in
``boxes/`` are excluded with a margin). The LIDC-IDRI whole-scan test patients are never
backgrounds.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai.data.lidc_vois import VOISample
from lungai.errors import InputNotFoundError

logger = logging.getLogger(__name__)

BACKGROUND_NAMES = ("elastix_chest", "A0001")

ELASTIX_TUMOUR = ((-86.0, 81.0, -7.5), 30.0)
"""Centre (LPS mm) and radius (mm) of a sphere covering the right-lung tumour of
``elastix_chest`` with a margin (the candidate filter's strongest 15 mm blob there, checked on
axial and coronal views)."""

ELASTIX_NODULE = ((-43.6, 135.2, -90.8), 5.0)
"""Centre (LPS mm) and radius (mm) of a sphere around a solid nodule of about 7 mm (109 voxels above
-300 HU) in the right lung of ``elastix_chest``, found by inspection of the detector's strongest
recurring false positive on the validation inserted-nodule scans (the same place in all ten
``elastix_chest`` scans): round on axial and coronal views, not a vessel. It is one of the
background's :attr:`Background.lesions`, not an excluded region: placement does not avoid it, so
the seeded evaluation scans stay as they were."""

BOX_MARGIN_MM = 10.0

SHELL_MM = 20.0
"""Depth of the lung layer along its boundary that juxtapleural sites are drawn from (a 40 mm nodule's
centre at 0.9 of its radius)."""


@dataclass(frozen=True)
class InsertionConfig:
    """How nodules are pasted.

    Attributes:
        blend_sigma_mm: Gaussian smoothing of the mask that makes the blending weight.
        min_gap_mm: least distance between the borders of two pasted nodules, and between a
            pasted nodule and an excluded region.
        max_tries: random sites tried per nodule before giving up on it.
        pleural_fraction: share of the nodules placed against the lung boundary (0: none,
            the placement of every earlier insertion; 1: all).
        pleural_depth: range of the depth of a juxtapleural nodule's centre inside the lung, as
            fractions of its volume-equivalent radius.
        pleural_min_lung: least share of a juxtapleural nodule's mask inside the lung mask.
    """

    blend_sigma_mm: float = 1.0
    min_gap_mm: float = 10.0
    max_tries: int = 300
    pleural_fraction: float = 0.0
    pleural_depth: tuple[float, float] = (0.3, 0.9)
    pleural_min_lung: float = 0.5


@dataclass
class Background:
    """A whole scan nodules are pasted into.

    Attributes:
        name: one of :data:`BACKGROUND_NAMES`.
        image: int16 HU, LPS.
        lungs: lung labels on the same grid (1 right, 2 left).
        excluded: bool ``(z, y, x)`` array: real tumours with a margin; never sites nor negatives.
        lesions: bool ``(z, y, x)`` array: every real lesion known in the scan (``excluded`` and
            small nodules found later); never negatives, and in an evaluation a detection there is
            neither a hit nor a false positive. ``None``: ``excluded`` holds them all.
    """

    name: str
    image: sitk.Image
    lungs: sitk.Image
    excluded: np.ndarray = field(repr=False)
    lesions: np.ndarray | None = field(default=None, repr=False)
    _shell: tuple[np.ndarray, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    def known_lesions(self) -> np.ndarray:
        """Bool ``(z, y, x)``: the voxels of the background's known real lesions."""
        return self.excluded if self.lesions is None else self.lesions

    def pleural_shell(self) -> tuple[np.ndarray, np.ndarray]:
        """``(voxels (N, 3) z, y, x, depth_mm (N,))``: allowed lung voxels within :data:`SHELL_MM` of the lung boundary.

        The depth is the Euclidean distance to the nearest non-lung voxel; computed once per background.
        """
        if self._shell is None:
            lungs = sitk.GetArrayViewFromImage(self.lungs) > 0
            depth = ndimage.distance_transform_edt(lungs, sampling=np.asarray(self.lungs.GetSpacing())[::-1])
            voxels = np.argwhere(lungs & ~self.excluded & (depth <= SHELL_MM))
            self._shell = (voxels, depth[tuple(voxels.T)].astype(np.float32))
        return self._shell


@dataclass(frozen=True)
class PastedNodule:
    """One nodule placed in a scan.

    Attributes:
        case_id: the VOI it came from.
        centre_lps_mm: the centroid of its pasted mask, LPS mm.
        diameter_mm: the VOI's reference diameter (``nodules.csv``).
    """

    case_id: str
    centre_lps_mm: tuple[float, float, float]
    diameter_mm: float


@dataclass
class InsertedScan:
    """A background with nodules pasted in.

    Attributes:
        image: int16 HU, same grid as the background.
        mask: uint8 on the same grid; ``i + 1`` marks nodule ``i`` of ``nodules``.
        nodules: the pasted nodules.
    """

    image: sitk.Image
    mask: sitk.Image
    nodules: list[PastedNodule]


def voi_images(sample: VOISample) -> tuple[sitk.Image, sitk.Image]:
    """A VOI's HU crop and mask as SimpleITK images in their world position."""
    images = []
    for array in (sample.image.astype(np.float32), sample.mask.astype(np.float32)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing([float(v) for v in sample.spacing_zyx[::-1]])
        image.SetOrigin([float(v) for v in sample.origin_lps])
        images.append(image)
    return images[0], images[1]


def augment_voi(sample: VOISample, rng: np.random.Generator) -> VOISample:
    """The VOI flipped along random axes and rotated by a random multiple of 90 degrees in-plane."""
    image, mask = sample.image, sample.mask
    for axis in range(3):
        if rng.random() < 0.5:
            image, mask = np.flip(image, axis), np.flip(mask, axis)
    spacing = sample.spacing_zyx
    turns = int(rng.integers(4))
    if turns % 2 and not np.isclose(spacing[1], spacing[2]):
        turns = 0
    image, mask = np.rot90(image, turns, axes=(1, 2)), np.rot90(mask, turns, axes=(1, 2))
    return VOISample(sample.case_id, np.ascontiguousarray(image), np.ascontiguousarray(mask), spacing,
                     sample.origin_lps, sample.label)


def mask_centroid_lps(sample: VOISample) -> np.ndarray:
    """The centroid of a VOI's mask in LPS mm (the VOI's centre where the mask is empty)."""
    voxels = np.argwhere(sample.mask > 0)
    index_zyx = voxels.mean(axis=0) if len(voxels) else (np.array(sample.mask.shape) - 1) / 2.0
    return np.asarray(sample.origin_lps, float) + index_zyx[::-1] * np.asarray(sample.spacing_zyx[::-1])


def _region_of(image: sitk.Image, lower_lps: np.ndarray, upper_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Index bounds (x, y, z), inclusive lower and exclusive upper, of a box clipped to the image."""
    corners = [image.TransformPhysicalPointToContinuousIndex([float(v) for v in p])
               for p in (lower_lps, upper_lps)]
    lo = np.maximum(np.floor(np.minimum(*corners)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(np.maximum(*corners)).astype(int) + 2, np.array(image.GetSize()))
    if np.any(hi <= lo):
        return None
    return lo, hi


def paste_weights(background: sitk.Image, sample: VOISample, centre_lps: Sequence[float], config: InsertionConfig
                  ) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
    """Resample a VOI, moved to ``centre_lps``, onto the background grid around that point.

    Returns:
        ``(region, voi_hu, weight, mask)`` with ``region`` the (z, y, x) slices of the
        background the VOI covers, the VOI's HU there, the blending weight and the binary
        pasted mask; ``None`` when the VOI falls outside the scan.
    """
    origin = np.asarray(sample.origin_lps) + np.asarray(centre_lps, float) - mask_centroid_lps(sample)
    moved = VOISample(sample.case_id, sample.image, sample.mask, sample.spacing_zyx,
                      (float(origin[0]), float(origin[1]), float(origin[2])), sample.label)
    voi_hu, voi_mask = voi_images(moved)
    extent = (np.array(sample.mask.shape[::-1]) - 1) * np.asarray(sample.spacing_zyx[::-1])
    lower = np.asarray(moved.origin_lps)
    bounds = _region_of(background, lower, lower + extent)
    if bounds is None:
        return None
    lo, hi = bounds
    grid = sitk.RegionOfInterest(background, [int(v) for v in hi - lo], [int(v) for v in lo])
    hu = sitk.GetArrayFromImage(sitk.Resample(voi_hu, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    soft = sitk.GetArrayFromImage(sitk.Resample(voi_mask, grid, sitk.Transform(), sitk.sitkLinear, 0.0,
                                                sitk.sitkFloat32))
    support = sitk.GetArrayFromImage(sitk.Resample(voi_mask * 0 + 1, grid, sitk.Transform(),
                                                   sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32))
    sigma_vox = config.blend_sigma_mm / np.asarray(background.GetSpacing())[::-1]
    weight = np.clip(ndimage.gaussian_filter(soft, sigma_vox, mode="constant"), 0.0, 1.0) * support
    weight = np.maximum(weight, soft)
    mask = soft >= 0.5
    region = tuple(slice(int(a), int(b)) for a, b in zip(lo[::-1], hi[::-1]))
    return region, hu, weight.astype(np.float32), mask  # type: ignore[return-value]  # find_objects gives a box of three slices for a 3D array


def blend(array: np.ndarray, region: tuple[slice, slice, slice], voi_hu: np.ndarray, weight: np.ndarray) -> None:
    """Blend the VOI into ``array`` (HU, modified in place) inside ``region``; nothing else changes."""
    part = array[region].astype(np.float32)
    mixed = (1.0 - weight) * part + weight * voi_hu
    changed = weight > 0
    part[changed] = mixed[changed]
    array[region] = np.round(part).astype(array.dtype)


def _far_from(mask_lps: np.ndarray, others: list[tuple[np.ndarray, float]], radius: float, gap: float) -> bool:
    centre = mask_lps.mean(axis=0)
    return all(np.linalg.norm(centre - c) >= r + radius + gap for c, r in others)


def place_nodules(background: Background, samples: Sequence[VOISample], rng: np.random.Generator,
                  config: InsertionConfig | None = None) -> InsertedScan:
    """Paste each VOI at a random valid lung site of the background.

    Args:
        background: the scan and its lung and exclusion masks.
        samples: the VOIs (already augmented if wanted); one site each.
        rng: the random generator (seed it for reproducible cases).
        config: blending and placement parameters.

    Returns:
        The new scan, its nodule label map and the pasted nodules (VOIs that found no valid
        site within ``max_tries`` are left out, with a log line).
    """
    cfg = config or InsertionConfig()
    array = sitk.GetArrayFromImage(background.image)
    lungs = sitk.GetArrayViewFromImage(background.lungs) > 0
    labels = np.zeros(array.shape, np.uint8)
    lung_voxels = np.argwhere(lungs & ~background.excluded)
    placed: list[tuple[np.ndarray, float]] = []
    nodules: list[PastedNodule] = []
    for sample in samples:
        radius = 0.5 * float(np.max(np.asarray(sample.mask.shape) * np.asarray(sample.spacing_zyx)))
        pleural = cfg.pleural_fraction > 0 and rng.random() < cfg.pleural_fraction
        sites = _pleural_sites(background, sample, cfg) if pleural else lung_voxels
        for _ in range(cfg.max_tries if len(sites) else 0):
            index = sites[rng.integers(len(sites))]
            centre = background.image.TransformIndexToPhysicalPoint([int(v) for v in index[::-1]])
            pasted = paste_weights(background.image, sample, centre, cfg)
            if pasted is None:
                continue
            region, hu, weight, mask = pasted
            covered = weight > 0
            if not mask.any() or background.excluded[region][covered].any():
                continue
            if pleural:
                in_lung = lungs[region]
                if in_lung[mask].mean() < cfg.pleural_min_lung or in_lung[mask].all():
                    continue
                weight = np.where(in_lung | mask, weight, 0.0).astype(np.float32)
            elif not lungs[region][covered].all():
                continue
            if labels[region][covered].any():
                continue
            mask_index = np.argwhere(mask) + np.array([s.start for s in region])
            mask_lps = np.array([background.image.TransformIndexToPhysicalPoint([int(v) for v in i[::-1]])
                                 for i in mask_index])
            if not _far_from(mask_lps, placed, radius, cfg.min_gap_mm):
                continue
            blend(array, region, hu, weight)
            labels[region][mask] = len(nodules) + 1
            centroid = (mask_index * 1.0).mean(axis=0)
            centre_lps = background.image.TransformContinuousIndexToPhysicalPoint([float(v) for v in centroid[::-1]])
            placed.append((mask_lps.mean(axis=0), radius))
            nodules.append(PastedNodule(sample.case_id, (float(centre_lps[0]), float(centre_lps[1]),
                                                         float(centre_lps[2])), _diameter(sample)))
            break
        else:
            logger.info("no site found for %s in %s", sample.case_id, background.name)
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(background.image)
    mask_image = sitk.GetImageFromArray(labels)
    mask_image.CopyInformation(background.image)
    return InsertedScan(image, mask_image, nodules)


def _pleural_sites(background: Background, sample: VOISample, config: InsertionConfig) -> np.ndarray:
    """Lung voxels whose depth is ``config.pleural_depth`` times the sample's volume-equivalent radius."""
    voxels, depth = background.pleural_shell()
    radius = 0.5 * _diameter(sample)
    low, high = config.pleural_depth
    return voxels[(depth >= low * radius) & (depth <= high * radius)]


def _diameter(sample: VOISample) -> float:
    """The VOI's volume-equivalent diameter (mm) from its mask."""
    volume = float(np.count_nonzero(sample.mask)) * float(np.prod(sample.spacing_zyx))
    return float((6.0 * volume / np.pi) ** (1.0 / 3.0))


def _sphere(image: sitk.Image, centre: Sequence[float], radius: float) -> np.ndarray:
    """The voxels within ``radius`` mm of ``centre`` (physical), as a bool ``(z, y, x)`` mask.

    Only the sphere's bounding box is evaluated (an orthonormal direction keeps each index within
    ``radius / spacing`` of the centre's), not a coordinate grid of the whole scan.
    """
    size = np.array(image.GetSize())
    origin, spacing = np.array(image.GetOrigin()), np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    middle = np.array(image.TransformPhysicalPointToContinuousIndex([float(c) for c in centre]))
    low = np.clip(np.floor(middle - radius / spacing).astype(int), 0, size)
    high = np.clip(np.ceil(middle + radius / spacing).astype(int) + 1, 0, size)
    mask = np.zeros(size[::-1], bool)
    if np.any(high <= low):
        return mask
    xx, yy, zz = np.meshgrid(*[np.arange(a, b) for a, b in zip(low, high)], indexing="ij")
    points = origin + (np.stack([xx, yy, zz], axis=-1).reshape(-1, 3) * spacing) @ direction.T
    inside = (np.linalg.norm(points - np.asarray(centre), axis=1) <= radius).reshape(xx.shape)
    mask[low[2]:high[2], low[1]:high[1], low[0]:high[0]] = inside.transpose(2, 1, 0)
    return mask


def _voc_boxes(folder: Path) -> dict[str, list[tuple[int, int, int, int]]]:
    """Pascal VOC boxes per SOPInstanceUID (xmin, ymin, xmax, ymax in pixels)."""
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    for path in sorted(folder.glob("*.xml")):
        root = ET.parse(path).getroot()
        for box in root.iter("bndbox"):
            values = tuple(int(float(box.findtext(k, "0"))) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.setdefault(path.stem, []).append(values)  # type: ignore[arg-type]  # the four corners are floats once the XML was checked above
    return boxes


def box_exclusion(image: sitk.Image, headers: Sequence, folder: Path, margin_mm: float = BOX_MARGIN_MM) -> np.ndarray:
    """Per-slice lesion boxes (Lung-PET-CT-Dx ``boxes/``) as a bool ``(z, y, x)`` mask with a margin.

    Box pixels are placed with each slice's ImagePositionPatient, ImageOrientationPatient and
    PixelSpacing, then the box's bounding region in the image grid, grown by ``margin_mm`` on every side, is marked.
    """
    boxes = _voc_boxes(folder)
    excluded = np.zeros(tuple(reversed(image.GetSize())), bool)
    for header in headers:
        for xmin, ymin, xmax, ymax in boxes.get(str(header.SOPInstanceUID), []):
            ipp = np.array(header.ImagePositionPatient, float)
            iop = np.array(header.ImageOrientationPatient, float)
            row_spacing, col_spacing = (float(v) for v in header.PixelSpacing)
            corners = [ipp + c * col_spacing * iop[:3] + r * row_spacing * iop[3:] for c in (xmin, xmax)
                       for r in (ymin, ymax)]
            idx = np.array([image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in corners])
            pad = margin_mm / np.asarray(image.GetSpacing())
            lo = np.clip(np.floor(idx.min(axis=0) - pad).astype(int), 0, None)
            hi = np.clip(np.ceil(idx.max(axis=0) + pad).astype(int) + 1, None, np.array(image.GetSize()))
            excluded[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]] = True
    return excluded


def load_background(name: str, data_root: str | Path) -> Background:
    """Read a background scan, segment its lungs and mark its real lesions as excluded.

    Args:
        name: one of :data:`BACKGROUND_NAMES`.
        data_root: the shared data folder (``backgrounds/``, ``lung_pet_ct_dx/``).

    Raises:
        ValueError: unknown name.
        InputNotFoundError: the scan is not in ``data_root``.
    """
    from lungai.io.reader import read_scan
    from lungai.preprocessing.lung_mask import segment_lungs

    root = Path(data_root)
    if name == "elastix_chest":
        path = root / "backgrounds" / "elastix_chest.nrrd"
    elif name == "A0001":
        path = root / "lung_pet_ct_dx" / "A0001" / "dicom.zip"
    else:
        raise ValueError(f"unknown background {name!r}; choose one of {', '.join(BACKGROUND_NAMES)}")
    if not path.exists():
        raise InputNotFoundError(f"background scan {path} not found", "point --data-root to the shared data folder")
    volume = read_scan(path)
    lungs = segment_lungs(volume.image).labels
    if name == "elastix_chest":
        excluded = _sphere(volume.image, *ELASTIX_TUMOUR)
        lesions = excluded | _sphere(volume.image, *ELASTIX_NODULE)
    else:
        excluded = box_exclusion(volume.image, volume.dicom_headers, path.parent / "boxes")
        lesions = excluded
    logger.info("background %s: %.0f mL excluded", name,
                excluded.sum() * float(np.prod(volume.image.GetSpacing())) / 1000.0)
    return Background(name, volume.image, lungs, excluded, lesions)
