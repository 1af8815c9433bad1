"""Building blocks and shape helpers shared by several LungAI architectures."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


class SliceConvUnit(nn.Module):
    """Two 3x3 convolutions with batch norm and ReLU, then a 2x2 max-pool, on every slice alone.

    The per-slice convolution unit of the emphysema paper's ConvLSTM scanner, also used by
    its MIL baseline. Slices are folded into the batch, so no information crosses slices.

    Args:
        in_channels: input channels.
        out_channels: filters of both convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the unit to each slice.

        Args:
            x: ``(N, C, D, H, W)``.

        Returns:
            ``(N, out_channels, D, H // 2, W // 2)``.
        """
        n, c, d, h, w = x.shape
        y = self.layers(x.permute(0, 2, 1, 3, 4).reshape(n * d, c, h, w))
        return y.reshape(n, d, *y.shape[1:]).permute(0, 2, 1, 3, 4)


def pad_to_multiple(x: Tensor, multiples: tuple[int, int, int]) -> Tensor:
    """Zero-pad the end of the ``(D, H, W)`` axes up to multiples of the given sizes.

    Args:
        x: ``(N, C, D, H, W)``.
        multiples: required divisor per spatial axis (1 leaves the axis alone).

    Returns:
        The padded tensor (``x`` itself when nothing needs padding).
    """
    pads: list[int] = []
    for size, multiple in zip(reversed(x.shape[2:]), reversed(multiples), strict=True):
        pads += [0, -size % multiple]
    return F.pad(x, pads) if any(pads) else x


def spatial_crop(x: Tensor, size: Sequence[int], start: Sequence[int] | None = None) -> Tensor:
    """View of a box of the trailing spatial axes of ``x``.

    Args:
        x: ``(..., *spatial)``.
        size: the box size, one entry per trailing spatial axis.
        start: the box corner; ``None`` for the origin.

    Returns:
        The view (shares memory with ``x``, so in-place updates reach ``x``).
    """
    start = start if start is not None else [0] * len(size)
    first_axis = x.ndim - len(size)
    for axis, (offset, length) in enumerate(zip(start, size, strict=True)):
        x = x.narrow(first_axis + axis, offset, length)
    return x
