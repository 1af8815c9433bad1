"""A segmentation model on one VOI: the centred ROI, mirrored, tiled when the nodule is larger.

The nodule models see a fixed ROI (``resunet3d``: 16 x 48 x 48 voxels, 20 x 34 x 34 mm) centred
on the VOI. That is how they were trained, and it is what :func:`predict_voi_probability` does
first. Three things are added at inference, all chosen on the validation split (docs/results.md,
"Inference on large nodules"):

- **Mirroring** (test-time augmentation): the ROI is also predicted flipped along every
  combination of z, y and x (8 passes) and the probabilities are averaged.
- **Tiling**: when the VOI is larger than the ROI and the centred prediction (thresholded,
  largest component) reaches a side of the ROI beyond which the VOI goes on, the nodule is
  being cut by the ROI. The whole resampled VOI is then covered with ROI-sized tiles (half an
  ROI apart, plus the centred one) and the tiles' probabilities are averaged
  (:func:`lungai.inference.patches.sliding_window_predict` with
  :func:`~lungai.inference.patches.centred_window_starts`). Each tile is an
  input of the trained size, so the model sees nothing it was not trained on; only the
  nodule's position in the tile changes. Nodules that fit keep the centred prediction.
  Tiles are mirrored as well unless ``inference.tile_mirror`` (a checkpoint's setting) is off;
  then the overlapping tiles alone average each voxel's predictions, for an eighth of the
  tiles' model calls.
- **Scales** (test-time magnification, off unless a checkpoint's ``inference.scales`` or the
  caller asks for it): the VOI is also resampled at the ROI spacing times each factor (a factor
  below 1 magnifies the nodule), predicted as above, and the probabilities of all scales are
  averaged on the VOI's own grid. Each scale decides on tiling by itself, and tiling covers the
  same millimetres at every scale. ``lungai tune nodule-seg`` chooses the factors on the
  validation split (:mod:`lungai.evaluation.inference_tuning`).

The decision uses the prediction only, never a label: the same code runs in ``lungai run``,
``lungai evaluate nodule-seg`` and ``lungai compare``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from lungai.inference.patches import SlidingWindowConfig, centred_window_starts, sliding_window_predict
from lungai.preprocessing.measurements import largest_component
from lungai.preprocessing.roi import (
    RoiSpec,
    centre_offset,
    centre_pad_crop,
    normalize_hu,
    resample,
    resample_to_spec,
    roi_to_resampled,
)

#: Neighbouring tiles share at least this fraction of an ROI along each axis (they are at most half an ROI apart).
TILE_OVERLAP = 0.5
#: Tiling covers at most this many trained-spacing ROI sides around the VOI's centre (80 x 136 x
#: 136 mm for ``resunet3d``: every LIDC VOI fits; at a scale below 1 the same millimetres take more,
#: smaller ROIs), so a runaway VOI cannot cost thousands of tiles.
MAX_TILED_ROIS = 4
#: Largest spacing factor of :attr:`VoiInference.scales` (a coarser grid shrinks the nodule away).
MAX_SCALE = 2.0
#: Input voxels per model call on the CPU (:func:`_run_model`): two ``resunet3d`` ROIs. A larger
#: batch's activations are fresh memory that the system pages in at every call: ``resunet3d`` on
#: one thread takes about 31 ms per input in batches of eight (5 ms of it in the kernel) against
#: 27 ms in pairs, with the same outputs.
CPU_BATCH_VOXELS = 2 * 16 * 48 * 48


@dataclass(frozen=True)
class VoiInference:
    """How a segmentation model is run on a VOI.

    Attributes:
        threshold: probability threshold of the mask (also decides whether to tile), in (0, 1).
        mirror: average over the 8 flips of z, y and x.
        tile: cover VOIs whose nodule is cut by the centred ROI with tiles.
        batch_size: model inputs (an ROI, or one flip of it) per model call.
        scales: factors of the ROI spacing the model runs at (1: the trained spacing); the
            probabilities are averaged.
        tile_mirror: mirror the tiles too (with ``mirror``); off, the tiles' overlaps alone
            average each voxel's predictions, at an eighth of the model calls.
    """

    threshold: float = 0.5
    mirror: bool = True
    tile: bool = True
    batch_size: int = 8
    scales: tuple[float, ...] = (1.0,)
    tile_mirror: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {self.threshold}")
        if not self.scales or any(not 0.0 < s <= MAX_SCALE for s in self.scales):
            raise ValueError(f"scales must be a non-empty list of factors in (0, {MAX_SCALE}], got {self.scales}")


def recorded_inference(settings: Mapping[str, Any], default_threshold: float = 0.5) -> VoiInference:
    """How a checkpoint's ``config.json`` ``inference`` block says to run it: ``threshold``,
    ``scales`` and ``tile_mirror`` (``default_threshold``, the trained spacing alone and mirrored
    tiles where the block has none).

    Raises:
        ValueError: the block records a threshold, scales or tile_mirror of the wrong type or range.
    """
    threshold, scales = settings.get("threshold", default_threshold), settings.get("scales", [1.0])
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"inference.threshold must be a number, got {threshold!r}")
    if not isinstance(scales, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in scales):
        raise ValueError(f"inference.scales must be a list of numbers, got {scales!r}")
    tile_mirror = settings.get("tile_mirror", True)
    if not isinstance(tile_mirror, bool):
        raise ValueError(f"inference.tile_mirror must be true or false, got {tile_mirror!r}")
    return VoiInference(threshold=float(threshold), scales=tuple(float(v) for v in scales), tile_mirror=tile_mirror)


def with_overrides(inference: VoiInference, **changes: Any) -> VoiInference:
    """``inference`` with the given fields replaced, ``None`` values left as they are."""
    return replace(inference, **{k: v for k, v in changes.items() if v is not None})


def scaled_spec(spec: RoiSpec, scale: float) -> RoiSpec:
    """The ROI of ``spec`` on a spacing ``scale`` times its own (native-spacing axes stay native)."""
    return RoiSpec(spec.shape, tuple(None if s is None else s * scale for s in spec.spacing))  # type: ignore[arg-type]  # three axes in, three out; mypy cannot count a generator's length


def _flips(mirror: bool) -> list[tuple[int, ...]]:
    """The axes of an ROI (z, y, x = 0, 1, 2) each test-time flip reverses: all 8 subsets, or none."""
    axes = (0, 1, 2)
    return [f for k in range(len(axes) + 1) for f in itertools.combinations(axes, k)] if mirror else [()]


def _run_model(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Sigmoid probabilities of a batch. On the CPU the model gets at most :data:`CPU_BATCH_VOXELS`
    input voxels at a time (:func:`_cpu_parts`), and a batch of one is run twice over, because
    torch's CPU convolutions take a slower path for a single input (``resunet3d``: 172 ms for one
    input alone, about 27 ms per input in a pair)."""
    if batch.device.type != "cpu":
        return torch.sigmoid(model(batch).float())
    if batch.shape[0] == 1:
        return torch.sigmoid(model(batch.expand(2, *batch.shape[1:])).float())[:1]
    return torch.cat([torch.sigmoid(model(part).float()) for part in _cpu_parts(batch)])


def _cpu_parts(batch: torch.Tensor) -> list[torch.Tensor]:
    """``batch`` (at least two inputs) in parts of at most :data:`CPU_BATCH_VOXELS` input voxels but
    at least two inputs each: a last single input joins the part before it."""
    size = max(2, CPU_BATCH_VOXELS // batch[0].numel())
    starts = list(range(0, batch.shape[0] - 1, size))
    return [batch[start:end] for start, end in zip(starts, [*starts[1:], batch.shape[0]])]


@torch.inference_mode()
def _flip_averaged(model: nn.Module, rois: list[np.ndarray], inference: VoiInference, mirror: bool) -> np.ndarray:
    """Probabilities of normalised ROIs on the model's output grid, averaged over the flips.

    Every (ROI, flip) pair is one model input; ``inference.batch_size`` inputs go to the model
    at a time, so a single ROI's flips share one call. Only one batch is on the model's device
    at a time.

    Returns:
        ``(len(rois), *output shape)`` float32.
    """
    device = next(model.parameters()).device
    flips = _flips(mirror)
    inputs = [(index, axes) for index in range(len(rois)) for axes in flips]
    totals: np.ndarray | None = None
    for start in range(0, len(inputs), inference.batch_size):
        chunk = inputs[start:start + inference.batch_size]
        batch = torch.from_numpy(np.stack([np.flip(rois[i], axes) for i, axes in chunk]))[:, None].to(device)
        probability = _run_model(model, batch)[:, 0].cpu().numpy()
        if totals is None:
            totals = np.zeros((len(rois), *probability.shape[1:]), np.float32)
        for (index, axes), item in zip(chunk, probability):
            totals[index] += np.flip(item, axes)
    assert totals is not None
    totals /= len(flips)
    return totals


def predict_rois(model: nn.Module, rois: list[np.ndarray], spec: RoiSpec, inference: VoiInference,
                 mirror: bool | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Probabilities of normalised ROIs (each ``spec.shape``) on the full ROI grid.

    Every (ROI, flip) pair is one model input; ``inference.batch_size`` inputs go to the model
    at a time, so a single ROI's flips share one call. Only one batch is on the model's device
    at a time.

    Args:
        rois: at least one ROI.
        mirror: average the 8 flips; ``None`` uses ``inference.mirror``.

    Returns:
        The probabilities (0 where a model crops its output) and the output's support on the
        ROI grid (1 where the model predicts).
    """
    if not rois:
        raise ValueError("predict_rois needs at least one ROI")
    totals = _flip_averaged(model, rois, inference, inference.mirror if mirror is None else mirror)
    out = [centre_pad_crop(p, spec.shape, 0.0) for p in totals]
    return out, centre_pad_crop(np.ones(totals.shape[1:], np.float32), spec.shape, 0.0)


def _cut_by_roi(probability: np.ndarray, spec: RoiSpec, threshold: float) -> bool:
    """Whether the centred prediction's largest component reaches an ROI side inside the VOI."""
    mask = largest_component(probability >= threshold)
    if not mask.any():
        return False
    offset = centre_offset(probability.shape, spec.shape)  # the ROI's voxel 0 in the VOI grid
    bbox = ndimage.find_objects(mask.astype(np.uint8))[0]
    for axis, (start, size, n) in enumerate(zip(offset, spec.shape, probability.shape)):
        if start > 0 and bbox[axis].start <= start:
            return True
        if start + size < n and bbox[axis].stop >= start + size:
            return True
    return False


def _tiled_probability(model: nn.Module, image: np.ndarray, spec: RoiSpec, inference: VoiInference,
                       max_rois: float) -> np.ndarray:
    """Average tile probabilities over a resampled VOI (HU) at least partly larger than the ROI.

    Only the central ``max_rois`` ROI sides of the VOI are tiled; beyond them the probability is
    0, as outside the centred ROI. The tiles cover that part (edge-padded, centred, to at least
    one ROI) as :func:`~lungai.inference.patches.centred_window_starts` places them.
    """
    size = np.array(spec.shape)
    window = np.minimum(image.shape, np.ceil(max_rois * size).astype(int))
    region = tuple(slice(int(a), int(a + n)) for a, n in zip((np.array(image.shape) - window) // 2, window))
    grid = np.maximum(window, size)
    padded = normalize_hu(centre_pad_crop(image[region], (int(grid[0]), int(grid[1]), int(grid[2])), "edge"))
    mirror = inference.mirror and inference.tile_mirror

    def predict(tiles: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(_flip_averaged(model, [tile[0].numpy() for tile in tiles], inference, mirror))[:, None]

    # batches of batch_size tiles give the model the same (tile, flip) batches as one list of every tile would
    tiling = SlidingWindowConfig(spec.shape, overlap=TILE_OVERLAP, batch_size=inference.batch_size,
                                 starts=centred_window_starts)
    mean = sliding_window_predict(torch.from_numpy(padded)[None, None], predict, tiling)[0, 0].numpy()
    offset = (grid - window) // 2
    out = np.zeros(image.shape, np.float32)
    out[region] = mean[tuple(slice(o, o + n) for o, n in zip(offset, window))]
    return out


class VoiPrediction:
    """A segmentation model's predictions on one VOI, each resampled grid and tiling made once.

    :func:`predict_voi_probability` uses a new one per call. Kept for several predictions of the
    same VOI, it tiles each scale once for all of them: the nodule pipeline's preview and full
    prediction (:mod:`lungai.pipeline.nodules`) tile the trained scale alike (unmirrored, when
    ``tile_mirror`` is off), so the full prediction takes the preview's tiles (the same model
    inputs in the same batches: the same probabilities).

    Args:
        model: maps ``(N, 1, *spec.shape)`` to mask logits (or a centred crop of them).
        hu: the VOI in HU, ``(z, y, x)``.
        spacing_zyx: its spacing (mm).
        spec: the model's ROI.
    """

    def __init__(self, model: nn.Module, hu: np.ndarray, spacing_zyx: tuple[float, float, float],
                 spec: RoiSpec) -> None:
        self.model, self.hu, self.spacing_zyx, self.spec = model, hu, spacing_zyx, spec
        self._resampled: dict[float, np.ndarray] = {}
        self._tiled: dict[tuple[float, bool, int], np.ndarray] = {}

    def probability(self, inference: VoiInference) -> np.ndarray:
        """Probabilities on the VOI's grid (float32), the mean over ``inference.scales``."""
        total = np.zeros(self.hu.shape, np.float32)
        for scale in inference.scales:
            total += self.by_threshold(scale, inference, (inference.threshold,))[inference.threshold]
        return total / len(inference.scales)

    def by_threshold(self, scale: float, inference: VoiInference,
                     thresholds: tuple[float, ...]) -> dict[float, np.ndarray]:
        """The soft mask at one scale with each threshold (:func:`probabilities_by_threshold`)."""
        scaled = scaled_spec(self.spec, scale)
        image = self._image(scale)
        roi = normalize_hu(centre_pad_crop(image, scaled.shape, "edge"))
        centred = roi_to_resampled(predict_rois(self.model, [roi], scaled, inference)[0][0], image.shape, scaled)
        tiled_at = {t for t in thresholds if inference.tile and _cut_by_roi(centred, scaled, t)}
        native = {False: resample(centred, self.hu.shape, order=1).astype(np.float32)}
        if tiled_at:
            native[True] = self._tiled_native(scale, inference)
        return {t: native[t in tiled_at] for t in thresholds}

    def _image(self, scale: float) -> np.ndarray:
        """The VOI (HU) resampled to the ROI spacing times ``scale``."""
        if scale not in self._resampled:
            self._resampled[scale] = resample_to_spec(self.hu.astype(np.float32), None, self.spacing_zyx,
                                                      scaled_spec(self.spec, scale))[0]
        return self._resampled[scale]

    def _tiled_native(self, scale: float, inference: VoiInference) -> np.ndarray:
        """The tiles' probabilities at ``scale`` on the VOI's grid; tiled once per scale, tile mirroring
        and batch size."""
        key = (scale, inference.mirror and inference.tile_mirror, inference.batch_size)
        if key not in self._tiled:
            tiled = _tiled_probability(self.model, self._image(scale), scaled_spec(self.spec, scale), inference,
                                       MAX_TILED_ROIS / scale)
            self._tiled[key] = resample(tiled, self.hu.shape, order=1).astype(np.float32)
        return self._tiled[key]


def predict_voi_probability(model: nn.Module, hu: np.ndarray, spacing_zyx: tuple[float, float, float],
                            spec: RoiSpec, inference: VoiInference = VoiInference()) -> np.ndarray:
    """Soft mask of a segmentation model on a VOI, on the VOI's own grid (see the module docstring).

    Args:
        model: maps ``(N, 1, *spec.shape)`` to mask logits (or a centred crop of them).
        hu: the VOI in HU, ``(z, y, x)``.
        spacing_zyx: its spacing (mm).
        spec: the model's ROI.
        inference: mirroring, tiling, threshold, scales.

    Returns:
        Probabilities on ``hu``'s grid (float32), the mean over ``inference.scales``.
    """
    return VoiPrediction(model, hu, spacing_zyx, spec).probability(inference)


def probabilities_by_threshold(model: nn.Module, hu: np.ndarray, spacing_zyx: tuple[float, float, float],
                               spec: RoiSpec, scale: float, inference: VoiInference,
                               thresholds: tuple[float, ...]) -> dict[float, np.ndarray]:
    """The soft mask at one scale as :func:`predict_voi_probability` makes it with each threshold.

    The threshold only decides whether the VOI is tiled, so the centred and the tiled
    probabilities are each computed at most once and shared among the thresholds
    (``inference.threshold`` and ``inference.scales`` are not used). For tuning.

    Returns:
        ``{threshold: probabilities on hu's grid (float32)}``.
    """
    return VoiPrediction(model, hu, spacing_zyx, spec).by_threshold(scale, inference, thresholds)
