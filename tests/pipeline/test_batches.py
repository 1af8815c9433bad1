"""The shared batched prediction: every item once, in order, whatever the batch size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lungai.inference.batches import batched_outputs


class _Recorder(nn.Module):
    """Doubles its input and records each call's batch size and whether gradients were on."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return (x * 2 * self.weight).double()


@pytest.mark.parametrize(("count", "batch_size", "sizes"), [(7, 3, [3, 3, 1]), (4, 4, [4]), (2, 8, [2]), (0, 2, [])])
def test_every_item_once_in_order(count: int, batch_size: int, sizes: list[int]) -> None:
    items = torch.arange(count, dtype=torch.float32)[:, None]
    model = _Recorder()
    outputs = list(batched_outputs(model, count, lambda r: items[r.start:r.stop], batch_size))
    assert [size for size, _ in model.calls] == sizes
    assert not any(grad for _, grad in model.calls)
    assert all(out.dtype == torch.float32 and out.device.type == "cpu" for out in outputs)
    joined = torch.cat(outputs) if outputs else torch.empty(0, 1)
    assert torch.equal(joined, items * 2)


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        next(batched_outputs(_Recorder(), 3, lambda r: torch.zeros(len(r), 1), 0))
