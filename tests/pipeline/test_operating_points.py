"""The detector's operating points travel with its checkpoint (``config.json`` ``inference``)."""

from __future__ import annotations

import json

import pytest

from lungai.pipeline.config import DETECTOR_MODEL
from lungai.pipeline.operating_points import (
    OPERATING_POINTS,
    OperatingPoint,
    checkpoint_operating_points,
    passed_operating_point,
    points_from_inference,
)
from lungai.weights.manifest import packaged_dir

#: A calibration as ``lungai train-detection`` measures it (unrounded).
CHOSEN = {"high": {"threshold": 0.743961, "fp_per_scan": 3.666667, "sensitivity": 0.694444},
          "balanced": {"threshold": 0.76173, "fp_per_scan": 1.0, "sensitivity": 0.694444},
          "specific": {"threshold": 0.79842, "fp_per_scan": 0.166667, "sensitivity": 0.638889}}


def test_the_installed_points_are_the_installed_checkpoint_s() -> None:
    header = json.loads((packaged_dir() / DETECTOR_MODEL / "config.json").read_text())
    recorded = header["inference"]["operating_points"]
    assert set(OPERATING_POINTS) == {"high", "balanced", "specific"} == set(recorded)
    for name, point in OPERATING_POINTS.items():
        assert point.threshold == recorded[name]["threshold"]
        assert point.expected_fp_per_scan == recorded[name]["expected_fp_per_scan"]


def test_a_calibration_is_recorded_rounded_down_so_the_chosen_score_still_passes() -> None:
    block = checkpoint_operating_points(CHOSEN, "6 validation scans")
    points = points_from_inference(block)
    assert points["high"] == OperatingPoint(0.7439, 3.67, 0.69)
    assert points["specific"] == OperatingPoint(0.7984, 0.17, 0.64)
    assert all(points[name].threshold <= CHOSEN[name]["threshold"] for name in CHOSEN)
    assert block["operating_points_source"].startswith("6 validation scans")
    assert json.loads(json.dumps(block)) == block  # JSON as written into config.json


def test_a_checkpoint_without_points_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="records no operating points"):
        points_from_inference({"threshold": 0.5})
    with pytest.raises(ValueError, match="incomplete"):
        points_from_inference({"operating_points": {"high": {"threshold": 0.7}}})


def test_the_strictest_point_passed() -> None:
    balanced, specific = OPERATING_POINTS["balanced"].threshold, OPERATING_POINTS["specific"].threshold
    assert passed_operating_point(specific) == "specific"
    assert passed_operating_point((balanced + specific) / 2) == "balanced"
    assert passed_operating_point(0.0) is None and passed_operating_point(None) is None
