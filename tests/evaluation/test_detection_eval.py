"""Whole-scan detection evaluation on a tiny real case set (a thorax with a pasted real nodule)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from cli_runner import run_cli
from detection_cases import inserted_small_scan, small_background
from shared_data import require

from lungai.data.lesion_insertion import ELASTIX_NODULE, load_background
from lungai.evaluation import froc as froc_lib
from lungai.evaluation.detection_eval import (
    EvalCase,
    at_threshold,
    breakdown,
    choose_operating_points,
    detect_in,
    froc_png,
    inserted_cases,
    markdown,
    run_thresholds,
    summarize,
    write_summary,
)
from lungai.pipeline.detection import Detection

pytestmark = pytest.mark.slow  # real scans (cip_small, lidc_vois)


@pytest.fixture(scope="module")
def cases(data_root):
    scans = [inserted_small_scan(data_root, seed)[1] for seed in (0, 1)]
    return [EvalCase(f"scan{i}", s.image, [froc_lib.Finding(f"scan{i}", n.centre_lps_mm, n.diameter_mm)
                                           for n in s.nodules]) for i, s in enumerate(scans)]


@pytest.fixture(scope="module")
def detections(cases):
    return detect_in(cases, classifier=None)


def test_evaluate_detection_on_a_tiny_case_set(cases, detections, tmp_path):
    assert {d.scan_id for d in detections} == {"scan0", "scan1"}
    summary = summarize(cases, detections, with_classifier=False)
    assert summary["num_scans"] == 2 and summary["num_nodules"] == 2
    assert summary["candidate_sensitivity"] == 1.0  # both large pasted nodules are among the candidates
    assert 0.0 <= summary["cpm"] <= 1.0
    assert set(summary["sensitivity_at_fp"]) == {"1", "2", "4"}
    sens = list(summary["sensitivity_at_fp"].values())
    assert sens == sorted(sens)
    ops = summary["operating_points"]
    assert ops["high"]["fp_per_scan"] >= ops["balanced"]["fp_per_scan"] >= ops["specific"]["fp_per_scan"]
    write_summary(summary, tmp_path / "froc.json")
    froc_png([(summary, "tiny")], tmp_path / "froc.png")
    saved = json.loads((tmp_path / "froc.json").read_text())
    assert saved["froc"]["fps_per_scan"][0] == 0.0 and (tmp_path / "froc.png").stat().st_size > 1000
    assert "| tiny |" in markdown({"tiny": summary})
    assert summary["by_texture"] == {"unknown": {"nodules": 2, "candidates": 2, **{
        name: o["found"] for name, o in ops.items()}}}
    assert sum(g["nodules"] for g in summary["by_size"].values()) == 2
    assert "| tiny | unknown | 2 | 2 |" in markdown({"tiny": summary})


def test_breakdown_counts_each_group_at_each_threshold():
    groups = ["solid", "non-solid", "solid", "non-solid"]
    best = [0.9, 0.5, float("-inf"), 0.2]
    out = breakdown(groups, best, {"high": 0.4, "specific": 0.8})
    assert out == {"solid": {"nodules": 2, "candidates": 1, "high": 1, "specific": 1},
                   "non-solid": {"nodules": 2, "candidates": 2, "high": 1, "specific": 0}}


def test_operating_points_respect_their_fp_targets(cases, detections):
    summary = summarize(cases, detections, with_classifier=False)
    chosen = choose_operating_points(summary["_result"], {"loose": 8.0, "strict": 0.5})
    assert chosen["loose"] <= chosen["strict"]
    for name, target in (("loose", 8.0), ("strict", 0.5)):
        assert at_threshold(detections, cases, chosen[name])["fp_per_scan"] <= target


def test_evaluate_detection_refuses_split_all(data_root, tmp_path, capsys):
    code, out, err = run_cli(["evaluate", "detection", "--data", str(data_root), "--split", "all",
                              "-o", str(tmp_path / "o")], capsys)
    assert code == 2 and "test or val" in out + err
    assert not (tmp_path / "o").exists()


def test_detections_on_a_background_lesion_are_neither_hits_nor_false_positives(cases, detections):
    case = cases[0]  # its pasted nodule plays the background's own lesion
    nodule = case.nodules[0]
    size = case.image.GetSize()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), -1).reshape(-1, 3)
    points = np.array([case.image.TransformIndexToPhysicalPoint([int(v) for v in g]) for g in grid])
    inside = np.linalg.norm(points - np.array(nodule.center_mm), axis=1) <= nodule.diameter_mm / 2
    ignored = inside.reshape(size).transpose(2, 1, 0)
    mine = [d for d in detections if d.scan_id == case.scan_id]
    on = [ignored[tuple(reversed(case.image.TransformPhysicalPointToIndex(d.center_mm)))] for d in mine]
    assert any(on) and not all(on)
    kept = detect_in([replace(case, ignored=ignored)], classifier=None)
    assert [d.center_mm for d in kept] == [d.center_mm for d, o in zip(mine, on) if not o]
    summary = summarize([replace(case, ignored=ignored)], kept, with_classifier=False)
    assert summary["candidate_sensitivity"] == 0.0  # no detection is left on the nodule


def test_inserted_scans_ignore_their_backgrounds_known_lesions(data_root):
    require(data_root / "backgrounds" / "elastix_chest.nrrd")
    background = load_background("elastix_chest", data_root)
    (case,) = inserted_cases(data_root, "val", 1, nodules_per_scan=1, backgrounds=[background])
    assert case.ignored is not None and np.array_equal(case.ignored, background.known_lesions())
    nodule = Detection(ELASTIX_NODULE[0], 4.0, 0.9)
    pasted = Detection(case.nodules[0].center_mm, 4.0, 0.9)
    assert case.scored([nodule, pasted]) == [pasted]


def test_juxtapleural_scans_place_every_nodule_against_the_lung_boundary(data_root):
    import SimpleITK as sitk

    background = small_background(data_root)
    (free,) = inserted_cases(data_root, "val", 1, nodules_per_scan=2, backgrounds=[background])
    (pleural,) = inserted_cases(data_root, "val", 1, nodules_per_scan=2, backgrounds=[background],
                                pleural_fraction=1.0)
    assert pleural.scan_id == "val_pleural_00_cip_small" and free.scan_id == "val_00_cip_small"
    assert pleural.nodules
    depth = sitk.SignedMaurerDistanceMap(sitk.Cast(background.lungs > 0, sitk.sitkUInt8), insideIsPositive=True,
                                         squaredDistance=False, useImageSpacing=True)

    def edge_depth(nodule: froc_lib.Finding) -> float:
        return depth[depth.TransformPhysicalPointToIndex(nodule.center_mm)] - nodule.diameter_mm / 2

    # A juxtapleural nodule's edge reaches the boundary (the centre lies within its radius of it);
    # the free placement keeps the whole nodule, blend included, inside the lungs.
    assert all(edge_depth(n) < 1.0 for n in pleural.nodules)
    assert all(edge_depth(n) > 0.0 for n in free.nodules)


def test_a_checkpoint_folder_is_scored_at_its_own_operating_points(tmp_path):
    assert run_thresholds(None) is None and run_thresholds(tmp_path) is None
    (tmp_path / "config.json").write_text(json.dumps({"format": "lungai-model", "inference": {
        "operating_points": {"balanced": {"threshold": 0.7617, "expected_fp_per_scan": 1.0, "sensitivity": 0.69}}}}))
    assert run_thresholds(tmp_path) == {"balanced": 0.7617}  # a released checkpoint: its config.json
    (tmp_path / "operating_points.json").write_text(json.dumps({"classifier": {"operating_points": {
        "balanced": {"threshold": 0.75, "fp_per_scan": 1.0, "sensitivity": 0.7}}}}))
    assert run_thresholds(tmp_path) == {"balanced": 0.75}  # a training run: its calibration file first
    (tmp_path / "operating_points.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps({"format": "lungai-model"}))
    assert run_thresholds(tmp_path) is None
