"""Training losses used by the source papers.

Segmentation losses take logits ``(N, C, *spatial)`` and a target of the same shape with
values in [0, 1]; they apply the sigmoid themselves and average a per-sample, per-channel
score over the batch and channels. Classification losses follow PyTorch's conventions
(class-index targets).

===================  ===========================================================
``bce``              binary cross-entropy on logits (``nn.BCEWithLogitsLoss``)
``dice``             soft Dice loss, :class:`SoftDiceLoss`
``iou``              soft IoU (Jaccard) loss, :class:`SoftIoULoss`
``tversky``          :class:`TverskyLoss` (alpha weighs false positives)
``focal``            binary focal loss on logits, :class:`FocalLoss`
``bce_then_dice``    BCE for the first epochs, then Dice, :func:`bce_then_dice`
``ce`` / ``nll``     class-weighted cross-entropy / negative log-likelihood
===================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _overlap_terms(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Soft true positives, false positives and false negatives per sample and channel.

    Raises:
        ValueError: if the shapes differ.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
    prob = torch.sigmoid(logits)
    target = target.to(prob.dtype)
    dims = tuple(range(2, logits.ndim))
    tp = (prob * target).sum(dims)
    fp = (prob * (1 - target)).sum(dims)
    fn = ((1 - prob) * target).sum(dims)
    return tp, fp, fn


class TverskyLoss(nn.Module):
    """Tversky loss ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` on soft counts.

    ``alpha = beta = 0.5`` is the soft Dice loss, ``alpha = beta = 1`` the soft IoU loss;
    a larger ``alpha`` penalises false positives more.

    Args:
        alpha: weight of false positives.
        beta: weight of false negatives; ``None`` means ``1 - alpha``.
        smooth: added to numerator and denominator, so empty masks give a loss of 0.

    Raises:
        ValueError: if a weight is negative or ``smooth`` is not positive.
    """

    def __init__(self, alpha: float = 0.5, beta: float | None = None, smooth: float = 1.0) -> None:
        super().__init__()
        beta = 1.0 - alpha if beta is None else beta
        if alpha < 0 or beta < 0 or smooth <= 0:
            raise ValueError(f"need alpha, beta >= 0 and smooth > 0, got {alpha}, {beta}, {smooth}")
        self.alpha = alpha
        self.beta = beta
        self.smooth = smooth

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: ``(N, C, *spatial)``.
            target: same shape, values in [0, 1].

        Returns:
            Scalar loss, averaged over samples and channels.
        """
        tp, fp, fn = _overlap_terms(logits, target)
        index = (tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth)
        return (1 - index).mean()


class SoftDiceLoss(TverskyLoss):
    """Soft Dice loss ``1 - (2 TP + s) / (2 TP + FP + FN + s)`` (Tversky with alpha = beta = 0.5).

    Args:
        smooth: added to numerator and denominator (halved, to keep the Dice form).
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__(alpha=0.5, beta=0.5, smooth=smooth / 2)


class SoftIoULoss(TverskyLoss):
    """Soft IoU (Jaccard) loss ``1 - (TP + s) / (TP + FP + FN + s)`` (Tversky with alpha = beta = 1).

    Args:
        smooth: added to numerator and denominator.
    """

    def __init__(self, smooth: float = 1.0) -> None:
        super().__init__(alpha=1.0, beta=1.0, smooth=smooth)


class FocalLoss(nn.Module):
    """Binary focal loss on logits: ``-a_t (1 - p_t)^gamma log(p_t)``, averaged over elements.

    Args:
        gamma: focusing parameter; 0 gives (alpha-weighted) BCE.
        alpha: weight of the positive class (``1 - alpha`` for the negative); ``None`` for none.

    Raises:
        ValueError: if ``gamma`` is negative or ``alpha`` is outside [0, 1].
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25) -> None:
        super().__init__()
        if gamma < 0 or (alpha is not None and not 0 <= alpha <= 1):
            raise ValueError(f"need gamma >= 0 and alpha in [0, 1], got {gamma}, {alpha}")
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            logits: any shape.
            target: same shape, values in [0, 1].

        Returns:
            Scalar loss.
        """
        target = target.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = torch.exp(-bce)
        loss = (1 - p_t) ** self.gamma * bce
        if self.alpha is not None:
            loss = (self.alpha * target + (1 - self.alpha) * (1 - target)) * loss
        return loss.mean()


class ScheduledLoss(nn.Module):
    """One loss for the first epochs, another afterwards.

    Call :meth:`set_epoch` at the start of every epoch (0-based).

    Args:
        first: loss used for epochs ``0 .. switch_epoch - 1``.
        second: loss used from ``switch_epoch`` on.
        switch_epoch: the first epoch of ``second``.

    Raises:
        ValueError: if ``switch_epoch`` is negative.
    """

    def __init__(self, first: nn.Module, second: nn.Module, switch_epoch: int) -> None:
        super().__init__()
        if switch_epoch < 0:
            raise ValueError(f"switch_epoch must be >= 0, got {switch_epoch}")
        self.first = first
        self.second = second
        self.switch_epoch = switch_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss which epoch (0-based) is starting."""
        self.epoch = epoch

    @property
    def active(self) -> nn.Module:
        """The loss of the current epoch."""
        return self.first if self.epoch < self.switch_epoch else self.second

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Compute the current epoch's loss.

        Args:
            logits: as the active loss expects.
            target: as the active loss expects.

        Returns:
            Scalar loss.
        """
        return self.active(logits, target)


def bce_then_dice(switch_epoch: int = 3) -> ScheduledLoss:
    """BCE for the first ``switch_epoch`` epochs, then soft Dice (the Res-UNet paper uses 3).

    Args:
        switch_epoch: the first Dice epoch.

    Returns:
        The scheduled loss.
    """
    return ScheduledLoss(nn.BCEWithLogitsLoss(), SoftDiceLoss(), switch_epoch)


def balanced_class_weights(labels: Tensor, num_classes: int) -> Tensor:
    """Class weights inversely proportional to class frequency: ``n / (k * n_c)``.

    The same rule as scikit-learn's ``class_weight="balanced"``; absent classes get weight 0.

    Args:
        labels: class indices of the training set.
        num_classes: number of classes ``k``.

    Returns:
        ``(k,)`` float weights.
    """
    counts = torch.bincount(labels.flatten().long(), minlength=num_classes).double()
    weights = torch.where(counts > 0, labels.numel() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights.float()


def weighted_cross_entropy(class_weights: Tensor | None = None) -> nn.CrossEntropyLoss:
    """Cross-entropy on logits with per-class weights (the classification paper).

    Args:
        class_weights: ``(k,)`` weights, e.g. from :func:`balanced_class_weights`.

    Returns:
        The loss module.
    """
    return nn.CrossEntropyLoss(weight=class_weights)


def weighted_nll(class_weights: Tensor | None = None) -> nn.NLLLoss:
    """Negative log-likelihood on log-probabilities with per-class weights (the ResNet50 paper).

    Feed it ``log_softmax(logits, dim=1)``.

    Args:
        class_weights: ``(k,)`` weights, e.g. from :func:`balanced_class_weights`.

    Returns:
        The loss module.
    """
    return nn.NLLLoss(weight=class_weights)


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": nn.BCEWithLogitsLoss,
    "dice": SoftDiceLoss,
    "iou": SoftIoULoss,
    "tversky": TverskyLoss,
    "focal": FocalLoss,
    "bce_then_dice": bce_then_dice,
    "ce": weighted_cross_entropy,
    "nll": weighted_nll,
}


def build_loss(name: str, **options: object) -> nn.Module:
    """Build a loss by name (see the table in the module docstring).

    Args:
        name: a key of :data:`LOSSES`.
        **options: the loss's own keyword arguments (e.g. ``alpha=0.7`` for ``tversky``).

    Returns:
        The loss module.

    Raises:
        KeyError: for an unknown name.
    """
    try:
        factory = LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(LOSSES)}") from None
    return factory(**options)
