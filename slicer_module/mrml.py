"""Load a run's output folder into an MRML scene as native Slicer nodes.

The scene is passed in, so this works in 3D Slicer and, for tests, with the MRML classes of
the ``slicer-core`` package. It creates:

- a ``vtkMRMLSegmentationNode`` read from the ``.seg.nrrd`` (segment names, colours and
  terminology come from the file), with the input volume as reference geometry;
- a ``vtkMRMLTableNode`` with one row per nodule above the operating point;
- a ``vtkMRMLMarkupsFiducialNode`` with one point per row, at the nodule's centroid;
- a ``vtkMRMLTableNode`` with lung volumes and emphysema densitometry, if measured.

Nodules below the operating point are left out of the table and the points, and their
segments are hidden. When loading fails, the nodes created so far are removed again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nrrd
from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkIntArray, vtkStringArray

from lungai import labels
from lungai.io.findings import ESTIMATE_LABEL, load_findings
from lungai.slicer.results import (EmphysemaRow, NoduleRow, OutputFiles, emphysema_rows, find_output_files,
                                   nodule_rows, summary_text)

logger = logging.getLogger(__name__)

#: Column name of the nodule id in the nodule table.
NODULE_ID_COLUMN = "ID"


@dataclass
class LoadedResults:
    """The nodes made from one run's outputs.

    Attributes:
        files: the output files they were read from.
        segmentation: the segmentation node.
        nodule_table: one row per nodule shown.
        nodule_points: one control point per nodule shown, labelled ``N<id>``.
        emphysema_table: lung volumes and densitometry; ``None`` if not measured.
        point_index: nodule id -> index of its control point.
        hidden_nodules: ids of the nodules below the operating point.
        summary: a few lines for the results area.
    """

    files: OutputFiles
    segmentation: Any
    nodule_table: Any
    nodule_points: Any
    emphysema_table: Any | None
    point_index: dict[int, int] = field(default_factory=dict)
    hidden_nodules: list[int] = field(default_factory=list)
    summary: str = ""


def load_results(scene: Any, output: Path, reference_volume: Any | None = None, *,
                 segmentation_node: Any | None = None, min_detection_score: float = 0.0) -> LoadedResults:
    """Turn a ``lungai run`` output folder into nodes of ``scene``.

    Args:
        scene: a ``vtkMRMLScene``.
        output: the run's output folder.
        reference_volume: the analysed ``vtkMRMLScalarVolumeNode``; it becomes the
            segmentation's reference geometry, and the new nodes follow its transform.
        segmentation_node: an existing segmentation node to load into; default a new one.
        min_detection_score: the nodule operating point (see :func:`~lungai.slicer.results.nodule_rows`).

    Returns:
        The nodes created, named after the reference volume (or the outputs), and a summary.

    Raises:
        FileNotFoundError: the folder is not a complete output folder.
        lungai.errors.UnreadableInputError: ``findings.json`` cannot be read.
        RuntimeError: the segmentation file cannot be read.
    """
    files = find_output_files(output)
    findings = load_findings(files.findings)
    shown, hidden = nodule_rows(findings, min_detection_score)
    density = emphysema_rows(findings)
    base_name = reference_volume.GetName() if reference_volume is not None else files.stem
    created: list[Any] = []

    def add(class_name: str, name: str) -> Any:
        node = scene.AddNewNodeByClass(class_name, name)
        if node is None:
            raise RuntimeError(f"the scene cannot create {class_name} nodes")
        created.append(node)
        return node

    try:
        table = _nodule_table(add("vtkMRMLTableNode", f"{base_name} LungAI nodules"), shown)
        points, point_index = _nodule_points(add("vtkMRMLMarkupsFiducialNode", f"{base_name} LungAI nodule centres"),
                                             shown)
        emphysema = (_emphysema_table(add("vtkMRMLTableNode", f"{base_name} LungAI emphysema"), density)
                     if density else None)
        segmentation = segmentation_node or add("vtkMRMLSegmentationNode", f"{base_name} LungAI segmentation")
        _read_segmentation(segmentation, files.segmentation, add)
        _hide_segments(segmentation, hidden)
        if reference_volume is not None:
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
            for node in (segmentation, points):
                node.SetAndObserveTransformNodeID(reference_volume.GetTransformNodeID())
    except BaseException:
        for node in reversed(created):
            _remove(scene, node)
        raise
    logger.info("loaded %s: %d nodules shown, %d hidden", files.folder, len(shown), len(hidden))
    return LoadedResults(files=files, segmentation=segmentation, nodule_table=table, nodule_points=points,
                         emphysema_table=emphysema, point_index=point_index, hidden_nodules=hidden,
                         summary=summary_text(findings, len(shown), len(hidden), min_detection_score))


def _remove(scene: Any, node: Any) -> None:
    """Remove a node with the display nodes it made."""
    if hasattr(node, "GetNumberOfDisplayNodes"):
        for display in [node.GetNthDisplayNode(index) for index in range(node.GetNumberOfDisplayNodes())]:
            if display is not None:
                scene.RemoveNode(display)
    scene.RemoveNode(node)


def _read_segmentation(segmentation: Any, path: Path, add: Callable[[str, str], Any]) -> None:
    """Read a ``.seg.nrrd`` into a segmentation node through a new storage node."""
    _check_segmentation_header(path)
    storage = add("vtkMRMLSegmentationStorageNode", f"{segmentation.GetName()} storage")
    storage.SetFileName(str(path))
    segmentation.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(segmentation):
        raise RuntimeError(f"cannot read the segmentation file {path}")
    segmentation.CreateDefaultDisplayNodes()


def _check_segmentation_header(path: Path) -> None:
    """Refuse a file whose header is not a segmentation's before the C++ reader sees it.

    A malformed header can make the reader of some MRML builds abort the whole process.
    """
    try:
        header = nrrd.read_header(str(path))
    except (OSError, ValueError, nrrd.NRRDError) as error:
        raise RuntimeError(f"cannot read the segmentation file {path} ({error})") from error
    if "Segmentation_MasterRepresentation" not in header:
        raise RuntimeError(f"cannot read the segmentation file {path} (it is not a segmentation)")


def _hide_segments(segmentation: Any, nodule_ids: Sequence[int]) -> None:
    display = segmentation.GetDisplayNode()
    contained = segmentation.GetSegmentation()
    for nodule_id in nodule_ids:
        key = labels.nodule(nodule_id).key
        if contained.GetSegment(key) is not None:
            display.SetSegmentVisibility(key, False)


def _nodule_table(table: Any, rows: Sequence[NoduleRow]) -> Any:
    _add_column(table, vtkIntArray, NODULE_ID_COLUMN, [row.id for row in rows],
                description="nodule id; its segment is 'Nodule <id>'")
    _add_column(table, vtkStringArray, "Location", [row.location for row in rows])
    for axis, name in enumerate(("R", "A", "S")):
        _add_column(table, vtkDoubleArray, name, [row.position_ras_mm[axis] for row in rows], unit="mm",
                    description=f"centroid, {name} coordinate (RAS)")
    _add_column(table, vtkDoubleArray, "Long axis", [row.long_axis_mm for row in rows], unit="mm",
                description="longest in-plane diameter")
    _add_column(table, vtkDoubleArray, "Short axis", [row.short_axis_mm for row in rows], unit="mm",
                description="longest diameter perpendicular to the long axis, same plane")
    _add_column(table, vtkDoubleArray, "Volume", [row.volume_mm3 for row in rows], unit="mm3")
    _add_column(table, vtkDoubleArray, "Mean HU", [row.mean_hu for row in rows], unit="HU")
    _add_column(table, vtkStringArray, "Type", [row.type for row in rows])
    _add_column(table, vtkStringArray, "Malignancy estimate",
                ["" if row.malignancy is None else f"{row.malignancy:.2f}" for row in rows],
                description=f"probability of malignancy, {ESTIMATE_LABEL}")
    _add_column(table, vtkDoubleArray, "Detection score", [row.detection_score for row in rows],
                description="detector confidence, compared with the operating point")
    table.SetLocked(True)
    return table


def _nodule_points(points: Any, rows: Sequence[NoduleRow]) -> tuple[Any, dict[int, int]]:
    points.CreateDefaultDisplayNodes()
    index = {}
    for row in rows:
        index[row.id] = points.AddControlPoint(list(row.position_ras_mm), f"N{row.id}")
        points.SetNthControlPointDescription(index[row.id], row.description)
    points.SetLocked(True)
    return points, index


def _emphysema_table(table: Any, rows: Sequence[EmphysemaRow]) -> Any:
    _add_column(table, vtkStringArray, "Region", [row.title for row in rows])
    _add_column(table, vtkDoubleArray, "Lung volume", [row.volume_ml for row in rows], unit="ml")
    for threshold in (950, 910, 856):
        description = f"percentage of lung voxels below -{threshold} HU"
        if threshold == 856:
            description += " (an expiratory air-trapping measure, not meaningful on an inspiratory scan)"
        _add_column(table, vtkDoubleArray, f"LAA-{threshold}",
                    [getattr(row, f"laa_{threshold}_percent") for row in rows], unit="%", description=description)
    _add_column(table, vtkDoubleArray, "Perc15", [row.perc15_hu for row in rows], unit="HU",
                description="15th percentile of the lung's HU histogram")
    table.SetLocked(True)
    return table


def _add_column(table: Any, array_type: type, name: str, values: Sequence[Any], *, unit: str = "",
                description: str = "") -> None:
    """Add a filled column; ``None`` becomes NaN in numeric columns."""
    array = array_type()
    array.SetName(name)
    for value in values:
        if array_type is vtkStringArray:
            array.InsertNextValue(str(value))
        else:
            array.InsertNextValue(math.nan if value is None else value)
    table.AddColumn(array)
    if unit:
        table.SetColumnUnitLabel(name, unit)
    if description:
        table.SetColumnDescription(name, description)
