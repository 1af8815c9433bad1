"""LIDC reader contours on a CT grid: per-reader masks, physical nodules and consensus masks.

Geometry:

- A contour goes on the slice whose world z is nearest its ``imageZposition``; contours more
  than half a slice spacing from every slice are skipped with a warning.
- ``edgeMap`` (x, y) is (column, row) in the original DICOM grid. :func:`lungai.io.reader.read_scan`
  reorients to LPS, which leaves an axial DICOM grid (columns to the patient's left, rows to
  the back) unchanged; if the scan's ``original_orientation`` had columns pointing right or
  rows pointing front, the coordinates are mirrored to match. Non-axial images are refused.
- A contour is filled with :func:`skimage.draw.polygon` and its boundary pixels are added
  (LIDC outlines are drawn on the nodule's outermost pixels). An exclusion contour
  (``inclusion`` ``FALSE``) removes its interior, not its boundary.

Grouping: two readers' nodules are the same physical nodule when their masks share a voxel
or their centroids are closer than the larger of their equivalent-sphere radii; groups are the
connected components of that relation (a reader who split one nodule in two contributes the
union of both marks).

Consensus convention: a voxel is in the 50% consensus mask when at least half of the readers
who marked that nodule included it (``2 * votes >= readers``): with 2 readers this is their
union, with 3 or 4 readers at least 2 votes. Should no voxel reach half (readers grouped by
centroid distance whose outlines do not overlap), the voxels with the most votes are used.
``diameter_mm`` is the equivalent-sphere
diameter of the consensus mask. Malignancy ratings are radiologists' suspicion, not pathology.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import SimpleITK as sitk
from skimage import draw

from lungai.data.lidc_xml import Contour, ReaderAnnotation, ReaderNodule

logger = logging.getLogger(__name__)

_AXIAL_TOLERANCE = 1e-2


@dataclass(frozen=True)
class _Grid:
    """Where LIDC pixel and z coordinates fall on an image."""

    image: sitk.Image
    shape_zyx: tuple[int, int, int]
    slice_z: np.ndarray
    half_slice_mm: float
    mirror_columns: bool
    mirror_rows: bool

    @classmethod
    def of(cls, image: sitk.Image, original_orientation: str) -> _Grid:
        direction = np.asarray(image.GetDirection()).reshape(3, 3)
        if image.GetDimension() != 3 or not np.allclose(direction, np.eye(3), atol=_AXIAL_TOLERANCE):
            raise ValueError("LIDC contours need an axial image in LPS (identity direction); "
                             "read the scan with lungai.io.reader.read_scan")
        code = original_orientation.upper()
        if len(code) != 3 or code[0] not in "LR" or code[1] not in "PA" or code[2] not in "SI":
            raise ValueError(f"original orientation {original_orientation!r} is not axial; "
                             "LIDC pixel coordinates cannot be placed")
        nx, ny, nz = image.GetSize()
        spacing_z = image.GetSpacing()[2]
        return cls(image=image, shape_zyx=(nz, ny, nx),
                   slice_z=image.GetOrigin()[2] + spacing_z * direction[2, 2] * np.arange(nz),
                   half_slice_mm=0.5 * spacing_z + 1e-3, mirror_columns=code[0] == "R",
                   mirror_rows=code[1] == "A")

    def slice_of(self, z_mm: float) -> int | None:
        """Index of the slice nearest ``z_mm``, or ``None`` when none is within half a spacing."""
        k = int(np.argmin(np.abs(self.slice_z - z_mm)))
        return k if abs(self.slice_z[k] - z_mm) <= self.half_slice_mm else None

    def rows_columns(self, points_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """LIDC (column, row) points as (rows, columns) of this grid."""
        _, ny, nx = self.shape_zyx
        cols, rows = points_xy[:, 0], points_xy[:, 1]
        return (ny - 1 - rows if self.mirror_rows else rows), (nx - 1 - cols if self.mirror_columns else cols)

    def to_lps(self, index_zyx: np.ndarray) -> tuple[float, float, float]:
        """World LPS mm of a continuous (z, y, x) index."""
        return tuple(self.image.TransformContinuousIndexToPhysicalPoint(
            [float(index_zyx[2]), float(index_zyx[1]), float(index_zyx[0])]))

    @property
    def voxel_mm3(self) -> float:
        return float(np.prod(self.image.GetSpacing()))


def _fill(contour: Contour, grid: _Grid) -> np.ndarray:
    """Pixels (flat y*nx + x) of one slice covered by a contour; exclusions without boundary."""
    _, ny, nx = grid.shape_zyx
    rows, cols = grid.rows_columns(contour.points_xy)
    closed_r, closed_c = np.append(rows, rows[0]), np.append(cols, cols[0])
    lines = [draw.line(int(r0), int(c0), int(r1), int(c1))
             for r0, c0, r1, c1 in zip(closed_r[:-1], closed_c[:-1], closed_r[1:], closed_c[1:])]
    line_r = np.concatenate([line[0] for line in lines])
    line_c = np.concatenate([line[1] for line in lines])
    inside = (line_r >= 0) & (line_r < ny) & (line_c >= 0) & (line_c < nx)
    boundary = line_r[inside].astype(np.int64) * nx + line_c[inside]
    rr, cc = draw.polygon(rows, cols, shape=(ny, nx))
    filled = rr.astype(np.int64) * nx + cc
    if contour.inclusion:
        return np.union1d(filled, boundary)
    return np.setdiff1d(filled, boundary)


def _rasterise(nodule: ReaderNodule, grid: _Grid) -> np.ndarray:
    """Flat (z, y, x) voxel indices of one reader's nodule on the grid."""
    _, ny, nx = grid.shape_zyx
    included: dict[int, list[np.ndarray]] = {}
    excluded: dict[int, list[np.ndarray]] = {}
    for contour in nodule.contours:
        if len(contour.points_xy) == 0:
            continue
        k = grid.slice_of(contour.z_mm)
        if k is None:
            logger.warning("nodule %s: no slice near z = %.2f mm, contour skipped", nodule.nodule_id,
                           contour.z_mm)
            continue
        (included if contour.inclusion else excluded).setdefault(k, []).append(_fill(contour, grid))
    slices = []
    for k, pixels in sorted(included.items()):
        kept = np.setdiff1d(np.concatenate(pixels), np.concatenate(excluded.get(k, [np.empty(0, np.int64)])))
        slices.append(k * ny * nx + kept)
    return np.unique(np.concatenate(slices)) if slices else np.empty(0, np.int64)


def reader_mask(annotation: ReaderAnnotation, image: sitk.Image,
                original_orientation: str = "LPS") -> np.ndarray:
    """One reader's nodules (>= 3 mm) as a binary mask on the image grid.

    Args:
        annotation: one reader's marks, from :func:`lungai.data.lidc_xml.parse_lidc_xml`.
        image: the CT from :func:`lungai.io.reader.read_scan` (LPS, axial).
        original_orientation: the scan's ``CTVolume.original_orientation``.

    Returns:
        uint8 array (z, y, x), 1 inside any of the reader's nodules.
    """
    grid = _Grid.of(image, original_orientation)
    mask = np.zeros(grid.shape_zyx, np.uint8)
    for nodule in annotation.nodules:
        mask.flat[_rasterise(nodule, grid)] = 1
    return mask


@dataclass(frozen=True, eq=False)
class ConsensusNodule:
    """A physical nodule: readers' marks grouped, with their 50% consensus.

    Attributes:
        index: 1-based, ordered by centroid (z, then y, then x).
        shape_zyx: the image grid's array shape.
        voxels: flat (z, y, x) indices of the consensus mask.
        reader_voxels: reader index -> flat indices of that reader's mark.
        malignancy: reader index -> malignancy rating (1-5; ``None`` where not given).
        characteristics: reader index -> all of that reader's ratings.
        centroid_lps: consensus mask centroid, LPS mm.
        diameter_mm: equivalent-sphere diameter of the consensus mask.
        volume_mm3: consensus mask volume.
    """

    index: int
    shape_zyx: tuple[int, int, int]
    voxels: np.ndarray
    reader_voxels: dict[int, np.ndarray]
    malignancy: dict[int, int | None]
    characteristics: dict[int, dict[str, int]]
    centroid_lps: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float

    @property
    def readers(self) -> tuple[int, ...]:
        """Indices of the readers who marked the nodule."""
        return tuple(sorted(self.reader_voxels))

    @property
    def num_readers(self) -> int:
        """How many readers marked the nodule."""
        return len(self.reader_voxels)

    @property
    def mask(self) -> np.ndarray:
        """The consensus mask as a uint8 (z, y, x) array on the image grid (made on each access)."""
        mask = np.zeros(self.shape_zyx, np.uint8)
        mask.flat[self.voxels] = 1
        return mask

    def mask_image(self, reference: sitk.Image) -> sitk.Image:
        """The consensus mask as a SimpleITK image with the geometry of ``reference``."""
        image = sitk.GetImageFromArray(self.mask)
        image.CopyInformation(reference)
        return image


@dataclass(frozen=True, eq=False)
class _Mark:
    reader: int
    nodule: ReaderNodule
    voxels: np.ndarray
    centroid_mm: np.ndarray
    radius_mm: float


def _centroid_index(voxels: np.ndarray, shape_zyx: tuple[int, int, int]) -> np.ndarray:
    return np.stack(np.unravel_index(voxels, shape_zyx), axis=1).mean(axis=0)


def _equivalent_diameter(volume_mm3: float) -> float:
    return float((6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0))


def _marks(annotations: Sequence[ReaderAnnotation], grid: _Grid) -> list[_Mark]:
    marks = []
    for annotation in annotations:
        for nodule in annotation.nodules:
            voxels = _rasterise(nodule, grid)
            if voxels.size == 0:
                logger.warning("reader %d nodule %s has no voxel on this image; ignored",
                               annotation.reader_index, nodule.nodule_id)
                continue
            centroid = np.asarray(grid.to_lps(_centroid_index(voxels, grid.shape_zyx)))
            radius = _equivalent_diameter(voxels.size * grid.voxel_mm3) / 2
            marks.append(_Mark(annotation.reader_index, nodule, voxels, centroid, radius))
    return marks


def _same_nodule(a: _Mark, b: _Mark) -> bool:
    if np.linalg.norm(a.centroid_mm - b.centroid_mm) < max(a.radius_mm, b.radius_mm):
        return True
    return np.intersect1d(a.voxels, b.voxels, assume_unique=True).size > 0


def _groups(marks: list[_Mark]) -> list[list[_Mark]]:
    """Connected components of :func:`_same_nodule` (union-find)."""
    parent = list(range(len(marks)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(marks)):
        for j in range(i + 1, len(marks)):
            if _same_nodule(marks[i], marks[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[_Mark]] = {}
    for i, mark in enumerate(marks):
        groups.setdefault(root(i), []).append(mark)
    return list(groups.values())


def _consensus(group: list[_Mark], grid: _Grid) -> ConsensusNodule:
    per_reader: dict[int, np.ndarray] = {}
    ratings: dict[int, dict[str, int]] = {}
    for mark in group:
        per_reader[mark.reader] = np.union1d(per_reader.get(mark.reader, np.empty(0, np.int64)), mark.voxels)
        ratings.setdefault(mark.reader, {}).update(mark.nodule.characteristics)
    voxels, votes = np.unique(np.concatenate(list(per_reader.values())), return_counts=True)
    consensus = voxels[votes >= min(-(-len(per_reader) // 2), votes.max())]
    volume = consensus.size * grid.voxel_mm3
    return ConsensusNodule(index=0, shape_zyx=grid.shape_zyx, voxels=consensus, reader_voxels=per_reader,
                           malignancy={r: c.get("malignancy") for r, c in ratings.items()},
                           characteristics=ratings,
                           centroid_lps=grid.to_lps(_centroid_index(consensus, grid.shape_zyx)),
                           diameter_mm=_equivalent_diameter(volume), volume_mm3=volume)


def consensus_nodules(annotations: Sequence[ReaderAnnotation], image: sitk.Image, min_readers: int = 1,
                      original_orientation: str = "LPS") -> list[ConsensusNodule]:
    """Group the readers' nodules (>= 3 mm) into physical nodules with 50% consensus masks.

    Args:
        annotations: from :func:`lungai.data.lidc_xml.parse_lidc_xml`.
        image: the CT from :func:`lungai.io.reader.read_scan` (LPS, axial).
        min_readers: keep nodules marked by at least this many readers.
        original_orientation: the scan's ``CTVolume.original_orientation`` (see module docstring).

    Returns:
        The nodules, ordered and numbered by centroid (z, y, x).

    Raises:
        ValueError: the image is not axial LPS.
    """
    grid = _Grid.of(image, original_orientation)
    found = [_consensus(group, grid) for group in _groups(_marks(annotations, grid))]
    kept = sorted((n for n in found if n.num_readers >= min_readers), key=lambda n: n.centroid_lps[::-1])
    nodules = [replace(n, index=i) for i, n in enumerate(kept, start=1)]
    logger.info("%d nodule(s) marked by >= %d reader(s)", len(nodules), min_readers)
    return nodules
