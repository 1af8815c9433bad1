"""convlstm_scanner and its baselines: the emphysema paper's sizes, shapes and pooling."""

from __future__ import annotations

import pytest
import torch
from model_helpers import keras_parameter_count

from lungai.models.convlstm import ConvLSTM
from lungai.models.convlstm_scanner import ConvLSTMScanner, ConvLSTMScannerConfig
from lungai.models.emphysema_baselines import CNN3d, MILCNN2d, MILCNN2dConfig, pool_instance_logits
from lungai.models.registry import build_model

PAPER_INPUT = (1, 1, 35, 128, 128)


@pytest.mark.parametrize(
    ("name", "paper_count", "tolerance"),
    [("convlstm_scanner", 901_793, 0.02), ("mil_max", 1_011_393, 0.01), ("mil_mean", 1_011_393, 0.01),
     ("mil_product", 1_011_393, 0.01), ("cnn3d", 958_213, 0.01)],
)
def test_parameter_count_matches_the_paper(name: str, paper_count: int, tolerance: float) -> None:
    count = keras_parameter_count(build_model(name))
    assert abs(count - paper_count) <= tolerance * paper_count, count


def test_scanner_units_alternate_direction_with_the_papers_filters() -> None:
    model = ConvLSTMScanner()
    lstms = [m for m in model.modules() if isinstance(m, ConvLSTM)]
    assert [lstm.cell.hidden_channels for lstm in lstms] == [32, 32, 64, 64]
    assert [lstm.reverse for lstm in lstms] == [False, True, False, True]
    assert [lstm.return_sequences for lstm in lstms] == [True, True, True, False]


@pytest.mark.parametrize("name", ["mil_max", "cnn3d"])
def test_paper_input_size_gives_one_logit_per_volume(name: str) -> None:
    model = build_model(name).eval()
    with torch.no_grad():
        y = model(torch.randn(PAPER_INPUT))
    assert y.shape == (1, 1)


def test_scanner_ends_in_an_8x8_state_and_one_logit_at_the_paper_size() -> None:
    model = ConvLSTMScanner().eval()
    with torch.no_grad():
        features = model.units(torch.randn(PAPER_INPUT))
        logit = model.fc(features.flatten(1))
    assert features.shape == (1, 64, 8, 8)
    assert logit.shape == (1, 1)


def test_scanner_direction_names_are_checked() -> None:
    with pytest.raises(ValueError, match="direction"):
        ConvLSTMScanner(ConvLSTMScannerConfig(directions=("up", "down", "up", "down")))


def test_mil_instance_logits_score_each_slice() -> None:
    model = MILCNN2d().eval()
    with torch.no_grad():
        assert model.instance_logits(torch.randn(2, 1, 5, 16, 16)).shape == (2, 5)


def test_mil_instance_scores_do_not_depend_on_other_slices() -> None:
    model = MILCNN2d().eval()
    x = torch.randn(1, 1, 4, 16, 16)
    changed = x.clone()
    changed[:, :, 3] = torch.randn(16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.instance_logits(changed)[:, :3], model.instance_logits(x)[:, :3])


def test_pooling_by_hand() -> None:
    p = torch.tensor([[0.1, 0.5, 0.8]])
    logits = torch.logit(p)
    pooled = {name: torch.sigmoid(pool_instance_logits(logits, name)).item() for name in ("max", "mean", "product")}
    assert pooled["max"] == pytest.approx(0.8, rel=1e-5)
    assert pooled["mean"] == pytest.approx((0.1 + 0.5 + 0.8) / 3, rel=1e-5)
    assert pooled["product"] == pytest.approx(1 - 0.9 * 0.5 * 0.2, rel=1e-5)


def test_pooling_is_finite_for_saturated_slices() -> None:
    logits = torch.tensor([[-200.0, -150.0], [200.0, -200.0]], requires_grad=True)
    for name in ("max", "mean", "product"):
        y = pool_instance_logits(logits, name)
        y.sum().backward()
        assert torch.isfinite(y).all() and torch.isfinite(logits.grad).all()
        logits.grad = None


def test_unknown_pooling_is_refused() -> None:
    with pytest.raises(ValueError, match="pooling"):
        MILCNN2d(MILCNN2dConfig(pooling="median"))


def test_cnn3d_reaches_the_2x8x8_grid_at_the_paper_size() -> None:
    model = CNN3d().eval()
    with torch.no_grad():
        assert model.features(torch.randn(PAPER_INPUT)).shape == (1, 64, 2, 8, 8)
