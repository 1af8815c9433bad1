"""A self-contained HTML report of one run: impression, tables, images and provenance.

``report.html`` needs nothing but a browser: the CSS is inline and every image is a PNG data
URI, so it can be mailed or archived as one file and opens without a network. From the top:

- the one-line impression (:func:`lungai.io.report_text.impression`), the disclaimer and the scan;
- the tables: lung volumes and emphysema (with the warnings and notes that qualify them), the
  nodules and masses (with the DICOM image numbers, or slice numbers, they lie on), the Lung-RADS
  management text of each category found (the rule applied to measurements), and the warnings;
- the images: a coronal lung-mask check, always, and for each lesion an axial, coronal and
  sagittal crop with its outline in the lung window, plus the mediastinal window for solid
  lesions, each labelled with the image number it shows or passes through;
- a footer saying how the findings were made: version, weights, operating point with its
  expected false positives per scan, tasks and the command.

Every model output is labelled as a model estimate and Lung-RADS as a size rule.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungai import labels
from lungai.io.findings import ESTIMATE_LABEL, REGIONS, Findings, Nodule
from lungai.io.image_numbers import ImageNumbers, image_numbers
from lungai.io.report_images import Window, coronal_size, crop, lps_planes, png_base64, render
from lungai.io.report_text import (
    LUNG_RADS_MANAGEMENT_LABEL,
    characteristics_text,
    impression,
    management_rows,
    none_found_notes,
    provenance_rows,
)
from lungai.io.volume import CTVolume
from lungai.labels import Structure

logger = logging.getLogger(__name__)

DISCLAIMER = "Research software, not a diagnosis. Not for clinical use without local validation."
_REGION_NAMES = {"right": "Right lung", "left": "Left lung", "total": "Both lungs"}
#: Crops are padded with this beyond the scan: below the window, so it shows black.
_OUTSIDE_HU = -2000
_ORIENTATION = {"axial": "patient's right on the left", "coronal": "head up, patient's right on the left",
                "sagittal": "head up, anterior on the left"}


@dataclass(frozen=True)
class ReportConfig:
    """How the report's images are made.

    Attributes:
        nodule_fov_mm: smallest field of view of a lesion crop (square, mm).
        fov_per_diameter: a lesion's field of view is at least this many times its long axis.
        image_px: width and height of each crop image in pixels.
        window_level_hu: centre of the lung window.
        window_width_hu: width of the lung window.
        mediastinal_level_hu: centre of the mediastinal (soft-tissue) window, for solid lesions.
        mediastinal_width_hu: width of the mediastinal window.
        qc_width_px: width of the coronal lung-mask check in pixels (its height follows the scan).
    """

    nodule_fov_mm: float = 40.0
    fov_per_diameter: float = 2.5
    image_px: int = 200
    window_level_hu: float = -600.0
    window_width_hu: float = 1500.0
    mediastinal_level_hu: float = 40.0
    mediastinal_width_hu: float = 400.0
    qc_width_px: int = 480

    @property
    def lung_window(self) -> Window:
        """The lung window."""
        return Window("lung", self.window_level_hu, self.window_width_hu)

    @property
    def mediastinal_window(self) -> Window:
        """The mediastinal window."""
        return Window("mediastinal", self.mediastinal_level_hu, self.mediastinal_width_hu)


@dataclass(frozen=True)
class _Lesion:
    """A lesion to show: its finding, structure, centre voxel (z, y, x), crop half-size and slice span."""

    nodule: Nodule
    structure: Structure
    centre_zyx: np.ndarray
    half_zyx: np.ndarray
    fov_mm: float
    z_span: tuple[int, int] | None


def write_report_html(findings: Findings, ct: CTVolume, label_image: sitk.Image, path: Path,
                      config: ReportConfig | None = None) -> None:
    """Write ``report.html`` for one run.

    Args:
        findings: the run's findings.
        ct: the CT the findings are about.
        label_image: the run's label image on the grid of ``ct.image`` (LPS).
        path: output file.
        config: crop sizes and grey-level windows; defaults suit chest CT.

    Raises:
        ValueError: the label image is not on the CT's grid.
    """
    config = config or ReportConfig()
    if label_image.GetSize() != ct.image.GetSize():
        raise ValueError(f"label image size {label_image.GetSize()} differs from the CT's {ct.image.GetSize()}")
    hu = sitk.GetArrayViewFromImage(ct.image)
    label_voxels = sitk.GetArrayViewFromImage(label_image)
    numbers = image_numbers(ct)
    lesions = _lesions(findings, label_voxels, ct.image, config)
    figures = [_lesion_figure(lesion, hu, label_voxels, numbers, config) for lesion in lesions]
    body = "\n".join([_header(findings, numbers), _lung_table(findings), _nodule_table(findings, lesions, numbers),
                      _management(findings), _warnings(findings),
                      _qc_view(findings, hu, label_voxels, ct.image, numbers, config), *figures, _footer(findings)])
    Path(path).write_text(html_page(f"LungAI report: {_scan_name(findings)}", _CSS, body), encoding="utf-8")
    logger.info("wrote %s (lung-mask check and %d lesion figures)", path, len(figures))


def _scan_name(findings: Findings) -> str:
    return Path(findings.input.source).name or findings.input.source


def _header(findings: Findings, numbers: ImageNumbers) -> str:
    run, source = findings.run, findings.input
    rows = [("Scan", _scan_name(findings)),
            ("Format", source.format),
            ("Size", " x ".join(str(n) for n in source.size_xyz) + " voxels, "
             + " x ".join(f"{s:.2f}" for s in source.spacing_xyz_mm) + " mm"),
            ("Series UID", source.series_uid or "not applicable"),
            ("Slice numbers", numbers.description),
            ("Analysed", run.finished_utc or run.started_utc)]
    items = "".join(f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>" for key, value in rows)
    return (f"<header><h1>LungAI report</h1>"
            f"<p id=\"impression\"><strong>Impression:</strong> {html.escape(impression(findings))}</p>"
            f"<p class=\"disclaimer\">{html.escape(DISCLAIMER)}</p>"
            f"<table class=\"meta\">{items}</table></header>")


def _lung_table(findings: Findings) -> str:
    densitometry = findings.emphysema.densitometry if findings.emphysema is not None else {}
    head = ["Region", "Volume (mL)"]
    if densitometry:
        head += ["LAA-950 (%)", "LAA-910 (%)", "LAA-856 (%)", "Perc15 (HU)"]
    rows = []
    for region in REGIONS:
        if region not in findings.lungs and region not in densitometry:
            continue
        cells = [_REGION_NAMES[region],
                 _number(findings.lungs[region].volume_ml, 0) if region in findings.lungs else "-"]
        if densitometry:
            values = densitometry.get(region)
            cells += ["-"] * 4 if values is None else [
                _number(values.laa_950_percent, 1), _number(values.laa_910_percent, 1),
                _number(values.laa_856_percent, 1), _number(values.perc15_hu, 0)]
        rows.append(cells)
    note = "" if densitometry else "<p>Emphysema densitometry did not run.</p>"
    emphysema = findings.emphysema
    if emphysema is not None and emphysema.model_probability is not None:
        model = f", {emphysema.model.name}" if emphysema.model is not None else ""
        caveat = "" if emphysema.model_caveat is None else f"; {emphysema.model_caveat}"
        note += (f"<p id=\"emphysema-probability\">Emphysema probability {emphysema.model_probability:.2f} "
                 f"({html.escape(ESTIMATE_LABEL + model + caveat)}).</p>")
    if emphysema is not None and (emphysema.warnings or emphysema.notes):
        items = "".join(f"<li><strong>Warning:</strong> {html.escape(text)}</li>" for text in emphysema.warnings)
        items += "".join(f"<li>{html.escape(text)}</li>" for text in emphysema.notes)
        note += f"<ul id=\"emphysema-notes\" class=\"note\">{items}</ul>"
    return f"<section id=\"lungs\"><h2>Lungs and emphysema</h2>{_table('lungs', head, rows)}{note}</section>"


def _operating_point_note(findings: Findings) -> str:
    detection = findings.detection
    if detection is None:
        return ""
    notes = none_found_notes(detection)
    items = "".join(f"<li>{html.escape(line)}</li>" for line in notes[1:])
    return (f"<p class=\"note\">Reported {html.escape(notes[0])}; masses at every operating point. "
            f"Known weak spots:</p><ul class=\"note\">{items}</ul>")


def _found_by(nodule: Nodule) -> str:
    if nodule.detected_by == "mass":
        return "mass rule"
    return f"{_number(nodule.detection_score, 2)} ({nodule.operating_point or 'custom'})"


def _nodule_table(findings: Findings, lesions: Sequence[_Lesion], numbers: ImageNumbers) -> str:
    if not findings.nodules:
        ran = "nodules" in findings.run.tasks
        text = "No nodules or masses found." if ran else "Nodule detection did not run."
        return (f"<section id=\"nodules\"><h2>Nodules and masses</h2><p>{text}</p>"
                f"{_operating_point_note(findings)}</section>")
    head = ["ID", "Location", "DICOM images" if numbers.kind == "instance" else "Slices",
            "Distance to pleura (mm)", "Long axis (mm)", "Short axis (mm)", "Volume (mm³)", "Mean HU", "Type",
            "Malignancy (radiologists' suspicion on LIDC, model estimate)", "Characteristics (model estimates)",
            "Lung-RADS category (rule)", "Detection score (operating point)"]
    rows = [[f"{nodule.kind.capitalize()} {nodule.id}", nodule.location or "-",
             _span(lesion, numbers, with_noun=False), _number(nodule.distance_to_pleura_mm, 1),
             _number(nodule.long_axis_mm, 1),
             _number(nodule.short_axis_mm, 1), _number(nodule.volume_mm3, 0), _number(nodule.mean_hu, 0),
             nodule.type,
             "-" if nodule.malignancy is None else f"{nodule.malignancy.probability:.2f}",
             "-" if nodule.characteristics is None else characteristics_text(nodule.characteristics),
             "-" if nodule.lung_rads is None else f"{nodule.lung_rads.category} ({nodule.lung_rads.rule})",
             _found_by(nodule)] for nodule, lesion in zip(findings.nodules, lesions)]
    note = ("<p class=\"note\">Malignancy is a model estimate of radiologists' suspicion on LIDC (trained on "
            "their ratings, not pathology), not a diagnosis. Characteristics (texture, calcification, spiculation, "
            "lobulation, ill-defined margin) are model estimates of LIDC readers' ratings from the nodule's "
            "measurements. The Lung-RADS category is suggested from size and type (the size rule), or is 1 when "
            "calcification is estimated (the benign calcification rule), without the prior scans and findings a "
            "full assessment needs.</p>")
    return (f"<section id=\"nodules\"><h2>Nodules and masses</h2>{_table('nodules', head, rows)}{note}"
            f"{_operating_point_note(findings)}</section>")


def _management(findings: Findings) -> str:
    rows = management_rows(findings)
    if not rows:
        return ""
    return (f"<section id=\"management\"><h2>Lung-RADS management (rule applied to measurements)</h2>"
            f"<p class=\"note\">{html.escape(LUNG_RADS_MANAGEMENT_LABEL)}</p>"
            f"{_table('management', ['Category (size rule)', 'Management Lung-RADS gives this category'], rows)}"
            f"</section>")


def _warnings(findings: Findings) -> str:
    if not findings.warnings:
        return ""
    items = "".join(f"<li>{html.escape(warning)}</li>" for warning in findings.warnings)
    return f"<section id=\"warnings\"><h2>Warnings</h2><ul>{items}</ul></section>"


def _footer(findings: Findings) -> str:
    rows = "".join(f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>"
                   for key, value in provenance_rows(findings))
    return (f"<footer id=\"provenance\"><h2>How these findings were made</h2>"
            f"<table id=\"provenance-table\" class=\"meta\">{rows}</table>"
            f"<p class=\"disclaimer\">{html.escape(DISCLAIMER)}</p></footer>")


def _table(table_id: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    header = "".join(f"<th>{html.escape(cell)}</th>" for cell in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table id=\"{table_id}-table\"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: float | None, decimals: int) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.{decimals}f}"


def _lesions(findings: Findings, label_voxels: np.ndarray, image: sitk.Image, config: ReportConfig) -> list[_Lesion]:
    """The nodules and masses to draw, each centred on its finding, with the slices its segment spans."""
    boxes = ndimage.find_objects(np.asarray(label_voxels))
    spacing_zyx = np.asarray(image.GetSpacing()[::-1])
    lesions = []
    for nodule in findings.nodules:
        structure = labels.nodule(nodule.id, nodule.kind)
        box = boxes[structure.value - 1] if structure.value <= len(boxes) else None
        fov = max(config.nodule_fov_mm, config.fov_per_diameter * nodule.long_axis_mm)
        centre = np.asarray(image.TransformPhysicalPointToIndex(nodule.centroid.lps_mm)[::-1])
        lesions.append(_Lesion(nodule, structure, centre, np.maximum(1, np.round(fov / 2 / spacing_zyx)).astype(int),
                               fov, None if box is None else (box[0].start, box[0].stop - 1)))
    return lesions


def _span(lesion: _Lesion, numbers: ImageNumbers, with_noun: bool = True) -> str:
    """The image numbers the lesion's segment spans (``images 52-61``), or ``-``."""
    span = None if lesion.z_span is None else numbers.span(*lesion.z_span)
    if span is None:
        return "-"
    return span if with_noun else span.split(" ", 1)[1]


def _lesion_figure(lesion: _Lesion, hu: np.ndarray, label_voxels: np.ndarray, numbers: ImageNumbers,
                   config: ReportConfig) -> str:
    """A lesion's section: axial, coronal and sagittal crops with its outline, per window."""
    nodule, structure = lesion.nodule, lesion.structure
    hu_planes = lps_planes(crop(hu, lesion.centre_zyx, lesion.half_zyx, _OUTSIDE_HU), *lesion.half_zyx)
    mask_box = crop(label_voxels, lesion.centre_zyx, lesion.half_zyx, 0) == structure.value
    mask_planes = lps_planes(mask_box, *lesion.half_zyx)
    centre_label = numbers.label(lesion.centre_zyx[0])
    windows = [config.lung_window] + ([config.mediastinal_window] if nodule.type == "solid" else [])
    rows = []
    for window in windows:
        images, captions = [], []
        for view, hu_plane in hu_planes.items():
            rgb = render(hu_plane, mask_planes[view], {1: structure.color}, (config.image_px, config.image_px),
                         window, outer=True, outline_px=2)
            where = (centre_label or "axial slice without a number") if view == "axial" else \
                f"through {centre_label or 'the centre'}"
            images.append(_image(rgb, f"{structure.name}, {view} view, {where}, {window.name} window",
                                 {"structure": structure.key, "view": view, "window": window.name}, "crop"))
            captions.append(f"{view.capitalize()}, {where}, {window.name} window ({_ORIENTATION[view]})")
        # Images and captions in rows of their own: a layout fpdf2 (report.pdf) can follow too.
        image_row = "".join(f"<td>{image}</td>" for image in images)
        caption_row = "".join(f"<td class=\"caption\">{html.escape(text)}</td>" for text in captions)
        rows.append(f"<table class=\"views\"><tr>{image_row}</tr><tr>{caption_row}</tr></table>")
    missing = "" if mask_box.any() else "<p class=\"note\">No segmentation voxels at this position.</p>"
    size = f"{nodule.long_axis_mm:.1f} x {nodule.short_axis_mm:.1f} mm"
    title = ", ".join([f"{nodule.kind.capitalize()} {nodule.id}", *([nodule.location] if nodule.location else []),
                       size])
    ras = ", ".join(f"{value:.1f}" for value in nodule.centroid.ras_mm)
    span = _span(lesion, numbers)
    facts = [*([f"On {span}"] if span != "-" else []), *([f"centre {centre_label}"] if centre_label else []),
             f"centre R/A/S {ras} mm", f"field of view {lesion.fov_mm:.0f} mm", "outline in the segment's colour."]
    return (f"<section class=\"lesion\" id=\"{structure.key.replace('_', '-')}\"><h3>{html.escape(title)}</h3>"
            f"<p>{html.escape('; '.join(facts))}</p>{''.join(rows)}{missing}</section>")


def _qc_view(findings: Findings, hu: np.ndarray, label_voxels: np.ndarray, image: sitk.Image,
             numbers: ImageNumbers, config: ReportConfig) -> str:
    """The lung-mask check: a coronal plane through the lungs with every segment outlined."""
    lungs = np.isin(label_voxels, (labels.LUNG_RIGHT.value, labels.LUNG_LEFT.value))
    per_row = lungs.sum(axis=(0, 2))
    row = int(np.argmax(per_row)) if per_row.any() else hu.shape[1] // 2
    structures = labels.with_nodules(len(findings.nodules), [nodule.kind for nodule in findings.nodules])
    colors = {structure.value: structure.color for structure in structures}
    spacing_x, _, spacing_z = image.GetSpacing()
    size = coronal_size(hu.shape[0] * spacing_z, hu.shape[2] * spacing_x, config.qc_width_px)
    rgb = render(hu[::-1, row], label_voxels[::-1, row], colors, size, config.lung_window, fill_opacity=0.3,
                 outline_px=2)
    if per_row.any():
        slices = np.flatnonzero(lungs.any(axis=(1, 2)))
        extent = numbers.span(int(slices[0]), int(slices[-1]))
        lung_text = f"The lung mask spans {extent}." if extent else ""
    else:
        lung_text = "The lung mask is empty: no lung was found in this scan."
    caption = (f"Coronal plane {row + 1} of {hu.shape[1]} (front to back), the one with most lung; lung window; "
               f"right lung tinted green, left lung blue, lesions in their colours "
               f"({_ORIENTATION['coronal']}). {lung_text}")
    figure = (f"<figure>{_image(rgb, 'Lung-mask check, coronal view', {'view': 'coronal', 'window': 'lung'}, 'qc')}"
              f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return (f"<section id=\"lung-mask-qc\"><h2>Lung-mask check</h2>"
            f"<p class=\"note\">Check that the outlines follow the lungs: the volumes, emphysema figures and "
            f"lesion search all depend on this mask.</p>{figure}</section>")


def _image(rgb: np.ndarray, alt: str, data: dict[str, str], css_class: str) -> str:
    """An ``<img>`` inline as a PNG data URI, with ``data-*`` attributes saying what it shows."""
    attributes = "".join(f" data-{key}=\"{html.escape(value)}\"" for key, value in data.items())
    return (f"<img class=\"{css_class}\" src=\"data:image/png;base64,{png_base64(rgb)}\" "
            f"width=\"{rgb.shape[1]}\" height=\"{rgb.shape[0]}\" alt=\"{html.escape(alt)}\"{attributes}>")


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""


def html_page(title: str, css: str, body: str) -> str:
    """A whole offline HTML page: ``title`` (escaped here), inline ``css`` and the ``body`` markup."""
    return _PAGE.format(title=html.escape(title), css=css, body=body)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1b1b1b; padding: 0 1em; }
h1 { margin-bottom: 0.2em; }
#impression { font-size: 1.15em; margin: 0.4em 0 0.8em; }
.disclaimer { background: #fff3cd; border: 1px solid #e0c36c; padding: 0.5em 0.8em; font-weight: 600; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #c8c8c8; padding: 0.3em 0.6em; text-align: left; }
thead th { background: #eef1f4; }
table.meta th { background: #f6f6f6; font-weight: 600; }
.note { color: #555; font-size: 0.92em; }
table.views { margin: 0 0 0.8em; }
table.views td { border: none; padding: 0 1em 0 0; vertical-align: top; }
figure { margin: 0; }
figcaption { font-size: 0.85em; color: #444; max-width: 480px; }
table.views td.caption { font-size: 0.85em; color: #444; max-width: 200px; text-align: center; }
img.crop, img.qc { display: block; background: #000; }
footer { margin-top: 2em; border-top: 2px solid #c8c8c8; padding-top: 0.5em; }
footer td { font-family: ui-monospace, monospace; font-size: 0.9em; word-break: break-all; }
@media print { table.views, section.lesion { break-inside: avoid; } }
"""
