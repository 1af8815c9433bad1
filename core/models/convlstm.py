"""Convolutional LSTM layers that read a volume slice by slice along its depth axis.

The cell follows the ConvLSTM of Shi et al. (2015) as Keras' ``ConvLSTM2D`` implements it
(gate order input, forget, candidate, output; an input-to-state convolution with a bias and a
state-to-state convolution without one; forget-gate bias initialised to 1), so a layer with
the optional terms switched off has exactly Keras' parameter count
``4 * (k * k * (C_in + F) * F + F)``. Two optional terms come from equation (1) of the
nodule paper (3D CNN + bidirectional ConvLSTM hybrid for lung nodule segmentation on
LUNA16):

* peephole connections: the input and forget gates see ``c_{t-1}``, the output gate sees
  ``c_t``, each through an element-wise weight;
* batch-normalised gates (recurrent batch normalisation): the input-to-state and the
  state-to-state pre-activations are normalised separately, and so is the cell state before
  the output ``tanh``.

Deviations from those equations, and why:

* Peephole weights are one value per channel, not one per voxel of the feature map: a
  per-voxel weight would tie the layer to a single in-plane size, and LungAI runs the
  models on any size.
* Batch-norm statistics are shared by all time steps (the input-to-state convolution runs on
  all slices at once); per-step statistics would fix the number of slices, and the nodule
  model must accept any number of slices at inference.

Tensors are laid out ``(N, C, D, H, W)``; the depth axis ``D`` (slices, z) is the time axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class ConvLSTMOptions:
    """Options shared by the cells of a ConvLSTM layer.

    Attributes:
        kernel_size: side of the square in-plane convolution kernel.
        peephole: add the peephole terms of the nodule paper's equation (1).
        gate_norm: batch-normalise the gate pre-activations and the cell state.
    """

    kernel_size: int = 3
    peephole: bool = False
    gate_norm: bool = False


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step on a 2D slice.

    Args:
        in_channels: channels of the input slice.
        hidden_channels: channels ``F`` of the hidden and cell states.
        options: kernel size and the optional peephole / gate-norm terms.

    Raises:
        ValueError: if the kernel size is even (``same`` padding needs an odd kernel).
    """

    def __init__(self, in_channels: int, hidden_channels: int, options: ConvLSTMOptions | None = None) -> None:
        super().__init__()
        options = options or ConvLSTMOptions()
        if options.kernel_size % 2 == 0:
            raise ValueError(f"ConvLSTM kernel size must be odd, got {options.kernel_size}")
        self.hidden_channels = hidden_channels
        self.options = options
        padding = options.kernel_size // 2
        gates = 4 * hidden_channels
        self.input_conv = nn.Conv2d(
            in_channels, gates, options.kernel_size, padding=padding, bias=not options.gate_norm
        )
        self.state_conv = nn.Conv2d(hidden_channels, gates, options.kernel_size, padding=padding, bias=False)
        if options.gate_norm:
            # The input norm's shift plays the role of the gate bias.
            self.input_norm = nn.BatchNorm2d(gates)
            self.state_norm = nn.BatchNorm2d(gates, affine=False)
            self.cell_norm = nn.BatchNorm2d(hidden_channels)
        if options.peephole:
            self.peephole = nn.Parameter(torch.zeros(3, hidden_channels, 1, 1))
        self._init_forget_bias()

    def _init_forget_bias(self) -> None:
        bias = self.input_norm.bias if self.options.gate_norm else self.input_conv.bias
        assert bias is not None  # gate norm is affine; without it the input conv has a bias
        with torch.no_grad():
            bias.zero_()
            bias[self.hidden_channels : 2 * self.hidden_channels].fill_(1.0)

    def project_input(self, x: Tensor) -> Tensor:
        """Input-to-state pre-activations of all four gates.

        Args:
            x: slices ``(B, C_in, H, W)``; several time steps may be stacked along ``B``.

        Returns:
            ``(B, 4F, H, W)``.
        """
        gates = self.input_conv(x)
        return self.input_norm(gates) if self.options.gate_norm else gates

    def forward(self, projected_input: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """Advance one step.

        Args:
            projected_input: :meth:`project_input` of the current slice, ``(N, 4F, H, W)``.
            state: previous hidden and cell states, each ``(N, F, H, W)``.

        Returns:
            The new hidden and cell states.
        """
        hidden, cell = state
        recurrent = self.state_conv(hidden)
        if self.options.gate_norm:
            recurrent = self.state_norm(recurrent)
        i, f, g, o = torch.chunk(projected_input + recurrent, 4, dim=1)
        if self.options.peephole:
            i = i + self.peephole[0] * cell
            f = f + self.peephole[1] * cell
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        if self.options.peephole:
            o = o + self.peephole[2] * cell
        shown_cell = self.cell_norm(cell) if self.options.gate_norm else cell
        hidden = torch.sigmoid(o) * torch.tanh(shown_cell)
        return hidden, cell


class ConvLSTM(nn.Module):
    """A ConvLSTM layer that reads the slices of a volume in one direction.

    Args:
        in_channels: input channels.
        hidden_channels: filters ``F``.
        options: kernel size and optional terms of the cell.
        reverse: read from the last slice to the first (``descending``).
        return_sequences: return the hidden state of every slice (in the volume's slice order,
            whichever the reading direction); otherwise only the state after the last slice read.
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        options: ConvLSTMOptions | None = None,
        reverse: bool = False,
        return_sequences: bool = True,
    ) -> None:
        super().__init__()
        self.cell = ConvLSTMCell(in_channels, hidden_channels, options)
        self.reverse = reverse
        self.return_sequences = return_sequences

    def forward(self, x: Tensor) -> Tensor:
        """Run the layer over the depth axis.

        Args:
            x: ``(N, C_in, D, H, W)``.

        Returns:
            ``(N, F, D, H, W)`` with ``return_sequences``, else ``(N, F, H, W)``.
        """
        n, c, d, h, w = x.shape
        slices = x.permute(0, 2, 1, 3, 4).reshape(n * d, c, h, w)
        projected = self.cell.project_input(slices).reshape(n, d, -1, h, w)
        zeros = x.new_zeros(n, self.cell.hidden_channels, h, w)
        state = (zeros, zeros)
        order = range(d - 1, -1, -1) if self.reverse else range(d)
        outputs: list[Tensor] = []
        for t in order:
            state = self.cell(projected[:, t], state)
            outputs.append(state[0])
        if not self.return_sequences:
            return state[0]
        if self.reverse:
            outputs.reverse()
        return torch.stack(outputs, dim=2)


class BidirectionalConvLSTM(nn.Module):
    """Two ConvLSTM layers reading the slices in opposite directions, outputs concatenated.

    Matches Keras' ``Bidirectional(ConvLSTM2D(F, return_sequences=True))`` with the default
    ``concat`` merge: ``2F`` output channels, forward direction first.

    Args:
        in_channels: input channels.
        hidden_channels: filters ``F`` of each direction.
        options: kernel size and optional terms of both cells.
    """

    def __init__(self, in_channels: int, hidden_channels: int, options: ConvLSTMOptions | None = None) -> None:
        super().__init__()
        self.forward_layer = ConvLSTM(in_channels, hidden_channels, options)
        self.backward_layer = ConvLSTM(in_channels, hidden_channels, options, reverse=True)

    def forward(self, x: Tensor) -> Tensor:
        """Run both directions.

        Args:
            x: ``(N, C_in, D, H, W)``.

        Returns:
            ``(N, 2F, D, H, W)``.
        """
        return torch.cat([self.forward_layer(x), self.backward_layer(x)], dim=1)
