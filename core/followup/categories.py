"""Categories with the prior: Lung-RADS v2022 follow-up rules and the Fleischner 2017 recommendation.

Both are rules applied to the automated measurements, not a diagnosis: they know size, type and
change only, not benign calcification or fat, perifissural or airway location, the 4X features,
earlier scans than the prior, or the patient. The baseline size rule is
:func:`lungai.pipeline.lung_rads.lung_rads_category`, reused here.

1. The change of a nodule (:func:`change_of`): ``new`` (no prior), ``growing`` (Lung-RADS growth:
   mean diameter up by more than 1.5 mm within 12 months; for a part-solid nodule, its solid
   component up by more than 1.5 mm, or a solid component that the prior lacked), ``slow growth``
   (that increase over more than :data:`GROWTH_WINDOW_DAYS`: 12 months and a month's allowance for
   an annual exam done late) or ``stable`` (everything else, shrinking included).
2. The category: the first row of :data:`LUNG_RADS_RULES` whose type, change and size band fit
   (the size is the mean diameter, or the solid component's where the row says ``solid``). A
   ``stable`` or ``slow growth`` nodule gets the baseline size rule on its current size (a nodule
   that crosses a size threshold is reclassified by size), stepped down as v2022's stepped
   management says when the interval is at least :data:`STEPPED_MIN_DAYS`: 3 -> 2, 4A -> 3 when the
   size rule gave the prior the same category. A resolved nodule gets none.
3. Fleischner 2017 (:func:`fleischner`): incidental nodules in patients of 35 years or more without
   known cancer or immunosuppression, not screening; single-nodule recommendations by type and mean
   diameter, for a low and a high risk patient; a solid nodule stable for 2 years or a subsolid one
   for 5 needs no further follow-up. Lesions over 30 mm (masses) are outside it.

The same table is in docs/follow-up.md; tests/followup/test_categories.py tests every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lungai.followup.growth import LUNG_RADS_GROWTH_MM, Size
from lungai.pipeline.lung_rads import lung_rads_category

#: Lung-RADS growth must happen "within a 12-month interval"; this allows an annual exam a month late.
GROWTH_WINDOW_DAYS = 395
#: Stepped management needs at least this long a stable interval (v2022: 3-month follow-up of 4A).
STEPPED_MIN_DAYS = 90
#: What the categories are, wherever they are shown.
RULE_LABEL = "rule applied to measurements, not a diagnosis"
#: Lesions above this mean diameter (mm) are masses: no Fleischner recommendation.
FLEISCHNER_MAX_MM = 30.0
CHANGES = ("new", "growing", "slow growth", "stable")


@dataclass(frozen=True)
class LungRadsRule:
    """One row of the follow-up table.

    Attributes:
        rule_id: short stable name, written with the category.
        nodule_type: ``solid``, ``part-solid`` or ``ground-glass``.
        change: one of :data:`CHANGES`.
        measure: ``mean`` (mean diameter) or ``solid`` (the solid component's mean diameter).
        low_mm: the band's lower bound (inclusive).
        high_mm: the band's upper bound (exclusive).
        category: the Lung-RADS category.
    """

    rule_id: str
    nodule_type: str
    change: str
    measure: str
    low_mm: float
    high_mm: float
    category: str


_INF = math.inf
#: Lung-RADS v2022 for new and growing nodules; first matching row wins (see the module docstring).
LUNG_RADS_RULES: tuple[LungRadsRule, ...] = (
    LungRadsRule("solid new <4 mm", "solid", "new", "mean", 0, 4, "2"),
    LungRadsRule("solid new 4 to <6 mm", "solid", "new", "mean", 4, 6, "3"),
    LungRadsRule("solid new 6 to <8 mm", "solid", "new", "mean", 6, 8, "4A"),
    LungRadsRule("solid new >=8 mm", "solid", "new", "mean", 8, _INF, "4B"),
    LungRadsRule("solid growing <8 mm", "solid", "growing", "mean", 0, 8, "4A"),
    LungRadsRule("solid growing >=8 mm", "solid", "growing", "mean", 8, _INF, "4B"),
    LungRadsRule("part-solid new <6 mm total", "part-solid", "new", "mean", 0, 6, "3"),
    LungRadsRule("part-solid new, solid component <4 mm", "part-solid", "new", "solid", 0, 4, "4A"),
    LungRadsRule("part-solid new, solid component >=4 mm", "part-solid", "new", "solid", 4, _INF, "4B"),
    LungRadsRule("part-solid growing solid component <4 mm", "part-solid", "growing", "solid", 0, 4, "4A"),
    LungRadsRule("part-solid growing solid component >=4 mm", "part-solid", "growing", "solid", 4, _INF, "4B"),
    LungRadsRule("ground-glass new <30 mm", "ground-glass", "new", "mean", 0, 30, "2"),
    LungRadsRule("ground-glass new >=30 mm", "ground-glass", "new", "mean", 30, _INF, "3"),
    LungRadsRule("ground-glass growing <30 mm", "ground-glass", "growing", "mean", 0, 30, "2"),
    LungRadsRule("ground-glass growing >=30 mm", "ground-glass", "growing", "mean", 30, _INF, "3"),
    LungRadsRule("ground-glass stable >=30 mm", "ground-glass", "stable", "mean", 30, _INF, "2"),
    LungRadsRule("ground-glass slowly growing >=30 mm", "ground-glass", "slow growth", "mean", 30, _INF, "2"),
)
#: Stepped management of stable nodules (v2022): the prior's size-rule category -> the category now.
STEPPED_DOWN: dict[str, str] = {"3": "2", "4A": "3"}


@dataclass(frozen=True)
class Nodule:
    """What the categories need of one nodule on one scan: type and size."""

    type: str
    size: Size


def change_of(prior: Nodule | None, current: Nodule, interval_days: int | None,
              diameter_change_mm: float | None = None) -> str:
    """``new``, ``growing``, ``slow growth`` or ``stable`` (see the module docstring, step 1).

    ``diameter_change_mm``: the mean diameter's change when it was measured otherwise than as
    the difference of the two sizes (the paired volumetry of :mod:`lungai.followup.growth`).
    """
    if prior is None:
        return "new"
    if current.type == "part-solid":
        before = prior.size.solid_component_mm or 0.0
        grew = (current.size.solid_component_mm or 0.0) - before > LUNG_RADS_GROWTH_MM
    else:
        change = (current.size.mean_diameter_mm - prior.size.mean_diameter_mm if diameter_change_mm is None
                  else diameter_change_mm)
        grew = change > LUNG_RADS_GROWTH_MM
    if not grew:
        return "stable"
    return "slow growth" if interval_days is not None and interval_days > GROWTH_WINDOW_DAYS else "growing"


def _measure(rule: LungRadsRule, size: Size) -> float:
    value = size.mean_diameter_mm if rule.measure == "mean" else (size.solid_component_mm or 0.0)
    return round(float(value), 1)


def lung_rads_follow_up(prior: Nodule | None, current: Nodule | None, interval_days: int | None,
                        diameter_change_mm: float | None = None) -> dict[str, Any] | None:
    """The Lung-RADS category with the prior: ``{"category", "rule", "change", "label"}``; ``None`` when resolved.

    ``diameter_change_mm``: see :func:`change_of`.

    Raises:
        ValueError: an unknown nodule type.
    """
    if current is None:
        return None
    change = change_of(prior, current, interval_days, diameter_change_mm)
    for rule in LUNG_RADS_RULES:
        if rule.nodule_type == current.type and rule.change == change and \
                rule.low_mm <= _measure(rule, current.size) < rule.high_mm:
            note = " (interval unknown: growth taken as within 12 months)" \
                if change == "growing" and interval_days is None else ""
            return _category(rule.category, f"Lung-RADS v2022 {rule.rule_id}{note}", change)
    size_rule = lung_rads_category(current.type, current.size.mean_diameter_mm, current.size.solid_component_mm)
    rule_text = f"Lung-RADS v2022 size rule on the current size ({change})"
    assert prior is not None  # a new nodule always matches a row of the table
    before = lung_rads_category(current.type, prior.size.mean_diameter_mm, prior.size.solid_component_mm).category
    if change == "stable" and size_rule.category == before and before in STEPPED_DOWN:
        if interval_days is not None and interval_days >= STEPPED_MIN_DAYS:
            return _category(STEPPED_DOWN[before], f"Lung-RADS v2022 stepped management: category {before} stable "
                             f"for {interval_days} days", change)
        rule_text += f"; stable {before} not stepped down: the interval is unknown or under {STEPPED_MIN_DAYS} days"
    if change == "slow growth":
        rule_text += ("; growth over more than 12 months is not Lung-RADS growth (slowly growing nodules over "
                      "several screens need more scans than two)")
    return _category(size_rule.category, rule_text, change)


def _category(category: str, rule: str, change: str) -> dict[str, Any]:
    return {"category": category, "rule": rule, "change": change, "label": RULE_LABEL}


FLEISCHNER_APPLIES = ("incidental nodules in patients aged 35 or more without known cancer or immunosuppression; "
                      "not lung cancer screening (Lung-RADS applies there)")


def fleischner(current: Nodule | None, change: str | None, interval_days: int | None) -> dict[str, Any] | None:
    """The Fleischner 2017 single-nodule recommendation for the current size, or ``None`` where it does not apply.

    Returns:
        ``{"recommendation", "rule", "applies_to", "label"}``; ``None`` for a resolved nodule or a mass.
    """
    if current is None or current.size.mean_diameter_mm > FLEISCHNER_MAX_MM:
        return None
    size = current.size.mean_diameter_mm
    solid = current.type == "solid"
    stable_for = 730 if solid else 1825
    if change == "stable" and interval_days is not None and interval_days >= stable_for:
        text = f"stable for {interval_days} days (at least {stable_for // 365} years): no further follow-up"
        band = f"{current.type}, stable {stable_for // 365} years"
    elif solid:
        band, text = _fleischner_solid(size)
    elif current.type == "ground-glass":
        band = "ground-glass <6 mm" if size < 6 else "ground-glass >=6 mm"
        text = ("no routine follow-up" if size < 6 else
                "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years")
    else:
        band = "part-solid <6 mm" if size < 6 else "part-solid >=6 mm"
        text = ("no routine follow-up" if size < 6 else
                "CT at 3-6 months to confirm persistence; if unchanged and the solid component stays <6 mm, "
                "annual CT for 5 years")
    if change in ("growing", "slow growth"):
        text += "; it grew since the prior, which the size-based recommendation does not weigh"
    return {"recommendation": text, "rule": f"Fleischner 2017 single nodule, {band}",
            "applies_to": FLEISCHNER_APPLIES, "label": RULE_LABEL}


def _fleischner_solid(size: float) -> tuple[str, str]:
    if size < 6:
        return "solid <6 mm", "low risk: no routine follow-up; high risk: optional CT at 12 months"
    if size <= 8:
        return "solid 6-8 mm", ("low risk: CT at 6-12 months, then consider CT at 18-24 months; "
                                "high risk: CT at 6-12 months, then CT at 18-24 months")
    return "solid >8 mm", "consider CT at 3 months, PET/CT, or tissue sampling"
