"""The Lung-RADS v2022 baseline size rule, at and around every threshold."""

from __future__ import annotations

import pytest

from lungai.pipeline.lung_rads import lung_rads_category


@pytest.mark.parametrize("size,expected", [
    (0.0, "2"), (5.9, "2"), (5.94, "2"), (5.96, "3"), (6.0, "3"), (7.9, "3"), (8.0, "4A"),
    (14.9, "4A"), (15.0, "4B"), (24.0, "4B"),
])
def test_solid(size, expected) -> None:
    assert lung_rads_category("solid", size).category == expected


@pytest.mark.parametrize("size,solid,expected", [
    (5.9, 5.0, "2"), (6.0, None, "3"), (12.0, 5.9, "3"), (12.0, 6.0, "4A"), (12.0, 7.9, "4A"),
    (12.0, 8.0, "4B"), (30.0, 20.0, "4B"),
])
def test_part_solid(size, solid, expected) -> None:
    assert lung_rads_category("part-solid", size, solid).category == expected


@pytest.mark.parametrize("size,expected", [(5.0, "2"), (29.9, "2"), (30.0, "3"), (45.0, "3")])
def test_ground_glass(size, expected) -> None:
    assert lung_rads_category("ground-glass", size).category == expected


def test_labelled_as_a_size_rule_and_bad_input_refused() -> None:
    assert lung_rads_category("solid", 10.0).rule == "size rule"
    with pytest.raises(ValueError, match="type"):
        lung_rads_category("calcified", 10.0)
    with pytest.raises(ValueError, match=">= 0"):
        lung_rads_category("solid", -1.0)
