"""Writing LungAI label images as a 3D Slicer ``.seg.nrrd`` and as a NIfTI label map.

A label image is an unsigned-integer SimpleITK image on the input CT grid whose voxel values
are the ``value`` of a :class:`lungai.labels.Structure` (0 is background). Both files keep
the label values and the geometry (origin, spacing, direction; LPS) of that image, so they
agree voxel for voxel. The ``.seg.nrrd`` header also carries each segment's name, colour and
SNOMED CT terminology from :mod:`lungai.labels`, so Slicer shows standard names.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio

from lungai.labels import Code, Structure

logger = logging.getLogger(__name__)

#: Terminology context names as 3D Slicer writes them for its built-in lists.
CATEGORY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"

#: gzip level for the ``.seg.nrrd``; label maps compress well already at low levels.
_GZIP_LEVEL = 1


def write_segmentation_files(label_image: sitk.Image, structures: Sequence[Structure],
                             folder: Path, name: str) -> tuple[Path, Path]:
    """Write ``<name>.seg.nrrd`` and ``<name>_labels.nii.gz`` into ``folder``.

    Args:
        label_image: 3D label image on the CT grid, values from :mod:`lungai.labels`.
        structures: the structures that may appear; those absent from the image get no segment.
        folder: existing folder to write into.
        name: file name stem, e.g. the scan's name.

    Returns:
        The paths of the ``.seg.nrrd`` and the NIfTI file.

    Raises:
        ValueError: the image is not 3D, has negative or non-integer values, or holds a
            label value that no structure in ``structures`` has.
    """
    seg_path = Path(folder) / f"{name}.seg.nrrd"
    nifti_path = Path(folder) / f"{name}_labels.nii.gz"
    write_seg_nrrd(label_image, structures, seg_path)
    write_label_nifti(label_image, nifti_path)
    return seg_path, nifti_path


def write_seg_nrrd(label_image: sitk.Image, structures: Sequence[Structure], path: Path) -> None:
    """Write a label image as a 3D Slicer segmentation file.

    Each structure present in the image becomes one segment in a single layer whose label
    value is the structure's ``value``; its ID is the structure's ``key``.

    Args:
        label_image: 3D label image on the CT grid, values from :mod:`lungai.labels`.
        structures: the structures that may appear; those absent from the image get no segment.
        path: output file, conventionally ending in ``.seg.nrrd``.

    Raises:
        ValueError: as for :func:`write_segmentation_files`.
    """
    voxels_zyx = label_array(label_image)
    present = present_structures(voxels_zyx, structures)
    segmentation = {
        "voxels": voxels_zyx.transpose(2, 1, 0),  # slicerio wants (i, j, k) indexing
        "ijkToLPS": ijk_to_lps(label_image),
        "containedRepresentationNames": ["Binary labelmap"],
        "segments": [_segment(structure) for structure in present],
    }
    slicerio.write_segmentation(str(path), segmentation, compression_level=_GZIP_LEVEL)
    logger.info("wrote %s (%s)", path, ", ".join(s.name for s in present) or "no segments")


def write_label_nifti(label_image: sitk.Image, path: Path) -> None:
    """Write a label image as a compressed NIfTI label map with the same geometry.

    Args:
        label_image: 3D label image on the CT grid.
        path: output file, conventionally ending in ``_labels.nii.gz``.

    Raises:
        ValueError: the image is not 3D or has negative or non-integer values.
    """
    voxels_zyx = label_array(label_image)
    image = sitk.GetImageFromArray(voxels_zyx)
    image.CopyInformation(label_image)
    sitk.WriteImage(image, str(path), useCompression=True)
    logger.info("wrote %s", path)


def ijk_to_lps(image: sitk.Image) -> np.ndarray:
    """The 4x4 matrix that maps a voxel index (i, j, k, 1) to LPS millimetres.

    Args:
        image: a 3D SimpleITK image (its geometry is in LPS).

    Returns:
        ``[[D * diag(spacing), origin], [0, 0, 0, 1]]`` with ``D`` the direction matrix.
    """
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def terminology(structure: Structure) -> dict[str, object]:
    """The slicerio terminology entry of a structure (codes as [scheme, value, meaning] lists).

    Args:
        structure: a structure from :mod:`lungai.labels`.

    Returns:
        A dict with ``contextName``, ``category``, ``type``, ``anatomicContextName`` and,
        when the structure has a region, ``anatomicRegion``.
    """
    entry: dict[str, object] = {
        "contextName": CATEGORY_CONTEXT,
        "category": _code_list(structure.category),
        "type": _code_list(structure.type),
        "anatomicContextName": ANATOMIC_CONTEXT,
    }
    if structure.region is not None:
        entry["anatomicRegion"] = _code_list(structure.region)
    return entry


def _code_list(code: Code) -> list[str]:
    return [code[0], code[1], code[2]]


def _segment(structure: Structure) -> dict[str, object]:
    return {
        "id": structure.key,
        "name": structure.name,
        "nameAutoGenerated": False,
        "color": list(structure.color),
        "colorAutoGenerated": False,
        "labelValue": structure.value,
        "layer": 0,
        "terminology": terminology(structure),
    }


def label_array(label_image: sitk.Image) -> np.ndarray:
    """The voxels as a (z, y, x) uint8 or uint16 array, checked to be a valid label map.

    Raises:
        ValueError: the image is not 3D and scalar, or has non-integer or negative values.
    """
    if label_image.GetDimension() != 3 or label_image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"label image must be 3D and scalar, got {label_image.GetDimension()}D "
                         f"with {label_image.GetNumberOfComponentsPerPixel()} components")
    voxels = sitk.GetArrayViewFromImage(label_image)
    if not np.issubdtype(voxels.dtype, np.integer):
        raise ValueError(f"label image must have an integer pixel type, got {voxels.dtype}")
    low, high = int(voxels.min()), int(voxels.max())
    if low < 0 or high > np.iinfo(np.uint16).max:
        raise ValueError(f"label values must lie in 0..65535, got {low}..{high}")
    dtype = np.uint8 if high <= np.iinfo(np.uint8).max else np.uint16
    return voxels.astype(dtype, copy=True)


def present_structures(voxels: np.ndarray, structures: Sequence[Structure]) -> list[Structure]:
    """The structures whose value occurs in a label array, in label-value order.

    Args:
        voxels: unsigned-integer label array (any shape).
        structures: the structures that may appear.

    Returns:
        The structures present; background (0) is none.

    Raises:
        ValueError: two structures share a value, or a value belongs to no structure given.
    """
    seen = np.zeros(int(np.iinfo(voxels.dtype).max) + 1, dtype=bool)
    seen[voxels] = True  # a lookup table: much faster than np.unique on a whole CT grid
    values = set(np.flatnonzero(seen).tolist()) - {0}
    by_value = {structure.value: structure for structure in structures}
    if len(by_value) != len(structures):
        raise ValueError("two structures given share a label value")
    unknown = sorted(values - by_value.keys())
    if unknown:
        raise ValueError(f"label values {unknown} belong to no structure given "
                         f"(known: {sorted(by_value)})")
    return [by_value[value] for value in sorted(values)]
