"""The 3D CNN + bidirectional ConvLSTM hybrid of the nodule paper."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor, nn

from lungai.models.blocks import spatial_crop
from lungai.models.convlstm import BidirectionalConvLSTM, ConvLSTMOptions


@dataclass
class ConvLSTMNoduleConfig:
    """Configuration of :class:`ConvLSTMNodule`; the defaults reproduce the paper's Table 1.

    Attributes:
        in_channels: input channels (1: HU-normalised CT).
        conv_filters: filters of the two 3D convolutions before the ConvLSTMs.
        lstm_filters: filters per direction of the two bidirectional ConvLSTMs.
        head_filters: filters of the (1, 3, 3) convolution after the ConvLSTMs.
        out_channels: output channels (1: nodule mask logits).
        peephole: add the peephole terms of the paper's equation (1).
        gate_norm: batch-normalise the ConvLSTM gates as in the paper's equation (1).
        crop: slices / rows / columns removed from each side of the output, as (D, H, W).
    """

    in_channels: int = 1
    conv_filters: int = 8
    lstm_filters: tuple[int, int] = (16, 32)
    head_filters: int = 8
    out_channels: int = 1
    peephole: bool = False
    gate_norm: bool = False
    crop: tuple[int, int, int] = (1, 2, 2)


class ConvLSTMNodule(nn.Module):
    """3D CNN + bidirectional ConvLSTM hybrid for nodule masks around candidates.

    Paper: the nodule paper, a 3D CNN + bidirectional ConvLSTM hybrid for lung nodule
    segmentation and candidate detection on LUNA16 (precision 0.982, recall 0.948 at patch
    level). Layers as in its Table 1: BN -> Conv3D (1,5,5) -> Conv3D (3,3,3) -> BN ->
    bidirectional ConvLSTM -> bidirectional ConvLSTM -> Conv3D (1,3,3) -> Conv3D (1,1,1) ->
    Cropping (1,2,2). Input ``(N, 1, D, H, W)``: 64x64 ROIs around candidates, 10 slices in
    training, any number (at least 3) at inference; output mask logits
    ``(N, 1, D - 2, H - 4, W - 4)``; apply a sigmoid for probabilities.

    Where LungAI deviates, and why:

    * Filter numbers are not printed in the paper; they are the only ones that give Table 1's
      parameter counts (4, 208, 1,736, 32, 27,776, 147,712, 4,616, 9 in Keras' convention):
      8, 8, ConvLSTMs of 16 and 32 per direction, 8, 1.
    * Table 1's counts are those of a stock Keras ConvLSTM, without the peephole and
      batch-norm terms of the paper's equation (1); so these terms are options
      (``peephole``, ``gate_norm``), off by default. See :mod:`lungai.models.convlstm` for
      how they are implemented.
    * Padding is ``same`` everywhere (the paper does not say); the final cropping then
      removes the border voxels whose context was padded.
    * ReLU follows each hidden convolution (the paper does not name the activations); the
      head returns logits instead of sigmoid probabilities, for a numerically stable BCE.

    Args:
        config: architecture options; ``None`` uses the paper's.

    Raises:
        ValueError: from :meth:`forward` when the input is too small to crop.
    """

    output_activation: ClassVar[str] = "sigmoid"

    def __init__(self, config: ConvLSTMNoduleConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ConvLSTMNoduleConfig()
        options = ConvLSTMOptions(kernel_size=3, peephole=config.peephole, gate_norm=config.gate_norm)
        f = config.conv_filters
        lstm1, lstm2 = config.lstm_filters
        self.input_norm = nn.BatchNorm3d(config.in_channels)
        self.conv1 = nn.Conv3d(config.in_channels, f, (1, 5, 5), padding=(0, 2, 2))
        self.conv2 = nn.Conv3d(f, f, 3, padding=1)
        self.norm2 = nn.BatchNorm3d(f)
        self.lstm1 = BidirectionalConvLSTM(f, lstm1, options)
        self.lstm2 = BidirectionalConvLSTM(2 * lstm1, lstm2, options)
        self.conv3 = nn.Conv3d(2 * lstm2, config.head_filters, (1, 3, 3), padding=(0, 1, 1))
        self.head = nn.Conv3d(config.head_filters, config.out_channels, 1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Predict nodule mask logits for the centre of the ROI.

        Args:
            x: ``(N, C, D, H, W)`` HU-normalised ROIs.

        Returns:
            ``(N, out_channels, D - 2cd, H - 2ch, W - 2cw)`` logits, ``(cd, ch, cw)`` = ``crop``.

        Raises:
            ValueError: if cropping would leave nothing.
        """
        crop = self.config.crop
        if any(size <= 2 * c for size, c in zip(x.shape[2:], crop, strict=True)):
            raise ValueError(f"input of spatial size {tuple(x.shape[2:])} is too small to crop {crop} from each side")
        y = self.input_norm(x)
        y = self.act(self.conv1(y))
        y = self.norm2(self.act(self.conv2(y)))
        y = self.lstm2(self.lstm1(y))
        y = self.head(self.act(self.conv3(y)))
        kept = [size - 2 * c for size, c in zip(y.shape[2:], crop, strict=True)]
        return spatial_crop(y, kept, start=crop)


@dataclass
class ConvLSTMNoduleEnsembleConfig(ConvLSTMNoduleConfig):
    """Configuration of :class:`ConvLSTMNoduleEnsemble`: one member's architecture, and how many.

    Attributes:
        members: the number of :class:`ConvLSTMNodule` members (each with the inherited options).
        boundary_members: how many of them, the last ones, were trained with nodules against the lung
            boundary (``lungai train detection --pleural-fraction``): the detector weights them more
            at candidates near the boundary (:func:`lungai.pipeline.detection.detection_scores`).
        flips: the detector scores the candidates the whole ensemble rescores in each of its
            test-time flips (:data:`lungai.pipeline.detection.FLIPS`), as it always does for an
            ensemble with boundary members.
    """

    members: int = 3
    boundary_members: int = 0
    flips: bool = False


class ConvLSTMNoduleEnsemble(nn.Module):
    """Independently trained :class:`ConvLSTMNodule` s whose mask logits are averaged.

    Not in the paper. The members are separate trainings of one recipe (other seeds, other epochs);
    averaging their logits removes much of one training's idiosyncratic false positives and misses
    (docs/results.md, "Detection"). :attr:`members` stays reachable: the detector averages the
    members' ROI scores rather than their masks, and scores with the first member alone where the
    others cannot change the outcome (:func:`lungai.pipeline.detection.roi_scores`,
    :func:`lungai.pipeline.detection.detection_scores`).

    Args:
        config: the members' architecture and their number; ``None`` uses the paper's, 3 members.

    Raises:
        ValueError: for fewer than one member.
    """

    output_activation: ClassVar[str] = "sigmoid"

    def __init__(self, config: ConvLSTMNoduleEnsembleConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ConvLSTMNoduleEnsembleConfig()
        if config.members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {config.members}")
        if not 0 <= config.boundary_members < config.members:
            raise ValueError(f"an ensemble of {config.members} members needs at least one that is not a boundary "
                             f"member, got {config.boundary_members} boundary members")
        member = ConvLSTMNoduleConfig(**{f.name: getattr(config, f.name) for f in fields(ConvLSTMNoduleConfig)})
        self.members = nn.ModuleList(ConvLSTMNodule(member) for _ in range(config.members))

    @classmethod
    def of(cls, members: Sequence[ConvLSTMNodule], boundary_members: int = 0,
           flips: bool = False) -> ConvLSTMNoduleEnsemble:
        """The ensemble of trained members (copied); they must share one architecture.

        Args:
            members: the trained networks, boundary members last.
            boundary_members: how many of them (the last) were trained with nodules against the boundary.
            flips: rescored candidates are scored in every test-time flip (:attr:`ConvLSTMNoduleEnsembleConfig.flips`).

        Raises:
            ValueError: no members, members of different configurations, or no member that is not a
                boundary member.
        """
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0].config
        if any(m.config != first for m in members[1:]):
            raise ValueError("ensemble members must share one configuration: "
                             + "; ".join(str(m.config) for m in members))
        ensemble = cls(ConvLSTMNoduleEnsembleConfig(**asdict(first), members=len(members),
                                                   boundary_members=boundary_members, flips=flips))
        for target, source in zip(ensemble.members, members, strict=True):
            target.load_state_dict(source.state_dict())
        return ensemble.eval()

    def forward(self, x: Tensor) -> Tensor:
        """The members' mask logits, averaged: same shape as one member's output."""
        return torch.stack([member(x) for member in self.members]).mean(dim=0)
