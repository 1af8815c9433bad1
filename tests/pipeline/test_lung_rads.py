"""The Lung-RADS v2022 baseline size rule, at and around every threshold."""

from __future__ import annotations

import pytest

from lungai.io.findings import Centroid, Characteristics, Nodule
from lungai.pipeline.lung_rads import CALCIFICATION_RULE, lung_rads_category, with_characteristics


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


def _rated_nodule(kind: str = "nodule") -> Nodule:
    return Nodule(id=1, centroid=Centroid((0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0, 0, 0)), long_axis_mm=12.0,
                  short_axis_mm=10.0, volume_mm3=600.0, mean_hu=30.0, type="solid", detection_score=0.99,
                  lung_rads=lung_rads_category("solid", 11.0), kind=kind, solid_component_mm=None)


def _characteristics(calcification: float, texture: str = "solid") -> Characteristics:
    return Characteristics(texture=texture, texture_probability=0.7, calcification_probability=calcification,
                           spiculation_probability=0.1, lobulation_probability=0.1, ill_defined_margin_probability=0.1)


def test_estimated_calcification_at_the_threshold_is_category_1_by_its_own_rule() -> None:
    settings = {"calcified_category1_from": 0.8, "texture_for_lung_rads": False}
    calcified = with_characteristics(_rated_nodule(), _characteristics(0.8), settings)
    assert calcified is not None and (calcified.category, calcified.rule) == ("1", CALCIFICATION_RULE)
    below = with_characteristics(_rated_nodule(), _characteristics(0.79), settings)
    assert below is not None and (below.category, below.rule) == ("4A", "size rule")
    mass = with_characteristics(_rated_nodule("mass"), _characteristics(0.99), settings)
    assert mass is not None and mass.category == "4A"


def test_the_texture_estimate_sets_the_type_only_where_the_weights_say_it_beat_the_hu_rule() -> None:
    ground_glass = _characteristics(0.0, texture="ground-glass")
    kept = with_characteristics(_rated_nodule(), ground_glass, {"calcified_category1_from": 0.8})
    used = with_characteristics(_rated_nodule(), ground_glass, {"calcified_category1_from": 0.8,
                                                                 "texture_for_lung_rads": True})
    assert kept is not None and used is not None and (kept.category, used.category) == ("4A", "2")
