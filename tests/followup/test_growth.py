"""Growth of a matched nodule: changes, volume doubling time and Lung-RADS growth, by hand."""

from __future__ import annotations

import math

import pytest

from lungai.followup.growth import NO_DATES_NOTE, NO_GROWTH_NOTE, Size, growth, volume_doubling_time


def test_vdt_by_hand() -> None:
    # Doubling in 100 days is a VDT of 100 days; an eightfold volume in 300 days too.
    assert volume_doubling_time(100.0, 200.0, 100) == (100.0, "")
    assert volume_doubling_time(100.0, 800.0, 300)[0] == pytest.approx(100.0)
    assert volume_doubling_time(500.0, 600.0, 365)[0] == pytest.approx(365 * math.log(2) / math.log(1.2), abs=0.1)


def test_vdt_is_null_without_growth_or_dates() -> None:
    assert volume_doubling_time(200.0, 200.0, 100) == (None, NO_GROWTH_NOTE)
    assert volume_doubling_time(200.0, 150.0, 100) == (None, NO_GROWTH_NOTE)
    assert volume_doubling_time(100.0, 200.0, None) == (None, NO_DATES_NOTE)


def test_vdt_refuses_impossible_input() -> None:
    with pytest.raises(ValueError):
        volume_doubling_time(0.0, 10.0, 100)
    with pytest.raises(ValueError):
        volume_doubling_time(10.0, 20.0, -1)


def test_growth_changes_and_lung_rads_growth() -> None:
    prior, current = Size(8.0, 6.0, 180.0), Size(10.0, 7.2, 300.0)
    result = growth(prior, current, 180)
    assert prior.mean_diameter_mm == 7.0 and current.mean_diameter_mm == 8.6
    assert result.mean_diameter_change_mm == pytest.approx(1.6)
    assert result.long_axis_change_mm == pytest.approx(2.0)
    assert result.volume_change_mm3 == pytest.approx(120.0)
    assert result.volume_change_pct == pytest.approx(66.7)
    assert result.vdt_days == pytest.approx(180 * math.log(2) / math.log(300 / 180), abs=0.1)
    assert result.lung_rads_growth
    assert not growth(prior, Size(9.0, 8.0, 250.0), 180).lung_rads_growth  # +1.5 mm exactly: not growth


def test_solid_component_change_only_when_both_have_one() -> None:
    assert growth(Size(10, 8, 400, 3.0), Size(11, 9, 450, 5.5), 90).solid_component_change_mm == pytest.approx(2.5)
    assert growth(Size(10, 8, 400, None), Size(11, 9, 450, 5.5), 90).solid_component_change_mm is None


def test_a_follow_up_with_a_doubling_time_says_how_rough_it_is() -> None:
    from lungai.followup.engine import Pair, vdt_caveat
    from lungai.followup.growth import VDT_CAVEAT

    grew = Pair("matched", None, None, growth=growth(Size(8, 6, 150), Size(10, 8, 300), 100))
    stable = Pair("matched", None, None, growth=growth(Size(8, 6, 150), Size(8, 6, 150), 100))
    assert grew.growth is not None and grew.growth.vdt_days is not None
    assert vdt_caveat([stable, grew]) == [VDT_CAVEAT]
    assert vdt_caveat([stable, Pair("new", None, None)]) == []
