"""A Lung-RADS-style category from a nodule's size and type only (a size rule, not a diagnosis).

Lung-RADS v2022 baseline-screening size thresholds, on the mean diameter (mean of long and
short axis, rounded to 0.1 mm):

===============  ==========================  ==========================  ====================  ==============
type             2                           3                           4A                    4B
===============  ==========================  ==========================  ====================  ==============
solid            < 6 mm                      6 to < 8 mm                 8 to < 15 mm          >= 15 mm
part-solid       total < 6 mm                total >= 6 mm, solid < 6 mm  solid 6 to < 8 mm     solid >= 8 mm
ground-glass     < 30 mm                     >= 30 mm
===============  ==========================  ==========================  ====================  ==============

Everything else Lung-RADS weighs (growth against a prior scan, benign calcification or fat,
perifissural or airway location, the 4X features) is outside this rule, so the category is
only a suggestion from the measurements; :attr:`LungRads.rule` says so.
"""

from __future__ import annotations

from lungai.io.findings import LungRads

RULE = "size rule"


def lung_rads_category(nodule_type: str, mean_diameter_mm: float, solid_component_mm: float | None = None) -> LungRads:
    """The size-rule category of a baseline nodule.

    Args:
        nodule_type: ``solid``, ``part-solid`` or ``ground-glass``.
        mean_diameter_mm: mean of long and short axis.
        solid_component_mm: mean diameter of the solid component (part-solid only; ``None``
            counts as no measurable solid component).

    Returns:
        The category with the rule that produced it.

    Raises:
        ValueError: for an unknown type or a negative size.
    """
    size = round(float(mean_diameter_mm), 1)
    if size < 0:
        raise ValueError(f"nodule size must be >= 0, got {mean_diameter_mm}")
    if nodule_type == "solid":
        category = "2" if size < 6 else "3" if size < 8 else "4A" if size < 15 else "4B"
    elif nodule_type == "part-solid":
        solid = round(float(solid_component_mm or 0.0), 1)
        category = "2" if size < 6 else "3" if solid < 6 else "4A" if solid < 8 else "4B"
    elif nodule_type == "ground-glass":
        category = "2" if size < 30 else "3"
    else:
        raise ValueError(f"unknown nodule type {nodule_type!r}")
    return LungRads(category=category, rule=RULE)
