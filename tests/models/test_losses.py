"""Losses against hand-computed values and their known special cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from lungai.models.losses import (
    LOSSES,
    FocalLoss,
    ScheduledLoss,
    SoftDiceLoss,
    SoftIoULoss,
    TverskyLoss,
    balanced_class_weights,
    bce_then_dice,
    build_loss,
    weighted_cross_entropy,
    weighted_nll,
)

# p = sigmoid(logits) = 0.9, 0.2, 0.7, 0.1 against target 1, 0, 1, 1:
# soft TP = 0.9 + 0.7 + 0.1 = 1.7, FP = 0.2, FN = 0.1 + 0.3 + 0.9 = 1.3
PROBS = torch.tensor([0.9, 0.2, 0.7, 0.1]).view(1, 1, 2, 2)
LOGITS = torch.logit(PROBS)
TARGET = torch.tensor([1.0, 0.0, 1.0, 1.0]).view(1, 1, 2, 2)


def test_soft_dice_by_hand() -> None:
    expected = 1 - (2 * 1.7 + 1) / (2 * 1.7 + 0.2 + 1.3 + 1)
    assert SoftDiceLoss(smooth=1.0)(LOGITS, TARGET).item() == pytest.approx(expected)


def test_soft_iou_by_hand() -> None:
    assert SoftIoULoss(smooth=1.0)(LOGITS, TARGET).item() == pytest.approx(1 - 2.7 / 4.2)


def test_tversky_by_hand() -> None:
    loss = TverskyLoss(alpha=0.7, smooth=1.0)(LOGITS, TARGET).item()
    assert loss == pytest.approx(1 - 2.7 / (1.7 + 0.7 * 0.2 + 0.3 * 1.3 + 1))


def test_tversky_half_half_is_dice() -> None:
    logits, target = torch.randn(2, 1, 5, 5), (torch.rand(2, 1, 5, 5) > 0.5).float()
    torch.testing.assert_close(TverskyLoss(0.5, smooth=0.5)(logits, target), SoftDiceLoss(smooth=1.0)(logits, target))


def test_overlap_losses_vanish_for_confident_correct_predictions() -> None:
    target = (torch.rand(2, 1, 4, 4, 4) > 0.5).float()
    logits = 30 * (2 * target - 1)
    for loss in (SoftDiceLoss(), SoftIoULoss(), TverskyLoss(0.3)):
        assert loss(logits, target).item() == pytest.approx(0, abs=1e-6)


def test_overlap_losses_refuse_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        SoftDiceLoss()(torch.zeros(1, 1, 4), torch.zeros(1, 1, 5))


def test_focal_by_hand() -> None:
    logits = torch.logit(torch.tensor([0.9, 0.2]))
    target = torch.tensor([1.0, 0.0])
    expected = (0.25 * 0.1**2 * -math.log(0.9) + 0.75 * 0.2**2 * -math.log(0.8)) / 2
    assert FocalLoss(gamma=2.0, alpha=0.25)(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_focal_without_focusing_or_weighting_is_bce() -> None:
    logits, target = torch.randn(10), (torch.rand(10) > 0.5).float()
    torch.testing.assert_close(FocalLoss(gamma=0.0, alpha=None)(logits, target), nn.BCEWithLogitsLoss()(logits, target))


def test_bce_then_dice_switches_at_the_given_epoch() -> None:
    loss = bce_then_dice(switch_epoch=3)
    bce = nn.BCEWithLogitsLoss()(LOGITS, TARGET)
    dice = SoftDiceLoss()(LOGITS, TARGET)
    for epoch, expected in [(0, bce), (2, bce), (3, dice), (10, dice)]:
        loss.set_epoch(epoch)
        torch.testing.assert_close(loss(LOGITS, TARGET), expected)


def test_schedule_refuses_negative_switch() -> None:
    with pytest.raises(ValueError):
        ScheduledLoss(nn.BCEWithLogitsLoss(), SoftDiceLoss(), -1)


def test_balanced_class_weights_match_scikit_learn() -> None:
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(balanced_class_weights(torch.from_numpy(labels), 3).numpy(), expected, rtol=1e-6)


def test_absent_class_gets_zero_weight() -> None:
    assert balanced_class_weights(torch.tensor([0, 0, 2]), 3).tolist() == [0.5, 0.0, 1.0]  # 3 / (3 * 2), -, 3 / (3 * 1)


def test_weighted_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    per_sample = [math.log(1 + math.exp(-2)), math.log(1 + math.exp(-1)), math.log(2)]
    expected = (1 * per_sample[0] + 3 * per_sample[1] + 3 * per_sample[2]) / 7
    loss = weighted_cross_entropy(torch.tensor([1.0, 3.0]))(logits, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_weighted_nll_on_log_softmax_is_weighted_cross_entropy() -> None:
    logits, labels, weights = torch.randn(6, 2), torch.tensor([0, 1, 1, 0, 1, 1]), torch.tensor([2.0, 0.5])
    torch.testing.assert_close(
        weighted_nll(weights)(torch.log_softmax(logits, dim=1), labels), weighted_cross_entropy(weights)(logits, labels)
    )


def test_build_loss_by_name() -> None:
    assert set(LOSSES) == {"bce", "dice", "iou", "tversky", "focal", "bce_then_dice", "ce", "nll"}
    assert build_loss("tversky", alpha=0.7).alpha == 0.7
    with pytest.raises(KeyError, match="known losses"):
        build_loss("hinge")
