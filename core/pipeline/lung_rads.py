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

Everything else Lung-RADS weighs (growth against a prior scan, fat, perifissural or airway
location, the 4X features) is outside this rule, so the category is only a suggestion from the
measurements; :attr:`LungRads.rule` says so. One more rule is applied where the malignancy stage
has estimated the nodule's characteristics (:func:`with_characteristics`): **benign
calcification** -> category 1, when the estimated probability of calcification reaches the
threshold chosen on the validation split (kept at least 98 % specific there; LIDC's calcified
nodules are almost all of the benign patterns: solid, central, laminated, popcorn). Fat is not
estimated (LIDC has no fat-containing nodule to learn it from), so the fat rule is never applied.
"""

from __future__ import annotations

from typing import Any

from lungai.io.findings import Characteristics, LungRads, Nodule

RULE = "size rule"
CALCIFICATION_RULE = "benign calcification rule (calcification estimated from measured features)"


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


def with_characteristics(nodule: Nodule, characteristics: Characteristics, settings: dict[str, Any]) -> LungRads | None:
    """The category of a categorised nodule once its characteristics are estimated.

    Category 1 by :data:`CALCIFICATION_RULE` when ``calcification_probability`` reaches
    ``settings["calcified_category1_from"]``; otherwise, when ``settings["texture_for_lung_rads"]``
    is true, the size rule with the estimated texture as the type; otherwise the nodule's category
    as it is. Masses keep theirs (the characteristics were learnt on nodules of at most 30 mm).

    Args:
        nodule: the nodule, with its size-rule category.
        characteristics: its estimated characteristics.
        settings: the scorer's ``inference`` block (chosen on the validation split).
    """
    if nodule.kind != "nodule" or nodule.lung_rads is None:
        return nodule.lung_rads
    threshold = settings.get("calcified_category1_from")
    if threshold is not None and characteristics.calcification_probability >= float(threshold):
        return LungRads(category="1", rule=CALCIFICATION_RULE)
    if settings.get("texture_for_lung_rads"):
        return lung_rads_category(characteristics.texture, (nodule.long_axis_mm + nodule.short_axis_mm) / 2,
                                  nodule.solid_component_mm)
    return nodule.lung_rads
