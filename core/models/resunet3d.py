"""The 3D Res-UNet of the segmentation/recognition paper: nodule segmentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from lungai.models.blocks import pad_to_multiple, spatial_crop


@dataclass
class ResUNet3dConfig:
    """Configuration of :class:`ResUNet3d`.

    Attributes:
        in_channels: input channels.
        out_channels: output channels (1: nodule mask logits).
        filters: filters of the encoder levels; one max-pool follows each.
        bottom_filters: filters of the residual unit at the bottom.
    """

    in_channels: int = 1
    out_channels: int = 1
    filters: tuple[int, ...] = (32, 64, 128, 256)
    bottom_filters: int = 512


class ResidualUnit3d(nn.Module):
    """conv-IN-ReLU, conv-IN, plus the identity (1x1x1 conv when channels change), ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(in_channels, out_channels, 3, padding=1),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1),
            nn.InstanceNorm3d(out_channels, affine=True),
        )
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the unit.

        Args:
            x: ``(N, C_in, D, H, W)``.

        Returns:
            ``(N, C_out, D, H, W)``.
        """
        return self.act(self.body(x) + self.shortcut(x))


class ResUNet3d(nn.Module):
    """3D U-Net whose convolution pairs are residual units with instance norm.

    Paper: the segmentation/recognition paper, 3D Res-UNet nodule segmentation and a 3D
    ResNet50 malignancy classifier on LIDC-IDRI (Dice above 0.8 for nodules over 10 mm;
    accuracy 87.3 %, AUC 0.907 for malignancy). Residual units (conv-IN-act, conv-IN,
    1x1x1 convolution on the identity path when the channels change), four down levels with
    max-pooling, a residual unit at the bottom, a transposed-convolution decoder with
    concatenated skips, a 1x1x1 head; trained with BCE for the first 3 epochs, then Dice
    (:func:`lungai.models.losses.bce_then_dice`). Input ``(N, 1, 48, 192, 192)`` at
    3x1.5x1.5 mm; output ``(N, 1, D, H, W)`` logits of the input's size.

    Where LungAI deviates or chose, and why:

    * Filter numbers are not given; LungAI uses the common 32 / 64 / 128 / 256 with 512 at
      the bottom (about 22.9 M parameters).
    * The activation is ReLU, also after the residual sum.
    * Sizes that are not multiples of 16 are zero-padded at the end and the output cropped
      back, so any size works. In training the padded input must keep at least 2 voxels at
      the bottom (instance norm needs more than one), e.g. at least 17 along one axis.
    * The head returns logits; apply a sigmoid for probabilities.
    * Trained on the LIDC VOIs (:mod:`lungai.preprocessing.roi`): ROI 16 x 48 x 48 at
      1.25 x 0.7 x 0.7 mm (near the VOIs' native spacing; the paper's 3 x 1.5 x 1.5 mm would
      leave a 6 mm nodule 2 slices thick), not the paper's 48 x 192 x 192 context, which the
      tight VOIs do not have. The loss (BCE + Dice, see :mod:`lungai.training.recipes`) counts
      only voxels inside the VOI, never the padding. Predictions are thresholded at the
      validation-chosen probability stored in the checkpoint's ``config.json``
      (``inference.threshold``), then reduced to the largest connected component.
    * ``--size cpu`` (the shipped CPU-trained weights): filters 8 / 16 / 32 / 64, 128 at the
      bottom (about 1.4 M parameters).

    Args:
        config: architecture options; ``None`` uses the defaults above.
    """

    output_activation: ClassVar[str] = "sigmoid"

    def __init__(self, config: ResUNet3dConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ResUNet3dConfig()
        self.encoder = nn.ModuleList()
        channels = config.in_channels
        for filters in config.filters:
            self.encoder.append(ResidualUnit3d(channels, filters))
            channels = filters
        self.pool = nn.MaxPool3d(2)
        self.bottom = ResidualUnit3d(channels, config.bottom_filters)
        channels = config.bottom_filters
        self.upsamplers = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for filters in reversed(config.filters):
            self.upsamplers.append(nn.ConvTranspose3d(channels, filters, 2, stride=2))
            self.decoder.append(ResidualUnit3d(2 * filters, filters))
            channels = filters
        self.head = nn.Conv3d(channels, config.out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Segment a volume.

        Args:
            x: ``(N, C, D, H, W)`` HU-normalised volume.

        Returns:
            ``(N, out_channels, D, H, W)`` logits.
        """
        size = tuple(x.shape[2:])
        factor = 2 ** len(self.encoder)
        y = pad_to_multiple(x, (factor, factor, factor))
        skips = []
        for unit in self.encoder:
            y = unit(y)
            skips.append(y)
            y = self.pool(y)
        y = self.bottom(y)
        for upsample, unit, skip in zip(self.upsamplers, self.decoder, reversed(skips), strict=True):
            y = unit(torch.cat([upsample(y), skip], dim=1))
        return spatial_crop(self.head(y), size)
