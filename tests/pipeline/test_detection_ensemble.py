"""The detector's ensemble cascade: the first member scores every ROI, the whole ensemble the strong ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lungai.models.convlstm_nodule import ConvLSTMNodule, ConvLSTMNoduleConfig, ConvLSTMNoduleEnsemble
from lungai.pipeline.detection import (
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
    np.testing.assert_allclose(detection_scores(single, images, strengths, gate=1.0)[0],
                               combined_score(roi_scores(single, images), strengths), atol=1e-9)


def test_the_ground_glass_scorer_reads_the_network_it_was_fitted_with(ensemble) -> None:
    assert ground_glass_classifier(ensemble) is ensemble.members[0]
    single = _member(5)
    assert ground_glass_classifier(single) is single
