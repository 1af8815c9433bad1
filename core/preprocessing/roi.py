"""Per-model regions of interest (ROIs) from nodule VOIs, in physical units.

A VOI is first resampled to the model's target spacing (so a 10 mm nodule covers the same
number of voxels in every case: size is preserved), then placed in the model's input grid
centred on the VOI's centre. Where the VOI is smaller than the input it is padded with its
own edge values (``nearest`` extension, i.e. ``numpy.pad(mode="edge")``), never with zeros;
where it is larger it is cropped around the centre. The centre is the VOI's geometric centre,
not the mask's: models must not be handed the answer.

=================  ===================  ==================  =====================================
model              input (z, y, x)      spacing (mm)        notes
=================  ===================  ==================  =====================================
``resnet50_3d``    16 x 48 x 48         1.5 x 0.75 x 0.75   the paper's ROI at half its spacing
``nodule_cnn2d``   1 x 124 x 124        native z x 0.4      central slice; 0.4 mm keeps 50 mm
``resunet3d``      16 x 48 x 48         1.25 x 0.7 x 0.7    the VOI padded (paper: 48x192x192)
``r3d_denseunet``  16 x 64 x 64         2.5 x 0.8 x 0.8     in-plane divisible by 8
``convlstm_nodule`` 10 x 64 x 64        2.5 x 0.8 x 0.8     output is cropped to 8 x 60 x 60
=================  ===================  ==================  =====================================

``resunet3d`` works near the VOIs' median native spacing (1.25 x 0.68 x 0.68 mm) with a
20 x 34 x 34 mm field of view: mapping a training mask to this grid and back keeps a mean Dice
of about 0.95 (0.91 at the former 2 x 0.8 x 0.8 mm, 16 x 64 x 64, which cost small nodules
most; 0.96 with 32 x 64 x 64, which fits even the largest, 40 mm, masks but costs 3.5 times
the compute, more than the shared two-core CPU could give). ``resnet50_3d`` uses half the paper's
3 x 1.5 x 1.5 mm: at the paper's spacing a median (6.7 mm) nodule is 2 slices and 4-5 voxels wide
and the 72 mm field of view is mostly padding around a 30 mm VOI; at 1.5 x 0.75 x 0.75 mm
(24 x 36 x 36 mm) the VOI fills the ROI. ``r3d_denseunet`` keeps the former spacing with 16 slices
(40 mm), so the large nodules it is trained on fit along z.

The VOIs are tight crops (median 9 mm along z; in 59 % of them the mask touches the first or
last slice), so most of a 3D ROI is padding. Edge padding repeats the border slices, nodule
included, where the mask is 0: the image says nodule and the target says background. The
segmentation training therefore scores only voxels inside the VOI (:func:`support_mask`; the
trainer's masked losses), and the image padding stays ``edge``.

Intensities are clipped to [-1000, 400] HU and scaled to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

HU_WINDOW = (-1000.0, 400.0)


@dataclass(frozen=True)
class RoiSpec:
    """How one model's input is cut from a VOI.

    Attributes:
        shape: input grid ``(z, y, x)``; ``z == 1`` gives a single (central) slice.
        spacing: target spacing ``(z, y, x)`` in mm; a ``None`` entry keeps the native spacing.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float | None, float | None, float | None]

    def spacing_mm(self) -> tuple[float, float, float]:
        """The spacing of an ROI cut on a fixed grid (no native axis).

        Raises:
            ValueError: an axis keeps the native spacing.
        """
        z, y, x = self.spacing
        if z is None or y is None or x is None:
            raise ValueError(f"this ROI keeps the native spacing on an axis: {self.spacing}")
        return z, y, x


ROI_SPECS: dict[str, RoiSpec] = {
    "resnet50_3d": RoiSpec((16, 48, 48), (1.5, 0.75, 0.75)),
    "nodule_cnn2d": RoiSpec((1, 124, 124), (None, 0.4, 0.4)),
    "resunet3d": RoiSpec((16, 48, 48), (1.25, 0.7, 0.7)),
    "r3d_denseunet": RoiSpec((16, 64, 64), (2.5, 0.8, 0.8)),
    "convlstm_nodule": RoiSpec((10, 64, 64), (2.5, 0.8, 0.8)),
}


def roi_spec(model: str) -> RoiSpec:
    """The ROI of a registry model name.

    Raises:
        KeyError: for a model without an ROI (not a nodule model).
    """
    try:
        return ROI_SPECS[model]
    except KeyError:
        raise KeyError(f"no nodule ROI for model {model!r}; known: {', '.join(ROI_SPECS)}") from None


def normalize_hu(image: np.ndarray) -> np.ndarray:
    """Clip to :data:`HU_WINDOW` and scale to [0, 1] (float32)."""
    low, high = HU_WINDOW
    return ((np.clip(image, low, high) - low) / (high - low)).astype(np.float32)


def resampled_shape(shape: tuple[int, ...], spacing: tuple[float, ...], spec: RoiSpec) -> tuple[int, int, int]:
    """The shape a VOI of ``shape`` and ``spacing`` has at the spec's spacing (at least 1 voxel)."""
    return tuple(  # type: ignore[return-value]  # three axes in, three out; mypy cannot count a generator's length
        n if target is None else max(1, int(round(n * s / target)))
        for n, s, target in zip(shape, spacing, spec.spacing)
    )


def resample(array: np.ndarray, shape: tuple[int, int, int], order: int) -> np.ndarray:
    """Resample a volume to ``shape`` (corner-aligned zoom, edge extension), as float32.

    Args:
        array: ``(z, y, x)`` volume.
        shape: output shape.
        order: spline order (1 for images and soft masks, 0 for labels).

    Returns:
        The resampled volume.
    """
    if tuple(array.shape) == tuple(shape):
        return array.astype(np.float32, copy=False)
    factors = [o / i for o, i in zip(shape, array.shape)]
    out = ndimage.zoom(array.astype(np.float32, copy=False), factors, order=order, mode="nearest",
                       grid_mode=True)
    return out.astype(np.float32, copy=False)


def centre_offset(source_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> np.ndarray:
    """Integer offset of the target grid in the source grid that aligns their centres.

    Negative entries mean the target is larger (the source gets padded).
    """
    return (np.asarray(source_shape) - np.asarray(target_shape)) // 2


def centre_pad_crop(array: np.ndarray, shape: tuple[int, int, int], fill: str | float = "edge") -> np.ndarray:
    """Place ``array`` centred in a grid of ``shape``: crop where larger, pad where smaller.

    Args:
        array: ``(z, y, x)`` volume.
        shape: output shape.
        fill: ``"edge"`` repeats the border values; a number pads with that constant.

    Returns:
        The volume on the new grid.
    """
    offset = centre_offset(array.shape, shape)
    slices, pads = [], []
    for start, n_in, n_out in zip(offset, array.shape, shape):
        lo = max(start, 0)
        hi = min(start + n_out, n_in)
        slices.append(slice(lo, hi))
        before = max(-start, 0)
        pads.append((before, n_out - before - (hi - lo)))
    cropped = array[tuple(slices)]
    if fill == "edge":
        return np.pad(cropped, pads, mode="edge")
    return np.pad(cropped, pads, mode="constant", constant_values=float(fill))


def resample_to_spec(image: np.ndarray, mask: np.ndarray | None, spacing: tuple[float, float, float],
                     spec: RoiSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """Resample a VOI (HU) and its mask to the spec's spacing; no padding or cropping yet.

    Args:
        image: HU ``(z, y, x)``.
        mask: binary mask on the same grid, or ``None``.
        spacing: the VOI's spacing ``(z, y, x)`` mm.
        spec: the model's ROI.

    Returns:
        The resampled image (HU) and mask (soft, in [0, 1]).
    """
    shape = resampled_shape(image.shape, spacing, spec)
    image_r = resample(image, shape, order=1)
    mask_r = None if mask is None else np.clip(resample(mask.astype(np.float32), shape, order=1), 0, 1)
    return image_r, mask_r


def extract_roi(image: np.ndarray, mask: np.ndarray | None, spacing: tuple[float, float, float],
                spec: RoiSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """A model input (normalised, edge-padded) and its binary target mask, without augmentation.

    Returns:
        ``(image, mask)`` on the ``spec.shape`` grid; the mask is ``None`` if none was given.
    """
    image_r, mask_r = resample_to_spec(image, mask, spacing, spec)
    roi = normalize_hu(centre_pad_crop(image_r, spec.shape, "edge"))
    target = None if mask_r is None else (centre_pad_crop(mask_r, spec.shape, 0.0) >= 0.5).astype(np.float32)
    return roi, target


def support_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """Ones on a resampled VOI's grid: stacked under its mask, the augmentation carries it along.

    Warped like the mask (0 outside the VOI), it marks which voxels of an ROI hold real image
    content rather than padding.
    """
    return np.ones(shape, np.float32)


def roi_to_native(prediction: np.ndarray, native_shape: tuple[int, int, int], spacing: tuple[float, float, float],
                  spec: RoiSpec) -> np.ndarray:
    """Map a soft prediction on the ROI grid back onto the VOI's native grid.

    The inverse of :func:`extract_roi`: the ROI is un-padded (zeros where the ROI did not
    cover the VOI) and resampled to the native shape.

    Args:
        prediction: probabilities on ``spec.shape`` (or a centred sub-grid of it, as models
            that crop their output produce).
        native_shape: the VOI's shape.
        spacing: the VOI's spacing.
        spec: the ROI used.

    Returns:
        Probabilities on the native grid (float32).
    """
    shape = resampled_shape(native_shape, spacing, spec)
    return resample(roi_to_resampled(prediction, shape, spec), native_shape, order=1)


def roi_to_resampled(prediction: np.ndarray, resampled_voi_shape: tuple[int, ...], spec: RoiSpec) -> np.ndarray:
    """Put an ROI prediction back where it was cut from the resampled VOI (zeros elsewhere).

    Args:
        prediction: probabilities on ``spec.shape`` or a centred sub-grid of it.
        resampled_voi_shape: the VOI's shape at the spec's spacing (:func:`resampled_shape`).
        spec: the ROI used.
    """
    full = centre_pad_crop(prediction.astype(np.float32), spec.shape, 0.0)
    return _shift_back(full, resampled_voi_shape)


def _shift_back(roi: np.ndarray, voi_shape: tuple[int, ...]) -> np.ndarray:
    """Invert :func:`centre_pad_crop`: put the ROI back where it came from in the VOI grid."""
    offset = centre_offset(voi_shape, roi.shape)  # where the ROI's voxel 0 sits in the VOI grid
    out = np.zeros(voi_shape, np.float32)
    src, dst = [], []
    for start, n_roi, n_voi in zip(offset, roi.shape, voi_shape):
        lo, hi = max(start, 0), min(start + n_roi, n_voi)
        dst.append(slice(lo, hi))
        src.append(slice(lo - start, hi - start))
    out[tuple(dst)] = roi[tuple(src)]
    return out
