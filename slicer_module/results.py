"""A run's output files, and the rows and summary the Slicer module shows for them.

Everything here works on the files and on the typed findings of ``findings.json``
(:func:`lungai.io.findings.read_findings`); turning the rows into MRML nodes is
:mod:`lungai.slicer.mrml`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lungai.io.findings import ESTIMATE_LABEL, REGIONS, Findings, Nodule
from lungai.io.report_text import characteristics_text as estimated_characteristics

SEGMENTATION_SUFFIX = ".seg.nrrd"
FINDINGS_FILE = "findings.json"
REPORT_FILE = "report.html"
NODULES_FILE = "nodules.csv"

_REGION_TITLES = {"right": "Right lung", "left": "Left lung", "total": "Both lungs"}


@dataclass(frozen=True)
class OutputFiles:
    """The files of one run's output folder.

    Attributes:
        folder: the output folder.
        segmentation: the ``<name>.seg.nrrd``.
        findings: ``findings.json``.
        report: ``report.html``, if this version writes one.
        nodules: ``nodules.csv``, if present.
    """

    folder: Path
    segmentation: Path
    findings: Path
    report: Path | None = None
    nodules: Path | None = None

    @property
    def stem(self) -> str:
        """The outputs' name: the segmentation file name without ``.seg.nrrd``."""
        return self.segmentation.name[: -len(SEGMENTATION_SUFFIX)]


def find_output_files(folder: Path) -> OutputFiles:
    """Find the files of a ``lungai run`` output folder.

    Args:
        folder: the output folder.

    Returns:
        Its files.

    Raises:
        FileNotFoundError: the folder lacks ``findings.json`` or exactly one ``.seg.nrrd``.
    """
    folder = Path(folder)
    segmentations = sorted(folder.glob(f"*{SEGMENTATION_SUFFIX}"))
    if len(segmentations) != 1:
        raise FileNotFoundError(f"{folder} should hold one {SEGMENTATION_SUFFIX} file, "
                                f"found {len(segmentations)}")
    findings = folder / FINDINGS_FILE
    if not findings.is_file():
        raise FileNotFoundError(f"{folder} holds no {FINDINGS_FILE}")
    report, nodules = folder / REPORT_FILE, folder / NODULES_FILE
    return OutputFiles(folder=folder, segmentation=segmentations[0], findings=findings,
                       report=report if report.is_file() else None,
                       nodules=nodules if nodules.is_file() else None)


@dataclass(frozen=True)
class NoduleRow:
    """One lesion as the nodule table shows it (``None``: not measured or not given).

    Attributes:
        id: the lesion's id; its segment is ``lungai.labels.nodule(id)``.
        kind: ``nodule`` or ``mass`` (long axis over 30 mm).
        type: solid, part-solid or ground-glass.
        long_axis_mm: longest in-plane diameter.
        short_axis_mm: longest diameter perpendicular to it.
        volume_mm3: segmented volume.
        solid_component_mm: mean diameter of a part-solid lesion's solid part.
        lung_rads: the size-rule category (``4A``, ...); ``None`` for lesions below ``specific``.
        malignancy: the ensemble's malignancy estimate, 0..1; ``None`` if not run or not given.
        characteristics: the finding's characteristics as text; empty when it has none.
        location: where it is, e.g. ``right lung``; empty if unknown.
        detection_score: the detector's confidence, 0..1; ``None`` for a mass found by the mass
            rule (shown at every operating point).
        operating_point: the strictest operating point the score passed, if any.
        position_ras_mm: centroid in RAS millimetres (Slicer's frame).
        review: the reviewer's verdict as shown, e.g. ``accepted, edited``; empty before review.
    """

    id: int
    kind: str
    type: str
    long_axis_mm: float | None
    short_axis_mm: float | None
    volume_mm3: float | None
    solid_component_mm: float | None
    lung_rads: str | None
    malignancy: float | None
    characteristics: str
    location: str
    detection_score: float | None
    operating_point: str | None
    position_ras_mm: tuple[float, float, float]
    review: str = ""

    @property
    def title(self) -> str:
        """The lesion's segment name, e.g. ``Nodule 2`` or ``Mass 1``."""
        return f"{self.kind.capitalize()} {self.id}"

    @property
    def description(self) -> str:
        """A short text for the lesion's point, e.g. ``Nodule 2: 8.1 x 6.0 mm, solid``."""
        size = (f"{self.long_axis_mm:.1f} x {self.short_axis_mm:.1f} mm, "
                if self.long_axis_mm is not None and self.short_axis_mm is not None else "")
        return f"{self.title}: {size}{self.type}"

    @property
    def score_text(self) -> str:
        """The detection score with the operating point it passed, or ``mass rule``."""
        if self.detection_score is None:
            return "mass rule"
        return f"{self.detection_score:.3f} ({self.operating_point or 'below high'})"


@dataclass(frozen=True)
class EmphysemaRow:
    """Lung volume and densitometry of one region (``None``: not measured).

    Attributes:
        region: ``right``, ``left`` or ``total``.
        title: ``Right lung``, ``Left lung`` or ``Both lungs``.
        volume_ml: lung volume in millilitres.
        laa_950_percent: percentage of lung voxels below -950 HU.
        laa_910_percent: percentage below -910 HU.
        laa_856_percent: percentage below -856 HU.
        perc15_hu: 15th percentile of the lung's HU histogram.
    """

    region: str
    title: str
    volume_ml: float | None
    laa_950_percent: float | None
    laa_910_percent: float | None
    laa_856_percent: float | None
    perc15_hu: float | None


def characteristics_text(nodule: Nodule) -> str:
    """A finding's characteristics estimates as one line, as the report shows them; empty when it has none."""
    return "" if nodule.characteristics is None else estimated_characteristics(nodule.characteristics)


def nodule_row(nodule: Nodule, review: str = "") -> NoduleRow:
    """The table row of one lesion.

    Args:
        nodule: one of the findings' ``nodules`` (or a reviewer's re-measured record).
        review: the reviewer's verdict to show (see :meth:`lungai.slicer.review.Review.verdict`).
    """
    x, y, z = nodule.centroid.ras_mm
    return NoduleRow(
        id=nodule.id, kind=nodule.kind, type=nodule.type, long_axis_mm=nodule.long_axis_mm,
        short_axis_mm=nodule.short_axis_mm, volume_mm3=nodule.volume_mm3, solid_component_mm=nodule.solid_component_mm,
        lung_rads=None if nodule.lung_rads is None else nodule.lung_rads.category,
        malignancy=None if nodule.malignancy is None else nodule.malignancy.probability,
        characteristics=characteristics_text(nodule), location=nodule.location or "",
        detection_score=nodule.detection_score, operating_point=nodule.operating_point,
        position_ras_mm=(float(x), float(y), float(z)), review=review)


def emphysema_rows(findings: Findings) -> list[EmphysemaRow]:
    """Lung volumes and densitometry per region; empty when emphysema was not measured.

    Returns:
        One row per region the findings hold, right, left, then both lungs.
    """
    if findings.emphysema is None:
        return []
    densitometry, lungs = findings.emphysema.densitometry, findings.lungs
    rows = []
    for region in REGIONS:
        if region not in densitometry and region not in lungs:
            continue
        density, lung = densitometry.get(region), lungs.get(region)
        rows.append(EmphysemaRow(
            region=region, title=_REGION_TITLES[region], volume_ml=None if lung is None else lung.volume_ml,
            laa_950_percent=None if density is None else density.laa_950_percent,
            laa_910_percent=None if density is None else density.laa_910_percent,
            laa_856_percent=None if density is None else density.laa_856_percent,
            perc15_hu=None if density is None else density.perc15_hu))
    return rows


def summary_text(findings: Findings, shown: int, hidden: int, min_detection_score: float,
                 review: str = "") -> str:
    """The few lines shown above the result tables.

    Args:
        findings: the run's findings.
        shown: number of nodules shown.
        hidden: number of nodules below the operating point.
        min_detection_score: the operating point used.
        review: the review's state in a few words (see :meth:`lungai.slicer.review.Review.progress`),
            shown after the nodules; empty before any review.

    Returns:
        Lines joined by newlines: lung volumes, emphysema, nodules and masses, warnings; stages
        that did not run are left out.
    """
    lines = []
    volumes = [f"{side} {lung.volume_ml / 1000:.2f} L" for side in ("right", "left")
               if (lung := findings.lungs.get(side)) is not None and lung.volume_ml is not None]
    if volumes:
        lines.append(f"Lungs: {', '.join(volumes)}")
    emphysema = findings.emphysema
    total = None if emphysema is None else emphysema.densitometry.get("total")
    if total is not None and total.laa_950_percent is not None:
        perc15 = "" if total.perc15_hu is None else f", Perc15 {total.perc15_hu:.0f} HU"
        lines.append(f"Emphysema: LAA-950 {total.laa_950_percent:.1f} % of both lungs{perc15}")
    if emphysema is not None and emphysema.model_probability is not None:  # --emphysema-probability only, never Slicer
        caveat = f"; {emphysema.model_caveat}" if emphysema.model_caveat else ""
        lines.append(f"Emphysema model: probability {emphysema.model_probability:.2f} ({ESTIMATE_LABEL}{caveat})")
    if shown or hidden or "nodules" in findings.run.tasks:
        text = f"Nodules: {shown} shown" if shown or hidden else "Nodules: none found"
        if hidden:
            text += f", {hidden} below the operating point {min_detection_score:.2f} hidden"
        lines.append(text)
    if review:
        lines.append(f"Review: {review}")
    lines.extend(f"Warning: {warning}" for warning in findings.warnings)
    return "\n".join(lines)
