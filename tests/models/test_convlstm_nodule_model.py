"""convlstm_nodule: the nodule paper's Table 1, layer by layer."""

from __future__ import annotations

import pytest
import torch
from model_helpers import keras_parameter_count, segmentation_case

from lungai.models.convlstm import ConvLSTMCell
from lungai.models.convlstm_nodule import ConvLSTMNodule, ConvLSTMNoduleConfig

TABLE_1 = [4, 208, 1_736, 32, 27_776, 147_712, 4_616, 9]


def layers_in_table_order(model: ConvLSTMNodule) -> list[torch.nn.Module]:
    return [model.input_norm, model.conv1, model.conv2, model.norm2, model.lstm1, model.lstm2, model.conv3, model.head]


def test_layer_parameter_counts_match_table_1_exactly() -> None:
    model = ConvLSTMNodule()
    assert [keras_parameter_count(layer) for layer in layers_in_table_order(model)] == TABLE_1
    assert keras_parameter_count(model) == sum(TABLE_1)


def test_kernel_sizes_follow_table_1() -> None:
    model = ConvLSTMNodule()
    assert model.conv1.kernel_size == (1, 5, 5)
    assert model.conv2.kernel_size == (3, 3, 3)
    assert model.conv3.kernel_size == (1, 3, 3)
    assert model.head.kernel_size == (1, 1, 1)


@pytest.mark.parametrize("depth", [10, 3, 23])
def test_64x64_rois_with_any_number_of_slices(depth: int) -> None:
    model = ConvLSTMNodule().eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, depth, 64, 64))
    assert y.shape == (1, 1, depth - 2, 60, 60)


@pytest.mark.parametrize(("peephole", "gate_norm"), [(True, False), (False, True), (True, True)])
def test_equation_1_options_keep_shapes_and_add_parameters(peephole: bool, gate_norm: bool) -> None:
    model = ConvLSTMNodule(ConvLSTMNoduleConfig(peephole=peephole, gate_norm=gate_norm)).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 4, 9, 9))
    assert y.shape == (1, 1, 2, 5, 5)
    assert keras_parameter_count(model) > sum(TABLE_1)


def test_too_small_input_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        ConvLSTMNodule()(torch.randn(1, 1, 2, 64, 64))


def test_equation_1_terms_receive_gradients() -> None:
    model = ConvLSTMNodule(ConvLSTMNoduleConfig(peephole=True, gate_norm=True)).train()
    case = segmentation_case((2, 1, 4, 9, 9), crop=(1, 2, 2))
    case.loss(model(case.inputs), case.targets).backward()
    cells = [m for m in model.modules() if isinstance(m, ConvLSTMCell)]
    assert len(cells) == 4
    for cell in cells:
        assert cell.peephole.grad.abs().sum() > 0
        assert cell.input_norm.weight.grad.abs().sum() > 0
        assert cell.cell_norm.weight.grad.abs().sum() > 0
