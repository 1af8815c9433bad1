"""The nodules stage's speed-ups change no result: the CPU's pairs of model inputs, the preview's
tiles taken by the full prediction, and the lesion region's closing on the lung's box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lungai.inference import voi_segmentation
from lungai.inference.voi_segmentation import VoiInference, VoiPrediction, predict_voi_probability
from lungai.preprocessing import lesion_region
from lungai.preprocessing.roi import roi_spec
from lungai.weights.resolver import load_model

SPACING_ZYX = (1.25, 0.7, 0.7)
#: The shipped settings' shape: mirrored, two scales, unmirrored tiles.
FULL = VoiInference(threshold=0.35, scales=(1.0, 0.7), tile_mirror=False)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return load_model("resunet3d")


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    inputs: list[int] = []
    original = voi_segmentation._run_model

    def counted(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        inputs.append(batch.shape[0])
        return original(model, batch)

    monkeypatch.setattr(voi_segmentation, "_run_model", counted)
    return inputs


@pytest.mark.parametrize("count,sizes", [(2, [2]), (3, [3]), (4, [2, 2]), (5, [2, 3]), (8, [2, 2, 2, 2]),
                                         (9, [2, 2, 2, 3])])
def test_a_cpu_batch_of_resunet3d_rois_goes_in_pairs(count: int, sizes: list[int]) -> None:
    batch = torch.arange(count, dtype=torch.float32)[:, None, None, None, None].expand(
        count, 1, *roi_spec("resunet3d").shape)
    parts = voi_segmentation._cpu_parts(batch)
    assert [len(part) for part in parts] == sizes
    assert torch.equal(torch.cat(parts), batch)


def test_small_inputs_share_a_cpu_call() -> None:
    assert [len(part) for part in voi_segmentation._cpu_parts(torch.zeros(8, 1, 8, 16, 16))] == [8]
    assert [len(part) for part in voi_segmentation._cpu_parts(torch.zeros(9, 1, 16, 48, 24))] == [4, 5]


def test_pairs_give_the_whole_batch_s_probabilities(model: torch.nn.Module) -> None:
    batch = torch.rand(8, 1, *roi_spec("resunet3d").shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = torch.sigmoid(model(batch).float())
        # bit-equal on the machines measured; another CPU may pick other kernels per batch size
        assert torch.allclose(voi_segmentation._run_model(model, batch), whole, atol=1e-5)


def test_the_full_prediction_takes_the_preview_s_tiles(model: torch.nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    zz, yy, xx = np.mgrid[:24, :72, :72]
    distance = np.sqrt(((zz - 12) * 1.25) ** 2 + ((yy - 36) * 0.7) ** 2 + ((xx - 36) * 0.7) ** 2)
    hu = np.where(distance <= 13.0, 30, -850).astype(np.int16)  # a 26 mm nodule: the centred ROI cuts it
    spec = roi_spec("resunet3d")
    inputs = _counting(monkeypatch)
    alone = predict_voi_probability(model, hu, SPACING_ZYX, spec, FULL)
    full_inputs = sum(inputs)
    inputs.clear()
    shared = VoiPrediction(model, hu, SPACING_ZYX, spec)
    shared.probability(VoiInference(threshold=0.35, mirror=False, tile_mirror=False))  # the preview
    preview_inputs = sum(inputs)
    assert preview_inputs > 1  # it tiled
    after_preview = shared.probability(FULL)
    assert np.array_equal(after_preview, alone)
    assert sum(inputs) == full_inputs + 1  # the preview's centred input alone was not part of the full prediction


def _closed_on_the_whole_grid(mask: np.ndarray, radius_mm: float, spacing_zyx: np.ndarray) -> np.ndarray:
    """The closing as it was computed before it was cut to the mask's box."""
    pad = np.ceil(radius_mm / spacing_zyx).astype(int) + 1
    padded = np.pad(mask, [(p, p) for p in pad])
    dilated = ndimage.distance_transform_edt(~padded, sampling=spacing_zyx) <= radius_mm
    closed = ndimage.distance_transform_edt(dilated, sampling=spacing_zyx) > radius_mm
    return closed[tuple(slice(p, -p) for p in pad)] | mask


@pytest.mark.parametrize("seed", range(4))
def test_the_closing_on_the_mask_s_box_is_the_whole_grid_s(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.random((40, 50, 60)), 3.0) > 0.52  # lobed blobs with holes
    mask[:, :, rng.integers(30, 60):] = False  # a lung on one side; touching the grid's other sides
    spacing = np.array([2.5, 2.8, 2.8]) if seed % 2 else np.array([2.0, 2.0, 2.0])
    for radius in (5.0, 12.0, 25.0):
        expected = _closed_on_the_whole_grid(mask, radius, spacing)
        assert (expected & ~mask).any()
        assert np.array_equal(lesion_region._closed(mask, radius, spacing), expected)
