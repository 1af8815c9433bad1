"""``lungai run`` with every model stage, on the phantom, with a tiny real weights release.

The models are untrained, with seeded random weights (:mod:`tiny_weights`), so what they find is
meaningless; these tests check the wiring: weights resolved and recorded, stages in order,
findings, label map and CSV consistent with each other, missing weights refused up front.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from tiny_weights import PIPELINE_MODELS, release, tiny_checkpoint

from lungai import labels
from lungai.cli.main import main
from lungai.data.phantom import make_phantom
from lungai.errors import WeightsError
from lungai.io.findings import ESTIMATE_LABEL, SUSPICION_LABEL, load_findings
from lungai.pipeline.availability import default_tasks, tasks_with_weights
from lungai.pipeline.config import ALL_TASKS, RunConfig
from lungai.pipeline.lung_rads import lung_rads_category
from lungai.pipeline.runner import run_pipeline
from lungai.preprocessing.candidates import find_candidates
from lungai.weights.manifest import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manifest.json of the pipeline's models, untrained."""
    root = tmp_path_factory.mktemp("tiny_weights")
    runs = {name: tiny_checkpoint(name, root / "runs" / name) for name in PIPELINE_MODELS}
    return release(runs, root / "bundled", {"resunet3d": {"threshold": 0.5}})


@pytest.fixture(scope="module")
def phantom_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("phantom") / "phantom.nrrd"
    sitk.WriteImage(make_phantom().image, str(path), True)
    return path


@pytest.fixture(scope="module")
def full_run(tiny_release: Path, phantom_scan: Path, tmp_path_factory: pytest.TempPathFactory):
    """Every stage once; also counts the candidate searches, wherever the pipeline calls one."""
    out = tmp_path_factory.mktemp("run") / "out"
    events = []
    searches: list[int] = []

    def counted(*args, **kwargs):
        searches.append(1)
        return find_candidates(*args, **kwargs)

    config = RunConfig(input=phantom_scan, output=out, tasks=ALL_TASKS, device="cpu", manifest=tiny_release,
                       detection_threshold=0.0, max_nodules=3)
    with pytest.MonkeyPatch.context() as patch:
        for module in ("stages", "detection"):
            patch.setattr(f"lungai.pipeline.{module}.find_candidates", counted)
        result = run_pipeline(config, on_event=events.append)
    return result, out, events, len(searches)


def test_default_tasks_are_all_when_every_model_is_installed(tiny_release: Path) -> None:
    assert tasks_with_weights(read_manifest(tiny_release)) == ALL_TASKS
    assert default_tasks(read_manifest(tiny_release)) == ALL_TASKS


def test_the_removed_tumour_task_is_refused_with_the_reason() -> None:
    from lungai.pipeline.config import parse_tasks

    with pytest.raises(ValueError, match="masses .* are found and segmented by the nodules task"):
        parse_tasks("lungs,tumour")


def test_weights_are_recorded_and_stages_run_in_order(full_run, tiny_release: Path) -> None:
    _result, out, events, _searches = full_run
    findings = load_findings(out / "findings.json")
    manifest = read_manifest(tiny_release)
    recorded = {w["name"]: w for w in findings["run"]["weights"]}
    assert set(recorded) == set(PIPELINE_MODELS)
    for name, info in recorded.items():
        assert info["sha256"] == manifest.get(name).sha256 and info["revision"] == "unpublished"
    assert findings["run"]["tasks"] == list(ALL_TASKS)
    started = [e.stage for e in events if e.event == "stage" and e.status == "started"]
    assert started == ["read", "lungs", "nodules", "malignancy", "emphysema", "write"]
    assert findings["detection"]["operating_point"] == "custom" and findings["detection"]["known_limitations"]


def test_one_candidate_search_per_run(full_run) -> None:
    *_, searches = full_run
    assert searches == 1


def test_nodules_in_findings_label_map_and_csv_agree(full_run) -> None:
    result, out, _events, _searches = full_run
    findings = load_findings(out / "findings.json")
    nodules = findings["nodules"]
    assert len(nodules) <= 3
    assert [n["id"] for n in nodules] == list(range(1, len(nodules) + 1))
    masses = [n for n in nodules if n["detected_by"] == "mass"]
    scores = [n["detection_score"] for n in nodules if n["detected_by"] == "blob"]
    assert nodules[:len(masses)] == masses and all(n["detection_score"] is None for n in masses)
    assert scores == sorted(scores, reverse=True)
    label_map = sitk.ReadImage(str(out / "phantom_labels.nii.gz"))
    array = sitk.GetArrayFromImage(label_map)
    voxel_mm3 = float(np.prod(label_map.GetSpacing()))
    for nodule in nodules:
        value = labels.nodule(nodule["id"]).value
        assert np.count_nonzero(array == value) * voxel_mm3 == pytest.approx(nodule["volume_mm3"], abs=0.1)
        i, j, k = nodule["centroid"]["voxel_index"]
        assert nodule["centroid"]["ras_mm"][:2] == pytest.approx([-v for v in nodule["centroid"]["lps_mm"][:2]])
        assert 0 <= i < array.shape[2] and 0 <= j < array.shape[1] and 0 <= k < array.shape[0]
        assert nodule["long_axis_mm"] >= nodule["short_axis_mm"] > 0
        assert nodule["distance_to_pleura_mm"] >= 0
        if nodule["detected_by"] == "blob" and nodule["operating_point"] != "specific":
            assert nodule["malignancy"] is None and nodule["lung_rads"] is None  # listed for review only
        else:
            malignancy = nodule["malignancy"]
            assert 0 <= malignancy["probability"] <= 1 and malignancy["label"] == ESTIMATE_LABEL
            assert malignancy["models"] == ["measured_nodule"] and malignancy["estimates"] == SUSPICION_LABEL
            assert nodule["characteristics"]["texture"] in ("ground-glass", "part-solid", "solid")
            mean = (nodule["long_axis_mm"] + nodule["short_axis_mm"]) / 2
            expected = lung_rads_category(nodule["type"], mean, nodule["solid_component_mm"])
            assert nodule["lung_rads"] == {"category": expected.category, "rule": "size rule"}
        assert nodule["kind"] == ("mass" if nodule["long_axis_mm"] > 30 else "nodule")
    with (out / "nodules.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r["id"]) for r in rows] == [n["id"] for n in nodules]
    assert [float(r["volume_mm3"]) for r in rows] == [n["volume_mm3"] for n in nodules]
    assert [r["kind"] for r in rows] == [n["kind"] for n in nodules]
    assert len(result.findings.nodules) == len(nodules)


def test_missing_weights_stop_the_run_before_any_output(tiny_release: Path, phantom_scan: Path,
                                                        tmp_path: Path) -> None:
    data = json.loads(tiny_release.read_text())
    data["models"] = [m for m in data["models"] if m["name"] != "measured_nodule"]
    partial = tiny_release.parent / "manifest_without_measured.json"
    partial.write_text(json.dumps(data))
    assert "malignancy" not in tasks_with_weights(read_manifest(partial))
    with pytest.raises(WeightsError, match="the malignancy task needs the measured_nodule weights") as error:
        run_pipeline(RunConfig(input=phantom_scan, output=tmp_path / "out", tasks=("malignancy",),
                               manifest=partial))
    assert error.value.exit_code == 10
    assert not (tmp_path / "out").exists()


def test_cli_prints_the_operating_point_and_refuses_damaged_weights(tiny_release: Path, phantom_scan: Path,
                                                                    tmp_path: Path, capsys) -> None:
    weights = tiny_release.parent / "resunet3d" / "model.safetensors"
    original = weights.read_bytes()
    try:
        weights.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        with pytest.raises(SystemExit) as exit_info:
            main(["run", str(phantom_scan), "-o", str(tmp_path / "o"), "--tasks", "nodules", "--sensitivity",
                  "specific", "--weights-manifest", str(tiny_release)])
    finally:
        weights.write_bytes(original)
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 10
    assert stderr.strip().startswith("error:") and len(stderr.strip().splitlines()) == 1, stderr
    assert "resunet3d" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()


def test_the_summary_names_the_operating_point_and_its_expected_false_positives(
        tiny_release: Path, phantom_scan: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli_runner import run_cli

    from lungai.pipeline.operating_points import OPERATING_POINTS

    code, stdout, _ = run_cli(["run", str(phantom_scan), "-o", str(tmp_path / "o"), "--tasks", "nodules",
                               "--sensitivity", "specific", "--max-nodules", "2", "--progress", "none",
                               "--weights-manifest", str(tiny_release)], capsys)
    point = OPERATING_POINTS["specific"]
    assert code == 0
    assert (f"nodule operating point specific: score >= {point.threshold:.2f}, "
            f"{point.expected_fp_per_scan:.1f} expected false positives per scan") in stdout


def test_weights_trained_on_another_roi_are_refused(tiny_release: Path, phantom_scan: Path, tmp_path: Path) -> None:
    runs = tiny_release.parent.parent / "runs"
    other = release({name: runs / name for name in ("convlstm_nodule", "resunet3d")}, tmp_path / "bundled",
                    {"resunet3d": {"threshold": 0.5, "roi_shape_zyx": [8, 8, 8], "roi_spacing_zyx_mm": [1, 1, 1]}})
    with pytest.raises(WeightsError, match="resunet3d weights were trained on \\[8, 8, 8\\] ROIs") as error:
        run_pipeline(RunConfig(input=phantom_scan, output=tmp_path / "out", tasks=("nodules",), manifest=other,
                               detection_threshold=1.0))
    assert error.value.exit_code == 10 and not (tmp_path / "out").exists()


def test_each_detection_keeps_its_own_mask_when_segmented_together(tiny_release: Path) -> None:
    from lungai.data.phantom import NODULES
    from lungai.inference.voi_segmentation import VoiInference
    from lungai.pipeline.detection import Detection
    from lungai.pipeline.model_store import ModelStore
    from lungai.pipeline.nodules import segment_detection, segment_detections

    phantom = make_phantom()
    hu = sitk.GetArrayFromImage(phantom.image)
    model = ModelStore(device="cpu", manifest=read_manifest(tiny_release)).get("resunet3d")
    detections = [Detection(n.centre_lps_mm, n.diameter_mm / 2, 0.9 - 0.1 * i) for i, n in enumerate(NODULES)]
    # a low threshold, so that even the barely trained model gives non-empty masks to compare; such
    # masks run to the VOI's sides, so tiling and mirroring are left out to keep the test short
    # (the overlap rule under test does not depend on how each mask was predicted)
    inference = VoiInference(threshold=0.05, mirror=False, tile=False)
    together = segment_detections(model, hu, phantom.image, detections, inference)
    single = [segment_detection(model, hu, phantom.image, d, inference) for d in detections]
    single = [s for s in single if s.mask.any()]
    assert together, "no mask to compare"
    assert [b.detection for b in together] == [s.detection for s in single]
    taken = np.zeros(hu.shape, bool)  # voxels of stronger detections, which keep them
    for b, s in zip(together, single):
        assert b.box == s.box
        expected = s.mask & ~taken[s.box]
        assert np.count_nonzero(b.mask != expected) <= 0.01 * max(1, np.count_nonzero(expected))
        taken[b.box] |= b.mask
