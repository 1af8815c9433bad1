"""The VOI segmentation's tiles go through the one sliding-window helper and give the probabilities they always gave.

``_reference_tiles`` below is the tiling the VOI segmentation had before it used
:func:`lungai.inference.patches.sliding_window_predict`: its own tile starts and its own average.
The probabilities must stay bit for bit the same (the shipped ``resunet3d`` evaluation numbers
and every nodule mask of ``lungai run`` depend on them).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from shared_data import require
from torch import nn

from lungai.inference.patches import SlidingWindowConfig, centred_window_starts, sliding_window_predict
from lungai.inference.voi_segmentation import (
    MAX_TILED_ROIS,
    VoiInference,
    _tiled_probability,
    predict_rois,
    recorded_inference,
    scaled_spec,
)
from lungai.preprocessing.roi import RoiSpec, centre_pad_crop, normalize_hu, resample_to_spec


def _reference_starts(length: int, size: int) -> list[int]:
    if length <= size:
        return [0]
    count = int(np.ceil((length - size) / max(1, int(size * 0.5)))) + 1
    starts = {int(round(v)) for v in np.linspace(0, length - size, count)}
    starts.add((length - size) // 2)
    return sorted(starts)


def _reference_tiles(model: nn.Module, image: np.ndarray, spec: RoiSpec, inference: VoiInference,
                     max_rois: float) -> np.ndarray:
    size = np.array(spec.shape)
    window = np.minimum(image.shape, np.ceil(max_rois * size).astype(int))
    region = tuple(slice(int(a), int(a + n)) for a, n in zip((np.array(image.shape) - window) // 2, window))
    grid = np.maximum(window, size)
    padded = centre_pad_crop(image[region], (int(grid[0]), int(grid[1]), int(grid[2])), "edge")
    starts = list(itertools.product(*(_reference_starts(int(n), int(s)) for n, s in zip(grid, size))))
    tiles = [normalize_hu(padded[z:z + size[0], y:y + size[1], x:x + size[2]]) for z, y, x in starts]
    mirror = inference.mirror and inference.tile_mirror
    probabilities, support = predict_rois(model, tiles, spec, inference, mirror=mirror)
    total = np.zeros(tuple(grid), np.float32)
    weight = np.zeros(tuple(grid), np.float32)
    for (z, y, x), probability in zip(starts, probabilities):
        tile = (slice(z, z + size[0]), slice(y, y + size[1]), slice(x, x + size[2]))
        total[tile] += probability * support
        weight[tile] += support
    mean = np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)
    offset = (grid - window) // 2
    out = np.zeros(image.shape, np.float32)
    out[region] = mean[tuple(slice(o, o + n) for o, n in zip(offset, window))]
    return out


class Uneven(nn.Module):
    """Logits from intensity plus a ramp along x (not mirror-symmetric); optionally crops its output."""

    def __init__(self, crop: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, 3, padding=1)
        torch.manual_seed(0)
        nn.init.normal_(self.conv.weight, std=2.0)
        self.crop = crop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.conv(x) + torch.linspace(-3, 3, x.shape[-1])
        c = self.crop
        return logits[..., c:logits.shape[-3] - c, c:logits.shape[-2] - c, c:logits.shape[-1] - c] if c else logits


@pytest.mark.parametrize("length,size", [(n, s) for s in (1, 7, 8, 16, 48) for n in range(s, s + 70, 3)])
def test_centred_starts_are_the_voi_tiles_starts(length: int, size: int) -> None:
    assert centred_window_starts(length, size, 0.5) == _reference_starts(length, size)


@pytest.mark.parametrize("crop", [0, 1])
@pytest.mark.parametrize("inference", [VoiInference(mirror=True, tile_mirror=True, batch_size=8),
                                       VoiInference(mirror=True, tile_mirror=False, batch_size=8),
                                       VoiInference(mirror=False, batch_size=3)])
def test_tiles_are_those_of_the_former_tiling(crop: int, inference: VoiInference) -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(-500.0, 400.0, (10, 34, 30)).astype(np.float32)
    spec = RoiSpec((6, 16, 16), (1.0, 1.0, 1.0))
    model = Uneven(crop).eval()
    for max_rois in (MAX_TILED_ROIS, 1.5):
        expected = _reference_tiles(model, image, spec, inference, max_rois)
        assert np.array_equal(_tiled_probability(model, image, spec, inference, max_rois), expected)


def test_a_cropped_output_counts_only_where_it_is() -> None:
    volume = 10.0 + torch.arange(9, dtype=torch.float32).reshape(1, 1, 1, 1, 9)

    def inner(patch: torch.Tensor) -> torch.Tensor:  # a 4-voxel window predicts its middle 2 voxels
        return patch[..., 1:3]

    config = SlidingWindowConfig((1, 1, 4), overlap=0.5, starts=centred_window_starts)
    result = sliding_window_predict(volume, inner, config).flatten().tolist()
    assert result == [0.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 0.0]  # the ends lie outside every output


@pytest.mark.slow
def test_shipped_model_tiles_on_validation_vois_are_unchanged(data_root: Path) -> None:
    from lungai.data.lidc_vois import list_vois
    from lungai.data.splits import cases_for_split, load_split
    from lungai.models.checkpoint import load_model, read_header
    from lungai.preprocessing.roi import roi_spec
    from lungai.weights.resolver import resolve

    cases = cases_for_split(list_vois(require(data_root / "lidc_vois")).cases, load_split(), "val")
    # large nodules need tiles; the largest takes a minute, the next ones seconds
    chosen = sorted(cases, key=lambda case: -case.diameter_mm)[1:3]
    folder = resolve("resunet3d").folder
    model = load_model(folder, "cpu")
    shipped = recorded_inference(read_header(folder).get("inference") or {})
    spec = roi_spec("resunet3d")
    for case, scales in zip(chosen, (shipped.scales, (1.0,))):
        sample = case.load()
        for scale in scales:
            scaled = scaled_spec(spec, scale)
            image, _ = resample_to_spec(sample.image.astype(np.float32), None, sample.spacing_zyx, scaled)
            tiled = _tiled_probability(model, image, scaled, shipped, MAX_TILED_ROIS / scale)
            assert tiled.max() > shipped.threshold, case.case_id
            assert np.array_equal(tiled, _reference_tiles(model, image, scaled, shipped, MAX_TILED_ROIS / scale))
