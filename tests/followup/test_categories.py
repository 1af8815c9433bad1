"""Every Lung-RADS v2022 follow-up rule and the Fleischner 2017 recommendations, each with a case."""

from __future__ import annotations

import pytest

from lungai.followup.categories import (
    LUNG_RADS_RULES,
    RULE_LABEL,
    LungRadsRule,
    Nodule,
    change_of,
    fleischner,
    lung_rads_follow_up,
)
from lungai.followup.growth import Size


def nodule(kind: str, mean_mm: float, solid_mm: float | None = None) -> Nodule:
    return Nodule(kind, Size(mean_mm, mean_mm, 4.19 * (mean_mm / 2) ** 3, solid_mm))


# (rule id, prior, current): one case inside each row's band.
CASES = {
    "solid new <4 mm": (None, nodule("solid", 3.0)),
    "solid new 4 to <6 mm": (None, nodule("solid", 5.0)),
    "solid new 6 to <8 mm": (None, nodule("solid", 7.0)),
    "solid new >=8 mm": (None, nodule("solid", 9.0)),
    "solid growing <8 mm": (nodule("solid", 5.0), nodule("solid", 7.0)),
    "solid growing >=8 mm": (nodule("solid", 7.0), nodule("solid", 9.0)),
    "part-solid new <6 mm total": (None, nodule("part-solid", 5.0, 2.0)),
    "part-solid new, solid component <4 mm": (None, nodule("part-solid", 10.0, 3.0)),
    "part-solid new, solid component >=4 mm": (None, nodule("part-solid", 10.0, 5.0)),
    "part-solid growing solid component <4 mm": (nodule("part-solid", 10.0, 1.0), nodule("part-solid", 10.0, 3.0)),
    "part-solid growing solid component >=4 mm": (nodule("part-solid", 10.0, 2.0), nodule("part-solid", 11.0, 4.5)),
    "ground-glass new <30 mm": (None, nodule("ground-glass", 12.0)),
    "ground-glass new >=30 mm": (None, nodule("ground-glass", 31.0)),
    "ground-glass growing <30 mm": (nodule("ground-glass", 10.0), nodule("ground-glass", 13.0)),
    "ground-glass growing >=30 mm": (nodule("ground-glass", 28.0), nodule("ground-glass", 31.0)),
    "ground-glass stable >=30 mm": (nodule("ground-glass", 31.0), nodule("ground-glass", 31.5)),
    "ground-glass slowly growing >=30 mm": (nodule("ground-glass", 30.0), nodule("ground-glass", 33.0)),
}


def test_every_row_has_a_case() -> None:
    assert {rule.rule_id for rule in LUNG_RADS_RULES} == set(CASES)


@pytest.mark.parametrize("rule", LUNG_RADS_RULES, ids=lambda rule: rule.rule_id)
def test_each_rule(rule: LungRadsRule) -> None:
    prior, current = CASES[rule.rule_id]
    interval = 500 if rule.change == "slow growth" else 180
    result = lung_rads_follow_up(prior, current, interval)
    assert result is not None
    assert result["category"] == rule.category
    assert result["rule"] == f"Lung-RADS v2022 {rule.rule_id}"
    assert result["change"] == rule.change and result["label"] == RULE_LABEL


def test_growth_is_more_than_1_5_mm_within_12_months() -> None:
    assert change_of(nodule("solid", 6.0), nodule("solid", 7.5), 180) == "stable"
    assert change_of(nodule("solid", 6.0), nodule("solid", 7.6), 180) == "growing"
    assert change_of(nodule("solid", 6.0), nodule("solid", 7.6), 380) == "growing"  # an annual exam a bit late
    assert change_of(nodule("solid", 6.0), nodule("solid", 7.6), 400) == "slow growth"
    assert change_of(nodule("solid", 6.0), nodule("solid", 7.6), None) == "growing"
    assert change_of(nodule("solid", 9.0), nodule("solid", 5.0), 180) == "stable"  # shrinking
    assert change_of(None, nodule("solid", 5.0), 180) == "new"


def test_part_solid_growth_is_the_solid_component() -> None:
    total_only = change_of(nodule("part-solid", 10.0, 3.0), nodule("part-solid", 14.0, 3.5), 180)
    assert total_only == "stable"
    assert change_of(nodule("ground-glass", 10.0), nodule("part-solid", 10.0, 2.0), 180) == "growing"


def test_stable_nodules_get_the_size_rule() -> None:
    result = lung_rads_follow_up(nodule("solid", 4.0), nodule("solid", 4.5), 365)
    assert result is not None and result["category"] == "2" and "size rule" in result["rule"]
    crossed = lung_rads_follow_up(nodule("solid", 7.5), nodule("solid", 8.5), 365)  # +1 mm but past 8 mm
    assert crossed is not None and crossed["category"] == "4A"


def test_stepped_management_of_stable_3_and_4a() -> None:
    three = lung_rads_follow_up(nodule("solid", 7.0), nodule("solid", 7.0), 180)
    assert three is not None and three["category"] == "2" and "stepped" in three["rule"]
    four_a = lung_rads_follow_up(nodule("solid", 10.0), nodule("solid", 10.5), 90)
    assert four_a is not None and four_a["category"] == "3"
    four_b = lung_rads_follow_up(nodule("solid", 16.0), nodule("solid", 16.0), 180)
    assert four_b is not None and four_b["category"] == "4B"


def test_no_stepping_down_without_a_known_interval_of_3_months() -> None:
    for interval in (None, 60):
        result = lung_rads_follow_up(nodule("solid", 7.0), nodule("solid", 7.0), interval)
        assert result is not None and result["category"] == "3" and "not stepped down" in result["rule"]


def test_slow_growth_keeps_the_size_rule_with_a_note() -> None:
    result = lung_rads_follow_up(nodule("solid", 5.0), nodule("solid", 7.0), 500)
    assert result is not None and result["category"] == "3" and "more than 12 months" in result["rule"]


def test_resolved_nodule_has_no_category() -> None:
    assert lung_rads_follow_up(nodule("solid", 7.0), None, 180) is None
    assert fleischner(None, None, 180) is None


@pytest.mark.parametrize(("current", "band"), [
    (nodule("solid", 5.0), "solid <6 mm"),
    (nodule("solid", 7.0), "solid 6-8 mm"),
    (nodule("solid", 9.0), "solid >8 mm"),
    (nodule("ground-glass", 5.0), "ground-glass <6 mm"),
    (nodule("ground-glass", 8.0), "ground-glass >=6 mm"),
    (nodule("part-solid", 5.0, 2.0), "part-solid <6 mm"),
    (nodule("part-solid", 9.0, 3.0), "part-solid >=6 mm"),
])
def test_fleischner_bands(current: Nodule, band: str) -> None:
    result = fleischner(current, "stable", 180)
    assert result is not None and result["rule"] == f"Fleischner 2017 single nodule, {band}"
    assert result["label"] == RULE_LABEL and "screening" in result["applies_to"]


def test_fleischner_stable_long_enough_and_growth() -> None:
    two_years = fleischner(nodule("solid", 7.0), "stable", 730)
    assert two_years is not None and "no further follow-up" in two_years["recommendation"]
    not_yet = fleischner(nodule("ground-glass", 8.0), "stable", 730)  # subsolid: 5 years
    assert not_yet is not None and "no further" not in not_yet["recommendation"]
    grew = fleischner(nodule("solid", 7.0), "growing", 180)
    assert grew is not None and "grew" in grew["recommendation"]
    assert fleischner(nodule("solid", 35.0), "stable", 180) is None  # a mass
