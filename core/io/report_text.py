"""A short plain-text summary of findings, for the command line to print."""

from __future__ import annotations

from lungai.io.findings import ESTIMATE_LABEL, Findings, Nodule

_REGION_NAMES = {"right": "Right lung", "left": "Left lung", "total": "Both lungs"}


def summarize(findings: Findings) -> str:
    """Summarize findings in a few lines, e.g. ``Right lung: 2.41 L, LAA-950 3.1 %``.

    Stages that did not run are left out; a stage that ran and found nothing says so.

    Args:
        findings: the findings of one run.

    Returns:
        The summary, lines joined by newlines, without a trailing newline.
    """
    lines = _lung_lines(findings)
    if findings.emphysema is not None and findings.emphysema.model_probability is not None:
        lines.append(f"Emphysema: probability {findings.emphysema.model_probability:.2f} "
                     f"({ESTIMATE_LABEL})")
    if findings.nodules or "nodules" in findings.run.tasks:
        lines.append(f"Nodules: {len(findings.nodules) or 'none'} found")
        lines.extend(f"  {_nodule_line(nodule)}" for nodule in findings.nodules)
    if findings.tumour is not None:
        tumour = findings.tumour
        axis = "" if tumour.long_axis_mm is None else f", long axis {tumour.long_axis_mm:.1f} mm"
        lines.append(f"Tumour: {tumour.volume_ml:.1f} mL{axis}")
    elif "tumour" in findings.run.tasks:
        lines.append("Tumour: none found")
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


def _nodule_line(nodule: Nodule) -> str:
    parts = [f"{nodule.long_axis_mm:.1f} x {nodule.short_axis_mm:.1f} mm",
             f"{nodule.volume_mm3:.0f} mm3", nodule.type]
    if nodule.location:
        parts.append(nodule.location)
    if nodule.malignancy is not None:
        parts.append(f"malignancy {nodule.malignancy.probability:.2f} ({nodule.malignancy.label})")
    if nodule.lung_rads is not None:
        parts.append(f"Lung-RADS {nodule.lung_rads.category} ({nodule.lung_rads.rule})")
    return f"Nodule {nodule.id}: {', '.join(parts)}"
