"""Helpers of the Slicer tests: volume nodes from SimpleITK images, matrices."""

from __future__ import annotations

from typing import Any

import numpy as np
import SimpleITK as sitk

SLICER_CORE_MISSING = "slicer-core is not installed; pip install -e '.[slicer-test]' to run the MRML tests"


def add_volume_node(scene: Any, image: sitk.Image, name: str) -> Any:
    """Add a ``vtkMRMLScalarVolumeNode`` holding ``image``, as Slicer would load it (LPS -> RAS).

    Args:
        scene: the scene.
        image: a 3D SimpleITK image (geometry in LPS).
        name: the node's name.

    Returns:
        The volume node.
    """
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    voxels = vtkImageData()
    voxels.SetDimensions(*image.GetSize())
    voxels.GetPointData().SetScalars(numpy_support.numpy_to_vtk(sitk.GetArrayViewFromImage(image).ravel(), deep=True))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetAndObserveImageData(voxels)
    node.SetIJKToRASMatrix(_as_vtk_matrix(ijk_to_ras(image), vtkMatrix4x4()))
    return node


def ijk_to_ras(image: sitk.Image) -> np.ndarray:
    """The 4x4 voxel-index-to-RAS matrix of a SimpleITK image."""
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return lps_to_ras @ matrix


def _as_vtk_matrix(values: np.ndarray, matrix: Any) -> Any:
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, float(values[row, column]))
    return matrix


def vtk_matrix_array(matrix: Any) -> np.ndarray:
    """A ``vtkMatrix4x4`` as a numpy array."""
    return np.array([[matrix.GetElement(row, column) for column in range(4)] for row in range(4)])
