"""``report.html`` of a follow-up: one self-contained page (inline CSS, PNG data URIs).

From the top: the impression (matched, grown, new, resolved), the disclaimer, the two scans with
their dates and the registration's quality, the warnings, the table of nodule pairs with their
change and categories (rules applied to measurements), and for each nodule its prior and current
crops side by side: axial and coronal planes through its centroid, the same field of view in
millimetres, the same pixel size and the same lung window on both scans, its outline in its
segment's colour. The drawing helpers are :mod:`lungai.io.report_images`'.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungai import labels
from lungai.followup.categories import RULE_LABEL
from lungai.followup.engine import FollowUp, Lesion, Pair
from lungai.followup.outputs import segment_name
from lungai.io.report_html import _CSS, DISCLAIMER, ReportConfig, html_page
from lungai.io.report_images import crop, lps_planes, png_base64, render
from lungai.io.report_text import LUNG_RADS_MANAGEMENT_LABEL

logger = logging.getLogger(__name__)

_OUTSIDE_HU = -2000
_VIEWS = ("axial", "coronal")


def write_report_html(result: FollowUp, document: dict[str, Any], path: Path,
                      config: ReportConfig | None = None) -> None:
    """Write the follow-up's ``report.html`` (see the module docstring)."""
    config = config or ReportConfig()
    figures = [_pair_figure(result, pair, number, config) for number, pair in enumerate(result.pairs, start=1)]
    body = "\n".join([_header(result, document), _warnings(result), _table(result), *figures,
                      f"<footer><p class=\"note\">{html.escape(LUNG_RADS_MANAGEMENT_LABEL)}</p>"
                      f"<p class=\"disclaimer\">{html.escape(DISCLAIMER)}</p></footer>"])
    Path(path).write_text(html_page("LungAI follow-up report", _CSS, body), encoding="utf-8")
    logger.info("wrote %s (%d nodule figures)", path, len(figures))


def impression(result: FollowUp) -> str:
    """One line: how many nodules were matched (and grew), new and resolved."""
    matched = [p for p in result.pairs if p.status == "matched"]
    grew = sum(p.growth is not None and p.growth.lung_rads_growth for p in matched)
    new = sum(p.status == "new" for p in result.pairs)
    resolved = sum(p.status == "resolved" for p in result.pairs)
    return (f"{len(matched)} nodule(s) matched with the prior ({grew} grew by more than 1.5 mm), "
            f"{new} new, {resolved} resolved.")


def _header(result: FollowUp, document: dict[str, Any]) -> str:
    registration = document["registration"]
    rows = [("Prior", f"{document['prior']['source']} ({document['prior']['date'] or 'no date'})"),
            ("Current", f"{document['current']['source']} ({document['current']['date'] or 'no date'})"),
            ("Interval", "unknown" if result.interval_days is None else f"{result.interval_days} days"),
            ("Registration", f"{registration['method']}; lung-mask Dice {registration['lung_dice']:.3f} "
                             f"(right {registration['lung_dice_right']:.3f}, left {registration['lung_dice_left']:.3f})"
                             f", quality {registration['quality']}"),
            ("LungAI", f"{document['lungai_version']}; {document['command'] or 'python API'}")]
    items = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return (f"<header><h1>LungAI follow-up report</h1>"
            f"<p id=\"impression\"><strong>Impression:</strong> {html.escape(impression(result))}</p>"
            f"<p class=\"disclaimer\">{html.escape(DISCLAIMER)}</p><table class=\"meta\">{items}</table></header>")


def _warnings(result: FollowUp) -> str:
    if not result.warnings:
        return ""
    items = "".join(f"<li>{html.escape(warning)}</li>" for warning in result.warnings)
    return f"<section id=\"warnings\"><h2>Warnings</h2><ul>{items}</ul></section>"


def _number(value: float | None, decimals: int) -> str:
    return "-" if value is None else f"{value:.{decimals}f}"


def _size(lesion: Lesion | None) -> str:
    if lesion is None:
        return "-"
    found = " (segmented at the mapped position)" if lesion.found_by == "mapped_segmentation" else ""
    return (f"Nodule {lesion.nodule_id}: {lesion.size.mean_diameter_mm:.1f} mm, "
            f"{lesion.size.volume_mm3:.0f} mm³, {lesion.type}{found}")


def _table(result: FollowUp) -> str:
    head = ["#", "Status", "Prior", "Current", "Mean diameter change (mm)", "Volume change", "VDT (days)",
            f"Lung-RADS ({RULE_LABEL})", "Fleischner 2017"]
    rows = []
    for number, pair in enumerate(result.pairs, start=1):
        growth = pair.growth
        volume = "-" if growth is None else f"{growth.volume_change_mm3:+.0f} mm³ ({growth.volume_change_pct:+.0f} %)"
        vdt = "-" if growth is None else (_number(growth.vdt_days, 0) if growth.vdt_days is not None
                                          else growth.vdt_note)
        lung_rads = "-" if pair.lung_rads is None else f"{pair.lung_rads['category']}: {pair.lung_rads['rule']}"
        fleischner = "-" if pair.fleischner is None else pair.fleischner["recommendation"]
        rows.append([str(number), pair.status, _size(pair.prior), _size(pair.current),
                     "-" if growth is None else f"{growth.mean_diameter_change_mm:+.1f}", volume, vdt, lung_rads,
                     fleischner])
    header = "".join(f"<th>{html.escape(cell)}</th>" for cell in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    empty = "" if rows else "<p>No nodules in either scan.</p>"
    return (f"<section id=\"pairs\"><h2>Nodules, prior and current</h2><table id=\"pairs-table\"><thead><tr>{header}"
            f"</tr></thead><tbody>{body}</tbody></table>{empty}<p class=\"note\">Lung-RADS and Fleischner are "
            f"{html.escape(RULE_LABEL)}: they know size, type and change only.</p></section>")


def _crops(image: sitk.Image, label_array: np.ndarray, lesion: Lesion, fov_mm: float,
           config: ReportConfig) -> list[str]:
    """The lesion's axial and coronal crops (lung window) as ``<img>`` tags."""
    hu = sitk.GetArrayViewFromImage(image)
    spacing = np.asarray(image.GetSpacing()[::-1])
    centre = np.asarray(image.TransformPhysicalPointToIndex([float(v) for v in lesion.centre_lps_mm])[::-1])
    half = np.maximum(1, np.round(fov_mm / 2 / spacing)).astype(int)
    hu_planes = lps_planes(crop(hu, centre, half, _OUTSIDE_HU), *half)
    value = labels.NODULE_BASE_VALUE + lesion.nodule_id
    mask_planes = lps_planes(crop(label_array, centre, half, 0) == value, *half)
    color = labels.nodule(lesion.nodule_id).color
    tags = []
    for view in _VIEWS:
        rgb = render(hu_planes[view], mask_planes[view], {1: color}, (config.image_px, config.image_px),
                     config.lung_window, outer=True, outline_px=2)
        tags.append(f"<img class=\"crop\" src=\"data:image/png;base64,{png_base64(rgb)}\" width=\"{rgb.shape[1]}\" "
                    f"height=\"{rgb.shape[0]}\" alt=\"{view} view\" data-view=\"{view}\">")
    return tags


def _pair_figure(result: FollowUp, pair: Pair, number: int, config: ReportConfig) -> str:
    lesions = [lesion for lesion in (pair.prior, pair.current) if lesion is not None]
    fov = max(config.nodule_fov_mm, config.fov_per_diameter * max(lesion.size.long_axis_mm for lesion in lesions))
    cells, captions = [], []
    for role, lesion in (("prior", pair.prior), ("current", pair.current)):
        scan = result.prior if role == "prior" else result.current
        if lesion is None:
            cells.append(f"<td colspan=\"2\">{'resolved: not found' if role == 'current' else 'not in the prior'}</td>")
            captions.append("<td colspan=\"2\"></td>")
            continue
        cells += [f"<td>{tag}</td>" for tag in _crops(scan.volume.image, result.lesion_labels[role], lesion, fov,
                                                      config)]
        date = result.dates[0 if role == "prior" else 1]
        captions += [f"<td class=\"caption\">{role.capitalize()} ({date or 'no date'}), {view}, lung window</td>"
                     for view in _VIEWS]
    title = f"{number}. {pair.status}: {segment_name(pair) or f'prior Nodule {pair.prior.nodule_id}'}"  # type: ignore[union-attr]  # a pair has a prior or a current nodule
    category = "" if pair.lung_rads is None else f" Lung-RADS {pair.lung_rads['category']} ({pair.lung_rads['rule']})."
    change = "" if pair.growth is None else (f" Mean diameter {pair.growth.mean_diameter_change_mm:+.1f} mm, volume "
                                             f"{pair.growth.volume_change_pct:+.0f} %.")
    return (f"<section class=\"lesion\" id=\"pair-{number}\"><h3>{html.escape(title)}</h3>"
            f"<p>{html.escape(f'Field of view {fov:.0f} mm on both scans, same scale and window.{change}{category}')}"
            f"</p><table class=\"views\"><tr>{''.join(cells)}</tr><tr>{''.join(captions)}</tr></table></section>")
