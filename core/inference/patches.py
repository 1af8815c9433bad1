"""Patch-wise prediction: overlapping windows averaged, and the tumour paper's post-processing.

:func:`sliding_window_predict` runs any patch predictor over a volume larger (or smaller)
than its patch and averages the overlapping outputs; the whole-scan tumour procedure and the
VOI segmentation's tiles (:mod:`lungai.inference.voi_segmentation`) both use it. :func:`predict_tumour_mask` is the
Recurrent 3D-DenseUNet paper's whole-scan procedure on top of it: 8x256x256 patches,
probabilities averaged, threshold 0.7, in-plane dilation with a 7x7 disk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from lungai.models.blocks import spatial_crop


def _check_axis(size: int, patch: int, overlap: float) -> None:
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if patch > size:
        raise ValueError(f"patch {patch} is larger than the axis {size}")


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis; the last window ends at the edge.

    Args:
        size: length of the axis (already padded to at least ``patch``).
        patch: window length.
        overlap: fraction of a window shared with the next, in [0, 1).

    Returns:
        Sorted, distinct start indices covering ``[0, size)``.

    Raises:
        ValueError: if ``overlap`` is outside [0, 1) or ``patch`` is larger than ``size``.
    """
    _check_axis(size, patch, overlap)
    stride = max(1, int(round(patch * (1 - overlap))))
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def centred_window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of evenly spread windows along one axis, the centred window among them.

    The first window starts at 0, the last ends at the edge, neighbours are at most
    ``int(patch * (1 - overlap))`` voxels apart (at least 1), and the window centred on the axis
    (start ``(size - patch) // 2``) is added: the VOI segmentation's tiles, which always include
    the ROI centred on the nodule.

    Raises:
        ValueError: if ``overlap`` is outside [0, 1) or ``patch`` is larger than ``size``.
    """
    _check_axis(size, patch, overlap)
    if size == patch:
        return [0]
    count = int(np.ceil((size - patch) / max(1, int(patch * (1 - overlap))))) + 1
    starts = {int(round(v)) for v in np.linspace(0, size - patch, count)}
    starts.add((size - patch) // 2)
    return sorted(starts)


WindowStarts = Callable[[int, int, float], list[int]]
"""Places the windows along one axis: ``(axis length, window length, overlap)`` -> sorted starts."""


@dataclass
class SlidingWindowConfig:
    """How a volume is cut into patches.

    Attributes:
        patch_size: ``(D, H, W)`` of a patch.
        overlap: fraction of a patch shared with its neighbour along each axis, in [0, 1).
        batch_size: patches per predictor call.
        pad_value: value used to pad a volume smaller than a patch.
        starts: where the windows go along each axis (:func:`window_starts`: a fixed stride,
            the last window at the edge; :func:`centred_window_starts`: evenly spread, with the
            centred one).
    """

    patch_size: tuple[int, int, int]
    overlap: float = 0.5
    batch_size: int = 1
    pad_value: float = 0.0
    starts: WindowStarts = window_starts


def sliding_window_predict(
    volume: Tensor, predict: Callable[[Tensor], Tensor], config: SlidingWindowConfig,
    keep: Callable[[tuple[int, ...]], bool] | None = None,
) -> Tensor:
    """Predict a volume patch by patch and average where patches overlap.

    Args:
        volume: ``(N, C, D, H, W)``; axes smaller than the patch are padded at the end with
            ``config.pad_value`` and the padding is cut off the result.
        predict: maps ``(B, C, *patch_size)`` to ``(B, K, *out)`` (e.g. probabilities), ``out`` the
            patch size or, for a model that crops its output, a smaller box centred in the patch
            (an odd margin puts its extra voxel before the box); the voxels of a patch outside
            its output do not count in the average.
        config: patch size, overlap, window placement, batch size.
        keep: given a window's first voxel ``(d, h, w)``, whether to predict it; voxels that
            no kept window's output covers get 0. ``None`` keeps every window.

    Returns:
        ``(N, K, D, H, W)`` averaged predictions, float32, on ``volume``'s device.

    Raises:
        ValueError: if ``volume`` is not 5D or the predictor returns a box larger than the patch.
    """
    if volume.ndim != 5:
        raise ValueError(f"volume must be (N, C, D, H, W), got shape {tuple(volume.shape)}")
    size = tuple(volume.shape[2:])
    pads: list[int] = []
    for axis_size, patch in zip(reversed(size), reversed(config.patch_size), strict=True):
        pads += [0, max(0, patch - axis_size)]
    padded = F.pad(volume, pads, value=config.pad_value) if any(pads) else volume
    padded_size = padded.shape[2:]
    corners = [corner for corner in itertools.product(*(
        config.starts(s, p, config.overlap) for s, p in zip(padded_size, config.patch_size, strict=True)
    )) if keep is None or keep(corner)]
    n = volume.shape[0]
    total: Tensor | None = None
    if not corners:
        return torch.zeros((n, 1, *size), device=volume.device)
    counts = torch.zeros((1, 1, *padded_size), device=volume.device)
    for first in range(0, len(corners), config.batch_size):
        batch_corners = corners[first : first + config.batch_size]
        patches = torch.cat([spatial_crop(padded, config.patch_size, corner) for corner in batch_corners])
        output = predict(patches).float()
        out = tuple(output.shape[2:])
        if len(out) != 3 or any(o > p for o, p in zip(out, config.patch_size)):
            raise ValueError(f"predictor returned spatial size {out}, expected at most {config.patch_size}")
        margin = [(p - o + 1) // 2 for o, p in zip(out, config.patch_size)]
        if total is None:
            total = torch.zeros((n, output.shape[1], *padded_size), device=volume.device)
        for index, corner in enumerate(batch_corners):
            start = [c + m for c, m in zip(corner, margin)]
            spatial_crop(total, out, start).add_(output[index * n : (index + 1) * n])
            spatial_crop(counts, out, start).add_(1)
    assert total is not None  # at least one window was kept
    return spatial_crop(total / counts.clamp(min=1), size)


def disk(diameter: int) -> np.ndarray:
    """A filled 2D disk (the paper's 7x7 disk is ``disk(7)``: 29 pixels within radius 3).

    Args:
        diameter: odd side of the square that holds the disk.

    Returns:
        ``(diameter, diameter)`` boolean array.

    Raises:
        ValueError: if ``diameter`` is not a positive odd number.
    """
    if diameter < 1 or diameter % 2 == 0:
        raise ValueError(f"disk diameter must be a positive odd number, got {diameter}")
    radius = diameter // 2
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return x**2 + y**2 <= radius**2


def threshold_and_dilate(probability: np.ndarray, threshold: float = 0.7, disk_diameter: int = 7) -> np.ndarray:
    """Binarise a probability map and dilate every slice in-plane with a disk.

    Args:
        probability: ``(D, H, W)`` probabilities.
        threshold: voxels with probability >= threshold are foreground.
        disk_diameter: diameter of the in-plane structuring element; 1 disables dilation.

    Returns:
        ``(D, H, W)`` boolean mask.
    """
    mask = np.asarray(probability) >= threshold
    structure = disk(disk_diameter)[None]
    return ndimage.binary_dilation(mask, structure=structure)


@dataclass
class TumourPredictionConfig:
    """The tumour paper's whole-scan prediction procedure.

    Attributes:
        patch_size: ``(D, H, W)`` patch the model was trained on.
        overlap: fraction of a patch shared with its neighbours.
        threshold: probability above which a voxel is tumour.
        disk_diameter: in-plane dilation disk (7: a 7x7 disk).
        batch_size: patches per model call.
    """

    patch_size: tuple[int, int, int] = (8, 256, 256)
    overlap: float = 0.5
    threshold: float = 0.7
    disk_diameter: int = 7
    batch_size: int = 1


def predict_tumour_mask(model: nn.Module, volume: Tensor, config: TumourPredictionConfig | None = None,
                        keep: Callable[[tuple[int, ...]], bool] | None = None) -> np.ndarray:
    """Segment tumours in a whole volume with a patch model such as ``r3d_denseunet``.

    Overlapping patches' sigmoid probabilities are averaged, thresholded and dilated
    in-plane with a disk, as in the Recurrent 3D-DenseUNet paper.

    Args:
        model: maps ``(B, 1, *patch_size)`` to logits of the same size; used in eval mode on
            its own device.
        volume: ``(D, H, W)`` HU-normalised volume.
        config: the procedure's settings; ``None`` uses the paper's.
        keep: which windows to predict (see :func:`sliding_window_predict`); ``None``: all.

    Returns:
        ``(D, H, W)`` boolean tumour mask.
    """
    config = config or TumourPredictionConfig()
    device = next(model.parameters()).device
    window = SlidingWindowConfig(config.patch_size, config.overlap, config.batch_size)
    model.eval()
    with torch.inference_mode():
        probability = sliding_window_predict(
            volume.to(device)[None, None].float(), lambda patch: torch.sigmoid(model(patch)), window, keep
        )
    return threshold_and_dilate(probability[0, 0].cpu().numpy(), config.threshold, config.disk_diameter)
