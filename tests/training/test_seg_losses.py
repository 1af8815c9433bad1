"""Masked segmentation losses: the ROI's padding never counts."""

from __future__ import annotations

import pytest
import torch

from lungai.models.losses import ScheduledLoss, SoftDiceLoss
from lungai.training.seg_losses import MaskedBCE, MaskedSoftDice, build_masked_loss


def _target(support_slices: int = 3) -> torch.Tensor:
    mask = torch.zeros(2, 1, 6, 8, 8)
    mask[:, :, 1:3, 2:6, 2:6] = 1
    support = torch.zeros_like(mask)
    support[:, :, :support_slices] = 1
    return torch.cat([mask, support], dim=1)


@pytest.mark.parametrize("loss", [MaskedBCE(), MaskedSoftDice(), build_masked_loss("bce_dice")])
def test_logits_in_the_padding_do_not_change_the_loss(loss: torch.nn.Module) -> None:
    target = _target()
    logits = torch.randn(2, 1, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    changed = logits.clone()
    changed[:, :, 3:] = 50.0  # a confident "nodule" everywhere in the padding
    assert loss(changed, target).item() == pytest.approx(loss(logits, target).item(), abs=1e-6)
    changed[:, :, :3] = -changed[:, :, :3]
    assert loss(changed, target).item() != pytest.approx(loss(logits, target).item(), abs=1e-3)


def test_full_support_dice_equals_the_plain_soft_dice() -> None:
    target = _target(support_slices=6)
    logits = torch.randn(2, 1, 6, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = SoftDiceLoss(smooth=1.0)(logits, target[:, :1])
    assert MaskedSoftDice(smooth=1.0)(logits, target).item() == pytest.approx(plain.item(), rel=1e-5)


def test_perfect_prediction_scores_near_zero() -> None:
    target = _target()
    logits = (target[:, :1] * 2 - 1) * 30
    assert MaskedSoftDice()(logits, target).item() < 1e-3
    assert MaskedBCE()(logits, target).item() < 1e-6


def test_paper_schedule_and_bad_inputs() -> None:
    loss = build_masked_loss("bce_then_dice")
    assert isinstance(loss, ScheduledLoss) and isinstance(loss.active, MaskedBCE)
    loss.set_epoch(3)
    assert isinstance(loss.active, MaskedSoftDice)
    with pytest.raises(ValueError, match="no masked segmentation loss"):
        build_masked_loss("focal")
    with pytest.raises(ValueError, match="mask \\+ support"):
        MaskedBCE()(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4))
