"""On-the-fly, seeded augmentation of nodule ROIs (the tumour paper's set).

Geometric transforms (in-plane rotation, isotropic scale, shift, flips) are combined into one
affine map from the model's input grid into the resampled VOI, so a sample is interpolated
once and the ROI is cut in the same step: the random crop of the paper is this random shift
of the crop window. Outside the VOI the image takes its edge values (``nearest``), the mask 0.
Intensity transforms (Gaussian blur, multiplicative and additive Gaussian noise) follow on the
normalised image only. Every random draw comes from the generator passed in, so a seed fixes
the whole sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungai.preprocessing.roi import centre_offset


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities of the augmentations; ``AugmentConfig.off()`` disables all.

    Attributes:
        rotation_deg: in-plane rotation drawn from ``[-r, r]`` degrees.
        scale: isotropic scale factor drawn from ``[1 - s, 1 + s]``.
        shift_fraction: shift of the crop window, up to this fraction of the ROI size per axis.
        flip_probability: probability of a flip along each axis (z, y, x) independently.
        blur_probability: probability of a Gaussian blur.
        blur_sigma: blur sigma (voxels) drawn from ``[0, sigma]``.
        multiplicative_noise: standard deviation of a per-sample intensity factor around 1.
        additive_noise: standard deviation of per-voxel Gaussian noise (normalised units).
    """

    rotation_deg: float = 180.0
    scale: float = 0.1
    shift_fraction: float = 0.05
    flip_probability: float = 0.5
    blur_probability: float = 0.2
    blur_sigma: float = 1.0
    multiplicative_noise: float = 0.05
    additive_noise: float = 0.02

    @classmethod
    def off(cls) -> AugmentConfig:
        """No augmentation at all (validation, evaluation)."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _geometry(rng: np.random.Generator, config: AugmentConfig,
              out_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Draw the affine matrix (output -> input, voxel units) and the shift of the window."""
    angle = np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg))
    scale = rng.uniform(1 - config.scale, 1 + config.scale)
    cos, sin = np.cos(angle), np.sin(angle)
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]]) / scale
    flips = np.where(rng.random(3) < config.flip_probability, -1.0, 1.0)
    matrix = matrix * flips[np.newaxis, :]
    limit = np.floor(np.asarray(out_shape) * config.shift_fraction)
    shift = np.array([rng.integers(-lim, lim + 1) if lim else 0 for lim in limit], dtype=float)
    return matrix, shift


def _warp(volume: np.ndarray, matrix: np.ndarray, offset: np.ndarray, out_shape: tuple[int, ...],
          mode: str) -> np.ndarray:
    return ndimage.affine_transform(volume, matrix, offset=offset, output_shape=out_shape, order=1,
                                    mode=mode, cval=0.0)


def _warp_masks(mask: np.ndarray, matrix: np.ndarray, offset: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """Warp one ``(z, y, x)`` or stacked ``(c, z, y, x)`` soft mask (0 outside), then binarise at 0.5."""
    if mask.ndim == 4:
        return np.stack([_warp_masks(channel, matrix, offset, out_shape) for channel in mask])
    return (_warp(mask, matrix, offset, out_shape, "constant") >= 0.5).astype(np.float32)


def augment_roi(image: np.ndarray, mask: np.ndarray | None, out_shape: tuple[int, int, int],
                rng: np.random.Generator, config: AugmentConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut an augmented ROI from a resampled VOI.

    Args:
        image: the resampled VOI, already normalised to [0, 1] (see
            :func:`lungai.preprocessing.roi.normalize_hu`), ``(z, y, x)``.
        mask: the resampled soft mask on the same grid, ``(z, y, x)``, or several stacked on a
            leading channel axis ``(c, z, y, x)`` (e.g. the mask and
            :func:`lungai.preprocessing.roi.support_mask`), or ``None``.
        out_shape: the model's input grid.
        rng: source of every random draw.
        config: ranges and probabilities.

    Returns:
        The augmented image (float32) and binary mask(s) (float32, same channels as given, or
        ``None``) on ``out_shape``.
    """
    matrix, shift = _geometry(rng, config, out_shape)
    centre_out = (np.asarray(out_shape) - 1) / 2
    # input = matrix @ (o - centre_out) + centre_out + window offset + shift; identity reproduces
    # lungai.preprocessing.roi.centre_pad_crop exactly.
    offset = centre_out + centre_offset(image.shape, out_shape) + shift - matrix @ centre_out
    out = _warp(image, matrix, offset, out_shape, "nearest")
    out_mask = None if mask is None else _warp_masks(mask, matrix, offset, out_shape)
    if config.blur_probability and rng.random() < config.blur_probability:
        sigma = rng.uniform(0.0, config.blur_sigma)
        out = ndimage.gaussian_filter(out, sigma=(0.0, sigma, sigma))
    if config.multiplicative_noise:
        out = out * rng.normal(1.0, config.multiplicative_noise)
    if config.additive_noise:
        out = out + rng.normal(0.0, config.additive_noise, size=out.shape)
    return out.astype(np.float32), out_mask
