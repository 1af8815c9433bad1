"""report.html: self-contained, with the tables and crops, rendered by headless Chromium."""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from lungai import labels
from lungai.io.report_html import ReportConfig, write_report_html
from outputs_cases import Case, require_program

#: Headless Chromium with everything that would reach a network or a profile turned off.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--virtual-time-budget=5000"]

#: Added to a copy of the report only: records, once the page has loaded, how big each image decoded.
PROBE = """<script>
window.addEventListener("load", () => {
  for (const img of document.images) {
    img.setAttribute("data-natural-width", img.naturalWidth);
    img.setAttribute("data-natural-height", img.naturalHeight);
  }
  document.body.setAttribute("data-probed", "yes");
});
</script>"""


class Page(HTMLParser):
    """The parts of a page the tests look at: images, table rows by table id, section ids."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.rows: dict[str, list[list[str]]] = {}
        self.sections: list[str] = []
        self.body: dict[str, str] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag == "img":
            self.images.append(attributes)
        elif tag == "body":
            self.body = attributes
        elif tag == "section":
            self.sections.append(attributes.get("id", ""))
        elif tag == "table" and "id" in attributes:
            self._table = attributes["id"]
            self.rows[self._table] = []
        elif tag == "tr" and self._table:
            self.rows[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.rows[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None


@pytest.fixture(scope="module")
def report(lidc20_case: Case, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report_html(lidc20_case.findings, lidc20_case.ct, lidc20_case.label_image, path)
    return path


def decode_png(image: dict[str, str]) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert image["src"].startswith(prefix)
    return iio.imread(io.BytesIO(base64.b64decode(image["src"][len(prefix):])), extension=".png")


def test_self_contained(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert not re.search(r"(src|href)\s*=\s*\"(?!data:)", text), "a reference to another file"
    assert "http://" not in text and "https://" not in text and "url(" not in text


def test_header_and_tables(report: Path, lidc20_case: Case) -> None:
    text = report.read_text(encoding="utf-8")
    page = Page(text)
    assert "Research software, not a diagnosis" in text
    assert lidc20_case.ct.series_uid in text and "0.1.0" in text
    lungs = page.rows["lungs-table"]
    assert [row[0] for row in lungs[1:]] == ["Right lung", "Left lung", "Both lungs"]
    total = lidc20_case.findings.lungs["total"].volume_ml
    assert lungs[3][1] == f"{total:.0f}"
    assert lungs[0][2] == "LAA-950 (%)"
    head, *nodules = page.rows["nodules-table"]
    assert [row[0] for row in nodules] == ["Nodule 1", "Nodule 2", "Mass 3"]
    first = dict(zip(head, nodules[0]))
    nodule = lidc20_case.findings.nodules[0]
    assert first["Location"] == "right lung"
    assert (first["Long axis (mm)"], first["Short axis (mm)"]) == (f"{nodule.long_axis_mm:.1f}",
                                                                   f"{nodule.short_axis_mm:.1f}")
    assert first["Malignancy (model estimate)"] == "0.30"
    assert first["Lung-RADS category (size rule)"] == "4A"
    assert first["Distance to pleura (mm)"] == "-"  # not measured in this case
    assert page.sections[-4:] == ["nodule-1", "nodule-2", "nodule-3", "warnings"]


def test_three_crops_per_lesion_with_the_outline(report: Path) -> None:
    page = Page(report.read_text(encoding="utf-8"))
    assert len(page.images) == 9  # nodule 1, nodule 2, mass 3: axial, coronal, sagittal
    structures = [labels.nodule(1), labels.nodule(2), labels.nodule(3, "mass")]
    for index, image in enumerate(page.images):
        pixels = decode_png(image)
        assert pixels.shape == (200, 200, 3)
        color = np.round(np.asarray(structures[index // 3].color) * 255).astype(np.uint8)
        outline = np.all(pixels == color, axis=2)
        assert outline.sum() > 20, f"no outline in {image['alt']}"
        rows, columns = np.nonzero(outline)
        # The crop is centred on the lesion.
        assert abs(rows.mean() - 100) < 15 and abs(columns.mean() - 100) < 15
        assert pixels[~outline].std() > 10, "the CT behind the outline is blank"


def test_no_nodules_and_an_emphysema_estimate(lidc20_case: Case, tmp_path: Path) -> None:
    emphysema = dataclasses.replace(lidc20_case.findings.emphysema, model_probability=0.42)
    findings = dataclasses.replace(lidc20_case.findings, nodules=[], emphysema=emphysema)
    label_image = lidc20_case.label_image < labels.NODULE_BASE_VALUE  # lungs only
    path = tmp_path / "report.html"
    write_report_html(findings, lidc20_case.ct, label_image * lidc20_case.label_image, path)
    page = Page(path.read_text(encoding="utf-8"))
    assert page.images == [] and "nodules-table" not in page.rows
    assert "No nodules or masses found." in path.read_text(encoding="utf-8")
    assert "Emphysema probability 0.42 (model estimate, not a diagnosis)" in path.read_text(encoding="utf-8")


def test_the_emphysema_caveat_warnings_and_notes_sit_beside_the_densitometry(lidc20_case: Case,
                                                                             tmp_path: Path) -> None:
    emphysema = dataclasses.replace(lidc20_case.findings.emphysema, model_probability=0.93,
                                    model_caveat="demonstration weights, not validated",
                                    warnings=["slices are 5.0 mm thick"], notes=["LAA-856 is expiratory"])
    findings = dataclasses.replace(lidc20_case.findings, emphysema=emphysema)
    path = tmp_path / "report.html"
    write_report_html(findings, lidc20_case.ct, lidc20_case.label_image, path)
    text = path.read_text(encoding="utf-8")
    lungs = text[text.index("<section id=\"lungs\">"):text.index("</section>", text.index("<section id=\"lungs\">"))]
    assert ("Emphysema probability 0.93 (model estimate, not a diagnosis; demonstration weights, not validated)"
            in lungs)
    assert ("<ul id=\"emphysema-notes\" class=\"note\"><li><strong>Warning:</strong> slices are 5.0 mm thick</li>"
            "<li>LAA-856 is expiratory</li></ul>") in lungs


def test_config_sets_crop_size(lidc20_case: Case, tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    write_report_html(lidc20_case.findings, lidc20_case.ct, lidc20_case.label_image, path, ReportConfig(image_px=96))
    assert {decode_png(image).shape for image in Page(path.read_text(encoding="utf-8")).images} == {(96, 96, 3)}


def test_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    chromium = require_program("chromium", "chromium-browser", package="chromium")
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                             probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    page = Page(result.stdout)
    assert page.body.get("data-probed") == "yes", "the page did not finish loading"
    assert [row[0] for row in page.rows["nodules-table"][1:]] == ["Nodule 1", "Nodule 2", "Mass 3"]
    assert len(page.images) == 9
    for image in page.images:
        assert (image["data-natural-width"], image["data-natural-height"]) == ("200", "200"), image["alt"]
