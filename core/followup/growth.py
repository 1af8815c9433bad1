"""How a matched nodule changed between the prior and the current scan.

1. Sizes: long and short axis (the Lung-RADS axial measurements of
   :mod:`lungai.preprocessing.measurements`), mean diameter (their mean, rounded to 0.1 mm as
   Lung-RADS reports it) and segmented volume, then and now.
2. Change: in mm (mean diameter, long axis), mm³ and per cent of the prior volume.
3. Volume doubling time ``VDT = dt * ln 2 / ln(V2 / V1)`` in days. It is ``None`` with the note
   ``no growth`` when ``V2 <= V1`` (no doubling time exists), and ``None`` with a note when the
   interval is unknown (no dates): it is never guessed.
4. Lung-RADS growth: a mean-diameter increase of more than :data:`LUNG_RADS_GROWTH_MM` (v2022;
   "within a 12-month interval", which :mod:`lungai.followup.categories` checks).
5. The solid component of a part-solid nodule: its change in mm when both scans measured one.

With paired volumes (:mod:`lungai.followup.volumetry`) the volumes of steps 2-3 are those, and
the mean diameters of steps 2 and 4 are the two scans' diameters made consistent with their
ratio (:func:`~lungai.followup.volumetry.consistent_diameters`); ``volume_method`` says which.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lungai.followup.volumetry import PairedVolumes, consistent_diameters

#: Lung-RADS v2022 growth: mean diameter increase above this (mm).
LUNG_RADS_GROWTH_MM = 1.5

NO_GROWTH_NOTE = "no growth: the volume did not increase, so there is no doubling time"
PAIRED = "paired partial-volume volumetry"
SEGMENTED = "each scan's segmentation"
#: Said with every follow-up that reports a volume doubling time: its measured accuracy
#: (docs/results.md, ``lungai evaluate follow-up`` on the simulated test pairs).
VDT_CAVEAT = ("volume doubling times are rough estimates: on simulated test pairs 10 of 20 growing nodules "
              "got a VDT within 25 % of the truth (the growth of a growing nodule tends to be underestimated; "
              "docs/results.md)")
NO_DATES_NOTE = ("no scan dates: give --prior-date/--current-date or --interval-days for the volume doubling time")


@dataclass(frozen=True)
class Size:
    """A nodule's size on one scan.

    Attributes:
        long_axis_mm: longest axial diameter.
        short_axis_mm: longest diameter perpendicular to it, same slice.
        volume_mm3: segmented volume.
        solid_component_mm: mean diameter of the solid part (part-solid), else ``None``.
    """

    long_axis_mm: float
    short_axis_mm: float
    volume_mm3: float
    solid_component_mm: float | None = None

    @property
    def mean_diameter_mm(self) -> float:
        """Mean of long and short axis, rounded to 0.1 mm (Lung-RADS)."""
        return round((self.long_axis_mm + self.short_axis_mm) / 2.0, 1)


@dataclass(frozen=True)
class Growth:
    """The change of one matched nodule (the ``growth`` block of ``follow_up.json``).

    Attributes:
        interval_days: days between the scans, ``None`` when unknown.
        volume_change_mm3: ``V2 - V1``.
        volume_change_pct: ``100 * (V2 - V1) / V1``.
        mean_diameter_change_mm: current minus prior mean diameter.
        long_axis_change_mm: current minus prior long axis.
        vdt_days: volume doubling time, ``None`` without growth or dates.
        vdt_note: why ``vdt_days`` is ``None`` (empty when it is a number).
        lung_rads_growth: mean diameter up by more than :data:`LUNG_RADS_GROWTH_MM`.
        solid_component_change_mm: change of the solid component's mean diameter when both scans have one.
        volume_method: :data:`PAIRED` or :data:`SEGMENTED`: where the volumes come from.
        prior_volume_mm3: the prior volume the change is computed from.
        current_volume_mm3: the current volume likewise.
    """

    interval_days: int | None
    volume_change_mm3: float
    volume_change_pct: float
    mean_diameter_change_mm: float
    long_axis_change_mm: float
    vdt_days: float | None
    vdt_note: str
    lung_rads_growth: bool
    solid_component_change_mm: float | None
    volume_method: str = SEGMENTED
    prior_volume_mm3: float | None = None
    current_volume_mm3: float | None = None


def volume_doubling_time(v1_mm3: float, v2_mm3: float, interval_days: int | None) -> tuple[float | None, str]:
    """``(VDT in days, note)``: ``dt * ln 2 / ln(V2 / V1)``; ``None`` with the reason when undefined.

    Raises:
        ValueError: a volume that is not positive or a negative interval.
    """
    if v1_mm3 <= 0 or v2_mm3 <= 0:
        raise ValueError(f"volumes must be positive, got {v1_mm3} and {v2_mm3}")
    if interval_days is not None and interval_days < 0:
        raise ValueError(f"the interval must not be negative, got {interval_days}")
    if v2_mm3 <= v1_mm3:
        return None, NO_GROWTH_NOTE
    if interval_days is None:
        return None, NO_DATES_NOTE
    return round(interval_days * math.log(2.0) / math.log(v2_mm3 / v1_mm3), 1), ""


def growth(prior: Size, current: Size, interval_days: int | None, paired: PairedVolumes | None = None) -> Growth:
    """The change from ``prior`` to ``current`` (see the module docstring); ``paired``: the pair's paired volumes."""
    v1, v2 = (prior.volume_mm3, current.volume_mm3) if paired is None else (paired.prior_mm3, paired.current_mm3)
    vdt, note = volume_doubling_time(v1, v2, interval_days)
    d1, d2 = prior.mean_diameter_mm, current.mean_diameter_mm
    if paired is not None:
        d1, d2 = consistent_diameters(d1, d2, paired.ratio)
    change = round(d2 - d1, 1)
    solid = None
    if prior.solid_component_mm is not None and current.solid_component_mm is not None:
        solid = round(current.solid_component_mm - prior.solid_component_mm, 1)
    return Growth(interval_days=interval_days,
                  volume_change_mm3=round(v2 - v1, 1),
                  volume_change_pct=round(100.0 * (v2 - v1) / v1, 1),
                  mean_diameter_change_mm=change,
                  long_axis_change_mm=round(current.long_axis_mm - prior.long_axis_mm, 1),
                  vdt_days=vdt, vdt_note=note, lung_rads_growth=change > LUNG_RADS_GROWTH_MM,
                  solid_component_change_mm=solid, volume_method=SEGMENTED if paired is None else PAIRED,
                  prior_volume_mm3=round(v1, 1), current_volume_mm3=round(v2, 1))
