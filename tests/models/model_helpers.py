"""Helpers shared by the model tests: Keras-convention counts and small training cases.

Imported by the test modules as ``model_helpers`` (pytest puts this folder on ``sys.path``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def keras_parameter_count(module: nn.Module) -> int:
    """Parameters as Keras counts them: batch norm has 4 per channel (gamma, beta, mean, var).

    Independent of ``lungai.models.summary.count_parameters``, so the two check each other.
    """
    total = sum(p.numel() for p in module.parameters())
    total += sum(b.numel() for name, b in module.named_buffers() if name.endswith(("running_mean", "running_var")))
    return total


def blob_batch(shape: tuple[int, ...], seed: int = 0) -> tuple[Tensor, Tensor]:
    """An input with a bright ellipsoid in noise, and that ellipsoid as the target mask.

    Args:
        shape: ``(N, C, *spatial)`` of the input; the mask has one channel.
        seed: random seed.

    Returns:
        The input and its float mask ``(N, 1, *spatial)``.
    """
    generator = torch.Generator().manual_seed(seed)
    spatial = shape[2:]
    axes = torch.meshgrid(*(torch.linspace(-1, 1, s) for s in spatial), indexing="ij")
    radius = sum(a**2 for a in axes)
    mask = (radius < 0.5).float().expand(shape[0], 1, *spatial)
    x = 0.5 * torch.randn(shape, generator=generator) + 2.0 * mask
    return x, mask.clone()


@dataclass
class TrainingCase:
    """A tiny batch and the loss a model should be able to drive down on it."""

    inputs: Tensor
    targets: Tensor
    loss: Callable[[Tensor, Tensor], Tensor]


def segmentation_case(input_shape: tuple[int, ...], crop: tuple[int, ...] | None = None) -> TrainingCase:
    """Blob segmentation with BCE; ``crop`` removes border voxels from the target per side."""
    x, mask = blob_batch(input_shape)
    if crop:
        mask = mask[(..., *(slice(c, s - c) for s, c in zip(mask.shape[2:], crop, strict=True)))]
    return TrainingCase(x, mask, nn.BCEWithLogitsLoss())


def binary_case(input_shape: tuple[int, ...]) -> TrainingCase:
    """Volume-level binary labels (alternating) with BCE on ``(N, 1)`` logits."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=generator)
    y = (torch.arange(input_shape[0]) % 2).float()[:, None]
    return TrainingCase(x, y, nn.BCEWithLogitsLoss())


def class_case(input_shape: tuple[int, ...]) -> TrainingCase:
    """Two-class labels (alternating) with cross-entropy on ``(N, 2)`` logits."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=generator)
    y = torch.arange(input_shape[0]) % 2
    return TrainingCase(x, y, nn.CrossEntropyLoss())


def train_steps(model: nn.Module, case: TrainingCase, steps: int, lr: float) -> list[float]:
    """Run Adam on one batch; return the loss before every step and after the last."""
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        optimiser.zero_grad()
        loss = case.loss(model(case.inputs), case.targets)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(case.loss(model(case.inputs), case.targets).item())
    return losses


def first_conv(model: nn.Module) -> nn.Module:
    """The first convolution the input meets (registration order follows the forward pass)."""
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d))
