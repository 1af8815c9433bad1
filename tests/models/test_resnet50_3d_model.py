"""resnet50_3d: ResNet-50's bottleneck layout in 3D for 16x48x48 ROIs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lungai.models.resnet50_3d import Bottleneck3d, ResNet50_3d, ResNet50_3dConfig


def test_16x48x48_roi_gives_two_logits() -> None:
    model = ResNet50_3d().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 48, 48)).shape == (1, 2)


def test_resnet50_layout_without_pooling_layers() -> None:
    model = ResNet50_3d()
    blocks = [m for m in model.stages if isinstance(m, Bottleneck3d)]
    assert len(blocks) == 3 + 4 + 6 + 3
    assert blocks[-1].body[-1].num_features == 2048
    pools = (nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)
    assert not any(isinstance(m, pools) for m in model.modules())


def test_smaller_first_kernel_and_late_stage_kernels() -> None:
    model = ResNet50_3d()
    assert model.stem[0].kernel_size == (3, 3, 3) and model.stem[0].stride == (1, 1, 1)
    blocks = [m for m in model.stages if isinstance(m, Bottleneck3d)]
    middle = [block.body[3].kernel_size for block in blocks]
    assert middle[: 3 + 4] == [(3, 3, 3)] * 7
    assert middle[7:] == [(1, 3, 3)] * 9


def test_strides_take_a_16x48x48_roi_to_2x6x6() -> None:
    with torch.device("meta"):
        model = ResNet50_3d()
        assert model.stages(model.stem(torch.empty(1, 1, 16, 48, 48))).shape == (1, 2048, 2, 6, 6)


def test_mismatched_stage_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="equal length"):
        ResNet50_3d(ResNet50_3dConfig(blocks=(3, 4, 6)))
