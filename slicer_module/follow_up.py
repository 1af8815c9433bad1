"""A ``lungai follow-up`` in Slicer: its process, and its outputs loaded beside the current scan.

The follow-up folder (``OUT``, see docs/follow-up.md) is loaded in five steps:

1. ``OUT/follow_up.json`` is read and checked (schema ``lungai-follow-up``, major version 1), and
   becomes one :class:`FollowUpRow` per pair: matched, new or resolved.
2. The registered prior (``OUT/prior_registered.nrrd``, the prior resampled onto the current
   scan's grid) becomes a volume node with the current volume's display settings.
3. The current run (``OUT/current/``) is loaded by :func:`lungai.slicer.mrml.load_results`, with the
   follow-up's segmentation (``OUT/<current>.seg.nrrd``: the segment names carry the matches,
   e.g. ``Nodule 2 (prior 1)``).
4. :class:`FollowUpResults` keeps the review working as after a run and adds, on each refresh, the
   comparison to the nodule table (:func:`lungai.slicer.mrml.add_follow_up_columns`): status,
   prior nodule and size, change, VDT, Lung-RADS category; resolved nodules and lesions
   segmented at a mapped position get rows of their own.
5. The slice views: side by side, the current volume in the red view and the registered prior in
   the yellow one, both axial and linked, so scrolling one scrolls the other. Both volumes are on
   one grid, so one point centres both views on a nodule (:func:`centre_views`).

When loading fails, the nodes created so far are removed again and the layout is left as it was.
:class:`FollowUpProcess` lets the run protocol (:class:`lungai.slicer.runner.CliRun`) follow the
command, which prints no JSON progress.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lungai import labels
from lungai.errors import UnreadableInputError
from lungai.io.findings import Nodule, read_findings
from lungai.slicer.job import AnalysisJob
from lungai.slicer.mrml import LoadedResults, add_follow_up_columns, load_results
from lungai.slicer.process import BackgroundProcess, ChildProcess, Launcher
from lungai.slicer.progress import SUPPORTED_VERSION, ProgressUpdate
from lungai.slicer.results import SEGMENTATION_SUFFIX
from lungai.slicer.run_folder import RunFolder, safe_stem

logger = logging.getLogger(__name__)

FOLLOW_UP_FILE = "follow_up.json"
REGISTERED_PRIOR_FILE = "prior_registered.nrrd"
#: The ``follow_up.json`` schema read here, and its major version.
SCHEMA = "lungai-follow-up"
SCHEMA_MAJOR = 1
#: The slice views of the side-by-side layout: the current scan, the registered prior.
CURRENT_VIEW, PRIOR_VIEW = "Red", "Yellow"
#: ``vtkMRMLLayoutNode.SlicerLayoutSideBySideView``: the red and the yellow slice view side by side.
SIDE_BY_SIDE_LAYOUT = 29


@dataclass(frozen=True)
class FollowUpRow:
    """One pair of the comparison as the nodule table shows it (``None``: not known or not measured).

    Attributes:
        status: ``matched``, ``new`` or ``resolved``.
        current_id: the current lesion's id (its segment ``Nodule <id>``); ``None`` when resolved.
        prior_id: the prior lesion's id on the prior scan; ``None`` when new.
        segment_name: the current segment's name with its match, e.g. ``Nodule 2 (prior 1)``.
        prior_mean_diameter_mm: mean diameter on the prior scan.
        mean_diameter_change_mm: mean diameter now minus then.
        volume_change_pct: volume change in per cent of the prior volume.
        vdt_days: volume doubling time.
        category: the follow-up's Lung-RADS category; empty when none.
        centre_ras_mm: where the nodule is on the current grid (RAS): its current centre, or the
            prior centre mapped into the current scan for a resolved nodule.
    """

    status: str
    current_id: int | None
    prior_id: int | None
    segment_name: str | None
    prior_mean_diameter_mm: float | None
    mean_diameter_change_mm: float | None
    volume_change_pct: float | None
    vdt_days: float | None
    category: str
    centre_ras_mm: tuple[float, float, float] | None


@dataclass(frozen=True)
class FollowUpFiles:
    """The files of a follow-up's output folder.

    Attributes:
        folder: the output folder.
        document: ``follow_up.json``.
        registered_prior: ``prior_registered.nrrd``.
        segmentation: the current ``.seg.nrrd`` with the matches in its segment names.
        current: the current scan's run output folder.
        report: ``report.html``, if present.
    """

    folder: Path
    document: Path
    registered_prior: Path
    segmentation: Path
    current: Path
    report: Path | None


def find_follow_up_files(folder: Path) -> FollowUpFiles:
    """Find the files of a ``lungai follow-up`` output folder.

    Raises:
        FileNotFoundError: a file is missing, or there is not exactly one ``.seg.nrrd``.
    """
    folder = Path(folder)
    for name in (FOLLOW_UP_FILE, REGISTERED_PRIOR_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} holds no {name}")
    segmentations = sorted(folder.glob(f"*{SEGMENTATION_SUFFIX}"))
    if len(segmentations) != 1:
        raise FileNotFoundError(f"{folder} should hold one {SEGMENTATION_SUFFIX} file, found {len(segmentations)}")
    report = folder / "report.html"
    return FollowUpFiles(folder=folder, document=folder / FOLLOW_UP_FILE,
                         registered_prior=folder / REGISTERED_PRIOR_FILE, segmentation=segmentations[0],
                         current=folder / "current", report=report if report.is_file() else None)


def read_follow_up(path: Path) -> dict[str, Any]:
    """``follow_up.json``, checked to be a follow-up of a major version this module reads.

    Raises:
        ValueError: not JSON, another schema, or another major version.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path} ({error})") from error
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a LungAI follow-up (schema {SCHEMA})")
    version = str(document.get("schema_version", ""))
    if version.split(".")[0] != str(SCHEMA_MAJOR):
        raise ValueError(f"{path} has schema version {version or 'none'}; this module reads {SCHEMA_MAJOR}.x")
    return document


def follow_up_rows(document: dict[str, Any], folder: Path) -> list[FollowUpRow]:
    """One row per pair of ``follow_up.json``, in its order.

    Args:
        document: the follow-up (see :func:`read_follow_up`).
        folder: its output folder; a lesion without a ``nodule_id`` gets the id of its finding
            (``finding_index``) in that side's findings (``<side>.findings``, relative to the folder).
    """
    ids = _LesionIds(document, Path(folder))
    return [_row(pair, ids) for pair in document.get("nodules") or []]


class _LesionIds:
    """The id of a lesion of a pair: its ``nodule_id``, else that of its finding in its side's findings."""

    def __init__(self, document: dict[str, Any], folder: Path) -> None:
        self._document = document
        self._folder = folder
        self._findings: dict[str, list[Nodule]] = {}

    def of(self, role: str, lesion: dict[str, Any] | None) -> int | None:
        if lesion is None:
            return None
        if lesion.get("nodule_id") is not None:
            return int(lesion["nodule_id"])
        if lesion.get("finding_index") is None:
            return None
        nodules, index = self._nodules(role), int(lesion["finding_index"])
        if not 0 <= index < len(nodules):
            raise ValueError(f"the follow-up names {role} finding {index}, but the {role} findings hold {len(nodules)}")
        return nodules[index].id

    def _nodules(self, role: str) -> list[Nodule]:
        if role not in self._findings:
            path = self._folder / str((self._document.get(role) or {}).get("findings") or f"{role}/findings.json")
            try:
                self._findings[role] = read_findings(path).nodules
            except UnreadableInputError as error:
                raise ValueError(f"cannot read the {role} findings {path} ({error.problem})") from error
        return self._findings[role]


def _ras(lps: Sequence[float] | None) -> tuple[float, float, float] | None:
    return None if lps is None else (-float(lps[0]), -float(lps[1]), float(lps[2]))


def _row(pair: dict[str, Any], ids: _LesionIds) -> FollowUpRow:
    prior, current = pair.get("prior"), pair.get("current")
    growth = pair.get("growth") or {}
    current_id, prior_id = ids.of("current", current), ids.of("prior", prior)
    centre = current["centre_lps_mm"] if current is not None else pair.get("prior_centre_in_current_lps_mm")
    return FollowUpRow(
        status=pair["status"], current_id=current_id, prior_id=prior_id,
        segment_name=pair.get("segment") or _segment_name(current_id, prior_id, current),
        prior_mean_diameter_mm=None if prior is None else prior.get("mean_diameter_mm"),
        mean_diameter_change_mm=growth.get("mean_diameter_change_mm"),
        volume_change_pct=growth.get("volume_change_pct"), vdt_days=growth.get("vdt_days"),
        category=(pair.get("lung_rads") or {}).get("category") or "", centre_ras_mm=_ras(centre))


def _segment_name(current_id: int | None, prior_id: int | None, current: dict[str, Any] | None) -> str | None:
    """``Nodule 2 (prior 1)`` or ``Nodule 3 (new)``, for a follow-up that does not name its segments."""
    if current_id is None or current is None:
        return None
    base = labels.nodule(current_id, current.get("kind") or "nodule").name
    return f"{base} (new)" if prior_id is None else f"{base} (prior {prior_id})"


def follow_up_summary(document: dict[str, Any], rows: Sequence[FollowUpRow]) -> str:
    """The lines the results area shows about the comparison: counts, interval, registration, warnings."""
    counts = ", ".join(f"{sum(row.status == status for row in rows)} {status}"
                       for status in ("matched", "new", "resolved"))
    interval = document.get("interval_days")
    lines = [f"Follow-up: {counts}; interval " + ("unknown (no VDT)" if interval is None else f"{interval} days")]
    registration = document.get("registration") or {}
    if registration:
        quality = registration.get("quality", "unknown")
        lines.append(f"Registration: {quality} (lung-mask Dice {registration.get('lung_dice', float('nan')):.2f})"
                     + (": check the matches in the images" if quality == "poor" else ""))
    lines.extend(f"Warning: {warning}" for warning in document.get("warnings") or [])
    return "\n".join(lines)


@dataclass
class FollowUpResults(LoadedResults):
    """The current scan's results (reviewed as after a run) with the comparison with the prior.

    Attributes:
        follow_up: one row per pair of the comparison.
        follow_up_files: the follow-up's files.
        prior_volume: the registered prior's volume node.
        follow_up_summary: the comparison's lines of the summary.
        table_rows: the comparison shown in each table row (``None``: a finding not compared).
    """

    follow_up: list[FollowUpRow] = field(default_factory=list)
    follow_up_files: FollowUpFiles | None = None
    prior_volume: Any | None = None
    follow_up_summary: str = ""
    table_rows: list[FollowUpRow | None] = field(default_factory=list)

    def refresh(self) -> None:
        """Show the review (see :meth:`LoadedResults.refresh`), then the comparison."""
        super().refresh()
        by_current = {row.current_id: row for row in self.follow_up if row.current_id is not None}
        self.table_rows = [by_current.get(nodule_id) for nodule_id in self.review.listed()]
        self.table_rows += [row for row in self.follow_up if row.current_id not in self.review.nodules]
        add_follow_up_columns(self.nodule_table, self.table_rows)
        contained = self.segmentation.GetSegmentation()
        for row in self.follow_up:
            segment = None if row.current_id is None else contained.GetSegment(labels.nodule(row.current_id).key)
            if segment is not None and row.segment_name:
                segment.SetName(row.segment_name)
        self.summary = "\n".join(part for part in (self.summary, self.follow_up_summary) if part)

    def row_target(self, nodule_id: int, prior_nodule: str = "") -> tuple[int | None, tuple[float, ...] | None]:
        """What a click on a table row chooses, from the row's ID and Prior nodule cells.

        Returns:
            The finding to review (``None`` for a row that is not one of the run's findings: a
            resolved nodule, a lesion segmented at a mapped position) and the point (world RAS)
            to centre the views on (``None`` if unknown).
        """
        if nodule_id in self.review.nodules:
            centre = tuple(float(v) for v in self.review.nodules[nodule_id].centroid.ras_mm)
            return nodule_id, _to_world(self.volume, centre)
        prior_id = int(prior_nodule) if prior_nodule.strip().isdigit() else None
        for row in self.follow_up:
            same = row.current_id == nodule_id if nodule_id else row.current_id is None and row.prior_id == prior_id
            if same and row.centre_ras_mm is not None:
                return None, _to_world(self.volume, row.centre_ras_mm)
        return None, None


def load_follow_up(scene: Any, output: Path, reference_volume: Any | None = None, *,
                   segmentation_node: Any | None = None, min_detection_score: float = 0.0) -> FollowUpResults:
    """Turn a ``lungai follow-up`` output folder into nodes of ``scene`` and show it side by side.

    Args:
        scene: a ``vtkMRMLScene``.
        output: the follow-up's output folder.
        reference_volume: the current scan's volume node (reference geometry and display settings).
        segmentation_node: an existing segmentation node to load into; default a new one.
        min_detection_score: the nodule operating point (lowest detection score listed).

    Returns:
        The current run's nodes with the comparison, and the registered prior's volume node.

    Raises:
        FileNotFoundError: the folder is not a complete follow-up folder.
        ValueError: ``follow_up.json`` or a side's findings cannot be read.
        RuntimeError: a volume or the segmentation cannot be read.
    """
    files = find_follow_up_files(output)
    document = read_follow_up(files.document)
    rows = follow_up_rows(document, files.folder)
    base_name = (reference_volume.GetName() if reference_volume is not None
                 else files.segmentation.name[: -len(SEGMENTATION_SUFFIX)])
    prior = _read_registered_prior(scene, files.registered_prior, f"{base_name} prior (registered)", reference_volume)
    try:
        loaded = load_results(scene, files.current, reference_volume, segmentation_node=segmentation_node,
                              min_detection_score=min_detection_score, segmentation_file=files.segmentation)
    except BaseException:
        _remove(scene, prior)
        raise
    try:
        results = FollowUpResults(**{f.name: getattr(loaded, f.name) for f in dataclasses.fields(LoadedResults)},
                                  follow_up=rows, follow_up_files=files, prior_volume=prior,
                                  follow_up_summary=follow_up_summary(document, rows))
        results.refresh()
        show_side_by_side(scene, reference_volume, prior, results.segmentation)
    except BaseException:
        for node in (prior, loaded.nodule_table, loaded.nodule_points, loaded.emphysema_table,
                     None if segmentation_node is not None else loaded.segmentation):
            _remove(scene, node)
        raise
    logger.info("loaded the follow-up %s: %s", files.folder, results.follow_up_summary.splitlines()[0])
    return results


def _read_registered_prior(scene: Any, path: Path, name: str, reference_volume: Any | None) -> Any:
    """The registered prior as a scalar volume node, displayed like the current volume."""
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode", f"{name} storage")
    storage.SetFileName(str(path))
    volume.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(volume):
        _remove(scene, volume)
        raise RuntimeError(f"cannot read the registered prior {path}")
    display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode", f"{name} display")
    shown = reference_volume.GetDisplayNode() if reference_volume is not None else None
    if shown is not None:
        display.SetAndObserveColorNodeID(shown.GetColorNodeID())
        display.SetAutoWindowLevel(shown.GetAutoWindowLevel())
        display.SetWindowLevel(shown.GetWindow(), shown.GetLevel())
    else:
        display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
        display.AutoWindowLevelOn()
    volume.SetAndObserveDisplayNodeID(display.GetID())
    if reference_volume is not None:
        volume.SetAndObserveTransformNodeID(reference_volume.GetTransformNodeID())
    return volume


def _remove(scene: Any, node: Any | None) -> None:
    """Remove a node with its display and storage nodes."""
    if node is None or scene.GetNodeByID(node.GetID()) is None:
        return
    related = [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())] \
        if hasattr(node, "GetNumberOfDisplayNodes") else []
    if hasattr(node, "GetStorageNode"):
        related.append(node.GetStorageNode())
    for other in related:
        if other is not None:
            scene.RemoveNode(other)
    scene.RemoveNode(node)


def _nodes(scene: Any, class_name: str) -> list[Any]:
    collection = scene.GetNodesByClass(class_name)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def show_side_by_side(scene: Any, current_volume: Any | None, prior_volume: Any, segmentation: Any) -> None:
    """The side-by-side layout: the current volume in the red view, the registered prior in the yellow one.

    Both views are axial and every view's slice controls are linked (scrolling one scrolls the
    other). The segmentation is shown over the current volume only (and in the 3D views). A scene
    without a layout node (no application) keeps its views as they are.
    """
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is None:
        logger.info("the scene has no layout node; the views are left as they are")
        return
    layout.SetViewArrangement(SIDE_BY_SIDE_LAYOUT)
    backgrounds = {CURRENT_VIEW: current_volume, PRIOR_VIEW: prior_volume}
    for composite in _nodes(scene, "vtkMRMLSliceCompositeNode"):
        volume = backgrounds.get(composite.GetLayoutName())
        if volume is not None:
            composite.SetBackgroundVolumeID(volume.GetID())
        composite.SetLinkedControl(True)
    current_view = None
    for slice_node in _nodes(scene, "vtkMRMLSliceNode"):
        if slice_node.GetLayoutName() in backgrounds:
            slice_node.SetOrientation("Axial")
        if slice_node.GetLayoutName() == CURRENT_VIEW:
            current_view = slice_node
    display = segmentation.GetDisplayNode()
    if display is not None and current_view is not None:
        display.SetViewNodeIDs([current_view.GetID(), *(view.GetID() for view in _nodes(scene, "vtkMRMLViewNode"))])


def centre_views(scene: Any, ras: Sequence[float]) -> None:
    """Centre every slice view on a point (world RAS): both volumes of a follow-up are on one grid."""
    for slice_node in _nodes(scene, "vtkMRMLSliceNode"):
        slice_node.JumpSliceByCentering(*(float(v) for v in ras))


def _to_world(volume: Any | None, ras: Sequence[float]) -> tuple[float, ...]:
    """A point of the volume's own RAS frame in world coordinates (through the volume's transform)."""
    parent = None if volume is None else volume.GetParentTransformNode()
    if parent is None:
        return tuple(float(v) for v in ras)
    from vtkmodules.vtkCommonTransforms import vtkGeneralTransform

    transform = vtkGeneralTransform()
    parent.GetTransformToWorld(transform)
    return tuple(transform.TransformPoint([float(v) for v in ras]))


class FollowUpProcess:
    """``lungai follow-up`` as the run protocol expects a child process to report.

    The command prints no JSON progress; this reports one stage for the whole comparison when
    the first output is read, and the ``done`` event once the command has exited with code 0 and
    written ``follow_up.json``. Anything else (errors, cancelling) is the process's own.

    Args:
        command: the command line (see :func:`lungai.slicer.command.build_follow_up_command`).
        output: its output folder (``-o``).
        launcher: starts the process.
    """

    def __init__(self, command: Sequence[str], output: Path, launcher: Launcher = BackgroundProcess) -> None:
        self._process: ChildProcess = launcher(command)
        self._output = Path(output)
        self._started = False
        self._done = False

    @classmethod
    def launcher(cls, output: Path, launcher: Launcher = BackgroundProcess) -> Callable[[Sequence[str]], ChildProcess]:
        """A :data:`~lungai.slicer.process.Launcher` that starts the follow-up writing into ``output``."""
        return lambda command: cls(command, output, launcher)

    def poll(self) -> int | None:
        """The process's exit code once it has ended and all its output was read."""
        return self._process.poll()

    def read_lines(self) -> tuple[list[str], list[str]]:
        """The process's lines, with the progress events this class adds on stdout."""
        stdout, stderr = self._process.read_lines()
        if not self._started:
            self._started = True
            stdout.insert(0, _event("stage", stage="follow-up", status="started", index=1, total=1))
        if not self._done and self._process.poll() == 0 and (self._output / FOLLOW_UP_FILE).is_file():
            self._done = True
            stdout.append(_event("done", index=1, total=1, fraction=1.0, data={"output": str(self._output)}))
        return stdout, stderr

    def interrupt(self) -> None:
        """Ask the process tree to stop (the command removes its partial outputs)."""
        self._process.interrupt()

    def kill(self) -> None:
        """End the process tree now."""
        self._process.kill()


def _event(event: str, **fields: Any) -> str:
    return json.dumps({"v": SUPPORTED_VERSION, "event": event, **fields})


def _ignore(_update: ProgressUpdate) -> None:
    """A progress callback that does nothing."""


def follow_up_job(folder: RunFolder, command: Sequence[str], load: Callable[[Path], Any], *,
                  launcher: Launcher = BackgroundProcess, on_progress: Callable[[ProgressUpdate], None] = _ignore,
                  input_name: str | None = None) -> AnalysisJob:
    """A follow-up run as an :class:`~lungai.slicer.job.AnalysisJob`: the same cancelling, clean-up and loading.

    Args:
        folder: the run's folder; the command writes into ``folder.output``.
        command: the command line (see :func:`lungai.slicer.command.build_follow_up_command`).
        load: turns the output folder into scene nodes, e.g. a partial of :func:`load_follow_up`.
        launcher: starts the process.
        on_progress: called with each progress update.
        input_name: the current volume's name, for error messages.
    """
    return AnalysisJob(folder, command, load, launcher=FollowUpProcess.launcher(folder.output, launcher),
                       on_progress=on_progress, input_name=input_name)


def prior_export_path(folder: RunFolder, prior_name: str) -> Path:
    """Where a prior volume node is exported: beside the current scan's export, and deleted with it."""
    return folder.scan.parent / "prior" / f"{safe_stem(prior_name)}.nrrd"


def dicom_series_folder(files: Sequence[Path]) -> Path | None:
    """The folder of a volume's DICOM files when it holds exactly those files, so it can be handed over as is.

    Args:
        files: the files of every instance of the volume's series (from Slicer's DICOM database).

    Returns:
        Their folder; ``None`` when there are none, they are spread over folders, or the folder
        holds other files (another series would be read from it).
    """
    paths = {Path(path).resolve() for path in files}
    folders = {path.parent for path in paths}
    if not paths or len(folders) != 1 or not all(path.is_file() for path in paths):
        return None
    folder = folders.pop()
    present = {path.resolve() for path in folder.iterdir() if path.is_file()}
    return folder if present == paths else None
