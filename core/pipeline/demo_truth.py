"""Known nodules against LungAI's findings: which were found, how well measured, what is extra.

``lungai demo`` prints this comparison for the phantom (whose nodules are known exactly) and,
with ``--real``, for LIDC-IDRI-0001 (whose nodule the LIDC readers marked). The module needs
no torch and no image: it works on centres and sizes.

Matching rule (:func:`match_nodules`), all positions in LPS millimetres:

- A finding *can match* a known nodule when the finding's centroid lies within the nodule's
  match radius of the nodule's centre: ``max(diameter / 2, MIN_MATCH_RADIUS_MM)``. This is
  LUNA16's hit rule (the centre within the nodule's radius) with a 5 mm floor, so that a small
  nodule's centroid may move by a voxel or two.
- Pairs are made one to one, closest pair first: every known nodule gets at most one finding,
  every finding at most one nodule.
- A finding left without a nodule that still lies within some nodule's match radius is a
  *duplicate* (a second finding on a nodule already matched): neither a hit nor a false
  positive, as in LUNA16.
- A finding left over that lies within the match radius of one of the *other marks* (on a real
  scan: the readers' nodules under 3 mm and their non-nodule marks, LUNA16's "excluded"
  findings) is listed as such: not a hit, and not counted as a false positive either.
- Every other finding is a *false positive*.

Only positions decide a match; sizes and types are reported beside it, never used for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lungai.io.findings import Findings

#: Smallest match radius (mm), whatever the nodule's size.
MIN_MATCH_RADIUS_MM = 5.0

Point = tuple[float, float, float]


@dataclass(frozen=True)
class KnownNodule:
    """A nodule known to be in the scan (the phantom's truth or the readers' mark).

    Attributes:
        name: how the table names it, e.g. ``"solid"`` or ``"readers' nodule"``.
        centre_lps_mm: its centre, LPS mm.
        diameter_mm: its size; sets the match radius.
        type: ``solid``, ``part-solid``, ``ground-glass``, or ``None`` when not known.
        long_axis_mm: the true long axis (longest axial diameter), ``None`` when not known.
        volume_mm3: the true volume, ``None`` when not known.
    """

    name: str
    centre_lps_mm: Point
    diameter_mm: float
    type: str | None = None
    long_axis_mm: float | None = None
    volume_mm3: float | None = None

    @property
    def match_radius_mm(self) -> float:
        """How far a finding's centroid may lie from the centre: ``max(d / 2, 5 mm)``."""
        return max(self.diameter_mm / 2.0, MIN_MATCH_RADIUS_MM)


@dataclass(frozen=True)
class FoundNodule:
    """A nodule LungAI reported (the parts of a ``findings.json`` nodule the table needs).

    Attributes:
        id: the finding's nodule id.
        centre_lps_mm: its centroid, LPS mm.
        long_axis_mm: measured long axis.
        volume_mm3: measured volume.
        type: measured type.
        detection_score: the detector's score (None for a mass found by the thickness rule).
    """

    id: int
    centre_lps_mm: Point
    long_axis_mm: float
    volume_mm3: float
    type: str
    detection_score: float | None


@dataclass(frozen=True)
class NoduleMatch:
    """One known nodule and the finding matched to it, if any.

    Attributes:
        known: the known nodule.
        found: the matched finding; ``None`` when the nodule was missed.
        distance_mm: centre-to-centroid distance of the pair; ``None`` when missed.
    """

    known: KnownNodule
    found: FoundNodule | None
    distance_mm: float | None


@dataclass(frozen=True)
class Comparison:
    """Known nodules against findings.

    Attributes:
        matches: one per known nodule, in the known nodules' order.
        duplicates: unpaired findings within a known nodule's match radius.
        false_positives: findings within no known nodule's or other mark's match radius.
        at_other_marks: the remaining findings, each with the nearest other mark it lies within.
    """

    matches: tuple[NoduleMatch, ...]
    duplicates: tuple[FoundNodule, ...]
    false_positives: tuple[FoundNodule, ...]
    at_other_marks: tuple[tuple[FoundNodule, KnownNodule], ...] = ()

    @property
    def num_found(self) -> int:
        """How many known nodules were matched."""
        return sum(m.found is not None for m in self.matches)


def match_nodules(known: Sequence[KnownNodule], found: Sequence[FoundNodule],
                  other_marks: Sequence[KnownNodule] = ()) -> Comparison:
    """Pair findings with known nodules (see the module docstring for the rule).

    Args:
        known: the nodules known to be in the scan.
        found: LungAI's findings.
        other_marks: marks that are neither to be found nor false positives when found (a
            reader's nodule under 3 mm, a non-nodule); their ``diameter_mm`` may be 0.

    Returns:
        The pairs, duplicates, findings at other marks and false positives.
    """
    candidates = sorted((d, i, j) for i, k in enumerate(known) for j, f in enumerate(found)
                        if (d := math.dist(k.centre_lps_mm, f.centre_lps_mm)) <= k.match_radius_mm)
    pairs: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for distance, i, j in candidates:
        if i not in pairs and j not in used:
            pairs[i] = (j, distance)
            used.add(j)
    matches = tuple(NoduleMatch(k, found[pairs[i][0]], pairs[i][1]) if i in pairs else NoduleMatch(k, None, None)
                    for i, k in enumerate(known))
    near = {j for _, _, j in candidates}
    duplicates = tuple(f for j, f in enumerate(found) if j in near and j not in used)
    at_other_marks = []
    false_positives = []
    for j, f in enumerate(found):
        if j in near:
            continue
        marks = sorted((d, i) for i, m in enumerate(other_marks)
                       if (d := math.dist(m.centre_lps_mm, f.centre_lps_mm)) <= m.match_radius_mm)
        if marks:
            at_other_marks.append((f, other_marks[marks[0][1]]))
        else:
            false_positives.append(f)
    return Comparison(matches=matches, duplicates=duplicates, false_positives=tuple(false_positives),
                      at_other_marks=tuple(at_other_marks))


def found_nodules(findings: Findings) -> list[FoundNodule]:
    """The nodules of a run's findings, for :func:`match_nodules`."""
    return [FoundNodule(id=n.id, centre_lps_mm=(float(n.centroid.lps_mm[0]), float(n.centroid.lps_mm[1]),
                                                float(n.centroid.lps_mm[2])),
                        long_axis_mm=n.long_axis_mm, volume_mm3=n.volume_mm3, type=n.type,
                        detection_score=n.detection_score)
            for n in findings.nodules]


def _point(p: Point) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in p) + ")"


def _versus(found: float, true: float | None, unit: str, digits: int) -> str:
    if true is None:
        return f"{found:.{digits}f} {unit}"
    return f"{found:.{digits}f} vs {true:.{digits}f} {unit} ({100.0 * (found - true) / true:+.0f}%)"


def format_comparison(comparison: Comparison, title: str) -> str:
    """The comparison as a text table for the terminal.

    Args:
        comparison: from :func:`match_nodules`.
        title: first line, e.g. ``"Phantom truth vs LungAI"``.

    Returns:
        Lines: the rule, one row per known nodule (found or MISSED, with the finding's long
        axis and volume against the truth), the duplicates, the false positives and a total.
    """
    lines = [f"{title}:",
             f"(a finding matches a known nodule when its centroid lies within max(radius, "
             f"{MIN_MATCH_RADIUS_MM:g} mm) of the nodule's centre; closest pairs first, one to one)",
             f"  {'known nodule':<28} {'centre LPS mm':<18} {'result':<22} {'off by':>7}  "
             f"{'long axis found vs true':<28} volume found vs true"]
    for number, match in enumerate(comparison.matches, start=1):
        known = match.known
        name = f"{number} {known.name} {known.diameter_mm:.0f} mm"
        row = f"  {name:<28} {_point(known.centre_lps_mm):<18} "
        if match.found is None:
            lines.append(row + "MISSED")
            continue
        found = match.found
        result = f"found: #{found.id} {found.type}"
        lines.append(row + f"{result:<22} {match.distance_mm:>4.1f} mm  "
                     f"{_versus(found.long_axis_mm, known.long_axis_mm, 'mm', 1):<28} "
                     f"{_versus(found.volume_mm3, known.volume_mm3, 'mm3', 0)}")
    lines.append(f"Found {comparison.num_found} of {len(comparison.matches)} known nodules; "
                 f"{len(comparison.false_positives)} false positive(s) (findings matching no known nodule)"
                 + (f"; {len(comparison.duplicates)} duplicate(s)" if comparison.duplicates else "")
                 + (f"; {len(comparison.at_other_marks)} at other marks" if comparison.at_other_marks else "") + ".")
    rows = [("duplicate", f) for f in comparison.duplicates]
    rows += [(f"at {mark.name}", f) for f, mark in comparison.at_other_marks]
    rows += [("false positive", f) for f in comparison.false_positives]
    for label, f in rows:
        found_by = "mass rule" if f.detection_score is None else f"detection score {f.detection_score:.2f}"
        lines.append(f"  {label}: #{f.id} {f.type} {f.long_axis_mm:.1f} mm, {f.volume_mm3:.0f} mm3 at LPS "
                     f"{_point(f.centre_lps_mm)}, {found_by}")
    return "\n".join(lines)
