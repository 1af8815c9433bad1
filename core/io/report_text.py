"""The words of a run's results: the one-line impression, the console summary, and the texts
the report shares with it (Lung-RADS management, provenance).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from lungai.io.findings import ESTIMATE_LABEL, Characteristics, DetectionInfo, Findings, Nodule

_REGION_NAMES = {"right": "Right lung", "left": "Left lung", "total": "Both lungs"}

#: Lung-RADS categories from least to most suspicious.
LUNG_RADS_ORDER = ("0", "1", "2", "3", "4A", "4B", "4X")

#: Management Lung-RADS v2022 gives each category the size rule can assign
#: (``lungai.pipeline.lung_rads``), worded as in the ACR's table.
LUNG_RADS_MANAGEMENT: dict[str, str] = {
    "1": ("Negative (here: calcification estimated, the benign calcification rule): continue annual screening with "
          "LDCT in 12 months."),
    "2": "Benign appearance or behaviour: continue annual screening with LDCT in 12 months.",
    "3": "Probably benign: 6-month LDCT.",
    "4A": ("Suspicious: 3-month LDCT; PET/CT may be considered if there is a solid nodule or solid "
           "component of 8 mm or more."),
    "4B": ("Very suspicious: diagnostic chest CT with or without contrast; PET/CT may be considered if there "
           "is a solid nodule or solid component of 8 mm or more; tissue sampling; and/or referral for "
           "further clinical evaluation."),
}

#: How the management text must be read, wherever it is shown.
LUNG_RADS_MANAGEMENT_LABEL = (
    "The management Lung-RADS v2022 attaches to each category, applied as a rule to the automated size "
    "measurements. It is not a diagnosis nor a recommendation for this patient: Lung-RADS is meant for "
    "screening CT and also weighs prior scans, growth, benign features and clinical context, which "
    "LungAI does not assess.")


def summarize(findings: Findings) -> str:
    """Summarize findings in a few lines: the impression, then e.g. ``Right lung: 2.41 L, LAA-950 3.1 %``.

    Stages that did not run are left out; a stage that ran and found nothing says so. The
    emphysema model's probability, when reported, comes with its caveat; warnings (those on
    the densitometry included) end the summary.

    Args:
        findings: the findings of one run.

    Returns:
        The summary, lines joined by newlines, without a trailing newline.
    """
    lines = [f"Impression: {impression(findings)}", *_lung_lines(findings)]
    if findings.emphysema is not None and findings.emphysema.model_probability is not None:
        caveat = "" if findings.emphysema.model_caveat is None else f"; {findings.emphysema.model_caveat}"
        lines.append(f"Emphysema: probability {findings.emphysema.model_probability:.2f} "
                     f"({ESTIMATE_LABEL}{caveat})")
    if findings.nodules or "nodules" in findings.run.tasks:
        masses = sum(nodule.kind == "mass" for nodule in findings.nodules)
        count = f"{len(findings.nodules)} found" + (f" ({masses} over 30 mm: mass)" if masses else "")
        lines.append(f"Nodules and masses: {count if findings.nodules else 'none found'}")
        lines.extend(f"  {_nodule_line(nodule)}" for nodule in findings.nodules)
        if not findings.nodules and findings.detection is not None:
            lines.extend(f"  {line}" for line in none_found_notes(findings.detection))
    lines.extend(f"Warning: {warning}" for warning in findings.warnings)
    return "\n".join(lines)


def _lung_lines(findings: Findings) -> list[str]:
    densitometry = findings.emphysema.densitometry if findings.emphysema is not None else {}
    lines = []
    for region, name in _REGION_NAMES.items():
        parts = []
        if region in findings.lungs:
            parts.append(f"{findings.lungs[region].volume_ml / 1000:.2f} L")
        if region in densitometry:
            parts.append(f"LAA-950 {densitometry[region].laa_950_percent:.1f} %")
            if region == "total":
                parts.append(f"Perc15 {densitometry[region].perc15_hu:.0f} HU")
        if parts:
            lines.append(f"{name}: {', '.join(parts)}")
    return lines


def found_by(nodule: Nodule) -> str:
    """How a lesion was found: ``found by the mass rule``, or its detection score and operating point."""
    if nodule.detected_by == "mass" or nodule.detection_score is None:
        return "found by the mass rule"
    return f"detection score {nodule.detection_score:.2f} ({nodule.operating_point or 'custom'})"


def none_found_notes(detection: DetectionInfo) -> list[str]:
    """What "none found" means at this operating point: its expected sensitivity and known weak spots."""
    point = f"at operating point {detection.operating_point} (score >= {detection.threshold:.2f}"
    if detection.expected_sensitivity is not None:
        point += f"; finds {detection.expected_sensitivity:.0%} of validation nodules"
    if detection.expected_fp_per_scan is not None:
        point += f" with {detection.expected_fp_per_scan:.1f} false positives per scan"
    return [point + ")", *(f"may miss {limit}" for limit in detection.known_limitations)]


def _nodule_line(nodule: Nodule) -> str:
    parts = [f"{nodule.long_axis_mm:.1f} x {nodule.short_axis_mm:.1f} mm",
             f"{nodule.volume_mm3:.0f} mm3", nodule.type]
    parts.append(found_by(nodule))
    if nodule.location:
        parts.append(nodule.location)
    if nodule.malignancy is not None:
        parts.append(f"malignancy {nodule.malignancy.probability:.2f} ({nodule.malignancy.estimates}; "
                     f"{nodule.malignancy.label})")
    if nodule.characteristics is not None:
        parts.append(f"characteristics: {characteristics_text(nodule.characteristics)}")
    if nodule.lung_rads is not None:
        parts.append(f"Lung-RADS {nodule.lung_rads.category} ({nodule.lung_rads.rule})")
    return f"{nodule.kind.capitalize()} {nodule.id}: {', '.join(parts)}"


def characteristics_text(characteristics: Characteristics) -> str:
    """The characteristics in one phrase: the texture, then each binary characteristic that is present.

    E.g. ``texture solid 0.93; calcification 0.88`` or ``texture part-solid 0.61; none of calcification,
    spiculation, lobulation, ill-defined margin``.
    """
    texture = f"texture {characteristics.texture} {characteristics.texture_probability:.2f}"
    present = [f"{name.replace('_', ' ')} {getattr(characteristics, name + '_probability'):.2f}"
               for name in characteristics.present]
    absent = "none of calcification, spiculation, lobulation, ill-defined margin"
    return f"{texture}; {', '.join(present) if present else absent}"


def impression(findings: Findings) -> str:
    """The run's result in one line.

    For example ``2 nodules, largest 31 mm (nodule 1, right lung, upper zone), Lung-RADS 4B
    (size rule); emphysema LAA-950 2.6 %``. A run that found no lesion says at which operating
    point it looked and what that point finds; a task that did not run is named as not assessed.

    Args:
        findings: the findings of one run.
    """
    return f"{_lesion_impression(findings)}; {_emphysema_impression(findings)}"


def _lesion_impression(findings: Findings) -> str:
    nodules = findings.nodules
    if not nodules:
        if "nodules" not in findings.run.tasks:
            return "nodules and masses not assessed (detection did not run)"
        if findings.detection is None:
            return "no nodules or masses found"
        return f"no nodules or masses found {none_found_notes(findings.detection)[0]}"
    masses = sum(nodule.kind == "mass" for nodule in nodules)
    counts = [_count(masses, "mass", "masses"), _count(len(nodules) - masses, "nodule", "nodules")]
    largest = max(nodules, key=lambda nodule: nodule.long_axis_mm)
    where = f", {largest.location}" if largest.location else ""
    text = (f"{' and '.join(count for count in counts if count)}, largest {largest.long_axis_mm:.0f} mm "
            f"({largest.kind} {largest.id}{where})")
    categories = [nodule.lung_rads for nodule in nodules if nodule.lung_rads is not None]
    if categories:
        top = max(categories, key=lambda lung_rads: _lung_rads_rank(lung_rads.category))
        return f"{text}, Lung-RADS {top.category} ({top.rule})"
    return f"{text}, no Lung-RADS category (candidates for review only)"


def _count(number: int, singular: str, plural: str) -> str:
    return "" if number == 0 else f"{number} {singular if number == 1 else plural}"


def _lung_rads_rank(category: str) -> int:
    """Position of a category in :data:`LUNG_RADS_ORDER`; unknown categories rank lowest."""
    return LUNG_RADS_ORDER.index(category) if category in LUNG_RADS_ORDER else -1


def _emphysema_impression(findings: Findings) -> str:
    emphysema = findings.emphysema
    total = emphysema.densitometry.get("total") if emphysema is not None else None
    if emphysema is None or total is None:
        return "emphysema not assessed"
    caveat = " (see the emphysema warnings)" if emphysema.warnings else ""
    return f"emphysema LAA-950 {total.laa_950_percent:.1f} %{caveat}"


def management_rows(findings: Findings) -> list[tuple[str, str]]:
    """(category, management text) for each Lung-RADS category among the findings, least suspicious first."""
    categories = {nodule.lung_rads.category for nodule in findings.nodules if nodule.lung_rads is not None}
    return [(category, LUNG_RADS_MANAGEMENT.get(category, "No management text for this category."))
            for category in sorted(categories, key=_lung_rads_rank)]


def provenance_rows(findings: Findings) -> list[tuple[str, str]]:
    """What produced the findings, as (name, value) rows: version, weights, operating point, tasks, command.

    Reads ``findings.provenance`` where the findings carry one and falls back to ``run`` and
    ``detection`` (findings written before provenance was recorded); what neither records is
    said to be not recorded.
    """
    run = findings.run
    provenance = getattr(findings, "provenance", None)
    weights = "; ".join(f"{w.name} {w.revision} (sha256 {w.sha256[:12]})" for w in run.weights) or "none loaded"
    tasks = _field(provenance, "tasks") or run.tasks
    rows = [("LungAI", f"version {run.lungai_version}, device {run.device}"),
            ("Weights", weights),
            ("Operating point", _operating_point_text(findings, provenance)),
            ("Tasks", ", ".join(str(task) for task in tasks) or "lungs")]
    max_nodules = _field(provenance, "max_nodules")
    if max_nodules is not None:
        rows.append(("Most lesions reported", str(max_nodules)))
    command = _field(provenance, "command")
    if isinstance(command, Sequence) and not isinstance(command, str):
        command = shlex.join(str(part) for part in command)
    rows.append(("Command", str(command) if command else "not recorded in these findings"))
    inputs = _field(provenance, "inputs")
    if inputs:
        rows.append(("Inputs", _plain_text(inputs)))
    return rows


def _operating_point_text(findings: Findings, provenance: Any) -> str:
    """``balanced (score >= 0.80; 0.7 expected false positives per scan)`` from provenance or detection."""
    detection = findings.detection
    name = _field(provenance, "operating_point") or (detection.operating_point if detection else None)
    if name is None:
        return "not applicable (nodule detection did not run)"
    threshold = _field(provenance, "threshold")
    threshold = threshold if threshold is not None else (detection.threshold if detection else None)
    fp = _field(provenance, "expected_false_positives_per_scan")
    fp = fp if fp is not None else (detection.expected_fp_per_scan if detection else None)
    details = [] if threshold is None else [f"score >= {float(threshold):.2f}"]
    details.append("expected false positives per scan not measured (custom threshold)" if fp is None
                   else f"{float(fp):.1f} expected false positives per scan")
    return f"{name} ({'; '.join(details)})"


def _field(record: Any, name: str) -> Any:
    """``record.name`` (or ``record[name]`` for a mapping); ``None`` when the record or the field is absent."""
    if record is None:
        return None
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def _plain_text(value: Any) -> str:
    """A nested record (mapping, list, dataclass) as compact ``key: value`` text."""
    if hasattr(value, "__dataclass_fields__"):
        value = {name: getattr(value, name) for name in value.__dataclass_fields__}
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {_plain_text(item)}" for key, item in value.items() if item not in (None, "", []))
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "; ".join(_plain_text(item) for item in value)
    return str(value)
