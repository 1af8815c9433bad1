"""Load a run's output folder into an MRML scene as native Slicer nodes, and keep them in step with the review.

The scene is passed in, so this works in 3D Slicer and, for tests, with the MRML classes of
the ``slicer-core`` package. It creates:

- a ``vtkMRMLSegmentationNode`` read from the ``.seg.nrrd`` (segment names, colours and
  terminology come from the file), with the input volume as reference geometry;
- a ``vtkMRMLTableNode`` with one row per lesion listed at the operating point;
- a ``vtkMRMLMarkupsFiducialNode`` with one point per row, at the lesion's centroid;
- a ``vtkMRMLTableNode`` with lung volumes and emphysema densitometry, if measured.

What is listed follows a :class:`lungai.slicer.review.Review`: moving the operating point,
accepting, rejecting or re-measuring a lesion updates the table, the points, the segments'
visibility and the summary at once (:meth:`LoadedResults.refresh`), without running again.
Lesions below the operating point are left out of the table and the points, and their
segments are hidden; a rejected lesion keeps its row (so the decision can be taken back) but
its segment and point are hidden. When loading fails, the nodes created so far are removed again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nrrd
from vtkmodules.vtkCommonCore import vtkDoubleArray, vtkIntArray, vtkStringArray

from lungai import labels
from lungai.io.findings import CHARACTERISTICS_LABEL, ESTIMATE_LABEL, SUSPICION_LABEL, read_findings
from lungai.slicer.results import (
    EmphysemaRow,
    NoduleRow,
    OutputFiles,
    emphysema_rows,
    find_output_files,
    nodule_row,
    summary_text,
)
from lungai.slicer.review import REJECTED, Review

if TYPE_CHECKING:
    from lungai.slicer.follow_up import FollowUpRow

logger = logging.getLogger(__name__)

#: Column name of the nodule id in the nodule table.
NODULE_ID_COLUMN = "ID"
#: Column name of the characteristics, present only when a listed lesion has some.
CHARACTERISTICS_COLUMN = "Characteristics"
#: Column name of the malignancy estimate: it names what the number estimates.
MALIGNANCY_COLUMN = "Malignancy (radiologists' suspicion on LIDC)"
#: Column names of a follow-up: the status (matched, new, resolved) and the prior nodule's id.
FOLLOW_UP_STATUS_COLUMN = "Follow-up"
PRIOR_NODULE_COLUMN = "Prior nodule"


@dataclass
class LoadedResults:
    """The nodes made from one run's outputs, and the review they show.

    Attributes:
        files: the output files they were read from.
        segmentation: the segmentation node.
        nodule_table: one row per lesion listed.
        nodule_points: one control point per lesion listed, labelled ``N<id>``.
        emphysema_table: lung volumes and densitometry; ``None`` if not measured.
        review: the operating point shown, the reviewer's decisions and edits.
        volume: the analysed CT volume node (lesions are re-measured on it); ``None`` if not given.
        point_index: lesion id -> index of its control point.
        summary: a few lines for the results area.
    """

    files: OutputFiles
    segmentation: Any
    nodule_table: Any
    nodule_points: Any
    emphysema_table: Any | None
    review: Review
    volume: Any | None = None
    point_index: dict[int, int] = field(default_factory=dict)
    summary: str = ""

    @property
    def hidden_nodules(self) -> list[int]:
        """Ids of the lesions below the operating point."""
        return self.review.hidden()

    def refresh(self) -> None:
        """Show the review: table rows, points, segment names and visibility, summary."""
        review = self.review
        rows = [nodule_row(review.nodules[nodule_id], review.verdict(nodule_id)) for nodule_id in review.listed()]
        _fill_nodule_table(self.nodule_table, rows)
        self.point_index = _fill_nodule_points(self.nodule_points, rows, rejected=[
            row.id for row in rows if review.decisions.get(row.id) == REJECTED])
        _show_segments(self.segmentation, review)
        self.summary = summary_text(review.machine, len(rows), len(review.hidden()), review.min_detection_score,
                                    review.progress())

    def set_operating_point(self, min_detection_score: float) -> None:
        """List the lesions at another operating point (see :meth:`Review.set_operating_point`)."""
        self.review.set_operating_point(min_detection_score)
        self.refresh()

    def decide(self, nodule_id: int, decision: str | None) -> None:
        """Accept (``accepted``) or reject (``rejected``) a lesion, or take the decision back (``None``)."""
        self.review.decide(nodule_id, decision)
        self.refresh()


def load_results(scene: Any, output: Path, reference_volume: Any | None = None, *,
                 segmentation_node: Any | None = None, min_detection_score: float = 0.0,
                 segmentation_file: Path | None = None) -> LoadedResults:
    """Turn a ``lungai run`` output folder into nodes of ``scene``.

    Args:
        scene: a ``vtkMRMLScene``.
        output: the run's output folder.
        reference_volume: the analysed ``vtkMRMLScalarVolumeNode``; it becomes the
            segmentation's reference geometry, and the new nodes follow its transform.
        segmentation_node: an existing segmentation node to load into; default a new one.
        min_detection_score: the nodule operating point (lowest detection score listed).
        segmentation_file: a ``.seg.nrrd`` to read instead of the folder's own (a follow-up's, whose
            segment names carry the matches).

    Returns:
        The nodes created, named after the reference volume (or the outputs), showing a review
        with no decisions yet.

    Raises:
        FileNotFoundError: the folder is not a complete output folder.
        lungai.errors.UnreadableInputError: ``findings.json`` cannot be read.
        RuntimeError: the segmentation file cannot be read.
    """
    files = find_output_files(output)
    if segmentation_file is not None:
        files = dataclasses.replace(files, segmentation=Path(segmentation_file))
    review = Review.of(read_findings(files.findings), min_detection_score)
    density = emphysema_rows(review.machine)
    base_name = reference_volume.GetName() if reference_volume is not None else files.stem
    created: list[Any] = []

    def add(class_name: str, name: str) -> Any:
        node = scene.AddNewNodeByClass(class_name, name)
        if node is None:
            raise RuntimeError(f"the scene cannot create {class_name} nodes")
        created.append(node)
        return node

    try:
        table = add("vtkMRMLTableNode", f"{base_name} LungAI nodules")
        points = add("vtkMRMLMarkupsFiducialNode", f"{base_name} LungAI nodule centres")
        points.CreateDefaultDisplayNodes()
        emphysema = (_emphysema_table(add("vtkMRMLTableNode", f"{base_name} LungAI emphysema"), density)
                     if density else None)
        segmentation = segmentation_node or add("vtkMRMLSegmentationNode", f"{base_name} LungAI segmentation")
        _read_segmentation(segmentation, files.segmentation, add)
        if reference_volume is not None:
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
            for node in (segmentation, points):
                node.SetAndObserveTransformNodeID(reference_volume.GetTransformNodeID())
        results = LoadedResults(files=files, segmentation=segmentation, nodule_table=table, nodule_points=points,
                                emphysema_table=emphysema, review=review, volume=reference_volume)
        results.refresh()
    except BaseException:
        for node in reversed(created):
            _remove(scene, node)
        raise
    logger.info("loaded %s: %d lesions listed, %d hidden", files.folder, len(review.listed()), len(review.hidden()))
    return results


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


def _show_segments(segmentation: Any, review: Review) -> None:
    """Show the reported lesions' segments, hide the others, and name each after its kind (Nodule or Mass)."""
    display = segmentation.GetDisplayNode()
    contained = segmentation.GetSegmentation()
    reported = set(review.reported())
    for nodule_id in review.ids():
        structure = labels.nodule(nodule_id, review.nodules[nodule_id].kind)
        segment = contained.GetSegment(structure.key)
        if segment is None:
            continue
        segment.SetName(structure.name)
        display.SetSegmentVisibility(structure.key, nodule_id in reported)


def _fill_nodule_table(table: Any, rows: Sequence[NoduleRow]) -> None:
    """Replace the table's columns with the rows' (the characteristics column only when one has some)."""
    modifying = table.StartModify()
    table.RemoveAllColumns()
    _add_column(table, vtkIntArray, NODULE_ID_COLUMN, [row.id for row in rows],
                description="lesion id; its segment is 'Nodule <id>' or 'Mass <id>'")
    _add_column(table, vtkStringArray, "Type", [row.type if row.kind == "nodule" else f"mass, {row.type}"
                                                for row in rows],
                description="solid, part-solid or ground-glass; a mass is a lesion over 30 mm")
    _add_column(table, vtkDoubleArray, "Long axis", [row.long_axis_mm for row in rows], unit="mm",
                description="longest in-plane diameter")
    _add_column(table, vtkDoubleArray, "Short axis", [row.short_axis_mm for row in rows], unit="mm",
                description="longest diameter perpendicular to the long axis, same plane")
    _add_column(table, vtkDoubleArray, "Volume", [row.volume_mm3 for row in rows], unit="mm3")
    _add_column(table, vtkDoubleArray, "Solid component", [row.solid_component_mm for row in rows], unit="mm",
                description="mean diameter of a part-solid lesion's solid part")
    _add_column(table, vtkStringArray, "Lung-RADS", [row.lung_rads or "" for row in rows],
                description="category suggested by the size rule (size and type only), or 1 by the benign "
                            "calcification rule; none for lesions below the specific operating point")
    _add_column(table, vtkStringArray, MALIGNANCY_COLUMN,
                ["" if row.malignancy is None else f"{row.malignancy:.2f}" for row in rows],
                description=f"probability of malignancy as {SUSPICION_LABEL}, {ESTIMATE_LABEL}")
    if any(row.characteristics for row in rows):
        _add_column(table, vtkStringArray, CHARACTERISTICS_COLUMN, [row.characteristics for row in rows],
                    description="texture and the characteristics present (probability >= 0.5), "
                                f"{CHARACTERISTICS_LABEL}")
    _add_column(table, vtkStringArray, "Location", [row.location for row in rows])
    _add_column(table, vtkStringArray, "Score", [row.score_text for row in rows],
                description="detection score and the strictest operating point it passed; masses are "
                            "found by the mass rule and shown at every operating point")
    _add_column(table, vtkStringArray, "Review", [row.review for row in rows],
                description="the reviewer's decision, and 'edited' once the segment was edited and re-measured")
    table.SetLocked(True)
    table.EndModify(modifying)


def add_follow_up_columns(table: Any, rows: Sequence[FollowUpRow | None]) -> None:
    """Add the comparison with the prior to a filled nodule table, and a row for each comparison beyond its rows.

    Args:
        table: the nodule table, filled by :func:`_fill_nodule_table`.
        rows: the comparison of each table row (``None``: none), then those of lesions the table does
            not list (resolved nodules, lesions segmented at a mapped position): these are appended
            with their current lesion's id (0 for a nodule only on the prior) and other cells empty.
    """
    modifying = table.StartModify()
    cells = table.GetTable()
    for row in rows[table.GetNumberOfRows():]:
        index = table.AddEmptyRow()
        for column in range(cells.GetNumberOfColumns()):
            if isinstance(cells.GetColumn(column), vtkDoubleArray):
                cells.GetColumn(column).SetValue(index, math.nan)
        cells.GetColumnByName(NODULE_ID_COLUMN).SetValue(index, 0 if row is None else row.current_id or 0)
    _add_column(table, vtkStringArray, FOLLOW_UP_STATUS_COLUMN, ["" if row is None else row.status for row in rows],
                description="matched with a nodule of the prior scan, new, or resolved (on the prior scan only; "
                            "its row has ID 0)")
    _add_column(table, vtkStringArray, PRIOR_NODULE_COLUMN,
                ["" if row is None or row.prior_id is None else str(row.prior_id) for row in rows],
                description="the matched nodule's id on the prior scan")
    _add_column(table, vtkDoubleArray, "Prior size", [None if row is None else row.prior_mean_diameter_mm
                                                      for row in rows], unit="mm",
                description="mean diameter on the prior scan")
    _add_column(table, vtkDoubleArray, "Diameter change", [None if row is None else row.mean_diameter_change_mm
                                                           for row in rows], unit="mm",
                description="mean diameter now minus on the prior scan")
    _add_column(table, vtkDoubleArray, "Volume change", [None if row is None else row.volume_change_pct
                                                         for row in rows], unit="%",
                description="volume change in per cent of the prior volume")
    _add_column(table, vtkDoubleArray, "VDT", [None if row is None else row.vdt_days for row in rows], unit="days",
                description="volume doubling time; empty unless the nodule grew and the interval is known")
    _add_column(table, vtkStringArray, "Lung-RADS follow-up", ["" if row is None else row.category for row in rows],
                description="Lung-RADS category from the comparison (growth, new, stable), rules on the measurements")
    table.SetLocked(True)
    table.EndModify(modifying)


def _fill_nodule_points(points: Any, rows: Sequence[NoduleRow], rejected: Sequence[int]) -> dict[int, int]:
    """One locked point per row (hidden for rejected lesions); returns lesion id -> point index."""
    points.SetLocked(False)
    points.RemoveAllControlPoints()
    index = {}
    for row in rows:
        index[row.id] = points.AddControlPoint(list(row.position_ras_mm), f"N{row.id}")
        points.SetNthControlPointDescription(index[row.id], row.description)
        points.SetNthControlPointVisibility(index[row.id], row.id not in rejected)
    points.SetLocked(True)
    return index


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
