"""The one table of structures LungAI segments: label value, name, colour and SNOMED CT codes.

Everything that names or colours a segment (the ``.seg.nrrd`` writer, the NIfTI label map,
the DICOM SEG writer, the Slicer loader) reads it from here.

Codes are (scheme, value, meaning) triples as in DICOM / 3D Slicer terminology
(``SCT`` = SNOMED CT).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

Code = tuple[str, str, str]

ANATOMICAL_STRUCTURE: Code = ("SCT", "123037004", "Anatomical Structure")
ALTERED_STRUCTURE: Code = ("SCT", "49755003", "Morphologically Altered Structure")
LUNG: Code = ("SCT", "39607008", "Lung")


@dataclass(frozen=True)
class Structure:
    """A segmented structure.

    Attributes:
        key: stable identifier used in code and in ``findings.json``.
        value: label value in label maps.
        name: display name (segment name in Slicer).
        color: RGB, each 0..1.
        category: SNOMED CT segmentation category.
        type: SNOMED CT segmentation type.
        region: SNOMED CT anatomic region, if the type alone does not say where.
    """

    key: str
    value: int
    name: str
    color: tuple[float, float, float]
    category: Code
    type: Code
    region: Code | None = None


def _rgb(r: int, g: int, b: int) -> tuple[float, float, float]:
    return (round(r / 255, 4), round(g / 255, 4), round(b / 255, 4))


LUNG_RIGHT = Structure("lung_right", 1, "Right lung", _rgb(128, 174, 128), ANATOMICAL_STRUCTURE,
                       ("SCT", "3341006", "Right lung"))
LUNG_LEFT = Structure("lung_left", 2, "Left lung", _rgb(111, 184, 210), ANATOMICAL_STRUCTURE,
                      ("SCT", "44029006", "Left lung"))
LOW_ATTENUATION = Structure("emphysema", 4, "Low attenuation area (< -950 HU)", _rgb(250, 230, 80),
                            ALTERED_STRUCTURE, ("SCT", "87433001", "Pulmonary emphysema"), LUNG)

STRUCTURES: tuple[Structure, ...] = (LUNG_RIGHT, LUNG_LEFT, LOW_ATTENUATION)

#: Nodule ``i`` (1-based) has label value ``NODULE_BASE_VALUE + i`` in label maps.
NODULE_BASE_VALUE = 10
_NODULE_TYPE: Code = ("SCT", "27925004", "Nodule")
_MASS_TYPE: Code = ("SCT", "4147007", "Mass")
_NODULE_COLORS = [_rgb(255, 120, 0), _rgb(220, 0, 220), _rgb(0, 200, 255), _rgb(255, 60, 140),
                  _rgb(160, 255, 60), _rgb(255, 200, 0)]


def nodule(index: int, kind: str = "nodule") -> Structure:
    """The structure for lesion ``index`` (1-based): "Nodule 1", "Mass 2", ...

    Args:
        index: the lesion's id in the findings.
        kind: ``nodule`` or ``mass`` (a lesion over 30 mm: named and coded as a mass); the key
            and label value do not depend on it.
    """
    if index < 1:
        raise ValueError(f"nodule index starts at 1, got {index}")
    if kind not in ("nodule", "mass"):
        raise ValueError(f"lesion kind must be nodule or mass, got {kind!r}")
    name, code = (f"Mass {index}", _MASS_TYPE) if kind == "mass" else (f"Nodule {index}", _NODULE_TYPE)
    return Structure(f"nodule_{index}", NODULE_BASE_VALUE + index, name, _nodule_color(index), ALTERED_STRUCTURE,
                     code, LUNG)


def _nodule_color(index: int) -> tuple[float, float, float]:
    """A fixed palette for the first nodules, then hues a golden angle apart (no two alike)."""
    if index <= len(_NODULE_COLORS):
        return _NODULE_COLORS[index - 1]
    hue = (index * 0.618033988749895) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return (round(red, 4), round(green, 4), round(blue, 4))


def with_nodules(count: int, kinds: Sequence[str] | None = None) -> tuple[Structure, ...]:
    """:data:`STRUCTURES` followed by lesions 1..``count``: every structure a run may label.

    Args:
        count: number of lesions found (0 or more).
        kinds: each lesion's kind (``nodule`` or ``mass``); all nodules when ``None``.

    Returns:
        The structures, in label-value order within each group.
    """
    if count < 0:
        raise ValueError(f"nodule count cannot be negative, got {count}")
    kinds = list(kinds) if kinds is not None else ["nodule"] * count
    if len(kinds) != count:
        raise ValueError(f"{len(kinds)} lesion kinds for {count} lesions")
    return STRUCTURES + tuple(nodule(index, kind) for index, kind in zip(range(1, count + 1), kinds))


def by_key(key: str) -> Structure:
    """Look a structure up by key (``lung_right``, ``nodule_3``, ...)."""
    if key.startswith("nodule_"):
        return nodule(int(key.split("_", 1)[1]))
    for structure in STRUCTURES:
        if structure.key == key:
            return structure
    raise KeyError(f"unknown structure {key!r}")
