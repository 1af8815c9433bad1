"""Reviewing a run in a real MRML scene (slicer-core): the live operating point, accept/reject,
edit + re-measure, and the saved report matching the panel.

The run's outputs are those of :mod:`review_case` (a synthetic CT with two nodules and a mass);
edits are made as the Segment Editor makes them, through ``SetBinaryLabelmapToSegment``.
"""

from __future__ import annotations

import csv
import dataclasses
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from mrml_helpers import SLICER_CORE_MISSING, add_volume_node
from review_case import LESIONS, SPACING_XYZ, lesion_mask, machine_findings, make_ct, on_lps_grid, write_case
from shared_data import require

from lungai import labels
from lungai.io.findings import (
    Characteristics,
    LungRads,
    findings_from_dict,
    load_findings,
    read_findings,
    write_findings_json,
)
from lungai.io.reader import ReadOptions, read_scan
from lungai.io.segmentation import write_seg_nrrd
from lungai.io.volume import CTVolume
from lungai.pipeline.lung_rads import lung_rads_category
from lungai.pipeline.operating_points import OPERATING_POINTS

pytestmark = pytest.mark.slicer_core
slicer = pytest.importorskip("slicer", reason=SLICER_CORE_MISSING)

from vtkmodules.util import numpy_support  # noqa: E402

from lungai.slicer.mrml import (  # noqa: E402
    CHARACTERISTICS_COLUMN,
    MALIGNANCY_COLUMN,
    NODULE_ID_COLUMN,
    LoadedResults,
    load_results,
)
from lungai.slicer.remeasure import remeasure  # noqa: E402
from lungai.slicer.report import REVIEWED_SERIES_DESCRIPTION, save_review, save_reviewed_report  # noqa: E402
from lungai.slicer.review import ACCEPTED_RULE  # noqa: E402
from lungai.slicer.scene_images import label_image, segment_mask, volume_image  # noqa: E402

BALANCED = OPERATING_POINTS["balanced"].threshold
HIGH = OPERATING_POINTS["high"].threshold
SPECIFIC = OPERATING_POINTS["specific"].threshold
VOXEL_MM3 = float(np.prod(SPACING_XYZ))


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return write_case(tmp_path / "results")


@pytest.fixture
def volume(scene: Any) -> Any:
    return add_volume_node(scene, make_ct(), "Chest CT")


@pytest.fixture
def results(scene: Any, output: Path, volume: Any) -> LoadedResults:
    return load_results(scene, output, volume, min_detection_score=HIGH)


def column(table: Any, name: str) -> list[Any]:
    array = table.GetTable().GetColumnByName(name)
    assert array is not None, f"no column {name!r}"
    return [array.GetValue(row) for row in range(array.GetNumberOfTuples())]


def visible_segments(results: LoadedResults) -> set[str]:
    display, segmentation = results.segmentation.GetDisplayNode(), results.segmentation.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
    return {segment_id for segment_id in ids if display.GetSegmentVisibility(segment_id)}


def visible_points(results: LoadedResults) -> list[str]:
    points = results.nodule_points
    return [points.GetNthControlPointLabel(index) for index in range(points.GetNumberOfControlPoints())
            if points.GetNthControlPointVisibility(index)]


def edit_segment(results: LoadedResults, volume: Any, nodule_id: int, mask_zyx: np.ndarray) -> None:
    """Replace a segment's voxels as a Segment Editor effect does (a labelmap on the volume's grid)."""
    labelmap = slicer.vtkSlicerSegmentationsModuleLogic.CreateOrientedImageDataFromVolumeNode(volume)
    labelmap.AllocateScalars(3, 1)  # VTK_UNSIGNED_CHAR, one component
    # the volume's IJK axes are the case's (x, y, z) voxel axes: the array is (k, j, i) = (z, y, x)
    labelmap.GetPointData().SetScalars(numpy_support.numpy_to_vtk(mask_zyx.astype(np.uint8).ravel(), deep=True))
    assert slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        labelmap, results.segmentation, labels.nodule(nodule_id).key,
        slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)


# The live operating point ---------------------------------------------------------------------

def test_moving_the_operating_point_filters_table_points_segments_and_summary(
        scene: Any, output: Path, results: LoadedResults) -> None:
    nodes_before = scene.GetNumberOfNodes()
    files_before = {path.name: path.stat().st_mtime_ns for path in output.iterdir()}
    assert column(results.nodule_table, NODULE_ID_COLUMN) == [1, 2, 3]
    assert visible_segments(results) == {"lung_right", "lung_left", "nodule_1", "nodule_2", "nodule_3"}

    results.set_operating_point(BALANCED)
    assert column(results.nodule_table, NODULE_ID_COLUMN) == [1, 3]  # the mass has no score: always shown
    assert visible_points(results) == ["N1", "N3"]
    assert visible_segments(results) == {"lung_right", "lung_left", "nodule_1", "nodule_3"}
    assert results.hidden_nodules == [2]
    assert f"Nodules: 2 shown, 1 below the operating point {BALANCED:.2f} hidden" in results.summary

    results.set_operating_point(1.0)
    assert column(results.nodule_table, NODULE_ID_COLUMN) == [3]
    assert visible_segments(results) == {"lung_right", "lung_left", "nodule_3"}

    results.set_operating_point(HIGH)
    assert column(results.nodule_table, NODULE_ID_COLUMN) == [1, 2, 3]
    assert visible_points(results) == ["N1", "N2", "N3"]
    assert "Nodules: 3 shown" in results.summary and "hidden" not in results.summary
    assert scene.GetNumberOfNodes() == nodes_before, "moving the slider creates no nodes"
    assert {path.name: path.stat().st_mtime_ns for path in output.iterdir()} == files_before, "nothing re-ran"


def test_the_table_columns(results: LoadedResults) -> None:
    table = results.nodule_table
    names = [table.GetColumnName(index) for index in range(table.GetNumberOfColumns())]
    assert names == ["ID", "Type", "Long axis", "Short axis", "Volume", "Solid component", "Lung-RADS",
                     MALIGNANCY_COLUMN, "Location", "Score", "Review"]
    findings = results.review.machine.nodules
    assert column(table, "Type") == ["solid", "solid", "mass, solid"]
    assert column(table, "Long axis") == [nodule.long_axis_mm for nodule in findings]
    assert column(table, "Lung-RADS") == ["4A", "", "4B"]  # lesion 2 is below specific: no category
    assert column(table, MALIGNANCY_COLUMN) == ["0.20", "", "0.60"]
    assert column(table, "Score") == ["0.850 (specific)", f"{HIGH + 0.005:.3f} (high)", "mass rule"]
    assert column(table, "Location") == [nodule.location for nodule in findings]
    assert results.segmentation.GetSegmentation().GetSegment("nodule_3").GetName() == "Mass 3"


def test_a_characteristics_column_when_a_lesion_has_some(scene: Any, output: Path, volume: Any) -> None:
    findings = read_findings(output / "findings.json")
    estimates = Characteristics(texture="solid", texture_probability=0.92, calcification_probability=0.02,
                                spiculation_probability=0.61, lobulation_probability=0.3,
                                ill_defined_margin_probability=0.1, present=["spiculation"])
    first = dataclasses.replace(findings.nodules[0], characteristics=estimates)
    write_findings_json(dataclasses.replace(findings, nodules=[first, *findings.nodules[1:]]), output / "findings.json")
    table = load_results(scene, output, volume, min_detection_score=HIGH).nodule_table
    assert column(table, CHARACTERISTICS_COLUMN) == ["texture solid 0.92; spiculation 0.61", "", ""]
    names = [table.GetColumnName(index) for index in range(table.GetNumberOfColumns())]
    assert names.index(CHARACTERISTICS_COLUMN) == names.index(MALIGNANCY_COLUMN) + 1


def test_the_findings_dataclasses_round_trip_a_run(output: Path) -> None:
    data = load_findings(output / "findings.json")
    assert findings_from_dict(data).to_dict() == data


# Accept and reject ----------------------------------------------------------------------------

def test_a_rejected_lesion_keeps_its_row_but_leaves_the_views(results: LoadedResults) -> None:
    results.decide(1, "rejected")
    assert column(results.nodule_table, NODULE_ID_COLUMN) == [1, 2, 3]
    assert column(results.nodule_table, "Review") == ["rejected", "", ""]
    assert "nodule_1" not in visible_segments(results)
    assert visible_points(results) == ["N2", "N3"]
    assert "Review: 1 rejected, 2 to review" in results.summary
    results.decide(1, None)
    assert "nodule_1" in visible_segments(results) and visible_points(results) == ["N1", "N2", "N3"]
    assert "Review" not in results.summary


def test_an_accepted_lesion_stays_listed_above_its_score(results: LoadedResults) -> None:
    results.decide(2, "accepted")
    results.set_operating_point(SPECIFIC)
    assert column(results.nodule_table, NODULE_ID_COLUMN) == [1, 2, 3]
    assert column(results.nodule_table, "Review") == ["", "accepted", ""]
    assert "nodule_2" in visible_segments(results)
    results.decide(2, None)
    assert column(results.nodule_table, NODULE_ID_COLUMN) == [1, 3]
    with pytest.raises(ValueError, match="accepted, rejected"):
        results.decide(1, "maybe")


def test_accepting_an_uncategorised_lesion_gives_it_the_size_rule_and_taking_it_back_removes_it(
        results: LoadedResults) -> None:
    record = results.review.nodules[2]
    assert record.lung_rads is None  # below specific: the machine gave no category
    results.decide(2, "accepted")
    mean = (record.long_axis_mm + record.short_axis_mm) / 2
    expected = lung_rads_category(record.type, mean, record.solid_component_mm).category
    assert results.review.nodules[2].lung_rads == LungRads(expected, ACCEPTED_RULE)
    assert column(results.nodule_table, "Lung-RADS")[1] == expected
    results.decide(2, "rejected")
    assert results.review.nodules[2].lung_rads is None
    assert results.review.machine.nodules[1].lung_rads is None  # the machine's record is untouched
    results.decide(1, "accepted")  # a machine category stays the machine's
    lung_rads = results.review.nodules[1].lung_rads
    assert lung_rads is not None and lung_rads.rule == "size rule"


# Edit and re-measure --------------------------------------------------------------------------

def test_the_scene_images_are_the_case_on_its_grid(results: LoadedResults, volume: Any) -> None:
    grid = volume_image(volume)
    ct = on_lps_grid(make_ct())  # x was flipped: the reader's grid runs the other way
    assert grid.GetSize() == ct.GetSize()
    np.testing.assert_allclose(grid.GetOrigin(), ct.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(grid.GetOrigin(), (30.0 - 0.8 * 79, -20.0, -40.0), atol=1e-6)
    np.testing.assert_allclose(grid.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(grid), sitk.GetArrayViewFromImage(ct))
    for nodule_id, lesion in LESIONS.items():
        np.testing.assert_array_equal(segment_mask(results.segmentation, f"nodule_{nodule_id}", grid),
                                      on_lps_grid(make_ct(), lesion_mask(lesion)).astype(bool))


def test_re_measuring_an_unedited_segment_gives_the_machine_numbers(results: LoadedResults, volume: Any) -> None:
    machine = results.review.machine.nodules[0]
    record = remeasure(results, 1)
    for key in ("long_axis_mm", "short_axis_mm", "volume_mm3", "mean_hu", "type", "location",
                "distance_to_pleura_mm", "kind", "detection_score", "operating_point", "lung_rads", "malignancy"):
        value = getattr(machine, key)
        assert getattr(record, key) == pytest.approx(value) if isinstance(value, float) else \
            getattr(record, key) == value, key
    assert record.centroid.voxel_index == tuple(machine.centroid.voxel_index)
    np.testing.assert_allclose(record.centroid.lps_mm, machine.centroid.lps_mm)
    np.testing.assert_allclose(record.centroid.ras_mm, machine.centroid.ras_mm)


def test_an_edited_segment_is_re_measured(results: LoadedResults, volume: Any) -> None:
    lesion = LESIONS[1]
    kept = lesion_mask(lesion)
    kept[: lesion.centre_zyx[0]] = False  # erase the lower half (lower z: towards the feet)
    edit_segment(results, volume, 1, kept)
    record = remeasure(results, 1)
    machine = results.review.machine.nodules[0]
    assert record.volume_mm3 == pytest.approx(np.count_nonzero(kept) * VOXEL_MM3, abs=0.05)
    assert record.volume_mm3 < 0.7 * machine.volume_mm3  # the widest slice stays
    centre_z = np.nonzero(kept)[0].mean()
    assert record.centroid.voxel_index[2] == round(centre_z)
    assert record.long_axis_mm == machine.long_axis_mm  # the widest slice stays
    assert column(results.nodule_table, "Volume")[0] == record.volume_mm3
    assert column(results.nodule_table, "Review")[0] == "edited"
    assert machine.volume_mm3 != record.volume_mm3, "the machine record stays"
    assert "1 edited" in results.summary


def test_a_nodule_grown_past_30_mm_becomes_a_mass(results: LoadedResults, volume: Any) -> None:
    grown = LESIONS[1].__class__(LESIONS[1].centre_zyx, 16.0, LESIONS[1].score)
    edit_segment(results, volume, 1, lesion_mask(grown) & ~lesion_mask(LESIONS[3]))
    record = remeasure(results, 1)
    assert record.kind == "mass" and record.long_axis_mm > 30
    assert record.type != "solid", "the grown segment takes in lung around the lesion"
    expected = lung_rads_category(record.type, (record.long_axis_mm + record.short_axis_mm) / 2,
                                  record.solid_component_mm)
    assert record.lung_rads == LungRads(expected.category, "size rule")
    assert column(results.nodule_table, "Type")[0] == f"mass, {record.type}"
    assert results.segmentation.GetSegmentation().GetSegment("nodule_1").GetName() == "Mass 1"


def test_an_emptied_segment_is_refused(results: LoadedResults, volume: Any) -> None:
    edit_segment(results, volume, 2, np.zeros_like(lesion_mask(LESIONS[2])))
    with pytest.raises(ValueError, match="reject the lesion instead"):
        remeasure(results, 2)
    assert 2 not in results.review.edited


def test_without_the_volume_nothing_is_re_measured(scene: Any, output: Path) -> None:
    results = load_results(scene, output)
    with pytest.raises(ValueError, match="without their CT volume"):
        remeasure(results, 1)


# The saved report -----------------------------------------------------------------------------

class NoduleTable(HTMLParser):
    """The first cell of each row of the report's nodule table, and its section ids."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.first_cells: list[str] = []
        self.sections: list[str] = []
        self._in_table = False
        self._cell = -1
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._in_table = attributes.get("id") == "nodules-table"
        elif tag == "section":
            self.sections.append(attributes.get("id") or "")
        elif tag == "tr" and self._in_table:
            self._cell = -1
        elif tag == "td" and self._in_table:
            self._cell += 1
            if self._cell == 0:
                self.first_cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False

    def handle_data(self, data: str) -> None:
        if self._in_table and self._cell == 0 and self.first_cells:
            self.first_cells[-1] += data


def reviewed_case(results: LoadedResults, volume: Any) -> None:
    """Balanced, lesion 1 accepted and edited, the mass rejected (lesion 2 falls below the operating point)."""
    results.set_operating_point(BALANCED)
    results.decide(1, "accepted")
    kept = lesion_mask(LESIONS[1])
    kept[:, :, : LESIONS[1].centre_zyx[2]] = False
    edit_segment(results, volume, 1, kept)
    remeasure(results, 1)
    results.decide(3, "rejected")


def save(results: LoadedResults, destination: Path, **dicom: Any) -> list[Path]:
    destination.mkdir(exist_ok=True)
    return save_review(results, destination, reviewed_utc="2025-02-01T09:30:00Z", **dicom)


def test_the_saved_report_matches_the_panel(results: LoadedResults, volume: Any, output: Path,
                                            tmp_path: Path) -> None:
    reviewed_case(results, volume)
    destination = tmp_path / "reports"
    written = save(results, destination)
    assert sorted(path.name for path in written) == sorted(path.name for path in destination.iterdir()) == [
        "case.seg.nrrd", "case_findings.json", "case_findings_machine.json", "case_nodules.csv", "case_report.html"]

    shown_ids = column(results.nodule_table, NODULE_ID_COLUMN)
    reported = [nodule_id for nodule_id, verdict in zip(shown_ids, column(results.nodule_table, "Review"))
                if "rejected" not in verdict]
    assert shown_ids == [1, 3] and reported == [1]
    findings = load_findings(destination / "case_findings.json")
    assert [nodule["id"] for nodule in findings["nodules"]] == reported
    saved = findings["nodules"][0]
    assert saved["volume_mm3"] == column(results.nodule_table, "Volume")[0] == results.review.nodules[1].volume_mm3
    assert saved["long_axis_mm"] == column(results.nodule_table, "Long axis")[0]
    assert saved["volume_mm3"] < results.review.machine.nodules[0].volume_mm3
    assert findings["review"] == {
        "reviewed_utc": "2025-02-01T09:30:00Z",
        "operating_point": {"name": "balanced", "threshold": round(BALANCED, 4)},
        "nodules": [{"id": 1, "status": "accepted", "edited": True},
                    {"id": 2, "status": "below operating point", "edited": False},
                    {"id": 3, "status": "rejected", "edited": False}],
        "machine_findings": "case_findings_machine.json"}
    assert findings["detection"]["operating_point"] == "balanced"
    assert findings["detection"]["expected_fp_per_scan"] == OPERATING_POINTS["balanced"].expected_fp_per_scan
    assert (destination / "case_findings_machine.json").read_bytes() == (output / "findings.json").read_bytes()

    with (destination / "case_nodules.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [int(row["id"]) for row in rows] == reported
    assert float(rows[0]["volume_mm3"]) == pytest.approx(saved["volume_mm3"])

    segmentation = slicerio.read_segmentation(str(destination / "case.seg.nrrd"))
    assert [segment["id"] for segment in segmentation["segments"]] == ["lung_right", "lung_left", "nodule_1"]
    nodule_voxels = segmentation["voxels"] == labels.nodule(1).value
    assert np.count_nonzero(nodule_voxels) * VOXEL_MM3 == pytest.approx(saved["volume_mm3"], abs=0.05)

    text = (destination / "case_report.html").read_text(encoding="utf-8")
    page = NoduleTable(text)
    assert page.sections[0] == "review"
    assert [cell.strip() for cell in page.first_cells] == ["Nodule 1"]
    assert "nodule-1" in page.sections and "nodule-3" not in page.sections
    assert "Reviewed in 3D Slicer, saved 2025-02-01T09:30:00Z, at the balanced operating point" in text
    assert "Mass 3: rejected" in text and "Nodule 1: accepted, edited and re-measured" in text


def test_saving_again_replaces_the_files_and_keeps_the_run(results: LoadedResults, volume: Any, output: Path,
                                                           tmp_path: Path) -> None:
    destination = tmp_path / "reports"
    save(results, destination)
    results.decide(2, "rejected")
    save(results, destination)
    assert [n["id"] for n in load_findings(destination / "case_findings.json")["nodules"]] == [1, 3]
    assert [n["id"] for n in load_findings(output / "findings.json")["nodules"]] == [1, 2, 3]
    assert not [path for path in destination.iterdir() if path.name.startswith(".")]


def test_saving_needs_an_existing_folder(results: LoadedResults, volume: Any, tmp_path: Path) -> None:
    ct = CTVolume(image=volume_image(volume), source="case.nrrd", format="nrrd")
    with pytest.raises(NotADirectoryError):
        save_reviewed_report(results.files, results.review, ct, label_image(results.segmentation, [], ct.image),
                             tmp_path / "missing")


# A DICOM SEG of the review, on a real series ---------------------------------------------------

@pytest.fixture(scope="module")
def lidc_dicom(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CTVolume]:
    """LIDC-IDRI-0001's DICOM files in a folder (as Slicer's DICOM database keeps a series), and the scan."""
    import zipfile

    folder = tmp_path_factory.mktemp("lidc") / "series"
    with zipfile.ZipFile(require(data_root / "lidc_scans" / "LIDC-IDRI-0001" / "dicom.zip")) as archive:
        archive.extractall(folder)
    return folder, read_scan(folder, ReadOptions())


@pytest.mark.slow
def test_the_reviewed_dicom_seg_holds_the_reported_segments(lidc_dicom: tuple[Path, CTVolume], scene: Any,
                                                            tmp_path: Path) -> None:
    """A review of two lesions painted on LIDC-IDRI-0001, one rejected, one edited."""
    import highdicom as hd

    folder, ct = lidc_dicom
    volume = add_volume_node(scene, ct.image, "LIDC-IDRI-0001")
    results = load_results(scene, _dicom_case_output(ct, tmp_path / "results"), volume, min_detection_score=HIGH)
    results.decide(2, "rejected")
    edit_segment(results, volume, 1, _ball(ct.image, (256, 300, 60), 5.0))
    remeasure(results, 1)
    save(results, tmp_path / "reports", dicom_folder=folder, series_uid=ct.series_uid)
    seg = hd.seg.segread(tmp_path / "reports" / "case.seg.dcm")
    assert seg.SeriesDescription == REVIEWED_SERIES_DESCRIPTION
    described = {item.SegmentLabel: item.SegmentAlgorithmType for item in seg.SegmentSequence}
    assert described == {"Right lung": "AUTOMATIC", "Nodule 1": "SEMIAUTOMATIC"}
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.series_uid
    saved = load_findings(tmp_path / "reports" / "case_findings.json")
    assert [nodule["id"] for nodule in saved["nodules"]] == [1]
    assert not [warning for warning in saved["warnings"] if "DICOM SEG" in warning]


@pytest.mark.slow
def test_a_dicom_series_off_the_volume_grid_gives_no_seg(lidc_dicom: tuple[Path, CTVolume], results: LoadedResults,
                                                         volume: Any, tmp_path: Path) -> None:
    folder, ct = lidc_dicom
    written = save(results, tmp_path / "reports", dicom_folder=folder, series_uid=ct.series_uid)
    assert "case.seg.dcm" not in [path.name for path in written] and "case_report.html" in [p.name for p in written]


def _ball(grid: sitk.Image, centre_xyz: tuple[int, int, int], radius_mm: float) -> np.ndarray:
    z, y, x = np.indices(sitk.GetArrayViewFromImage(grid).shape, dtype=float)
    spacing = grid.GetSpacing()
    return (((x - centre_xyz[0]) * spacing[0]) ** 2 + ((y - centre_xyz[1]) * spacing[1]) ** 2
            + ((z - centre_xyz[2]) * spacing[2]) ** 2) <= radius_mm ** 2


def _dicom_case_output(ct: CTVolume, folder: Path) -> Path:
    """An output folder for ``ct``: a right-lung box and two small lesions, with findings to match."""
    lungs = np.zeros(sitk.GetArrayViewFromImage(ct.image).shape, dtype=np.uint8)
    lungs[40:80, 200:400, 150:250] = labels.LUNG_RIGHT.value
    lesions = {1: (_ball(ct.image, (256, 300, 60), 3.0), 0.9), 2: (_ball(ct.image, (200, 250, 70), 3.0), 0.8)}
    voxels = lungs.copy()
    for nodule_id, (mask, _score) in lesions.items():
        voxels[mask] = labels.nodule(nodule_id).value
    image = sitk.GetImageFromArray(voxels)
    image.CopyInformation(ct.image)
    folder.mkdir(parents=True)
    write_seg_nrrd(image, labels.with_nodules(2), folder / "case.seg.nrrd")
    write_findings_json(machine_findings(ct.image, lungs, lesions), folder / "findings.json")
    return folder
