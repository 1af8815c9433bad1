"""ConvLSTM cell and layers: Keras-equal parameter counts, directions, optional terms."""

from __future__ import annotations

import math

import pytest
import torch
from model_helpers import keras_parameter_count

from lungai.models.convlstm import BidirectionalConvLSTM, ConvLSTM, ConvLSTMCell, ConvLSTMOptions


def keras_convlstm2d_count(in_channels: int, filters: int, kernel: int = 3) -> int:
    """Keras ConvLSTM2D: input kernel, recurrent kernel and bias for four gates."""
    return 4 * (kernel * kernel * (in_channels + filters) * filters + filters)


@pytest.mark.parametrize(("in_channels", "filters"), [(8, 16), (32, 32), (1, 5)])
def test_plain_layer_has_keras_parameter_count(in_channels: int, filters: int) -> None:
    assert keras_parameter_count(ConvLSTM(in_channels, filters)) == keras_convlstm2d_count(in_channels, filters)


def test_bidirectional_counts_both_directions() -> None:
    layer = BidirectionalConvLSTM(8, 16)
    assert keras_parameter_count(layer) == 2 * keras_convlstm2d_count(8, 16) == 27_776


def test_peepholes_add_one_weight_per_channel_and_gate() -> None:
    plain = ConvLSTM(4, 6)
    peephole = ConvLSTM(4, 6, ConvLSTMOptions(peephole=True))
    assert keras_parameter_count(peephole) - keras_parameter_count(plain) == 3 * 6


def test_forget_gate_bias_starts_at_one() -> None:
    for options in (ConvLSTMOptions(), ConvLSTMOptions(gate_norm=True)):
        cell = ConvLSTMCell(2, 4, options)
        bias = cell.input_norm.bias if options.gate_norm else cell.input_conv.bias
        assert torch.equal(bias[4:8], torch.ones(4))
        assert torch.equal(bias[:4], torch.zeros(4)) and torch.equal(bias[8:], torch.zeros(8))


@pytest.mark.parametrize(
    "options",
    [ConvLSTMOptions(), ConvLSTMOptions(peephole=True), ConvLSTMOptions(gate_norm=True),
     ConvLSTMOptions(kernel_size=5, peephole=True, gate_norm=True)],
)
def test_output_shapes(options: ConvLSTMOptions) -> None:
    x = torch.randn(2, 3, 4, 7, 5)
    assert ConvLSTM(3, 6, options)(x).shape == (2, 6, 4, 7, 5)
    assert ConvLSTM(3, 6, options, return_sequences=False)(x).shape == (2, 6, 7, 5)
    assert BidirectionalConvLSTM(3, 6, options)(x).shape == (2, 12, 4, 7, 5)


def test_last_state_is_the_last_step_of_the_sequence() -> None:
    layer = ConvLSTM(2, 3).eval()
    x = torch.randn(1, 2, 5, 6, 6)
    with torch.no_grad():
        sequence = layer(x)
        layer.return_sequences = False
        torch.testing.assert_close(layer(x), sequence[:, :, -1])


def test_descending_layer_reads_the_slices_in_reverse() -> None:
    forward = ConvLSTM(2, 3).eval()
    backward = ConvLSTM(2, 3, reverse=True).eval()
    backward.load_state_dict(forward.state_dict())
    x = torch.randn(1, 2, 5, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(backward(x), forward(x.flip(2)).flip(2))


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_step_matches_the_convlstm_equations_by_hand() -> None:
    cell = ConvLSTMCell(1, 1, ConvLSTMOptions(kernel_size=1, peephole=True))
    with torch.no_grad():
        cell.input_conv.weight.copy_(torch.tensor([0.5, -1.0, 2.0, 1.5]).view(4, 1, 1, 1))
        cell.input_conv.bias.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        cell.state_conv.weight.copy_(torch.tensor([1.0, 0.5, -0.5, 2.0]).view(4, 1, 1, 1))
        cell.peephole.copy_(torch.tensor([0.3, -0.2, 0.7]).view(3, 1, 1, 1))
    x, h, c = 0.8, -0.4, 0.6
    i = _sigmoid(0.5 * x + 0.1 + 1.0 * h + 0.3 * c)
    f = _sigmoid(-1.0 * x + 0.2 + 0.5 * h - 0.2 * c)
    g = math.tanh(2.0 * x + 0.3 - 0.5 * h)
    c_new = f * c + i * g
    h_new = _sigmoid(1.5 * x + 0.4 + 2.0 * h + 0.7 * c_new) * math.tanh(c_new)
    with torch.no_grad():
        h_out, c_out = cell(cell.project_input(torch.full((1, 1, 1, 1), x)),
                            (torch.full((1, 1, 1, 1), h), torch.full((1, 1, 1, 1), c)))
    assert c_out.item() == pytest.approx(c_new, rel=1e-6)
    assert h_out.item() == pytest.approx(h_new, rel=1e-6)


def test_even_kernel_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        ConvLSTMCell(1, 2, ConvLSTMOptions(kernel_size=4))
