"""The 2D CNN of the classification paper: benign / malignant from one nodule ROI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn


@dataclass
class NoduleCNN2dConfig:
    """Configuration of :class:`NoduleCNN2d`; the defaults are the paper's.

    Attributes:
        in_channels: input channels.
        filters: filters of the three convolution blocks.
        hidden: units of the hidden FC layer.
        dropout: dropout rate before the output layer.
        num_classes: output classes (benign, malignant).
        feature_grid: size the last feature map is average-pooled to; 13x13 is what a
            124x124 input gives, so the pooling is an identity there.
    """

    in_channels: int = 1
    filters: tuple[int, ...] = (32, 64, 64)
    hidden: int = 128
    dropout: float = 0.3
    num_classes: int = 2
    feature_grid: tuple[int, int] = (13, 13)


class NoduleCNN2d(nn.Module):
    """Benign / malignant classification of a 2D nodule ROI.

    Paper: the classification paper, a 2D CNN on 124x124 LIDC-IDRI nodule ROIs (AUC 0.87,
    sensitivity 0.86, specificity 0.76) trained with class weights and rotation / flip /
    zoom augmentation. Three blocks of 3x3 convolution (32 / 64 / 64 filters) + batch norm
    + 2x2 max-pool, FC 128 with ReLU, dropout 0.3, 2-way softmax. Input ``(N, 1, 124, 124)``
    (a 2D model: no depth axis); output ``(N, 2)`` logits, softmax for probabilities.

    Where LungAI deviates or chose, and why:

    * Convolutions are unpadded (``valid``, Keras' default; the paper does not say), with
      ReLU after batch norm.
    * An adaptive average pool to 13x13 before the FC layer lets other ROI sizes through;
      at 124x124 it is an identity. Inputs must be at least 22x22.
    * The head returns logits; the softmax is left to the loss or the caller.

    Args:
        config: architecture options; ``None`` uses the paper's.
    """

    output_activation: ClassVar[str] = "softmax"

    def __init__(self, config: NoduleCNN2dConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or NoduleCNN2dConfig()
        layers: list[nn.Module] = []
        channels = config.in_channels
        for filters in config.filters:
            layers += [nn.Conv2d(channels, filters, 3), nn.BatchNorm2d(filters), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            channels = filters
        self.features = nn.Sequential(*layers)
        self.grid = nn.AdaptiveAvgPool2d(config.feature_grid)
        self.classifier = nn.Sequential(
            nn.Linear(channels * config.feature_grid[0] * config.feature_grid[1], config.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Classify ROIs.

        Args:
            x: ``(N, C, H, W)`` HU-normalised ROIs.

        Returns:
            ``(N, num_classes)`` logits.
        """
        return self.classifier(torch.flatten(self.grid(self.features(x)), 1))
