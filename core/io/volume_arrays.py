"""Volumes as numpy arrays for training: (z, y, x) arrays in LPS with their geometry.

Datasets hand models numpy arrays, not SimpleITK images. Every array made here comes from an
image reoriented to LPS first, so axis 0 runs inferior -> superior, axis 1 anterior ->
posterior and axis 2 right -> left for any input orientation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai.errors import InputNotFoundError, UnreadableInputError

LPS = "LPS"


@dataclass(frozen=True)
class VolumeArray:
    """One volume as a numpy array with its geometry.

    Attributes:
        array: the voxels, shape (z, y, x).
        spacing_zyx: voxel spacing in mm, in array axis order.
        origin_lps: world position (x, y, z LPS mm) of voxel (0, 0, 0).
        direction: the image's 3x3 direction matrix (row-major, ITK convention), after the
            reorientation to LPS; identity for axis-aligned scans.
    """

    array: np.ndarray
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    direction: tuple[float, ...]


def spacing_zyx(image: sitk.Image) -> tuple[float, float, float]:
    """An image's voxel spacing in mm as ``(z, y, x)``, the order of its array."""
    x, y, z = image.GetSpacing()
    return float(z), float(y), float(x)


def to_lps(image: sitk.Image) -> sitk.Image:
    """Return ``image`` reoriented to LPS (the same image when it already is)."""
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    return image if orientation == LPS else sitk.DICOMOrient(image, LPS)


def image_to_array(image: sitk.Image, dtype: np.dtype | type) -> VolumeArray:
    """Convert a SimpleITK image to a :class:`VolumeArray` in LPS.

    Args:
        image: a scalar 3D image in any orientation.
        dtype: the array's dtype (e.g. ``np.float32`` for images, ``np.uint8`` for masks).

    Returns:
        The reoriented voxels and their geometry.
    """
    image = to_lps(image)
    spacing = image.GetSpacing()
    return VolumeArray(array=sitk.GetArrayFromImage(image).astype(dtype, copy=False),
                       spacing_zyx=(spacing[2], spacing[1], spacing[0]),
                       origin_lps=tuple(image.GetOrigin()),
                       direction=tuple(image.GetDirection()))


def read_image(path: str | Path) -> sitk.Image:
    """Read any file SimpleITK reads (NIfTI, NRRD, MetaImage), reoriented to LPS.

    Args:
        path: the image file.

    Returns:
        The image, unchanged apart from the orientation.

    Raises:
        InputNotFoundError: the file does not exist.
        UnreadableInputError: SimpleITK cannot read it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"image file {path} does not exist", "check the dataset folder")
    try:
        return to_lps(sitk.ReadImage(str(path)))
    except RuntimeError as exc:
        raise UnreadableInputError(f"cannot read {path}: the file is corrupt or not an image",
                                   "re-copy the file") from exc


def read_array(path: str | Path, dtype: np.dtype | type) -> VolumeArray:
    """Read an image file into a :class:`VolumeArray` (see :func:`read_image`)."""
    return image_to_array(read_image(path), dtype)


def same_grid(a: VolumeArray, b: VolumeArray, tolerance: float = 1e-2) -> bool:
    """Whether two arrays share shape, spacing, origin and direction (within ``tolerance``)."""
    return (a.array.shape == b.array.shape
            and np.allclose(a.spacing_zyx, b.spacing_zyx, atol=tolerance)
            and np.allclose(a.origin_lps, b.origin_lps, atol=tolerance)
            and np.allclose(a.direction, b.direction, atol=tolerance))
