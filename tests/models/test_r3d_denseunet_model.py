"""r3d_denseunet: the tumour paper's Table 1 shapes and layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lungai.models.convlstm import ConvLSTM
from lungai.models.r3d_denseunet import PseudoDenseBlock, R3DDenseUNet

PAPER_INPUT = (1, 1, 8, 256, 256)


def test_paper_patch_size_in_and_out_shape_only() -> None:
    with torch.device("meta"):
        model = R3DDenseUNet()
        assert model(torch.empty(PAPER_INPUT)).shape == PAPER_INPUT


@pytest.mark.slow
def test_paper_patch_size_in_and_out() -> None:
    model = R3DDenseUNet().eval()
    with torch.no_grad():
        y = model(torch.randn(PAPER_INPUT))
    assert y.shape == PAPER_INPUT
    assert torch.isfinite(y).all()


def test_bottleneck_is_three_convlstms_of_256_at_32x32() -> None:
    model = R3DDenseUNet()
    lstms = [m for m in model.bottleneck if isinstance(m, ConvLSTM)]
    assert [lstm.cell.hidden_channels for lstm in lstms] == [256, 256, 256]
    seen: list[tuple[int, ...]] = []
    with torch.device("meta"):
        meta_model = R3DDenseUNet()
    meta_model.bottleneck.register_forward_hook(lambda _m, args, _out: seen.append(tuple(args[0].shape)))
    meta_model(torch.empty(PAPER_INPUT, device="meta"))
    assert seen == [(1, 128, 8, 32, 32)]


def test_encoder_blocks_have_the_papers_filters_and_spatial_dropout() -> None:
    model = R3DDenseUNet()
    assert [block.conv2[0].out_channels for block in model.encoder] == [32, 64, 128]
    for block in model.encoder:
        assert isinstance(block.dropout, nn.Dropout3d) and block.dropout.p == 0.1
    assert [block.conv2[0].out_channels for block in model.decoder] == [128, 64, 32]


def test_pooling_and_upsampling_are_in_plane_only() -> None:
    model = R3DDenseUNet()
    assert model.pool.kernel_size == (1, 2, 2)
    assert model.upsample.scale_factor == (1.0, 2.0, 2.0)


def test_pseudo_dense_block_feeds_the_input_to_its_second_convolution() -> None:
    block = PseudoDenseBlock(3, 5)
    assert block.conv2[0].in_channels == 3 + 5
    assert block(torch.randn(1, 3, 2, 4, 4)).shape == (1, 5, 2, 4, 4)
