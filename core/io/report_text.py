"""A short plain-text summary of findings, for the command line to print."""

from __future__ import annotations

from lungai.io.findings import ESTIMATE_LABEL, DetectionInfo, Findings, Nodule

_REGION_NAMES = {"right": "Right lung", "left": "Left lung", "total": "Both lungs"}


def summarize(findings: Findings) -> str:
    """Summarize findings in a few lines, e.g. ``Right lung: 2.41 L, LAA-950 3.1 %``.

    Stages that did not run are left out; a stage that ran and found nothing says so. The
    emphysema model's probability, when reported, comes with its caveat; warnings (those on
    the densitometry included) end the summary.

    Args:
        findings: the findings of one run.

    Returns:
        The summary, lines joined by newlines, without a trailing newline.
    """
    lines = _lung_lines(findings)
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
        parts.append(f"malignancy {nodule.malignancy.probability:.2f} ({nodule.malignancy.label})")
    if nodule.lung_rads is not None:
        parts.append(f"Lung-RADS {nodule.lung_rads.category} ({nodule.lung_rads.rule})")
    return f"{nodule.kind.capitalize()} {nodule.id}: {', '.join(parts)}"
