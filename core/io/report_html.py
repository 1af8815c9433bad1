"""A self-contained HTML report of one run: tables and per-lesion image crops with contours.

``report.html`` needs nothing but a browser: the CSS is inline and every image is a PNG data
URI, so it can be mailed or archived as one file and opens without a network. It shows the
scan, the LungAI version and date, the lung volumes and emphysema figures (with the warnings and
notes that qualify them), a table of the nodules and masses, and for each an axial,
coronal and sagittal crop of the CT in the lung window with the segmentation's outline drawn in
the segment's colour.

Crops are shown as a radiologist reads them: axial and coronal with the patient's right on the
left of the image, coronal and sagittal with the head at the top, sagittal with anterior on the
left. Every model output is labelled as a model estimate and Lung-RADS as a size rule.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import SimpleITK as sitk
from skimage.segmentation import find_boundaries
from skimage.transform import resize

from lungai import labels
from lungai.io.findings import ESTIMATE_LABEL, REGIONS, Findings, Nodule
from lungai.io.volume import CTVolume
from lungai.io.report_text import none_found_notes
from lungai.labels import Structure

logger = logging.getLogger(__name__)

DISCLAIMER = "Research software, not a diagnosis. Not for clinical use without local validation."
_REGION_NAMES = {"right": "Right lung", "left": "Left lung", "total": "Both lungs"}
#: Crops are padded with this beyond the scan: below the window, so it shows black.
_OUTSIDE_HU = -2000


@dataclass(frozen=True)
class ReportConfig:
    """How the report's image crops are made.

    Attributes:
        nodule_fov_mm: smallest field of view of a nodule crop (square, mm).
        fov_per_diameter: a nodule's field of view is at least this many times its long axis.
        image_px: width and height of each crop image in pixels.
        window_level_hu: centre of the grey-level window (lung window).
        window_width_hu: width of the grey-level window.
    """

    nodule_fov_mm: float = 40.0
    fov_per_diameter: float = 2.5
    image_px: int = 200
    window_level_hu: float = -600.0
    window_width_hu: float = 1500.0


@dataclass(frozen=True)
class _Lesion:
    """A segmented lesion to show: its structure, centre (LPS mm) and crop size (mm)."""

    structure: Structure
    title: str
    centre_lps: tuple[float, float, float]
    fov_mm: float


def write_report_html(findings: Findings, ct: CTVolume, label_image: sitk.Image, path: Path,
                      config: ReportConfig | None = None) -> None:
    """Write ``report.html`` for one run.

    Args:
        findings: the run's findings.
        ct: the CT the findings are about.
        label_image: the run's label image on the grid of ``ct.image`` (LPS).
        path: output file.
        config: crop sizes and grey-level window; defaults suit chest CT.

    Raises:
        ValueError: the label image is not on the CT's grid.
    """
    config = config or ReportConfig()
    if label_image.GetSize() != ct.image.GetSize():
        raise ValueError(f"label image size {label_image.GetSize()} differs from the CT's {ct.image.GetSize()}")
    hu = sitk.GetArrayViewFromImage(ct.image)
    label_voxels = sitk.GetArrayViewFromImage(label_image)
    lesions = _lesions(findings, label_voxels, ct.image, config)
    figures = [_lesion_figure(lesion, hu, label_voxels, ct.image, config) for lesion in lesions]
    body = "\n".join([_header(findings), _lung_table(findings), _nodule_table(findings),
                      *figures, _warnings(findings)])
    Path(path).write_text(_PAGE.format(title=html.escape(f"LungAI report: {_scan_name(findings)}"),
                                       css=_CSS, body=body), encoding="utf-8")
    logger.info("wrote %s (%d lesion figures)", path, len(figures))


def _scan_name(findings: Findings) -> str:
    return Path(findings.input.source).name or findings.input.source


def _header(findings: Findings) -> str:
    run, source = findings.run, findings.input
    rows = [("Scan", _scan_name(findings)),
            ("Format", source.format),
            ("Size", " x ".join(str(n) for n in source.size_xyz) + " voxels, "
             + " x ".join(f"{s:.2f}" for s in source.spacing_xyz_mm) + " mm"),
            ("Series UID", source.series_uid or "not applicable"),
            ("Analysed", run.finished_utc or run.started_utc),
            ("LungAI", f"version {run.lungai_version}, device {run.device}, tasks {', '.join(run.tasks) or 'lungs'}")]
    items = "".join(f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>" for key, value in rows)
    return (f"<header><h1>LungAI report</h1><p class=\"disclaimer\">{html.escape(DISCLAIMER)}</p>"
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


def _nodule_table(findings: Findings) -> str:
    if not findings.nodules:
        ran = "nodules" in findings.run.tasks
        text = "No nodules or masses found." if ran else "Nodule detection did not run."
        return (f"<section id=\"nodules\"><h2>Nodules and masses</h2><p>{text}</p>"
                f"{_operating_point_note(findings)}</section>")
    head = ["ID", "Location", "Distance to pleura (mm)", "Long axis (mm)", "Short axis (mm)", "Volume (mm³)", "Mean HU", "Type",
            "Malignancy (model estimate)", "Lung-RADS category (size rule)", "Detection score (operating point)"]
    rows = [[f"{nodule.kind.capitalize()} {nodule.id}", nodule.location or "-", _number(nodule.distance_to_pleura_mm, 1),
             _number(nodule.long_axis_mm, 1),
             _number(nodule.short_axis_mm, 1), _number(nodule.volume_mm3, 0), _number(nodule.mean_hu, 0),
             nodule.type,
             "-" if nodule.malignancy is None else f"{nodule.malignancy.probability:.2f}",
             "-" if nodule.lung_rads is None else nodule.lung_rads.category,
             _found_by(nodule)] for nodule in findings.nodules]
    note = ("<p class=\"note\">Malignancy is a model estimate (trained on radiologists' suspicion ratings, "
            "not pathology), not a diagnosis. The Lung-RADS category is suggested from size and type "
            "only (a size rule), without the prior scans and findings a full assessment needs.</p>")
    return (f"<section id=\"nodules\"><h2>Nodules and masses</h2>{_table('nodules', head, rows)}{note}"
            f"{_operating_point_note(findings)}</section>")



def _warnings(findings: Findings) -> str:
    if not findings.warnings:
        return ""
    items = "".join(f"<li>{html.escape(warning)}</li>" for warning in findings.warnings)
    return f"<section id=\"warnings\"><h2>Warnings</h2><ul>{items}</ul></section>"


def _table(table_id: str, head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    header = "".join(f"<th>{html.escape(cell)}</th>" for cell in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table id=\"{table_id}-table\"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: float | None, decimals: int) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.{decimals}f}"


def _lesions(findings: Findings, label_voxels: np.ndarray, image: sitk.Image,
             config: ReportConfig) -> list[_Lesion]:
    """The nodules and masses to draw, each centred on its finding."""
    lesions = [_nodule_lesion(nodule, config) for nodule in findings.nodules]
    return lesions


def _nodule_lesion(nodule: Nodule, config: ReportConfig) -> _Lesion:
    size = f"{nodule.long_axis_mm:.1f} x {nodule.short_axis_mm:.1f} mm"
    where = f", {nodule.location}" if nodule.location else ""
    return _Lesion(labels.nodule(nodule.id, nodule.kind), f"{nodule.kind.capitalize()} {nodule.id}{where}, {size}",
                   nodule.centroid.lps_mm,
                   max(config.nodule_fov_mm, config.fov_per_diameter * nodule.long_axis_mm))


def _lesion_figure(lesion: _Lesion, hu: np.ndarray, label_voxels: np.ndarray, image: sitk.Image,
                   config: ReportConfig) -> str:
    centre = image.TransformPhysicalPointToIndex(lesion.centre_lps)
    spacing_zyx = np.asarray(image.GetSpacing()[::-1])
    half = np.maximum(1, np.round(lesion.fov_mm / 2 / spacing_zyx)).astype(int)
    centre_zyx = np.asarray(centre[::-1])
    hu_box = _crop(hu, centre_zyx, half, _OUTSIDE_HU)
    mask_box = _crop(label_voxels, centre_zyx, half, 0) == lesion.structure.value
    z, y, x = half
    planes = [("axial", hu_box[z], mask_box[z], "patient's right on the left"),
              ("coronal", hu_box[::-1, y], mask_box[::-1, y], "head up, patient's right on the left"),
              ("sagittal", hu_box[::-1, :, x], mask_box[::-1, :, x], "head up, anterior on the left")]
    color = np.asarray(lesion.structure.color)
    cells = []
    for name, hu_plane, mask_plane, orientation in planes:
        png = _render(hu_plane, mask_plane, color, config)
        alt = f"{lesion.structure.name}, {name} view"
        cells.append(f"<figure><img class=\"crop\" src=\"data:image/png;base64,{png}\" width=\"{config.image_px}\" "
                     f"height=\"{config.image_px}\" alt=\"{html.escape(alt)}\"><figcaption>{name.capitalize()} "
                     f"({html.escape(orientation)})</figcaption></figure>")
    if not mask_box.any():
        cells.append("<p class=\"note\">No segmentation voxels at this position.</p>")
    ras = (-lesion.centre_lps[0], -lesion.centre_lps[1], lesion.centre_lps[2])
    where = ", ".join(f"{value:.1f}" for value in ras)
    section_id = lesion.structure.key.replace("_", "-")
    return (f"<section class=\"lesion\" id=\"{section_id}\"><h3>{html.escape(lesion.title)}</h3>"
            f"<p>Centre R/A/S {where} mm; field of view {lesion.fov_mm:.0f} mm; outline in the segment's colour.</p>"
            f"<div class=\"views\">{''.join(cells)}</div></section>")


def _crop(volume: np.ndarray, centre: np.ndarray, half: np.ndarray, fill: int) -> np.ndarray:
    """The box ``centre - half .. centre + half`` (inclusive) of a (z, y, x) array, padded with ``fill``."""
    out = np.full(tuple(2 * half + 1), fill, dtype=volume.dtype)
    low, high = centre - half, centre + half + 1
    source_low, source_high = np.maximum(low, 0), np.minimum(high, volume.shape)
    if np.any(source_high <= source_low):
        return out
    target_low = source_low - low
    target_high = target_low + (source_high - source_low)
    out[tuple(slice(a, b) for a, b in zip(target_low, target_high))] = \
        volume[tuple(slice(a, b) for a, b in zip(source_low, source_high))]
    return out


def _render(hu_plane: np.ndarray, mask_plane: np.ndarray, color: np.ndarray, config: ReportConfig) -> str:
    """A square RGB PNG (base64) of a CT plane in the lung window with the mask's outline."""
    size = (config.image_px, config.image_px)
    grey = resize(hu_plane.astype(np.float32), size, order=1, preserve_range=True, anti_aliasing=False)
    low = config.window_level_hu - config.window_width_hu / 2
    grey = np.clip((grey - low) / config.window_width_hu, 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    mask = resize(mask_plane.astype(np.float32), size, order=0, preserve_range=True, anti_aliasing=False) > 0.5
    rgb[find_boundaries(mask, mode="outer")] = color
    png = iio.imwrite("<bytes>", np.round(rgb * 255).astype(np.uint8), extension=".png")
    return base64.b64encode(png).decode("ascii")


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

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #1b1b1b; padding: 0 1em; }
h1 { margin-bottom: 0.2em; }
.disclaimer { background: #fff3cd; border: 1px solid #e0c36c; padding: 0.5em 0.8em; font-weight: 600; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #c8c8c8; padding: 0.3em 0.6em; text-align: left; }
thead th { background: #eef1f4; }
table.meta th { background: #f6f6f6; font-weight: 600; }
.note { color: #555; font-size: 0.92em; }
.views { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
figcaption { font-size: 0.85em; color: #444; text-align: center; }
img.crop { display: block; background: #000; }
"""
