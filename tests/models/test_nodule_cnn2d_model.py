"""nodule_cnn2d: the classification paper's layout on 124x124 ROIs."""

from __future__ import annotations

import torch
from torch import nn

from lungai.models.nodule_cnn2d import NoduleCNN2d


def test_124x124_roi_gives_two_logits() -> None:
    model = NoduleCNN2d().eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 124, 124)).shape == (3, 2)


def test_feature_map_is_13x13_at_124_so_the_grid_pool_is_an_identity() -> None:
    model = NoduleCNN2d().eval()
    x = torch.randn(1, 1, 124, 124)
    with torch.no_grad():
        features = model.features(x)
        assert features.shape == (1, 64, 13, 13)
        torch.testing.assert_close(model.grid(features), features)


def test_layers_follow_the_paper() -> None:
    model = NoduleCNN2d()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 3
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 3
    hidden, dropout, output = model.classifier[0], model.classifier[2], model.classifier[3]
    assert hidden.out_features == 128
    assert isinstance(dropout, nn.Dropout) and dropout.p == 0.3
    assert output.out_features == 2
