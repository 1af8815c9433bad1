"""The report's pictures: CT planes in a grey-level window with segment outlines, as PNG.

Planes are drawn as a radiologist reads them: axial and coronal with the patient's right on
the left of the image, coronal and sagittal with the head at the top, sagittal with anterior on
the left. Callers pass planes already in that orientation (see :func:`lps_planes`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

import imageio.v3 as iio
import numpy as np
from scipy.ndimage import binary_dilation
from skimage.segmentation import find_boundaries
from skimage.transform import resize

Color = tuple[float, float, float]


@dataclass(frozen=True)
class Window:
    """A grey-level window.

    Attributes:
        name: ``lung`` or ``mediastinal``, as captions name it.
        level_hu: centre of the window.
        width_hu: width of the window.
    """

    name: str
    level_hu: float
    width_hu: float


def lps_planes(box: np.ndarray, z: int, y: int, x: int) -> dict[str, np.ndarray]:
    """The axial, coronal and sagittal planes through (z, y, x) of a (z, y, x) LPS array, display-oriented."""
    return {"axial": box[z], "coronal": box[::-1, y], "sagittal": box[::-1, :, x]}


def crop(volume: np.ndarray, centre: np.ndarray, half: np.ndarray, fill: int) -> np.ndarray:
    """The box ``centre - half .. centre + half`` (inclusive) of a (z, y, x) array, padded with ``fill``."""
    out = np.full(tuple(2 * half + 1), fill, dtype=volume.dtype)
    low, high = centre - half, centre + half + 1
    source_low, source_high = np.maximum(low, 0), np.minimum(high, volume.shape)
    if np.any(source_high <= source_low):
        return out
    target_low = source_low - low
    target_high = target_low + (source_high - source_low)
    out[tuple(slice(a, b) for a, b in zip(target_low, target_high))] = \
        volume[tuple(slice(a, b) for a, b in zip(source_low, source_high))]
    return out


def render(hu_plane: np.ndarray, label_plane: np.ndarray, colors: Mapping[int, Color], size_px: tuple[int, int],
           window: Window, outer: bool = False, fill_opacity: float = 0.0, outline_px: int = 1) -> np.ndarray:
    """An RGB image (floats 0..1) of a CT plane in ``window`` with the outline of each coloured label.

    Args:
        hu_plane: the CT plane in HU.
        label_plane: label values on the same plane (booleans count as label 1).
        colors: label value -> outline colour; labels not in it get no outline.
        size_px: (height, width) of the image.
        window: the grey-level window.
        outer: draw the outline just outside each label (keeps a small lesion's own pixels
            visible) instead of on its edge pixels.
        fill_opacity: also tint each label's pixels with its colour at this opacity (0: no tint).
        outline_px: thickness of the outline in pixels.
    """
    grey = resize(hu_plane.astype(np.float32), size_px, order=1, preserve_range=True, anti_aliasing=False)
    low = window.level_hu - window.width_hu / 2
    grey = np.clip((grey - low) / window.width_hu, 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    scaled = resize(label_plane.astype(np.int32), size_px, order=0, preserve_range=True,
                    anti_aliasing=False).astype(np.int32)
    for value, color in colors.items():
        region = scaled == value
        if not region.any():
            continue
        rgb[region] = (1.0 - fill_opacity) * rgb[region] + fill_opacity * np.asarray(color)
        outline = find_boundaries(region, mode="outer" if outer else "inner")
        if outline_px > 1:
            outline = binary_dilation(outline, iterations=outline_px - 1) & (~region if outer else region)
        rgb[outline] = color
    return rgb


def png_base64(rgb: np.ndarray) -> str:
    """An RGB image (floats 0..1) as base64-encoded PNG."""
    png = iio.imwrite("<bytes>", np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8), extension=".png")
    return base64.b64encode(png).decode("ascii")


def coronal_size(depth_mm: float, width_mm: float, width_px: int) -> tuple[int, int]:
    """(height, width) in pixels of a coronal view ``width_px`` wide with square pixels in mm."""
    height = int(round(width_px * depth_mm / max(width_mm, 1e-6)))
    return (min(max(height, 32), 2 * width_px), width_px)
