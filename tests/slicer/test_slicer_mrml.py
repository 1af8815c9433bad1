"""Loading a run's outputs into a real MRML scene (slicer-core): segmentation, tables, points.

Nodule detection is not in the pipeline yet, so the nodule cases use an output folder written
here with the real writers (``write_seg_nrrd``, ``write_findings_json``); the last tests load
a real ``lungai run`` of LIDC-IDRI-0001.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from mrml_helpers import SLICER_CORE_MISSING, add_volume_node, ijk_to_ras, vtk_matrix_array
from shared_data import require

from lungai import labels
from lungai.io.findings import (
    Centroid,
    Densitometry,
    Emphysema,
    Findings,
    InputInfo,
    LungVolume,
    Malignancy,
    Nodule,
    RunInfo,
    load_findings,
    write_findings_json,
)
from lungai.io.reader import read_scan, to_original_orientation
from lungai.io.segmentation import write_seg_nrrd
from lungai.pipeline.config import RunConfig
from lungai.pipeline.runner import run_pipeline

pytestmark = pytest.mark.slicer_core
slicer = pytest.importorskip("slicer", reason=SLICER_CORE_MISSING)

from vtkmodules.util import numpy_support  # noqa: E402
from vtkmodules.vtkCommonMath import vtkMatrix4x4  # noqa: E402

from lungai.slicer.mrml import MALIGNANCY_COLUMN, NODULE_ID_COLUMN, LoadedResults, load_results  # noqa: E402 - needs VTK

NODULES = {  # id: (voxel box (z, y, x) slices, detection score, type)
    1: ((slice(4, 6), slice(10, 13), slice(8, 11)), 0.92, "solid"),
    2: ((slice(12, 14), slice(20, 23), slice(28, 31)), 0.31, "ground-glass"),
}


def make_grid() -> sitk.Image:
    """A 40 x 36 x 18 (x, y, z) CT with x flipped, so LPS and RAS differ in every axis sign."""
    image = sitk.Image([40, 36, 18], sitk.sitkInt16)
    image.SetSpacing((0.8, 0.9, 2.0))
    image.SetOrigin((15.5, -14.0, -20.0))
    image.SetDirection((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def write_output(folder: Path) -> Path:
    """An output folder like ``lungai run`` writes, with two nodules."""
    grid = make_grid()
    voxels = np.zeros((18, 36, 40), dtype=np.uint8)
    voxels[2:16, 5:30, 3:18] = labels.LUNG_RIGHT.value
    voxels[2:16, 5:30, 22:37] = labels.LUNG_LEFT.value
    nodules = []
    for nodule_id, (box, score, kind) in NODULES.items():
        voxels[box] = labels.nodule(nodule_id).value
        centre_zyx = [(part.start + part.stop - 1) / 2 for part in box]
        centre_lps = grid.TransformContinuousIndexToPhysicalPoint(centre_zyx[::-1])
        nodules.append(Nodule(
            id=nodule_id, centroid=Centroid.from_lps(centre_lps, grid), long_axis_mm=4.5 + nodule_id,
            short_axis_mm=3.0 + nodule_id, volume_mm3=30.0 * nodule_id, mean_hu=-20.0 * nodule_id, type=kind,
            detection_score=score, location="right lung" if nodule_id == 1 else "left lung",
            malignancy=Malignancy(0.37, ["nodule_cnn2d", "resnet50_3d"]) if nodule_id == 1 else None))
    label_image = sitk.GetImageFromArray(voxels)
    label_image.CopyInformation(grid)
    folder.mkdir(parents=True)
    write_seg_nrrd(label_image, [*labels.STRUCTURES, labels.nodule(1), labels.nodule(2)], folder / "scan.seg.nrrd")
    densitometry = {region: Densitometry(laa_950_percent=1.5 + index, laa_910_percent=10.0 + index,
                                         laa_856_percent=40.0 + index, perc15_hu=-910.0 - index)
                    for index, region in enumerate(("right", "left", "total"))}
    findings = Findings(
        input=InputInfo(source="scan.nrrd", format="nrrd", modality="CT", series_uid=None, size_xyz=(40, 36, 18),
                        spacing_xyz_mm=(0.8, 0.9, 2.0)),
        lungs={"right": LungVolume(2100.0), "left": LungVolume(1900.0), "total": LungVolume(4000.0)},
        emphysema=Emphysema(densitometry), nodules=nodules,
        run=RunInfo(lungai_version="0.1.0", tasks=["lungs", "nodules", "malignancy", "emphysema"], device="cpu",
                    started_utc="2025-01-31T12:00:00Z"))
    write_findings_json(findings, folder / "findings.json")
    return folder


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return write_output(tmp_path / "results")


@pytest.fixture
def volume(scene: Any) -> Any:
    return add_volume_node(scene, make_grid(), "Chest CT")


def segments(node: Any) -> dict[str, Any]:
    """Segment id -> segment of a segmentation node."""
    segmentation = node.GetSegmentation()
    return {segmentation.GetNthSegmentID(i): segmentation.GetNthSegment(i)
            for i in range(segmentation.GetNumberOfSegments())}


def column(table: Any, name: str) -> list[Any]:
    array = table.GetTable().GetColumnByName(name)
    assert array is not None, f"no column {name!r}"
    return [array.GetValue(row) for row in range(array.GetNumberOfTuples())]


def assert_matches_seg_nrrd(node: Any, path: Path) -> None:
    """Names, colours, terminology, geometry and voxels of ``node`` are those of the file."""
    written = slicerio.read_segmentation(str(path))
    header = nrrd.read_header(str(path))
    loaded = segments(node)
    assert list(loaded) == [segment["id"] for segment in written["segments"]]
    for index, expected in enumerate(written["segments"]):
        segment = loaded[expected["id"]]
        structure = labels.by_key(expected["id"])
        if expected["name"].startswith("Mass "):  # a lesion over 30 mm: same key and value, named and coded a mass
            structure = labels.nodule(structure.value - labels.NODULE_BASE_VALUE, "mass")
        assert segment.GetName() == expected["name"] == structure.name
        np.testing.assert_allclose(segment.GetColor(), expected["color"], atol=1e-6)
        np.testing.assert_allclose(segment.GetColor(), structure.color, atol=1e-4)
        assert segment.GetLabelValue() == expected["labelValue"] == structure.value
        tags = header[f"Segment{index}_Tags"]
        assert segment.GetTerminology() == tags.split("TerminologyEntry:")[1].split("|")[0]
        assert f"SCT^{structure.type[1]}^{structure.type[2]}" in segment.GetTerminology()
        labelmap = segment.GetRepresentation("Binary labelmap")
        matrix = vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        np.testing.assert_allclose(vtk_matrix_array(matrix), np.diag([-1, -1, 1, 1]) @ written["ijkToLPS"],
                                   atol=1e-4)
        dims = [high - low + 1 for low, high in zip(labelmap.GetExtent()[::2], labelmap.GetExtent()[1::2], strict=True)]
        voxels = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(dims[::-1])
        np.testing.assert_array_equal(voxels, written["voxels"].transpose(2, 1, 0))


def reference_geometry(node: Any) -> tuple[np.ndarray, list[int]]:
    """The segmentation's reference image geometry: IJK-to-RAS matrix and extent."""
    text = node.GetSegmentation().GetConversionParameter("Reference image geometry")
    values = [float(value) for value in text.strip(";").split(";")]
    return np.array(values[:16]).reshape(4, 4), [int(value) for value in values[16:]]


def test_the_segmentation_node_is_the_seg_nrrd(scene: Any, output: Path, volume: Any) -> None:
    results = load_results(scene, output, volume)
    assert results.segmentation.GetName() == "Chest CT LungAI segmentation"
    assert set(segments(results.segmentation)) == {"lung_right", "lung_left", "nodule_1", "nodule_2"}
    assert_matches_seg_nrrd(results.segmentation, output / "scan.seg.nrrd")
    assert results.segmentation.GetDisplayNode() is not None
    assert results.segmentation.GetStorageNode().GetFileName() == str(output / "scan.seg.nrrd")


def test_the_input_volume_is_the_reference_geometry(scene: Any, output: Path, volume: Any) -> None:
    results = load_results(scene, output, volume)
    matrix, extent = reference_geometry(results.segmentation)
    np.testing.assert_allclose(matrix, ijk_to_ras(make_grid()), atol=1e-6)
    assert extent == list(volume.GetImageData().GetExtent())


def test_one_table_row_and_one_point_per_nodule(scene: Any, output: Path, volume: Any) -> None:
    results = load_results(scene, output, volume, min_detection_score=0.0)
    findings = load_findings(output / "findings.json")
    table, points = results.nodule_table, results.nodule_points
    assert table.GetNumberOfRows() == points.GetNumberOfControlPoints() == 2
    assert column(table, NODULE_ID_COLUMN) == [1, 2]
    assert column(table, "Location") == ["right lung", "left lung"]
    assert column(table, "Type") == ["solid", "ground-glass"]
    assert column(table, "Long axis") == [5.5, 6.5]
    assert column(table, "Short axis") == [4.0, 5.0]
    assert column(table, "Volume") == [30.0, 60.0]
    assert column(table, MALIGNANCY_COLUMN) == ["0.37", ""]
    assert column(table, "Score") == ["0.920 (below high)", "0.310 (below high)"]
    assert column(table, "Review") == ["", ""]
    assert table.GetColumnUnitLabel("Long axis") == "mm"
    assert "not a diagnosis" in table.GetColumnDescription(MALIGNANCY_COLUMN)
    for nodule in findings["nodules"]:
        index = results.point_index[nodule["id"]]
        np.testing.assert_allclose(points.GetNthControlPointPosition(index), nodule["centroid"]["ras_mm"])
        assert points.GetNthControlPointLabel(index) == f"N{nodule['id']}"
    assert points.GetNthControlPointDescription(0) == "Nodule 1: 5.5 x 4.0 mm, solid"
    assert table.GetLocked() and points.GetLocked()


def test_the_nodule_points_lie_in_their_segments(scene: Any, output: Path, volume: Any) -> None:
    """The centroids (RAS) and the segments (voxels) agree: each point falls in its own segment."""
    results = load_results(scene, output, volume)
    for nodule_id, index in results.point_index.items():
        labelmap = segments(results.segmentation)[f"nodule_{nodule_id}"].GetRepresentation("Binary labelmap")
        matrix = vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        ras = [*results.nodule_points.GetNthControlPointPosition(index), 1.0]
        ijk = np.rint(np.linalg.inv(vtk_matrix_array(matrix)) @ ras).astype(int)[:3]
        assert labelmap.GetScalarComponentAsDouble(*ijk, 0) == labels.nodule(nodule_id).value


def test_the_operating_point_hides_nodules_below_it(scene: Any, output: Path, volume: Any) -> None:
    results = load_results(scene, output, volume, min_detection_score=0.5)
    assert column(results.nodule_table, NODULE_ID_COLUMN) == [1]
    assert results.nodule_points.GetNumberOfControlPoints() == 1
    assert results.point_index == {1: 0}
    assert results.hidden_nodules == [2]
    display = results.segmentation.GetDisplayNode()
    assert display.GetSegmentVisibility("nodule_1") and not display.GetSegmentVisibility("nodule_2")
    assert "Nodules: 1 shown, 1 below the operating point 0.50 hidden" in results.summary


def test_the_emphysema_table(scene: Any, output: Path, volume: Any) -> None:
    table = load_results(scene, output, volume).emphysema_table
    assert table.GetName() == "Chest CT LungAI emphysema"
    assert column(table, "Region") == ["Right lung", "Left lung", "Both lungs"]
    assert column(table, "Lung volume") == [2100.0, 1900.0, 4000.0]
    assert column(table, "LAA-950") == [1.5, 2.5, 3.5]
    assert column(table, "LAA-910") == [10.0, 11.0, 12.0]
    assert column(table, "LAA-856") == [40.0, 41.0, 42.0]
    assert column(table, "Perc15") == [-910.0, -911.0, -912.0]
    assert table.GetColumnUnitLabel("LAA-950") == "%"


def test_results_go_into_a_chosen_segmentation_node(scene: Any, output: Path, volume: Any) -> None:
    chosen = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My segmentation")
    results = load_results(scene, output, volume, segmentation_node=chosen)
    assert results.segmentation is chosen
    assert chosen.GetName() == "My segmentation"
    assert_matches_seg_nrrd(chosen, output / "scan.seg.nrrd")
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 1


def test_new_nodes_follow_the_volume_transform(scene: Any, output: Path, volume: Any) -> None:
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Registration")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    results = load_results(scene, output, volume)
    assert results.segmentation.GetTransformNodeID() == transform.GetID()
    assert results.nodule_points.GetTransformNodeID() == transform.GetID()


def test_without_a_volume_nodes_are_named_after_the_outputs(scene: Any, output: Path) -> None:
    results = load_results(scene, output)
    assert results.nodule_table.GetName() == "scan LungAI nodules"
    assert results.nodule_points.GetName() == "scan LungAI nodule centres"


@pytest.mark.parametrize("content", ["garbage", "plain image"])
def test_a_failed_load_leaves_the_scene_as_it_was(scene: Any, output: Path, volume: Any, content: str) -> None:
    path = output / "scan.seg.nrrd"
    if content == "garbage":
        path.write_bytes(b"NRRD0005\nthis is not a segmentation\n")
    else:
        sitk.WriteImage(make_grid(), str(path))
    before = scene.GetNumberOfNodes()
    with pytest.raises(RuntimeError, match="cannot read the segmentation file"):
        load_results(scene, output, volume)
    assert scene.GetNumberOfNodes() == before


# The real output of LIDC-IDRI-0001 -------------------------------------------------------------

@pytest.fixture(scope="module")
def lidc_output(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    scan = require(data_root / "lidc_scans" / "LIDC-IDRI-0001" / "dicom.zip")
    output = tmp_path_factory.mktemp("lidc") / "results"
    run_pipeline(RunConfig(input=scan, output=output, device="cpu"))
    return scan, output


@pytest.fixture(scope="module")
def lidc_results(lidc_output: tuple[Path, Path]) -> tuple[LoadedResults, Any, Path]:
    scan, output = lidc_output
    scene = slicer.vtkMRMLScene()
    ct = read_scan(scan)
    volume = add_volume_node(scene, to_original_orientation(ct.image, ct), "LIDC-IDRI-0001")
    return load_results(scene, output, volume), volume, output


@pytest.mark.slow
def test_lidc_segmentation_matches_its_seg_nrrd(lidc_results: tuple[LoadedResults, Any, Path]) -> None:
    results, volume, output = lidc_results
    nodules = load_findings(output / "findings.json")["nodules"]
    assert nodules, "the shipped detector finds the scan's 24 mm nodule"
    assert [segment.GetName() for segment in segments(results.segmentation).values()] == \
        ["Right lung", "Left lung", *(f"{nodule['kind'].capitalize()} {nodule['id']}" for nodule in nodules)]
    assert_matches_seg_nrrd(results.segmentation, output / "LIDC-IDRI-0001_20000101_3000566.seg.nrrd")
    matrix, extent = reference_geometry(results.segmentation)
    ijk_to_ras_volume = vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras_volume)
    np.testing.assert_allclose(matrix, vtk_matrix_array(ijk_to_ras_volume), atol=1e-4)
    assert extent == list(volume.GetImageData().GetExtent()) == [0, 511, 0, 511, 0, 132]


@pytest.mark.slow
def test_lidc_tables_and_points_match_the_findings(lidc_results: tuple[LoadedResults, Any, Path]) -> None:
    results, _volume, output = lidc_results
    findings = load_findings(output / "findings.json")
    nodules = findings["nodules"]
    assert results.nodule_table.GetNumberOfRows() == results.nodule_points.GetNumberOfControlPoints() == len(nodules)
    assert column(results.nodule_table, NODULE_ID_COLUMN) == [nodule["id"] for nodule in nodules]
    density = findings["emphysema"]["densitometry"]
    assert column(results.emphysema_table, "LAA-950") == [density[region]["laa_950_percent"]
                                                          for region in ("right", "left", "total")]
    assert column(results.emphysema_table, "Lung volume") == [findings["lungs"][region]["volume_ml"]
                                                              for region in ("right", "left", "total")]
    assert results.summary.startswith("Lungs: right 2.")


@pytest.mark.slow
def test_lidc_review_at_balanced_saves_what_the_panel_shows(lidc_output: tuple[Path, Path], scene: Any,
                                                            tmp_path: Path) -> None:
    """The real run reviewed: the balanced operating point, the first finding rejected, the report saved."""
    from lungai.pipeline.operating_points import OPERATING_POINTS
    from lungai.slicer.report import save_review

    scan, output = lidc_output
    ct = read_scan(scan)
    volume = add_volume_node(scene, to_original_orientation(ct.image, ct), "LIDC-IDRI-0001")
    results = load_results(scene, output, volume)
    machine = load_findings(output / "findings.json")["nodules"]
    balanced = OPERATING_POINTS["balanced"].threshold
    results.set_operating_point(balanced)
    listed = column(results.nodule_table, NODULE_ID_COLUMN)
    assert listed == [n["id"] for n in machine if n["detection_score"] is None or n["detection_score"] >= balanced]
    results.decide(listed[0], "rejected")
    save_review(results, tmp_path)
    saved = load_findings(tmp_path / f"{results.files.stem}_findings.json")
    table = dict(zip(listed, column(results.nodule_table, "Long axis")))
    assert [n["id"] for n in saved["nodules"]] == listed[1:]
    assert [n["long_axis_mm"] for n in saved["nodules"]] == [table[row_id] for row_id in listed[1:]]
    assert saved["review"]["operating_point"]["name"] == "balanced"
