"""A follow-up in the Slicer module: the command line, the process, and the outputs in a real MRML scene.

The loading tests use a follow-up folder written here with the real writers (``write_seg_nrrd``,
``write_findings_json``) and a ``follow_up.json`` of the fixed interface (docs/follow-up.md); the
errors come from the real command line on small DICOM series; the last test runs a real
``lungai follow-up`` on a simulated pair through the module's job.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from fake_process import FakeProcess
from mrml_helpers import SLICER_CORE_MISSING, add_volume_node, ijk_to_ras, vtk_matrix_array
from synthetic_scans import box_phantom, write_dicom_series

from lungai import labels
from lungai.cli.main import cli
from lungai.io.findings import Centroid, Findings, InputInfo, LungVolume, Nodule, RunInfo, write_findings_json
from lungai.io.segmentation import write_seg_nrrd
from lungai.slicer.command import FollowUpRequest, build_follow_up_command
from lungai.slicer.job import AnalysisJob
from lungai.slicer.progress import ProgressUpdate
from lungai.slicer.run_folder import RunFolder
from lungai.slicer.runner import RunOutcome, RunStatus

pytestmark = pytest.mark.slicer_core
slicer = pytest.importorskip("slicer", reason=SLICER_CORE_MISSING)

from vtkmodules.vtkCommonMath import vtkMatrix4x4  # noqa: E402

from lungai.slicer.follow_up import (  # noqa: E402 - needs VTK
    FOLLOW_UP_FILE,
    FollowUpResults,
    centre_views,
    dicom_series_folder,
    follow_up_job,
    load_follow_up,
    prior_export_path,
)
from lungai.slicer.mrml import FOLLOW_UP_STATUS_COLUMN, NODULE_ID_COLUMN, PRIOR_NODULE_COLUMN  # noqa: E402

#: Current lesions: id -> voxel box (z, y, x) and detection score (None: segmented at a mapped position).
CURRENT = {1: ((slice(4, 6), slice(10, 13), slice(8, 11)), 0.92),
           2: ((slice(12, 14), slice(20, 23), slice(28, 31)), 0.31),
           3: ((slice(8, 10), slice(24, 27), slice(6, 9)), None)}
RESOLVED_IN_CURRENT_LPS = [4.0, 2.0, -4.0]


def make_grid() -> sitk.Image:
    """A 40 x 36 x 18 (x, y, z) CT with x flipped, so LPS and RAS differ in every axis sign."""
    image = sitk.Image([40, 36, 18], sitk.sitkInt16)
    image.SetSpacing((0.8, 0.9, 2.0))
    image.SetOrigin((15.5, -14.0, -20.0))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def centre_lps(nodule_id: int) -> list[float]:
    box = CURRENT[nodule_id][0]
    centre_zyx = [(part.start + part.stop - 1) / 2 for part in box]
    return list(make_grid().TransformContinuousIndexToPhysicalPoint(centre_zyx[::-1]))


def write_findings(path: Path, nodule_ids: Sequence[int]) -> None:
    """A ``findings.json`` with one nodule per id (the detector's findings of one scan)."""
    grid = make_grid()
    nodules = [Nodule(id=nodule_id, centroid=Centroid.from_lps(centre_lps(nodule_id), grid),
                      long_axis_mm=4.5 + nodule_id, short_axis_mm=3.0 + nodule_id, volume_mm3=30.0 * nodule_id,
                      mean_hu=-20.0, type="solid", detection_score=CURRENT[nodule_id][1], location="right lung")
               for nodule_id in nodule_ids]
    findings = Findings(input=InputInfo(source="scan.nrrd", format="nrrd", modality="CT", series_uid=None,
                                        size_xyz=(40, 36, 18), spacing_xyz_mm=(0.8, 0.9, 2.0)),
                        lungs={"total": LungVolume(4000.0)}, nodules=nodules,
                        run=RunInfo(lungai_version="0.1.0", tasks=["lungs", "nodules"], device="cpu",
                                    started_utc="2025-01-31T12:00:00Z"))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_findings_json(findings, path)


def write_segmentation(path: Path, names: dict[int, str]) -> None:
    """Lungs and the current lesions, each lesion segment named as given."""
    grid = make_grid()
    voxels = np.zeros((18, 36, 40), dtype=np.uint8)
    voxels[2:16, 5:30, 3:18] = labels.LUNG_RIGHT.value
    voxels[2:16, 5:30, 22:37] = labels.LUNG_LEFT.value
    structures = list(labels.STRUCTURES)
    for nodule_id, name in names.items():
        voxels[CURRENT[nodule_id][0]] = labels.nodule(nodule_id).value
        structures.append(dataclasses.replace(labels.nodule(nodule_id), name=name))
    image = sitk.GetImageFromArray(voxels)
    image.CopyInformation(grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_seg_nrrd(image, structures, path)


def side(finding_index: int | None, centre: list[float], mean_diameter: float, **extra: Any) -> dict[str, Any]:
    return {"finding_index": finding_index, "centre_lps_mm": centre, "volume_mm3": mean_diameter ** 3 / 2,
            "mean_diameter_mm": mean_diameter, "long_axis_mm": mean_diameter + 0.5,
            "short_axis_mm": mean_diameter - 0.5, "found_by": "detector", **extra}


def growth(change_mm: float, change_pct: float, vdt: float | None) -> dict[str, Any]:
    return {"interval_days": 180, "volume_change_mm3": change_pct, "volume_change_pct": change_pct,
            "mean_diameter_change_mm": change_mm, "vdt_days": vdt, "vdt_note": ""}


def follow_up_document() -> dict[str, Any]:
    """A ``follow_up.json`` of the fixed interface: matched, new, matched at a mapped position, resolved."""
    return {
        "schema": "lungai-follow-up", "schema_version": "1.0",
        "prior": {"source": "prior.nrrd", "date": "2024-07-01", "findings": "prior/findings.json"},
        "current": {"source": "current.nrrd", "date": "2024-12-28", "findings": "current/findings.json"},
        "interval_days": 180,
        "registration": {"method": "affine+bspline", "lung_dice": 0.93, "lung_dice_left": 0.92,
                         "lung_dice_right": 0.94, "quality": "good", "transform": "registration.tfm"},
        "nodules": [
            {"status": "matched", "prior": side(0, [1.0, 2.0, 3.0], 4.0), "current": side(0, centre_lps(1), 5.75),
             "prior_centre_in_current_lps_mm": centre_lps(1), "growth": growth(1.75, 100.0, 180.0),
             "lung_rads": {"category": "4A", "rule": "growing"}, "fleischner": None},
            {"status": "new", "prior": None, "current": side(1, centre_lps(2), 6.0),
             "prior_centre_in_current_lps_mm": None, "growth": None,
             "lung_rads": {"category": "3", "rule": "new"}, "fleischner": None},
            {"status": "matched", "prior": side(1, [5.0, 6.0, 7.0], 5.0),
             "current": side(None, centre_lps(3), 4.5, found_by="mapped_segmentation", nodule_id=3),
             "segment": "Nodule 3 (prior 2, segmented at the mapped position)",
             "prior_centre_in_current_lps_mm": centre_lps(3), "growth": growth(-0.5, -10.0, None),
             "lung_rads": {"category": "2", "rule": "stable"}, "fleischner": None},
            {"status": "resolved", "prior": side(2, [9.0, 9.0, 9.0], 6.0), "current": None,
             "prior_centre_in_current_lps_mm": RESOLVED_IN_CURRENT_LPS, "growth": None, "lung_rads": None,
             "fleischner": None},
        ],
        "warnings": ["no PatientID: make sure both scans are the same patient's"],
    }


def write_follow_up(folder: Path, document: dict[str, Any] | None = None) -> Path:
    """A follow-up output folder: ``follow_up.json``, the registered prior, the named segmentation, both runs."""
    write_findings(folder / "prior" / "findings.json", [1, 2, 3])
    write_findings(folder / "current" / "findings.json", [1, 2])
    write_segmentation(folder / "current" / "current.seg.nrrd", {1: "Nodule 1", 2: "Nodule 2"})
    write_segmentation(folder / "current.seg.nrrd", {1: "Nodule 1 (prior 1)", 2: "Nodule 2 (new)",
                                                     3: "Nodule 3 (prior 2, segmented at the mapped position)"})
    prior = sitk.GetImageFromArray((np.arange(18 * 36 * 40) % 700).astype(np.int16).reshape(18, 36, 40))
    prior.CopyInformation(make_grid())
    sitk.WriteImage(prior, str(folder / "prior_registered.nrrd"), useCompression=True)
    (folder / FOLLOW_UP_FILE).write_text(json.dumps(document or follow_up_document()))
    return folder


def add_views(scene: Any) -> Any:
    """The layout, slice and 3D view nodes 3D Slicer's application adds to its scene; returns the layout node."""
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    layout = scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        slice_node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
        slice_node.SetLayoutName(name)
        slice_node.SetOrientation(orientation)
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName(name)
    scene.AddNewNodeByClass("vtkMRMLViewNode").SetLayoutName("1")
    return layout


def by_layout(scene: Any, class_name: str) -> dict[str, Any]:
    nodes = scene.GetNodesByClass(class_name)
    return {node.GetLayoutName(): node for node in (nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems()))}


def column(table: Any, name: str) -> list[Any]:
    array = table.GetTable().GetColumnByName(name)
    assert array is not None, f"no column {name!r}"
    return [array.GetValue(row) for row in range(array.GetNumberOfTuples())]


def same(values: list[Any], expected: list[Any]) -> bool:
    """Equal, NaN equal to NaN."""
    return len(values) == len(expected) and all(
        (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b
        for a, b in zip(values, expected, strict=True))


def segment_names(node: Any) -> dict[str, str]:
    segmentation = node.GetSegmentation()
    return {segmentation.GetNthSegmentID(i): segmentation.GetNthSegment(i).GetName()
            for i in range(segmentation.GetNumberOfSegments())}


def ras(lps: Sequence[float]) -> tuple[float, float, float]:
    return (-lps[0], -lps[1], lps[2])


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return write_follow_up(tmp_path / "follow_up")


@pytest.fixture
def volume(scene: Any) -> Any:
    return add_volume_node(scene, make_grid(), "Chest CT 2024")


@pytest.fixture
def loaded(scene: Any, output: Path, volume: Any) -> FollowUpResults:
    add_views(scene)
    return load_follow_up(scene, output, volume)


# The table ------------------------------------------------------------------------------------

NAN = math.nan


def test_the_table_gains_the_comparison_and_a_row_per_pair(loaded: FollowUpResults) -> None:
    table = loaded.nodule_table
    assert column(table, NODULE_ID_COLUMN) == [1, 2, 3, 0]
    assert column(table, FOLLOW_UP_STATUS_COLUMN) == ["matched", "new", "matched", "resolved"]
    assert column(table, PRIOR_NODULE_COLUMN) == ["1", "", "2", "3"]
    assert same(column(table, "Prior size"), [4.0, NAN, 5.0, 6.0])
    assert same(column(table, "Diameter change"), [1.75, NAN, -0.5, NAN])
    assert same(column(table, "Volume change"), [100.0, NAN, -10.0, NAN])
    assert same(column(table, "VDT"), [180.0, NAN, NAN, NAN])
    assert column(table, "Lung-RADS follow-up") == ["4A", "3", "2", ""]
    assert (table.GetColumnUnitLabel("Prior size"), table.GetColumnUnitLabel("Volume change"),
            table.GetColumnUnitLabel("VDT")) == ("mm", "%", "days")
    assert "doubling time" in table.GetColumnDescription("VDT")


def test_rows_of_lesions_the_run_did_not_list_leave_the_run_s_cells_empty(loaded: FollowUpResults) -> None:
    table = loaded.nodule_table
    assert same(column(table, "Long axis"), [5.5, 6.5, NAN, NAN])
    assert column(table, "Type") == ["solid", "solid", "", ""]
    assert table.GetLocked()


def test_the_operating_point_keeps_each_comparison_on_its_row(loaded: FollowUpResults) -> None:
    loaded.set_operating_point(0.5)
    table = loaded.nodule_table
    assert column(table, NODULE_ID_COLUMN) == [1, 3, 0]
    assert column(table, FOLLOW_UP_STATUS_COLUMN) == ["matched", "matched", "resolved"]
    assert column(table, "Lung-RADS follow-up") == ["4A", "2", ""]
    assert not loaded.segmentation.GetDisplayNode().GetSegmentVisibility("nodule_2")


def test_segment_names_carry_the_matches_through_the_review(loaded: FollowUpResults, output: Path) -> None:
    expected = {"lung_right": "Right lung", "lung_left": "Left lung", "nodule_1": "Nodule 1 (prior 1)",
                "nodule_2": "Nodule 2 (new)", "nodule_3": "Nodule 3 (prior 2, segmented at the mapped position)"}
    assert segment_names(loaded.segmentation) == expected
    loaded.decide(1, "accepted")
    assert segment_names(loaded.segmentation) == expected
    assert loaded.segmentation.GetStorageNode().GetFileName() == str(output / "current.seg.nrrd")


def test_the_summary_adds_the_comparison(loaded: FollowUpResults) -> None:
    lines = loaded.summary.splitlines()
    assert "Follow-up: 2 matched, 1 new, 1 resolved; interval 180 days" in lines
    assert "Registration: good (lung-mask Dice 0.93)" in lines
    assert "Warning: no PatientID: make sure both scans are the same patient's" in lines
    assert lines[0].startswith("Lungs") or lines[0].startswith("Nodules")


def test_a_poor_registration_is_said_in_the_summary(scene: Any, tmp_path: Path, volume: Any) -> None:
    document = follow_up_document()
    document["registration"].update(quality="poor", lung_dice=0.61)
    results = load_follow_up(scene, write_follow_up(tmp_path / "poor", document), volume)
    assert "Registration: poor (lung-mask Dice 0.61): check the matches in the images" in results.summary


def test_the_registered_prior_is_a_volume_on_the_current_grid(loaded: FollowUpResults, output: Path,
                                                              volume: Any) -> None:
    prior = loaded.prior_volume
    assert prior.GetName() == "Chest CT 2024 prior (registered)"
    assert prior.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
    written = sitk.ReadImage(str(output / "prior_registered.nrrd"))
    matrix = vtkMatrix4x4()
    prior.GetRASToIJKMatrix(matrix)
    ras_to_ijk = vtk_matrix_array(matrix)
    for index_xyz in ((0, 0, 0), (39, 35, 17), (12, 30, 5)):  # the same value at the same physical point
        point = ijk_to_ras(written) @ [*index_xyz, 1.0]
        i, j, k = np.rint(ras_to_ijk @ point).astype(int)[:3]
        assert prior.GetImageData().GetScalarComponentAsDouble(i, j, k, 0) == written[index_xyz]
    assert prior.GetStorageNode().GetFileName() == str(output / "prior_registered.nrrd")
    assert prior.GetDisplayNode() is not None


# Layout, linked views, row clicks -------------------------------------------------------------

def test_the_views_show_current_and_prior_side_by_side_linked(scene: Any, loaded: FollowUpResults,
                                                              volume: Any) -> None:
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    composites = by_layout(scene, "vtkMRMLSliceCompositeNode")
    assert composites["Red"].GetBackgroundVolumeID() == volume.GetID()
    assert composites["Yellow"].GetBackgroundVolumeID() == loaded.prior_volume.GetID()
    assert all(composite.GetLinkedControl() for composite in composites.values())
    slices = by_layout(scene, "vtkMRMLSliceNode")
    assert slices["Red"].GetOrientation() == slices["Yellow"].GetOrientation() == "Axial"
    display = loaded.segmentation.GetDisplayNode()
    assert display.IsViewNodeIDPresent(slices["Red"].GetID())
    assert not display.IsViewNodeIDPresent(slices["Yellow"].GetID())


def slice_centre(slice_node: Any) -> np.ndarray:
    return vtk_matrix_array(slice_node.GetSliceToRAS())[:3, 3]


@pytest.mark.parametrize(("nodule_id", "prior_nodule", "reviewable", "centre"), [
    (1, "1", 1, ras(centre_lps(1))),  # a finding of the run: chosen for review
    (3, "2", None, ras(centre_lps(3))),  # segmented at the mapped position: not one of the run's findings
    (0, "3", None, ras(RESOLVED_IN_CURRENT_LPS)),  # resolved: the prior centre mapped into the current scan
])
def test_a_row_click_centres_both_views_on_the_nodule(scene: Any, loaded: FollowUpResults, nodule_id: int,
                                                      prior_nodule: str, reviewable: int | None,
                                                      centre: tuple[float, float, float]) -> None:
    chosen, point = loaded.row_target(nodule_id, prior_nodule)
    assert chosen == reviewable
    assert point is not None
    np.testing.assert_allclose(point, centre, atol=1e-2)
    centre_views(scene, point)
    slices = by_layout(scene, "vtkMRMLSliceNode")
    for name in ("Red", "Yellow"):
        np.testing.assert_allclose(slice_centre(slices[name]), centre, atol=1e-2)


def test_a_row_click_follows_the_volume_s_transform(scene: Any, output: Path, volume: Any) -> None:
    add_views(scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = vtkMatrix4x4()
    shift.SetElement(0, 3, 10.0)
    transform.SetMatrixTransformToParent(shift)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    results = load_follow_up(scene, output, volume)
    assert results.prior_volume.GetTransformNodeID() == transform.GetID()
    _, point = results.row_target(1)
    np.testing.assert_allclose(point, np.add(ras(centre_lps(1)), (10.0, 0.0, 0.0)), atol=1e-2)


# Loading that fails ---------------------------------------------------------------------------

def break_prior(folder: Path) -> None:
    (folder / "prior_registered.nrrd").write_bytes(b"NRRD0004\nnot a volume\n")


def break_segmentation(folder: Path) -> None:
    (folder / "current.seg.nrrd").write_bytes(b"NRRD0005\nthis is not a segmentation\n")


def break_version(folder: Path) -> None:
    document = follow_up_document()
    document["schema_version"] = "2.0"
    (folder / FOLLOW_UP_FILE).write_text(json.dumps(document))


def break_findings_index(folder: Path) -> None:
    document = follow_up_document()
    document["nodules"][3]["prior"]["finding_index"] = 7
    (folder / FOLLOW_UP_FILE).write_text(json.dumps(document))


@pytest.mark.parametrize(("damage", "error", "message"), [
    (break_prior, RuntimeError, "cannot read the registered prior"),
    (break_segmentation, RuntimeError, "cannot read the segmentation file"),
    (break_version, ValueError, "schema version 2.0"),
    (break_findings_index, ValueError, "names prior finding 7, but the prior findings hold 3"),
])
def test_a_failed_load_leaves_scene_and_layout_as_they_were(scene: Any, output: Path, volume: Any, damage: Any,
                                                            error: type, message: str) -> None:
    layout = add_views(scene)
    damage(output)
    before = scene.GetNumberOfNodes()
    with pytest.raises(error, match=message):
        load_follow_up(scene, output, volume)
    assert scene.GetNumberOfNodes() == before
    assert layout.GetViewArrangement() != slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert by_layout(scene, "vtkMRMLSliceCompositeNode")["Yellow"].GetBackgroundVolumeID() is None


# The command line -----------------------------------------------------------------------------

def test_the_command_for_a_prior_volume_compares_the_two_exported_scans(tmp_path: Path) -> None:
    folder = RunFolder.create(tmp_path / "LungAI", "Chest CT 2024")
    prior = prior_export_path(folder, "Chest CT 2022")
    assert prior == folder.scan.parent / "prior" / "Chest_CT_2022.nrrd"
    request = FollowUpRequest(prior=prior, current=folder.scan, output=folder.output, device="cuda")
    assert build_follow_up_command("/opt/Slicer/bin/PythonSlicer", request) == [
        "/opt/Slicer/bin/PythonSlicer", "-m", "lungai.cli", "follow-up", str(prior), str(folder.scan),
        "-o", str(folder.output), "--device", "cuda", "--sensitivity", "balanced"]


def test_the_command_for_a_prior_folder_passes_it_as_is(tmp_path: Path) -> None:
    request = FollowUpRequest(prior=tmp_path / "Chest CT 2022_lungai", current=tmp_path / "current.nrrd",
                              output=tmp_path / "results", interval_days=365, force=True)
    command = build_follow_up_command("python", request)
    assert command[4:6] == [str(tmp_path / "Chest CT 2022_lungai"), str(tmp_path / "current.nrrd")]
    assert command[-3:] == ["--interval-days", "365", "--force"]


def test_every_option_of_the_follow_up_command_is_one_the_cli_accepts(tmp_path: Path) -> None:
    command = build_follow_up_command("python", FollowUpRequest(prior=tmp_path / "p", current=tmp_path / "c",
                                                                output=tmp_path / "o", interval_days=9, force=True))
    accepted = {name for param in cli.commands["follow-up"].params for name in param.opts}
    used = {part for part in command[4:] if part.startswith("-")}
    assert used <= accepted, used - accepted


def test_a_negative_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        build_follow_up_command("python", FollowUpRequest(prior=tmp_path, current=tmp_path, output=tmp_path,
                                                          interval_days=-3))


def test_a_dicom_series_is_handed_over_as_its_folder_only_when_the_folder_holds_it_alone(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "series", box_phantom(shape=(12, 16, 16)))
    files = sorted((tmp_path / "series").iterdir())
    assert dicom_series_folder(files) == (tmp_path / "series").resolve()
    assert dicom_series_folder(files[:-1]) is None  # another file in the folder: not this series alone
    assert dicom_series_folder([]) is None
    assert dicom_series_folder([*files, tmp_path / "elsewhere.dcm"]) is None


# The process: progress, success, errors, cancelling ---------------------------------------------

class Loader:
    def __init__(self) -> None:
        self.loaded: list[Path] = []

    def __call__(self, output: Path) -> str:
        self.loaded.append(output)
        return "results"


def fake_job(tmp_path: Path, process: FakeProcess) -> tuple[AnalysisJob, RunFolder, Loader, list[ProgressUpdate]]:
    folder = RunFolder.create(tmp_path / "LungAI", "CT")
    folder.scan.write_bytes(b"exported scan")
    load, updates = Loader(), []
    job = follow_up_job(folder, ["lungai", "follow-up"], load, launcher=lambda command: process,
                        on_progress=updates.append)
    job.start()
    return job, folder, load, updates


def test_a_follow_up_succeeds_once_it_has_written_follow_up_json(tmp_path: Path) -> None:
    process = FakeProcess()
    job, folder, load, updates = fake_job(tmp_path, process)
    assert job.poll() is None
    assert [(u.event, u.label) for u in updates] == [("stage", "Follow-up (1/1)")]
    folder.output.mkdir()
    (folder.output / FOLLOW_UP_FILE).write_text("{}")
    process.feed(["2 matched, 0 new, 0 resolved"])
    process.code = 0
    assert job.poll() == (RunOutcome(RunStatus.SUCCEEDED, 0, output=folder.output), "results")
    assert updates[-1].event == "done" and load.loaded == [folder.output]
    assert not folder.scan.exists()


def test_exit_code_0_without_follow_up_json_is_a_failure(tmp_path: Path) -> None:
    process = FakeProcess()
    job, folder, load, _ = fake_job(tmp_path, process)
    process.code = 0
    outcome, results = job.poll()  # type: ignore[misc]
    assert (outcome.status, results, load.loaded) == (RunStatus.FAILED, None, [])
    assert "without reporting its results" in outcome.message
    assert not folder.root.exists()


def test_a_cancelled_follow_up_loads_nothing_and_leaves_no_files(tmp_path: Path) -> None:
    process = FakeProcess()
    job, folder, load, _ = fake_job(tmp_path, process)
    job.cancel()
    assert job.poll() == (RunOutcome(RunStatus.CANCELLED, 130), None)
    assert process.interrupts == 1 and load.loaded == [] and not folder.root.exists()


def run_to_end(job: AnalysisJob, timeout_s: float) -> tuple[RunOutcome, Any]:
    deadline = time.monotonic() + timeout_s
    while (ended := job.poll()) is None:
        assert time.monotonic() < deadline, "the follow-up did not end in time"
        time.sleep(0.1)
    return ended


def dicom_scan(folder: Path, **header: str) -> Path:
    write_dicom_series(folder, box_phantom(shape=(16, 48, 48)), **header)
    return folder


@pytest.mark.parametrize(("headers", "force", "code", "message"), [
    (({"PatientID": "A"}, {"PatientID": "B"}), False, 16, "different DICOM PatientIDs"),
    (({"PatientID": "A", "StudyDate": "20240105"}, {"PatientID": "A", "StudyDate": "20230105"}), True, 17,
     "the prior scan (2024-01-05) is dated after the current one (2023-01-05)"),
])
def test_a_refused_pair_fails_with_the_command_s_message_and_leaves_nothing(
        tmp_path: Path, headers: tuple[dict[str, str], dict[str, str]], force: bool, code: int, message: str) -> None:
    """The real command line on two DICOM series handed over as their folders, through the module's job."""
    prior, current = (dicom_scan(tmp_path / name, **header) for name, header in zip(("prior", "current"), headers))
    folder = RunFolder.create(tmp_path / "LungAI", "current")
    command = build_follow_up_command(sys.executable, FollowUpRequest(prior=prior, current=current,
                                                                      output=folder.output, force=force))
    load = Loader()
    job = follow_up_job(folder, command, load, input_name="Chest CT 2024")
    job.start()
    outcome, results = run_to_end(job, timeout_s=120)
    assert (outcome.status, outcome.exit_code, results, load.loaded) == (RunStatus.FAILED, code, None, [])
    assert message in outcome.message
    assert not folder.root.exists()


# A real follow-up of a simulated pair -------------------------------------------------------------

@pytest.mark.slow
def test_a_real_follow_up_through_the_module_s_job_loads_every_pair(data_root: Path, tmp_path: Path,
                                                                    scene: Any) -> None:
    """``lungai follow-up`` on a simulated pair (cip_small with real LIDC test-split nodules), run as Slicer runs it."""
    from detection_cases import small_background

    from lungai.data.follow_up_sim import FollowUpSimConfig, PairSpec, pair_vois, simulate_pair

    config = FollowUpSimConfig(matched=2, resolved=1, new=1, min_diameter_mm=8.0, small_fraction=0.0,
                               edge_margin_mm=20.0)
    pair = simulate_pair(small_background(data_root), pair_vois(data_root, "test", config.min_diameter_mm),
                         PairSpec("test_00_cip_small", "test", "cip_small", (0, 1, 0)), config)
    folder = RunFolder.create(tmp_path / "LungAI", "current")
    prior = prior_export_path(folder, "prior")
    prior.parent.mkdir(parents=True)
    sitk.WriteImage(pair.prior, str(prior))
    sitk.WriteImage(pair.current, str(folder.scan))
    add_views(scene)
    volume = add_volume_node(scene, pair.current, "current")
    request = FollowUpRequest(prior=prior, current=folder.scan, output=folder.output, device="cpu",
                              interval_days=pair.truth["interval_days"])
    job = follow_up_job(folder, build_follow_up_command(sys.executable, request),
                        lambda output: load_follow_up(scene, output, volume), input_name="current")
    job.start()
    outcome, results = run_to_end(job, timeout_s=1500)
    assert outcome.succeeded, outcome.message
    document = json.loads((folder.output / FOLLOW_UP_FILE).read_text())
    statuses = [pair["status"] for pair in document["nodules"]]
    listed = results.review.listed()
    unlisted = [p for p in document["nodules"] if p["current"] is None or p["current"]["finding_index"] is None]
    assert column(results.nodule_table, FOLLOW_UP_STATUS_COLUMN)[len(listed):] == [p["status"] for p in unlisted]
    assert sorted(column(results.nodule_table, FOLLOW_UP_STATUS_COLUMN)) == sorted(statuses)
    assert by_layout(scene, "vtkMRMLSliceCompositeNode")["Yellow"].GetBackgroundVolumeID() == \
        results.prior_volume.GetID()
    names = set(segment_names(results.segmentation).values())
    assert {p["segment"] for p in document["nodules"] if p.get("segment")} <= names


def test_loading_a_follow_up_imports_no_torch() -> None:
    code = "import sys\nimport lungai.slicer.follow_up\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stderr
