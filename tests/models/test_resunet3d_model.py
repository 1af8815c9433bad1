"""resunet3d: residual units, four levels, 48x192x192 inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lungai.models.resunet3d import ResidualUnit3d, ResUNet3d

PAPER_INPUT = (1, 1, 48, 192, 192)


def test_paper_input_size_in_and_out_shape_only() -> None:
    with torch.device("meta"):
        model = ResUNet3d()
        assert model(torch.empty(PAPER_INPUT)).shape == PAPER_INPUT


@pytest.mark.slow
def test_paper_input_size_in_and_out() -> None:
    model = ResUNet3d().eval()
    with torch.no_grad():
        y = model(torch.randn(PAPER_INPUT))
    assert y.shape == PAPER_INPUT
    assert torch.isfinite(y).all()


def test_four_down_levels_and_transposed_convolution_decoder() -> None:
    model = ResUNet3d()
    assert len(model.encoder) == 4 and isinstance(model.pool, nn.MaxPool3d)
    assert all(isinstance(up, nn.ConvTranspose3d) for up in model.upsamplers)
    assert model.head.kernel_size == (1, 1, 1)


def test_residual_unit_projects_the_identity_only_when_channels_change() -> None:
    assert isinstance(ResidualUnit3d(4, 8).shortcut, nn.Conv3d)
    assert ResidualUnit3d(4, 8).shortcut.kernel_size == (1, 1, 1)
    assert isinstance(ResidualUnit3d(8, 8).shortcut, nn.Identity)
    norms = [m for m in ResidualUnit3d(4, 8).body if isinstance(m, nn.InstanceNorm3d)]
    assert len(norms) == 2


def test_residual_unit_with_zeroed_body_passes_the_identity_through_relu() -> None:
    unit = ResidualUnit3d(3, 3)
    for norm in (unit.body[1], unit.body[4]):
        nn.init.zeros_(norm.weight)
        nn.init.zeros_(norm.bias)
    x = torch.randn(1, 3, 4, 4, 4)
    torch.testing.assert_close(unit(x), torch.relu(x))
