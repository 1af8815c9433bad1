"""Segmentation losses scored only inside the VOI (the ROI's padding carries no label).

The nodule-seg targets of :class:`lungai.data.roi_dataset.NoduleROIDataset` have two
channels: the mask and the support (1 where the ROI holds VOI content, 0 in padding). Edge
padding repeats the VOI's border slices, nodule included, under a mask of 0, so a loss over
the whole ROI teaches the model that nodule-looking voxels are background and makes it
under-segment. These losses ignore the padding: BCE is averaged over supported voxels and the
soft Dice counts only supported voxels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lungai.models.losses import ScheduledLoss

MASKED_LOSSES = ("bce", "dice", "bce_dice", "bce_then_dice")
BCE_EPOCHS = 3


def _split(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """The mask and support channels of a two-channel target.

    Raises:
        ValueError: the target is not ``(N, 2, *spatial)`` for ``(N, 1, *spatial)`` logits.
    """
    if target.shape[1] != 2 or logits.shape[1] != 1 or logits.shape[2:] != target.shape[2:]:
        raise ValueError(f"need logits (N, 1, ...) and a (N, 2, ...) mask + support target, got "
                         f"{tuple(logits.shape)} and {tuple(target.shape)}")
    return target[:, :1].to(logits.dtype), target[:, 1:].to(logits.dtype)


class MaskedBCE(nn.Module):
    """Binary cross-entropy on logits, averaged over the supported voxels of the batch."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: ``(N, 1, *spatial)``.
            target: ``(N, 2, *spatial)``: mask, support.

        Returns:
            Scalar loss.
        """
        mask, support = _split(logits, target)
        bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
        return (bce * support).sum() / support.sum().clamp(min=1.0)


class MaskedSoftDice(nn.Module):
    """Soft Dice loss per sample over the supported voxels, averaged over the batch.

    Args:
        smooth: added to numerator and denominator, so an empty mask predicted empty scores 0.
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__()
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: ``(N, 1, *spatial)``.
            target: ``(N, 2, *spatial)``: mask, support.

        Returns:
            Scalar loss.
        """
        mask, support = _split(logits, target)
        prob = logits.sigmoid() * support
        dims = tuple(range(1, logits.ndim))
        overlap = (prob * mask).sum(dims)
        total = prob.sum(dims) + (mask * support).sum(dims)
        return (1 - (2 * overlap + self.smooth) / (total + self.smooth)).mean()


class MaskedBCEDice(nn.Module):
    """The sum of :class:`MaskedBCE` and :class:`MaskedSoftDice`."""

    def __init__(self) -> None:
        super().__init__()
        self.bce = MaskedBCE()
        self.dice = MaskedSoftDice()

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss (arguments as :class:`MaskedBCE`)."""
        return self.bce(logits, target) + self.dice(logits, target)


def build_masked_loss(name: str) -> nn.Module:
    """The masked version of a segmentation loss name of the recipes.

    ``bce_then_dice`` is the Res-UNet paper's schedule: BCE for the first 3 epochs, then Dice.

    Raises:
        ValueError: for a name without a masked version.
    """
    if name == "bce":
        return MaskedBCE()
    if name == "dice":
        return MaskedSoftDice()
    if name == "bce_dice":
        return MaskedBCEDice()
    if name == "bce_then_dice":
        return ScheduledLoss(MaskedBCE(), MaskedSoftDice(), BCE_EPOCHS)
    raise ValueError(f"no masked segmentation loss {name!r}; choose one of {', '.join(MASKED_LOSSES)}")
