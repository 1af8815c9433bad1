"""Simulated follow-up pairs: truth against the pasted masks, the transform, the VOI splits, bad arguments.

The pair tests use the small real thorax ``cip_small`` (about 4 mm) as the background so they
stay fast; the whole-scan test background LIDC-IDRI-0002 is checked for its excluded nodule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from detection_cases import small_background

from lungai.data.follow_up_sim import (
    TEST_PATIENTS,
    FollowUpSetConfig,
    FollowUpSimConfig,
    PairSpec,
    SimulatedPair,
    background_names,
    load_test_background,
    make_pairs,
    pair_vois,
    simulate_pair,
    vdt_days,
)
from lungai.data.lesion_insertion import BACKGROUND_NAMES, Background
from lungai.data.splits import load_split
from lungai.errors import OutputExistsError
from tests.cli_runner import run_cli

pytestmark = pytest.mark.slow  # real scans and VOIs

SMALL = FollowUpSimConfig(matched=2, resolved=1, new=1, min_diameter_mm=8.0, small_fraction=0.0,
                          edge_margin_mm=20.0)
"""Four nodules of >= 8 mm: enough voxels to measure at cip_small's 4 mm."""


@pytest.fixture(scope="module")
def background(data_root: Path) -> Background:
    return small_background(data_root)


@pytest.fixture(scope="module")
def pair(background: Background, data_root: Path) -> SimulatedPair:
    cases = pair_vois(data_root, "test", SMALL.min_diameter_mm)
    return simulate_pair(background, cases, PairSpec("test_00_cip_small", "test", "cip_small", (0, 1, 0)), SMALL)


def _voxel_volume(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing()))


def test_truth_volumes_and_centres_are_those_of_the_pasted_masks(pair: SimulatedPair) -> None:
    nodules = pair.truth["nodules"]
    assert [n["status"] for n in nodules].count("matched") >= 1 and len(nodules) >= 3
    for image, labels, side in ((pair.prior, pair.labels[0], "prior"), (pair.current, pair.labels[1], "current")):
        for i, nodule in enumerate(nodules, start=1):
            mask = labels == i
            record = nodule[side]
            if record is None:
                assert not mask.any(), f"{nodule['id']} is {nodule['status']} but pasted on the {side} scan"
                continue
            assert record["volume_mm3"] == pytest.approx(mask.sum() * _voxel_volume(image), rel=1e-4)
            centre = image.TransformContinuousIndexToPhysicalPoint(np.argwhere(mask).mean(axis=0)[::-1].tolist())
            assert np.allclose(centre, record["centre_lps_mm"], atol=1e-2)
            hu = sitk.GetArrayViewFromImage(image)
            assert hu[mask].mean() > -500  # the nodule is there: soft tissue, not aerated lung
            assert record["long_axis_mm"] >= record["short_axis_mm"] > 0
            assert record["mean_diameter_mm"] == pytest.approx((record["long_axis_mm"] + record["short_axis_mm"]) / 2,
                                                               abs=2e-3)


def test_growth_truth_follows_the_volumes(pair: SimulatedPair) -> None:
    interval = pair.truth["interval_days"]
    for nodule in pair.truth["nodules"]:
        if nodule["status"] != "matched":
            assert nodule["volume_factor"] is None and nodule["lung_rads_growth"] is None
            continue
        v1, v2 = nodule["prior"]["volume_mm3"], nodule["current"]["volume_mm3"]
        assert nodule["vdt_days"] == pytest.approx(vdt_days(interval, v1, v2), abs=0.01, rel=1e-4) \
            if v2 > v1 else nodule["vdt_days"] is None
        growth = nodule["current"]["mean_diameter_mm"] - nodule["prior"]["mean_diameter_mm"] > 1.5
        assert nodule["lung_rads_growth"] is growth
    assert vdt_days(100, 100.0, 200.0) == pytest.approx(100.0) and vdt_days(100, 200.0, 100.0) is None


def test_the_applied_transform_maps_prior_centres_to_current_ones(pair: SimulatedPair) -> None:
    voxel = float(np.linalg.norm(pair.current.GetSpacing()))
    to_prior = pair.transform.current_to_prior()
    affine = np.asarray(pair.truth["transform"]["prior_to_current_affine_lps"])
    deformation = pair.truth["transform"]["deformation_max_mm"]
    assert 0 < deformation <= SMALL.deformation_mm[1]
    matched = [n for n in pair.truth["nodules"] if n["status"] == "matched"]
    for nodule in matched:
        prior, current = np.asarray(nodule["prior"]["centre_lps_mm"]), np.asarray(nodule["current"]["centre_lps_mm"])
        assert np.linalg.norm(pair.transform.to_current(prior) - current) < voxel
        assert np.linalg.norm(np.asarray(to_prior.TransformPoint(current.tolist())) - prior) < voxel
        before_deformation = (affine @ np.append(prior, 1.0))[:3]
        assert np.linalg.norm(before_deformation - current) <= deformation + voxel
    assert any(np.linalg.norm(np.subtract(n["current"]["centre_lps_mm"], n["prior"]["centre_lps_mm"])) > 0.5
               for n in matched)  # the anatomy really moved


def test_resolved_nodule_is_gone_and_the_current_scan_is_another_grid(pair: SimulatedPair) -> None:
    assert pair.current.GetSpacing()[2] != pytest.approx(pair.prior.GetSpacing()[2])
    assert pair.current.GetSpacing()[:2] == pair.prior.GetSpacing()[:2]
    assert pair.prior.GetPixelID() == pair.current.GetPixelID() == sitk.sitkInt16
    resolved = next(n for n in pair.truth["nodules"] if n["status"] == "resolved")
    where = pair.transform.to_current(resolved["prior"]["centre_lps_mm"])
    index = pair.current.TransformPhysicalPointToIndex(where.tolist())
    assert sitk.GetArrayViewFromImage(pair.current)[index[::-1]] < -500  # aerated lung where it was


def test_pairs_use_the_voi_split_of_their_split(pair: SimulatedPair, data_root: Path) -> None:
    split = load_split()
    patients = {part: {c.patient_id for c in pair_vois(data_root, part, 4.0)} for part in ("tune", "test")}
    assert {split[p] for p in patients["tune"]} == {"train"} and {split[p] for p in patients["test"]} == {"test"}
    assert not set(TEST_PATIENTS) & (patients["tune"] | patients["test"])
    assert {split[n["voi"].split("_R_")[0]] for n in pair.truth["nodules"]} == {"test"}
    assert background_names("tune") == BACKGROUND_NAMES and background_names("test") == TEST_PATIENTS


def test_a_tune_pair_is_deterministic_and_uses_training_vois(background: Background, data_root: Path) -> None:
    cases = pair_vois(data_root, "tune", SMALL.min_diameter_mm)
    spec = PairSpec("tune_00_cip_small", "tune", "cip_small", (5, 0, 0))
    first, second = (simulate_pair(background, cases, spec, SMALL) for _ in range(2))
    assert first.truth == second.truth
    assert np.array_equal(sitk.GetArrayViewFromImage(first.current), sitk.GetArrayViewFromImage(second.current))
    split = load_split()
    assert {split[n["voi"].split("_R_")[0]] for n in first.truth["nodules"]} == {"train"}
    other = simulate_pair(background, cases, PairSpec("tune_01_cip_small", "tune", "cip_small", (6, 0, 0)), SMALL)
    assert other.truth["nodules"] != first.truth["nodules"]


def test_test_background_excludes_its_readers_nodule(data_root: Path) -> None:
    background = load_test_background("LIDC-IDRI-0002", data_root)
    lungs = sitk.GetArrayViewFromImage(background.lungs) > 0
    assert background.excluded.any() and lungs.sum() > 1e6
    # the readers' ground-glass nodule (about 2 % of a lung) is excluded with a margin, the rest of the lungs is not
    assert 0 < (background.excluded & lungs).sum() < 0.02 * lungs.sum()


def test_bad_arguments_give_clear_errors(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="at least one pair"):
        make_pairs(FollowUpSetConfig(data_root=data_root, out=tmp_path / "p", tune=0, test=0))
    with pytest.raises(ValueError, match="unknown pair split"):
        background_names("train")
    (tmp_path / "exists").mkdir()
    with pytest.raises(OutputExistsError):
        make_pairs(FollowUpSetConfig(data_root=data_root, out=tmp_path / "exists", tune=0, test=1))
    cases = (
        (["--tune", "0", "--test", "0"], 2, "at least one pair"),
        (["--test", "-1"], 2, "--test"),
        (["--data-root", str(tmp_path)], 2, "no lidc_vois/"),
        (["--data-root", str(data_root), "--out", str(tmp_path / "exists")], OutputExistsError.exit_code,
         "already exists"),
    )
    for extra, code, message in cases:
        args = ["data", "simulate-follow-up", "--out", str(tmp_path / "new"), *extra]
        got, out, err = run_cli(args, capsys)
        assert got == code and message in out + err and "Traceback" not in err, (extra, out, err)
    assert not (tmp_path / "new").exists() and list((tmp_path / "exists").iterdir()) == []
