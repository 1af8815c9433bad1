"""The CT volume and the segments of an MRML scene as SimpleITK images on the scan's LPS grid.

LungAI measures and writes on the grid :func:`lungai.io.reader.read_scan` gives: LPS
millimetres, axes reoriented to LPS. A volume node stores its voxels with an IJK-to-RAS
matrix; :func:`volume_image` turns that into such an image, and :func:`segment_mask` and
:func:`label_image` resample segments (whatever their own extent, after Segment Editor edits
too) onto it, nearest neighbour. Volume and segmentation are taken in their own (local)
coordinates, which they share when they follow the same transform, as the loader sets up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from lungai.errors import LungAIError
from lungai.io.reader import CANONICAL_ORIENTATION, ReadOptions, read_scan
from lungai.io.volume import CTVolume
from lungai.labels import Structure

logger = logging.getLogger(__name__)

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _voxels(image_data: Any) -> np.ndarray:
    """The scalars of a ``vtkImageData`` as a (k, j, i) array (a copy)."""
    extent = image_data.GetExtent()
    dims = [high - low + 1 for low, high in zip(extent[::2], extent[1::2])]
    scalars = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars())
    return np.array(scalars).reshape(dims[::-1])


def _sitk_image(voxels: np.ndarray, ijk_to_ras: Any, first_index: Sequence[int] = (0, 0, 0)) -> sitk.Image:
    """An LPS SimpleITK image of (k, j, i) voxels whose voxel ``first_index`` sits where ``ijk_to_ras`` puts it."""
    matrix = np.array([[ijk_to_ras.GetElement(row, column) for column in range(4)] for row in range(4)])
    axes = _RAS_TO_LPS @ matrix[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    origin = _RAS_TO_LPS @ (matrix[:3, :3] @ np.asarray(first_index, dtype=float) + matrix[:3, 3])
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing([float(value) for value in spacing])
    image.SetOrigin([float(value) for value in origin])
    image.SetDirection([float(value) for value in (axes / spacing).ravel()])
    return image


def _to_lps_axes(image: sitk.Image) -> sitk.Image:
    """Reorient an image's axes to LPS, as the reader does."""
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    return image if orientation == CANONICAL_ORIENTATION else sitk.DICOMOrient(image, CANONICAL_ORIENTATION)


def volume_image(volume_node: Any) -> sitk.Image:
    """The voxels of a scalar volume node as a SimpleITK image on LungAI's LPS grid.

    Raises:
        ValueError: the node holds no image data.
    """
    image_data = volume_node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise ValueError(f"the volume {volume_node.GetName()} holds no voxels")
    ijk_to_ras = vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(ijk_to_ras)
    return _to_lps_axes(_sitk_image(_voxels(image_data), ijk_to_ras))


def segment_mask(segmentation_node: Any, segment_id: str, grid: sitk.Image) -> np.ndarray:
    """A segment's voxels on ``grid`` as a boolean (z, y, x) array.

    Args:
        segmentation_node: the ``vtkMRMLSegmentationNode``.
        segment_id: the segment's id (LungAI's structure key, e.g. ``nodule_2``).
        grid: the image whose grid the mask is on (see :func:`volume_image`).

    Returns:
        The mask; all false when the segment is empty.

    Raises:
        KeyError: the segmentation has no such segment.
    """
    from slicer import vtkOrientedImageData

    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise KeyError(f"the segmentation has no segment {segment_id!r}")
    labelmap = vtkOrientedImageData()
    segmentation_node.GetBinaryLabelmapRepresentation(segment_id, labelmap)
    extent = labelmap.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return np.zeros(sitk.GetArrayViewFromImage(grid).shape, dtype=bool)
    image_to_world = vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(image_to_world)
    own = _sitk_image((_voxels(labelmap) > 0).astype(np.uint8), image_to_world, extent[::2])
    resampled = sitk.Resample(own, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(resampled).astype(bool)


def label_image(segmentation_node: Any, structures: Sequence[Structure], grid: sitk.Image) -> sitk.Image:
    """A label image on ``grid`` with each structure's segment painted with its label value.

    Structures are painted in the order given, so a later one (a lesion after the lungs) takes
    the voxels it shares with an earlier one. Structures without a segment are left out.

    Args:
        segmentation_node: the ``vtkMRMLSegmentationNode``.
        structures: the structures to paint; segment ids are their keys.
        grid: the image whose grid the labels are on.
    """
    voxels = np.zeros(sitk.GetArrayViewFromImage(grid).shape, dtype=np.uint8)
    contained = segmentation_node.GetSegmentation()
    for structure in structures:
        if contained.GetSegment(structure.key) is not None:
            voxels[segment_mask(segmentation_node, structure.key, grid)] = structure.value
    image = sitk.GetImageFromArray(voxels)
    image.CopyInformation(grid)
    return image


def same_grid(image: sitk.Image, other: sitk.Image, tolerance_mm: float = 1e-3) -> bool:
    """Whether two images share size, spacing, origin and axes (within ``tolerance_mm``)."""
    return (image.GetSize() == other.GetSize()
            and np.allclose(image.GetSpacing(), other.GetSpacing(), atol=tolerance_mm)
            and np.allclose(image.GetOrigin(), other.GetOrigin(), atol=tolerance_mm)
            and np.allclose(image.GetDirection(), other.GetDirection(), atol=1e-6))


def scan_volume(volume_node: Any, source: str, dicom_folder: Path | None = None,
                series_uid: str | None = None) -> CTVolume:
    """The analysed CT as a :class:`~lungai.io.volume.CTVolume`, read from its DICOM series when it has one.

    With a DICOM folder the series is read as ``lungai run`` reads it (so a DICOM SEG can reference
    it), and used when it lies on the volume node's grid; otherwise the node's voxels are used.

    Args:
        volume_node: the analysed scalar volume node.
        source: the scan's name for the report (the findings' ``input.source``).
        dicom_folder: the folder holding the volume's DICOM files, if it was loaded from DICOM.
        series_uid: the volume's SeriesInstanceUID (the folder may hold other series).
    """
    image = volume_image(volume_node)
    if dicom_folder is not None:
        try:
            volume = read_scan(dicom_folder, ReadOptions(series_uid=series_uid))
        except LungAIError as error:
            logger.warning("the DICOM series of %s cannot be read (%s); no DICOM SEG", volume_node.GetName(), error)
        else:
            if same_grid(volume.image, image):
                return volume
            logger.warning("the DICOM series in %s is not on the grid of %s; no DICOM SEG", dicom_folder,
                           volume_node.GetName())
    return CTVolume(image=image, source=source, format="nrrd", modality="CT")
