"""Nodule models on a whole scan: cut a training-like VOI around a nodule, run, map back.

The nodule models were trained on LIDC VOIs (``lidc_vois/``): boxes centred on the nodule,
at least about 30 mm wide in-plane (about 10 mm wider than large nodules) and just covering
the nodule's slices in z. At inference a VOI of the same geometry is cut from the scan around
the nodule (:func:`voi_box`), and then goes through exactly the training preprocessing
(:func:`lungai.preprocessing.roi.extract_roi`: resampling to the model's spacing, edge padding, HU
window). Segmentation models run through :mod:`lungai.inference.voi_segmentation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lungai.preprocessing.roi import RoiSpec, extract_roi

#: Smallest in-plane side of a VOI (mm), as in the training VOIs.
MIN_VOI_MM = 30.0
#: In-plane margin added to the nodule's extent (mm), as in the training VOIs.
VOI_MARGIN_MM = 10.0
#: z margin on each side, as a fraction of the nodule's z extent (training VOIs: ~0 to 2 slices).
Z_MARGIN_FRACTION = 0.1


@dataclass(frozen=True)
class Voi:
    """A box of the scan grid.

    Attributes:
        box: ``(z, y, x)`` slices on the scan grid.
    """

    box: tuple[slice, slice, slice]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The box's shape."""
        return tuple(s.stop - s.start for s in self.box)


def voi_box(centre_zyx: np.ndarray, extent_mm_zyx: np.ndarray, spacing_zyx: tuple[float, float, float],
            shape: tuple[int, int, int], odd_z: bool = False) -> Voi:
    """A training-like VOI around a nodule, clipped to the scan.

    Args:
        centre_zyx: the nodule's centre, continuous voxel index ``(z, y, x)``.
        extent_mm_zyx: the nodule's extent (mm) along z, y, x (e.g. its bounding box, or the
            detection's diameter).
        spacing_zyx: scan spacing.
        shape: scan shape.
        odd_z: centre the VOI on the centre's slice with an odd slice count (the 2D model
            reads the VOI's central slice).

    Returns:
        The box.
    """
    extent = np.asarray(extent_mm_zyx, float)
    sides = np.maximum(MIN_VOI_MM, extent + VOI_MARGIN_MM)
    sides[0] = extent[0] * (1 + 2 * Z_MARGIN_FRACTION)
    box = []
    for axis, (c, side, s, n) in enumerate(zip(centre_zyx, sides, spacing_zyx, shape)):
        half = max(0, int(np.ceil(side / s / 2 - 0.5)))
        if axis == 0 and odd_z:
            lo, hi = int(round(c)) - half, int(round(c)) + half + 1
        else:
            lo, hi = int(np.floor(c - side / s / 2 + 0.5)), int(np.floor(c + side / s / 2 + 0.5))
            hi = max(hi, lo + 1)
        box.append(slice(max(0, lo), min(n, hi)))
    return Voi((box[0], box[1], box[2]))


def _input(hu: np.ndarray, spacing_zyx: tuple[float, float, float], spec: RoiSpec, two_d: bool) -> torch.Tensor:
    roi, _ = extract_roi(hu.astype(np.float32), None, spacing_zyx, spec)
    return torch.from_numpy(roi if two_d else roi[np.newaxis])[None]


@torch.inference_mode()
def predict_voi_malignancies(model: nn.Module, vois: list[np.ndarray], spacing_zyx: tuple[float, float, float],
                             spec: RoiSpec, two_d: bool, batch_size: int = 16) -> list[float]:
    """Malignant-class probability (softmax of the two logits) of a classifier on each VOI.

    Args:
        model: maps the ROI to two logits (benign, malignant).
        vois: VOIs of one scan in HU, ``(z, y, x)``; a 2D model reads each one's central slice.
        spacing_zyx: their spacing.
        spec: the model's ROI.
        two_d: the model takes ``(N, 1, H, W)`` inputs.
        batch_size: VOIs per model call.

    Returns:
        The probabilities, 0..1, in order.
    """
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(vois), batch_size):
        batch = torch.cat([_input(hu, spacing_zyx, spec, two_d) for hu in vois[start:start + batch_size]])
        logits = model(batch.to(device)).float()
        out.extend(float(p) for p in torch.softmax(logits, dim=1)[:, 1].cpu())
    return out
