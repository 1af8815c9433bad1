"""convlstm_nodule: the nodule paper's Table 1, layer by layer; the ensemble of trained ones."""

from __future__ import annotations

import pytest
import torch
from model_helpers import keras_parameter_count, segmentation_case

from lungai.models.checkpoint import load_model, save_model
from lungai.models.convlstm import ConvLSTMCell
from lungai.models.convlstm_nodule import (
    ConvLSTMNodule,
    ConvLSTMNoduleConfig,
    ConvLSTMNoduleEnsemble,
    ConvLSTMNoduleEnsembleConfig,
)

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


def _member(seed: int, width: int = 2) -> ConvLSTMNodule:
    torch.manual_seed(seed)
    config = ConvLSTMNoduleConfig(conv_filters=width, lstm_filters=(width, width), head_filters=width)
    return ConvLSTMNodule(config).eval()


def test_an_ensemble_averages_its_members_logits_and_keeps_them_reachable() -> None:
    members = [_member(seed) for seed in range(3)]
    ensemble = ConvLSTMNoduleEnsemble.of(members)
    x = torch.randn(2, 1, 10, 32, 32)
    with torch.no_grad():
        outputs = [m(x) for m in members]
        averaged = ensemble(x)
    assert averaged.shape == outputs[0].shape
    torch.testing.assert_close(averaged, torch.stack(outputs).mean(dim=0))
    assert all((averaged - o).abs().max() > 1e-4 for o in outputs)  # not any one member
    with torch.no_grad():
        torch.testing.assert_close(ensemble.members[0](x), outputs[0])
    assert ensemble.config.members == 3 and ensemble.config.conv_filters == 2


def test_an_ensemble_refuses_members_of_different_widths_or_none() -> None:
    with pytest.raises(ValueError, match="share one configuration"):
        ConvLSTMNoduleEnsemble.of([_member(0, 2), _member(1, 3)])
    with pytest.raises(ValueError, match="at least one member"):
        ConvLSTMNoduleEnsemble.of([])
    with pytest.raises(ValueError, match="at least one member"):
        ConvLSTMNoduleEnsemble(ConvLSTMNoduleEnsembleConfig(members=0))
    with pytest.raises(ValueError, match="not a boundary member"):
        ConvLSTMNoduleEnsemble.of([_member(0), _member(1)], boundary_members=2)


def test_an_ensemble_checkpoint_loads_as_the_same_ensemble(tmp_path) -> None:
    ensemble = ConvLSTMNoduleEnsemble.of([_member(seed) for seed in range(2)], boundary_members=1)
    loaded = load_model(save_model(ensemble, tmp_path / "ensemble"))
    x = torch.randn(1, 1, 10, 32, 32)
    assert isinstance(loaded, ConvLSTMNoduleEnsemble) and len(loaded.members) == 2
    assert loaded.config.boundary_members == 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ensemble(x))
