"""A reviewer's pass over one run's findings: the operating point shown, decisions and edits.

Plain Python on the typed findings of ``findings.json`` (:func:`lungai.io.findings.read_findings`),
so the Slicer panel and the saved report read the same state:

- a lesion is *listed* (a table row) when it is a mass (no detection score: shown at every
  operating point), its detection score reaches the operating point, or the reviewer accepted it;
- a listed lesion is *reported* (segment shown, saved in the reviewed findings) unless rejected;
- an edited lesion's record is replaced by its re-measurement; the machine's record is kept;
- an accepted lesion that the machine left without a Lung-RADS category (its detection score is
  below ``specific``, :data:`lungai.pipeline.operating_points.CATEGORISED_POINTS`) gets the size
  rule's category, marked :data:`ACCEPTED_RULE`; taking the acceptance back removes it.

The run's own findings are never changed: :meth:`Review.reviewed_findings` returns new findings
with the reported lesions and a ``review`` block (documented in ``docs/outputs.md``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from lungai.io.findings import Findings, LungRads, Nodule
from lungai.pipeline.lung_rads import lung_rads_category
from lungai.pipeline.operating_points import OPERATING_POINTS

logger = logging.getLogger(__name__)

ACCEPTED = "accepted"
REJECTED = "rejected"
#: What a reviewer can decide about a lesion.
DECISIONS = (ACCEPTED, REJECTED)
#: The status of a listed lesion without a decision, in the ``review`` block.
UNREVIEWED = "unreviewed"
#: The status of a lesion that was not listed at the operating point shown.
BELOW_OPERATING_POINT = "below operating point"
#: The ``lung_rads.rule`` of a category given because the reviewer accepted the lesion.
ACCEPTED_RULE = "size rule, lesion accepted by the reviewer"
#: Scores within this of a named operating point's threshold are that point (the slider rounds).
_THRESHOLD_TOLERANCE = 5e-5


def operating_point_name(min_detection_score: float) -> str:
    """The named operating point (``high``, ``balanced``, ``specific``) at a threshold, else ``custom``."""
    for name, point in OPERATING_POINTS.items():
        if abs(point.threshold - min_detection_score) <= _THRESHOLD_TOLERANCE:
            return name
    return "custom"


@dataclass
class Review:
    """The review state of one run's lesions.

    Attributes:
        machine: the findings as the run wrote them; never changed.
        min_detection_score: the operating point shown (lowest detection score listed).
        nodules: lesion id -> its current record (the machine's, or the re-measured one).
        decisions: lesion id -> ``accepted`` or ``rejected``; absent: not decided.
        edited: ids of the lesions whose segment was edited and re-measured.
    """

    machine: Findings
    min_detection_score: float
    nodules: dict[int, Nodule] = field(default_factory=dict)
    decisions: dict[int, str] = field(default_factory=dict)
    edited: set[int] = field(default_factory=set)

    @classmethod
    def of(cls, findings: Findings, min_detection_score: float) -> Review:
        """Start a review of ``findings`` at an operating point, with no decisions."""
        nodules = {nodule.id: nodule for nodule in findings.nodules}
        return cls(machine=findings, min_detection_score=float(min_detection_score), nodules=nodules)

    def ids(self) -> list[int]:
        """Every lesion's id, ascending."""
        return sorted(self.nodules)

    def is_listed(self, nodule_id: int) -> bool:
        """Whether a lesion is a table row: a mass, a score at the operating point, or accepted."""
        score = self.nodules[nodule_id].detection_score
        return (score is None or score >= self.min_detection_score
                or self.decisions.get(nodule_id) == ACCEPTED)

    def listed(self) -> list[int]:
        """Ids of the table's rows."""
        return [nodule_id for nodule_id in self.ids() if self.is_listed(nodule_id)]

    def hidden(self) -> list[int]:
        """Ids of the lesions below the operating point (not listed)."""
        return [nodule_id for nodule_id in self.ids() if not self.is_listed(nodule_id)]

    def reported(self) -> list[int]:
        """Ids of the lesions shown and saved: listed and not rejected."""
        return [nodule_id for nodule_id in self.listed() if self.decisions.get(nodule_id) != REJECTED]

    def set_operating_point(self, min_detection_score: float) -> None:
        """Show the lesions whose detection score reaches ``min_detection_score`` (and masses, and accepted ones)."""
        self.min_detection_score = float(min_detection_score)

    def decide(self, nodule_id: int, decision: str | None) -> None:
        """Accept or reject a lesion; ``None`` takes the decision back.

        Raises:
            KeyError: no lesion has this id.
            ValueError: ``decision`` is not one of :data:`DECISIONS` or ``None``.
        """
        if nodule_id not in self.nodules:
            raise KeyError(f"no lesion {nodule_id} in these findings")
        if decision is None:
            self.decisions.pop(nodule_id, None)
        elif decision in DECISIONS:
            self.decisions[nodule_id] = decision
        else:
            raise ValueError(f"a decision is one of {', '.join(DECISIONS)}, got {decision!r}")
        self._categorise(nodule_id)
        logger.info("lesion %d: %s", nodule_id, decision or "decision taken back")

    def _categorise(self, nodule_id: int) -> None:
        """Give an accepted, uncategorised lesion the size rule's category; take a reviewer's one back otherwise."""
        record = self.nodules[nodule_id]
        given = record.lung_rads is not None and record.lung_rads.rule == ACCEPTED_RULE
        if self.decisions.get(nodule_id) == ACCEPTED and (record.lung_rads is None or given):
            mean = (record.long_axis_mm + record.short_axis_mm) / 2
            category = lung_rads_category(record.type, mean, record.solid_component_mm)
            self.nodules[nodule_id] = dataclasses.replace(record, lung_rads=LungRads(category.category, ACCEPTED_RULE))
        elif given:
            self.nodules[nodule_id] = dataclasses.replace(record, lung_rads=None)

    def replace(self, record: Nodule) -> None:
        """Put the re-measured record of an edited lesion in place of its current one.

        Raises:
            KeyError: no lesion has the record's id.
        """
        if record.id not in self.nodules:
            raise KeyError(f"no lesion {record.id} in these findings")
        self.nodules[record.id] = record
        self.edited.add(record.id)
        self._categorise(record.id)

    def status(self, nodule_id: int) -> str:
        """``accepted``, ``rejected``, :data:`UNREVIEWED` or :data:`BELOW_OPERATING_POINT`."""
        if nodule_id in self.decisions:
            return self.decisions[nodule_id]
        return UNREVIEWED if self.is_listed(nodule_id) else BELOW_OPERATING_POINT

    def verdict(self, nodule_id: int) -> str:
        """The table's review cell: the decision and ``edited``, e.g. ``accepted, edited``; empty if neither."""
        words = [self.decisions[nodule_id]] if nodule_id in self.decisions else []
        if nodule_id in self.edited:
            words.append("edited")
        return ", ".join(words)

    def progress(self) -> str:
        """The review's state in a few words, e.g. ``1 accepted, 1 rejected, 1 edited, 2 to review``.

        Empty before any decision or edit.
        """
        if not self.decisions and not self.edited:
            return ""
        listed = self.listed()
        counts = [(sum(self.decisions.get(i) == decision for i in listed), decision) for decision in DECISIONS]
        counts += [(len(self.edited), "edited"), (sum(i not in self.decisions for i in listed), "to review")]
        return ", ".join(f"{count} {word}" for count, word in counts if count)

    def record(self, reviewed_utc: str, machine_findings: str) -> dict[str, Any]:
        """The ``review`` block of the reviewed findings.

        Args:
            reviewed_utc: when the review was saved (ISO 8601 UTC).
            machine_findings: file name of the machine's findings kept beside the reviewed ones.
        """
        return {
            "reviewed_utc": reviewed_utc,
            "operating_point": {"name": operating_point_name(self.min_detection_score),
                                "threshold": round(self.min_detection_score, 4)},
            "nodules": [{"id": nodule_id, "status": self.status(nodule_id), "edited": nodule_id in self.edited}
                        for nodule_id in self.ids()],
            "machine_findings": machine_findings,
        }

    def reviewed_findings(self, reviewed_utc: str, machine_findings: str) -> Findings:
        """The findings as the panel shows them: the reported lesions (edits included) and the ``review`` block.

        Args:
            reviewed_utc: when the review was saved (ISO 8601 UTC).
            machine_findings: file name of the machine's findings kept beside the reviewed ones.

        Returns:
            New findings; the machine's findings are not changed.
        """
        return dataclasses.replace(self.machine, nodules=[self.nodules[nodule_id] for nodule_id in self.reported()],
                                   review=self.record(reviewed_utc, machine_findings))
