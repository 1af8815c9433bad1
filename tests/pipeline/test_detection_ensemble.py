"""The detector's cascade (the first member scores every ROI, every member in every flip the strong ones) and
its boundary members."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy.special import expit

from lungai.models.convlstm_nodule import ConvLSTMNodule, ConvLSTMNoduleConfig, ConvLSTMNoduleEnsemble
from lungai.pipeline.detection import (
    BOUNDARY_CASCADE_GATE,
    BOUNDARY_DEPTH_MM,
    BOUNDARY_WEIGHT,
    CASCADE_GATE,
    FLIPS,
    at_lung_boundary,
    centre_max_logit,
    combined_score,
    detection_scores,
    ground_glass_classifier,
    roi_scores,
)
from lungai.preprocessing.detection_rois import DETECTION_ROI


def _member(seed: int) -> ConvLSTMNodule:
    torch.manual_seed(seed)
    return ConvLSTMNodule(ConvLSTMNoduleConfig(conv_filters=2, lstm_filters=(2, 2), head_filters=2)).eval()


@pytest.fixture(scope="module")
def ensemble() -> ConvLSTMNoduleEnsemble:
    return ConvLSTMNoduleEnsemble.of([_member(seed) for seed in range(3)])


@pytest.fixture(scope="module")
def rois() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(24, *DETECTION_ROI.shape)).astype(np.float32)
    images[::3] += 1.0  # brighter ROIs: the first member's scores spread across the gate
    return images, rng.uniform(0.2, 1.0, size=len(images))


def test_an_ensemble_s_roi_score_averages_its_members_centre_logits(ensemble, rois) -> None:
    images, _ = rois
    logits = []
    for member in ensemble.members:
        with torch.no_grad():
            logits.append(centre_max_logit(member(torch.from_numpy(images[:, None]))).double().numpy())
    np.testing.assert_allclose(roi_scores(ensemble, images), 1 / (1 + np.exp(-np.mean(logits, axis=0))), atol=1e-6)
    with torch.no_grad():  # not the centre maximum of the averaged mask
        of_mean_mask = torch.sigmoid(centre_max_logit(ensemble(torch.from_numpy(images[:, None])))).numpy()
    assert np.abs(roi_scores(ensemble, images) - of_mean_mask).max() > 1e-4


def _flip_averaged(network: ConvLSTMNodule, images: np.ndarray) -> np.ndarray:
    """Each ROI's centre logit averaged over the detector's flips, computed here from the flipped arrays."""
    logits = []
    for axes in FLIPS:
        flipped = np.ascontiguousarray(np.flip(images, axes)) if axes else images
        with torch.no_grad():
            logits.append(centre_max_logit(network(torch.from_numpy(flipped[:, None]))).double().numpy())
    return np.mean(logits, axis=0)


def test_the_whole_ensemble_rescores_only_the_rois_past_the_gate(ensemble, rois) -> None:
    images, strengths = rois
    first = combined_score(roi_scores(ensemble.members[0], images), strengths)
    whole = combined_score(roi_scores(ensemble, images), strengths)
    gate = float(np.median(first))
    scores, rescored = detection_scores(ensemble, images, strengths, gate=gate)
    past = first >= gate
    assert rescored == past.sum()
    assert 0 < past.sum() < len(images)
    np.testing.assert_allclose(scores[~past], first[~past], atol=1e-9)
    np.testing.assert_allclose(scores[past], whole[past], atol=1e-6)
    assert np.abs(whole - first).max() > 1e-3  # the members disagree, so a mix-up would show


def test_a_gate_of_zero_is_the_whole_ensemble_and_a_single_network_has_no_cascade(ensemble, rois) -> None:
    images, strengths = rois
    np.testing.assert_allclose(detection_scores(ensemble, images, strengths, gate=0.0)[0],
                               combined_score(roi_scores(ensemble, images), strengths), atol=1e-6)
    single = ensemble.members[1]
    scores, rescored = detection_scores(single, images, strengths, gate=0.0)
    assert rescored == 0
    np.testing.assert_allclose(scores, combined_score(roi_scores(single, images), strengths), atol=1e-9)


@pytest.fixture(scope="module")
def with_boundary() -> ConvLSTMNoduleEnsemble:
    return ConvLSTMNoduleEnsemble.of([_member(seed) for seed in range(3)], boundary_members=1)


def test_with_boundary_members_the_rescored_rois_are_scored_in_every_flip(with_boundary, rois) -> None:
    images, strengths = rois
    first = combined_score(roi_scores(with_boundary.members[0], images), strengths)
    whole = combined_score(expit(np.mean([_flip_averaged(m, images) for m in with_boundary.members], axis=0)),
                           strengths)
    gate = float(np.median(first))
    scores, rescored = detection_scores(with_boundary, images, strengths, gate=gate)  # no boundary given
    past = first >= gate
    assert rescored == past.sum() and 0 < past.sum() < len(images)
    np.testing.assert_allclose(scores[~past], first[~past], atol=1e-9)
    np.testing.assert_allclose(scores[past], whole[past], atol=1e-6)
    unflipped = combined_score(roi_scores(with_boundary, images), strengths)
    assert np.abs(whole - unflipped).max() > 1e-4
    for axes in FLIPS[1:]:  # the flips form a group: a flipped ROI gets the same score
        flipped = np.ascontiguousarray(np.flip(images, axes))
        np.testing.assert_allclose(detection_scores(with_boundary, flipped, strengths, gate=0.0)[0],
                                   detection_scores(with_boundary, images, strengths, gate=0.0)[0], atol=1e-6)


def test_boundary_members_weigh_more_at_the_boundary_only(with_boundary, rois) -> None:
    images, strengths = rois
    ensemble = with_boundary
    at = np.arange(len(images)) % 2 == 0
    plain = [_flip_averaged(m, images) for m in ensemble.members]
    w = BOUNDARY_WEIGHT
    expected = np.where(at, w * plain[2] + (1 - w) * (plain[0] + plain[1]) / 2, np.mean(plain, axis=0))
    scores, _ = detection_scores(ensemble, images, strengths, gate=0.0, boundary=at)
    np.testing.assert_allclose(scores, combined_score(expit(expected), strengths), atol=1e-6)
    # first pass (nothing rescored): the first member, blended with the boundary member at the boundary
    cheap, rescored = detection_scores(ensemble, images, strengths, gate=2.0, boundary=at)
    first = [roi_scores(ensemble.members[i], images) for i in (0, 2)]
    logit = np.log(first[0] / (1 - first[0]))
    blended = np.where(at, w * np.log(first[1] / (1 - first[1])) + (1 - w) * logit, logit)
    assert rescored == 0
    np.testing.assert_allclose(cheap, combined_score(expit(blended), strengths), atol=1e-6)
    # without boundary members, or without the boundary given, the boundary changes nothing
    plain_ensemble = ConvLSTMNoduleEnsemble.of(list(ensemble.members))
    np.testing.assert_allclose(detection_scores(plain_ensemble, images, strengths, gate=0.0, boundary=at)[0],
                               detection_scores(plain_ensemble, images, strengths, gate=0.0)[0], atol=1e-12)
    assert np.abs(scores - detection_scores(ensemble, images, strengths, gate=0.0)[0]).max() > 1e-4


def test_the_default_gate_depends_on_boundary_members(ensemble, with_boundary, rois) -> None:
    images, strengths = rois
    first = combined_score(roi_scores(ensemble.members[0], images), strengths)
    assert detection_scores(ensemble, images, strengths)[1] == (first >= CASCADE_GATE).sum()
    assert detection_scores(with_boundary, images, strengths)[1] == (first >= BOUNDARY_CASCADE_GATE).sum()


def test_the_lung_boundary_is_the_mask_s_outer_three_millimetres() -> None:
    mask = np.zeros((30, 40, 40), np.uint8)
    mask[5:25, 5:35, 5:35] = 1
    labels = sitk.GetImageFromArray(mask)
    labels.SetSpacing((1.0, 1.0, 2.0))
    labels.SetOrigin((-10.0, 4.0, 3.0))
    indices = [(20, 15, 20), (20, 6, 20), (20, 8, 20), (20, 9, 20), (20, 20, 5), (20, 2, 20), (60, 20, 20)]
    points = [labels.TransformIndexToPhysicalPoint((x, y, min(z, 29))) if z < 30 else (200.0, 0.0, 0.0)
              for x, y, z in indices]
    depth = sitk.SignedMaurerDistanceMap(labels, insideIsPositive=True, squaredDistance=False, useImageSpacing=True)
    in_map = [0 <= depth[labels.TransformPhysicalPointToIndex(p)] <= BOUNDARY_DEPTH_MM
              if all(0 <= i < n for i, n in zip(labels.TransformPhysicalPointToIndex(p), labels.GetSize())) else False
              for p in points]
    found = at_lung_boundary(labels * 2, points)  # any lung label counts
    assert found.tolist() == in_map == [False, True, True, False, True, False, False]


def test_the_ground_glass_scorer_reads_the_network_it_was_fitted_with(ensemble) -> None:
    assert ground_glass_classifier(ensemble) is ensemble.members[0]
    single = _member(5)
    assert ground_glass_classifier(single) is single


def test_an_ensemble_with_flips_rescores_in_every_flip_and_keeps_the_plain_gate(ensemble, rois) -> None:
    images, strengths = rois
    flipping = ConvLSTMNoduleEnsemble.of(list(ensemble.members), flips=True)
    first = combined_score(roi_scores(ensemble.members[0], images), strengths)
    whole = combined_score(expit(np.mean([_flip_averaged(m, images) for m in ensemble.members], axis=0)), strengths)
    gate = float(np.median(first))
    scores, rescored = detection_scores(flipping, images, strengths, gate=gate)
    past = first >= gate
    assert rescored == past.sum() and 0 < past.sum() < len(images)
    np.testing.assert_allclose(scores[~past], first[~past], atol=1e-9)
    np.testing.assert_allclose(scores[past], whole[past], atol=1e-6)
    plain = detection_scores(ensemble, images, strengths, gate=gate)[0]
    assert np.abs(scores[past] - plain[past]).max() > 1e-5  # without the flag nothing is flipped
    assert detection_scores(flipping, images, strengths)[1] == (first >= CASCADE_GATE).sum()
