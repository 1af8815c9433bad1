"""The 3D ResNet50 of the segmentation/recognition paper: benign / malignant from a 3D ROI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn


@dataclass
class ResNet50_3dConfig:  # noqa: N801 - the model's name has the digits
    """Configuration of :class:`ResNet50_3d`.

    Attributes:
        in_channels: input channels.
        num_classes: output classes (benign, malignant).
        blocks: bottleneck blocks per stage (ResNet-50: 3, 4, 6, 3).
        widths: bottleneck widths per stage; each stage outputs 4x its width.
        stem_channels: filters of the first convolution.
        stem_kernel: kernel of the first convolution (ResNet-50: 7x7, stride 2).
        stage_strides: stride of each stage's first block (no pooling layers anywhere).
        stage_kernels: kernel of the middle convolution of each stage's blocks.
    """

    in_channels: int = 1
    num_classes: int = 2
    blocks: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_channels: int = 64
    stem_kernel: tuple[int, int, int] = (3, 3, 3)
    stage_strides: tuple[int, ...] = (1, 2, 2, 2)
    stage_kernels: tuple[tuple[int, int, int], ...] = ((3, 3, 3), (3, 3, 3), (1, 3, 3), (1, 3, 3))


def _same_padding(kernel: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(k // 2 for k in kernel)  # type: ignore[return-value]  # three axes in, three out; mypy cannot count a generator's length


class Bottleneck3d(nn.Module):
    """1x1x1 reduce, k convolution (strided), 1x1x1 expand, each with batch norm; residual sum.

    Args:
        in_channels: input channels.
        width: channels inside the block; the block outputs ``4 * width``.
        stride: stride of the middle convolution (and of the projection shortcut).
        kernel: kernel of the middle convolution.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, kernel: tuple[int, int, int]) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv3d(in_channels, width, 1, bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, width, kernel, stride=stride, padding=_same_padding(kernel), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
            nn.Conv3d(width, out_channels, 1, bias=False),
            nn.BatchNorm3d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels),
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: ``(N, C_in, D, H, W)``.

        Returns:
            ``(N, 4 * width, D', H', W')``, spatial size divided by ``stride`` (rounded up).
        """
        return self.act(self.body(x) + self.shortcut(x))


class ResNet50_3d(nn.Module):  # noqa: N801 - the model's name has the digits
    """ResNet-50 made 3D for benign / malignant classification of a nodule ROI.

    Paper: the segmentation/recognition paper, 3D Res-UNet nodule segmentation and a 3D
    ResNet50 malignancy classifier on LIDC-IDRI (accuracy 87.3 %, AUC 0.907). ResNet-50's
    bottleneck layout (3, 4, 6, 3 blocks; widths 64 / 128 / 256 / 512, 4x expansion) in 3D,
    with a smaller first kernel, smaller kernels in the last two stages, no pooling layers
    and reduced strides, for 16x48x48 ROIs, 2 classes, trained with NLL loss. Input
    ``(N, 1, 16, 48, 48)``; output ``(N, 2)`` logits (``log_softmax`` them for NLL).

    Where LungAI chose, and why (the paper gives the changes, not their values):

    * First convolution 3x3x3 with stride 1 (ResNet-50: 7x7 stride 2, then a max-pool,
      which would shrink a 16-slice ROI to 4 slices before the first stage).
    * Stage strides 1, 2, 2, 2 (total 8 instead of 32): a 16x48x48 ROI ends at 2x6x6.
    * Middle kernels of the last two stages are 1x3x3: their inputs are only 4 and 2 slices
      deep, where a 3-slice kernel would mostly see padding.
    * "No pooling layers" is read as no max-pooling in the feature extractor; the head
      still averages the last feature map globally before the FC layer, as ResNet-50 does,
      so the classifier accepts any ROI size.
    * LungAI's LIDC ROI (:mod:`lungai.preprocessing.roi`) is 16x48x48 at 1.5 x 0.75 x 0.75 mm, half
      the paper's 3 x 1.5 x 1.5 mm: the LIDC VOIs are tight 30 mm crops and most nodules are
      under 10 mm, so at the paper's spacing a nodule is a few voxels across.
      ``--size cpu``: widths 8 / 16 / 32 / 64, stem 8.

    Args:
        config: architecture options; ``None`` uses the defaults above.

    Raises:
        ValueError: if the per-stage settings differ in length.
    """

    output_activation: ClassVar[str] = "softmax"

    def __init__(self, config: ResNet50_3dConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ResNet50_3dConfig()
        stages = (config.blocks, config.widths, config.stage_strides, config.stage_kernels)
        if len({len(s) for s in stages}) != 1:
            raise ValueError("ResNet50_3dConfig needs blocks, widths, stage_strides and stage_kernels of equal length")
        self.stem = nn.Sequential(
            nn.Conv3d(config.in_channels, config.stem_channels, config.stem_kernel,
                      padding=_same_padding(config.stem_kernel), bias=False),
            nn.BatchNorm3d(config.stem_channels),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        channels = config.stem_channels
        for count, width, stride, kernel in zip(
            config.blocks, config.widths, config.stage_strides, config.stage_kernels, strict=True
        ):
            for index in range(count):
                layers.append(Bottleneck3d(channels, width, stride if index == 0 else 1, kernel))
                channels = width * Bottleneck3d.expansion
        self.stages = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, config.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Classify ROIs.

        Args:
            x: ``(N, C, D, H, W)`` HU-normalised ROIs.

        Returns:
            ``(N, num_classes)`` logits.
        """
        features = self.stages(self.stem(x))
        return self.fc(features.mean(dim=(2, 3, 4)))
