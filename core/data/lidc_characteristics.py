"""LIDC reader ratings of nodule characteristics as class labels (labels only, never model inputs).

``nodules.csv`` holds, per VOI, the readers' consensus rating of each LIDC characteristic (the
``*_value`` columns; LIDC-IDRI coding, Armato et al., Med. Phys. 2011, and the LIDC XML schema):

* ``Texture_value``: 1 non-solid / ground-glass, 2 non-solid/mixed, 3 part solid/mixed,
  4 solid/mixed, 5 solid. Label: **ground-glass** for 1-2 (no solid component a reader called
  solid), **part-solid** for 3-4 (a mixed nodule: Lung-RADS calls any nodule with both a solid
  and a ground-glass component part-solid, which 4 "solid/mixed" still has), **solid** for 5.
* ``Calcification_value``: 1 popcorn, 2 laminated, 3 solid, 4 non-central, 5 central,
  6 absent. Label: **calcified** when not 6. Popcorn, laminated, solid (complete) and central
  are the benign patterns Lung-RADS puts in category 1; non-central (eccentric) is not, and is
  rare (2 of 779 VOIs).
* ``Spiculation_value`` and ``Lobulation_value``: 1 none ... 5 marked. Label: **present** at 3
  or more (the middle of the scale and above; 1-2 are "none" and "nearly none").
* ``Margin_value``: 1 poorly defined ... 5 sharp. Label: **ill-defined margin** at 1-2
  ("poorly defined", "near poorly defined").

Fat (``InternalStructure_value`` 3) never occurs among the 779 VOIs, so no fat label exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

#: The texture classes, in the class order of the texture head (LungAI's nodule type words).
TEXTURES: tuple[str, ...] = ("ground-glass", "part-solid", "solid")


def _rating(row: Mapping[str, str], column: str) -> int | None:
    text = (row.get(column) or "").strip()
    try:
        return int(float(text))
    except ValueError:
        return None


def texture_class(row: Mapping[str, str]) -> int | None:
    """Index into :data:`TEXTURES` of the row's texture rating; ``None`` without one."""
    rating = _rating(row, "Texture_value")
    if rating is None or not 1 <= rating <= 5:
        return None
    return 0 if rating <= 2 else 1 if rating <= 4 else 2


def calcified(row: Mapping[str, str]) -> int | None:
    """1 when the readers rated any calcification pattern (not 6, absent)."""
    rating = _rating(row, "Calcification_value")
    return None if rating is None or not 1 <= rating <= 6 else int(rating != 6)


def spiculated(row: Mapping[str, str]) -> int | None:
    """1 when spiculation is rated 3 or more."""
    rating = _rating(row, "Spiculation_value")
    return None if rating is None else int(rating >= 3)


def lobulated(row: Mapping[str, str]) -> int | None:
    """1 when lobulation is rated 3 or more."""
    rating = _rating(row, "Lobulation_value")
    return None if rating is None else int(rating >= 3)


def ill_defined_margin(row: Mapping[str, str]) -> int | None:
    """1 when the margin is rated poorly defined or near poorly defined (1-2)."""
    rating = _rating(row, "Margin_value")
    return None if rating is None else int(rating <= 2)


#: Each characteristic head: its label function and number of classes.
CHARACTERISTICS: dict[str, tuple[Callable[[Mapping[str, str]], int | None], int]] = {
    "texture": (texture_class, len(TEXTURES)),
    "calcification": (calcified, 2),
    "spiculation": (spiculated, 2),
    "lobulation": (lobulated, 2),
    "ill_defined_margin": (ill_defined_margin, 2),
}
