"""The registry: names, construction, and the summary behind ``lungai info --models``."""

from __future__ import annotations

import pytest
import torch
from model_helpers import keras_parameter_count

from lungai.models.emphysema_baselines import MILCNN2dConfig
from lungai.models.nodule_cnn2d import NoduleCNN2dConfig
from lungai.models.registry import build_model, describe_models, get_architecture, get_spec, model_names
from lungai.models.summary import count_parameters

EXPECTED_NAMES = [
    "convlstm_nodule", "convlstm_scanner", "mil_max", "mil_mean", "mil_product", "cnn3d",
    "r3d_denseunet", "nodule_cnn2d", "resunet3d", "resnet50_3d",
]


def test_registry_names() -> None:
    assert model_names() == EXPECTED_NAMES


def test_describe_models_rows() -> None:
    rows = describe_models()
    assert [row["name"] for row in rows] == EXPECTED_NAMES
    for row in rows:
        assert {"name", "class", "paper", "task", "parameters", "parameters_keras", "input_shape",
                "output_activation"} <= set(row)
        assert row["parameters"] > 0 and row["parameters_keras"] >= row["parameters"]
        assert row["output_activation"] in ("sigmoid", "softmax")
    by_name = {row["name"]: row for row in rows}
    assert by_name["convlstm_nodule"]["parameters_keras"] == 182_093
    assert by_name["convlstm_scanner"]["input_shape"] == (1, 35, 128, 128)
    assert by_name["mil_product"]["class"] == "MILCNN2d"


def test_describe_counts_equal_real_models() -> None:
    model = build_model("nodule_cnn2d")
    row = next(row for row in describe_models() if row["name"] == "nodule_cnn2d")
    assert row["parameters"] == count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert row["parameters_keras"] == keras_parameter_count(model)


def test_mil_names_differ_only_in_pooling() -> None:
    assert [build_model(n).config.pooling for n in ("mil_max", "mil_mean", "mil_product")] == ["max", "mean", "product"]


def test_build_with_a_custom_config() -> None:
    model = build_model("nodule_cnn2d", NoduleCNN2dConfig(num_classes=3))
    assert model(torch.randn(2, 1, 124, 124)).shape == (2, 3)


def test_build_refuses_another_architectures_config() -> None:
    with pytest.raises(TypeError, match="NoduleCNN2dConfig"):
        build_model("nodule_cnn2d", MILCNN2dConfig())


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(KeyError, match="convlstm_nodule"):
        get_spec("unet")
    with pytest.raises(KeyError, match="unknown architecture"):
        get_architecture("UNet")
