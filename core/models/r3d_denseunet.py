"""Recurrent 3D-DenseUNet of the tumour paper: lung tumour segmentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from lungai.models.blocks import pad_to_multiple, spatial_crop
from lungai.models.convlstm import ConvLSTM


@dataclass
class R3DDenseUNetConfig:
    """Configuration of :class:`R3DDenseUNet`; the defaults are the paper's.

    Attributes:
        in_channels: input channels.
        out_channels: output channels (1: tumour mask logits).
        encoder_filters: filters of the encoder blocks; the decoder mirrors them.
        bottleneck_filters: filters of each bottleneck ConvLSTM layer.
        bottleneck_layers: number of stacked bottleneck ConvLSTM layers.
        dropout: spatial (channel-wise) dropout rate after each encoder block.
    """

    in_channels: int = 1
    out_channels: int = 1
    encoder_filters: tuple[int, ...] = (32, 64, 128)
    bottleneck_filters: int = 256
    bottleneck_layers: int = 3
    dropout: float = 0.1


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class PseudoDenseBlock(nn.Module):
    """Two 3x3x3 convolutions; the second sees the block input and the first one's output.

    Args:
        in_channels: input channels.
        out_channels: filters of both convolutions (the block's output channels).
        dropout: spatial dropout rate applied to the output (0 for none).
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels, out_channels)
        self.conv2 = _conv_bn_relu(in_channels + out_channels, out_channels)
        self.dropout = nn.Dropout3d(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: ``(N, C_in, D, H, W)``.

        Returns:
            ``(N, C_out, D, H, W)``.
        """
        first = self.conv1(x)
        return self.dropout(self.conv2(torch.cat([x, first], dim=1)))


class R3DDenseUNet(nn.Module):
    """U-Net with pseudo-dense 3D encoder blocks, in-plane pooling and a ConvLSTM bottleneck.

    Paper: the tumour paper, Recurrent 3D-DenseUNet for lung tumour segmentation (mean Dice
    0.7228 on NSCLC-Radiomics, against 0.6961 for a 3D U-Net). Shapes as in its Table 1:
    256x256x8 patches in and out; encoder blocks of 32 / 64 / 128 filters, each with spatial
    dropout 0.1 and a 2D (in-plane) max-pool; a bottleneck of three ConvLSTM layers of 256
    filters reading the 8 slices at 32x32; a decoder of 2D upsampling, skip concatenation
    and dense blocks of 128 / 64 / 32 filters; a 1x1x1 sigmoid head. Input
    ``(N, 1, 8, 256, 256)``; output ``(N, 1, D, H, W)`` logits of the input's size. The
    whole-scan procedure (overlapping patches averaged, threshold 0.7, 7x7 disk dilation)
    is :func:`lungai.inference.patches.predict_tumour_mask`.

    Where LungAI deviates or chose, and why:

    * "Pseudo-dense" block: the paper's description leaves the wiring open; LungAI uses two
      3x3x3 conv + batch norm + ReLU layers where the second sees the concatenation of the
      block input and the first's output, and the block returns the second's output.
    * Decoder blocks have the same wiring without dropout (the paper names dropout only
      for the encoder); upsampling is nearest-neighbour.
    * Heights and widths that are not multiples of 8 are zero-padded at the end and the
      output is cropped back, so any in-plane size works; depth is never pooled.
    * The head returns logits; apply a sigmoid for probabilities.
    * LungAI trains it on the largest real nodules of the LIDC VOIs (``diameter_mm`` >= 15
      of the training split, ``lungai train nodule-seg --model r3d_denseunet
      --min-diameter-mm 15``; the diameter only selects cases, it is never an input), as
      16 x 64 x 64 ROIs at 2.5 x 0.8 x 0.8 mm (16 slices, 40 mm, so large nodules fit along
      z; the paper's patches have 8 slices of 256 x 256), with a loss that ignores the ROI's
      padding. ``--size cpu``: encoder 8 / 16 / 32, one 64-filter ConvLSTM.

    Args:
        config: architecture options; ``None`` uses the paper's.
    """

    output_activation: ClassVar[str] = "sigmoid"

    def __init__(self, config: R3DDenseUNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or R3DDenseUNetConfig()
        self.encoder = nn.ModuleList()
        channels = config.in_channels
        for filters in config.encoder_filters:
            self.encoder.append(PseudoDenseBlock(channels, filters, config.dropout))
            channels = filters
        self.pool = nn.MaxPool3d((1, 2, 2))
        bottleneck = []
        for _ in range(config.bottleneck_layers):
            bottleneck.append(ConvLSTM(channels, config.bottleneck_filters))
            channels = config.bottleneck_filters
        self.bottleneck = nn.Sequential(*bottleneck)
        self.upsample = nn.Upsample(scale_factor=(1, 2, 2), mode="nearest")
        self.decoder = nn.ModuleList()
        for filters in reversed(config.encoder_filters):
            self.decoder.append(PseudoDenseBlock(channels + filters, filters))
            channels = filters
        self.head = nn.Conv3d(channels, config.out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Segment a patch.

        Args:
            x: ``(N, C, D, H, W)`` HU-normalised patch.

        Returns:
            ``(N, out_channels, D, H, W)`` logits.
        """
        size = tuple(x.shape[2:])
        factor = 2 ** len(self.encoder)
        y = pad_to_multiple(x, (1, factor, factor))
        skips = []
        for block in self.encoder:
            y = block(y)
            skips.append(y)
            y = self.pool(y)
        y = self.bottleneck(y)
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            y = block(torch.cat([self.upsample(y), skip], dim=1))
        return spatial_crop(self.head(y), size)
