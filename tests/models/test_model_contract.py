"""What every registered model must do: odd sizes, gradients, save/load, fitting one batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from model_helpers import TrainingCase, binary_case, class_case, first_conv, segmentation_case, train_steps

from lungai.models.checkpoint import load_model, save_model
from lungai.models.registry import build_model, model_names

# name -> (tiny training batch, Adam steps, learning rate)
CASES: dict[str, tuple[Callable[[], TrainingCase], int, float]] = {
    "convlstm_nodule": (lambda: segmentation_case((2, 1, 5, 12, 12), crop=(1, 2, 2)), 25, 1e-2),
    "convlstm_scanner": (lambda: binary_case((4, 1, 3, 16, 16)), 10, 1e-3),
    "mil_max": (lambda: binary_case((4, 1, 3, 16, 16)), 10, 1e-3),
    "mil_mean": (lambda: binary_case((4, 1, 3, 16, 16)), 10, 1e-3),
    "mil_product": (lambda: binary_case((4, 1, 3, 16, 16)), 10, 1e-3),
    "cnn3d": (lambda: binary_case((4, 1, 16, 16, 16)), 12, 3e-4),
    "r3d_denseunet": (lambda: segmentation_case((2, 1, 3, 16, 16)), 8, 1e-2),
    "nodule_cnn2d": (lambda: class_case((4, 1, 24, 24)), 10, 1e-3),
    "resunet3d": (lambda: segmentation_case((2, 1, 17, 16, 16)), 8, 1e-3),
    "resnet50_3d": (lambda: class_case((4, 1, 5, 9, 11)), 8, 3e-4),
}

# name -> (odd input shape, expected output shape)
ODD_SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "convlstm_nodule": ((1, 1, 5, 13, 11), (1, 1, 3, 9, 7)),
    "convlstm_scanner": ((1, 1, 3, 17, 19), (1, 1)),
    "mil_max": ((1, 1, 3, 17, 21), (1, 1)),
    "mil_mean": ((1, 1, 3, 17, 21), (1, 1)),
    "mil_product": ((1, 1, 3, 17, 21), (1, 1)),
    "cnn3d": ((1, 1, 17, 19, 21), (1, 1)),
    "r3d_denseunet": ((1, 1, 3, 20, 13), (1, 1, 3, 20, 13)),
    "nodule_cnn2d": ((1, 1, 37, 29), (1, 2)),
    "resunet3d": ((1, 1, 7, 19, 13), (1, 1, 7, 19, 13)),
    "resnet50_3d": ((1, 1, 5, 9, 11), (1, 2)),
}


def test_every_registered_model_has_test_cases() -> None:
    assert set(CASES) == set(model_names()) == set(ODD_SIZES)


@pytest.mark.parametrize("name", model_names())
def test_odd_input_size_gives_expected_output_shape(name: str) -> None:
    in_shape, out_shape = ODD_SIZES[name]
    model = build_model(name).eval()
    with torch.no_grad():
        y = model(torch.randn(in_shape))
    assert tuple(y.shape) == out_shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", model_names())
def test_gradients_reach_the_first_layer(name: str) -> None:
    case = CASES[name][0]()
    model = build_model(name).train()
    case.loss(model(case.inputs), case.targets).backward()
    grad = first_conv(model).weight.grad
    assert grad is not None
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("name", model_names())
def test_save_then_load_gives_identical_outputs(name: str, tmp_path: Path) -> None:
    in_shape, _ = ODD_SIZES[name]
    x = torch.randn(in_shape)
    model = build_model(name).train()
    with torch.no_grad():
        model(torch.randn((2, *in_shape[1:])))  # move the batch-norm statistics off their defaults
    model.eval()
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert type(loaded) is type(model)
    assert loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", model_names())
def test_fits_one_small_batch(name: str) -> None:
    make_case, steps, lr = CASES[name]
    losses = train_steps(build_model(name), make_case(), steps, lr)
    assert losses[-1] <= 0.5 * losses[0], f"{name}: loss {losses[0]:.4f} -> {losses[-1]:.4f}"
