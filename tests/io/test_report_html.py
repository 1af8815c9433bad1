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
import pydicom
import pytest
import SimpleITK as sitk
from outputs_cases import Case, require_program

from lungai import labels
from lungai.io.report_html import ReportConfig, write_report_html
from lungai.io.report_text import LUNG_RADS_MANAGEMENT, impression

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
        self.texts: dict[str, str] = {}
        self.captions: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._text: tuple[str, list[str]] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        if tag in ("p", "figcaption") and (tag == "figcaption" or "id" in attributes):
            self._text = (attributes.get("id", ""), [])
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
        if self._text is not None:
            self._text[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "figcaption") and self._text is not None:
            key, parts = self._text
            if tag == "figcaption":
                self.captions.append("".join(parts))
            else:
                self.texts[key] = "".join(parts)
            self._text = None
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


def crops(page: Page, structure: str | None = None, window: str | None = None) -> list[dict[str, str]]:
    """The lesion crops of a page, optionally of one structure key and one window."""
    return [image for image in page.images if image.get("class") == "crop"
            and structure in (None, image["data-structure"]) and window in (None, image["data-window"])]


def instance_numbers_by_z(folder: Path) -> dict[float, int]:
    """InstanceNumber of each file of a DICOM folder, by its slice position (mm), read with pydicom."""
    numbers = {}
    for path in folder.iterdir():
        header = pydicom.dcmread(path, stop_before_pixels=True)
        numbers[round(float(header.ImagePositionPatient[2]), 2)] = int(header.InstanceNumber)
    return numbers


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
    assert first["Malignancy (radiologists' suspicion on LIDC, model estimate)"] == "0.30"
    assert first["Characteristics (model estimates)"] == "texture solid 0.80; spiculation 0.60"
    assert first["Lung-RADS category (rule)"] == "4A (size rule)"
    assert first["Distance to pleura (mm)"] == "-"  # not measured in this case
    assert page.sections == ["lungs", "nodules", "management", "warnings", "lung-mask-qc",
                             "nodule-1", "nodule-2", "nodule-3"]


def test_the_impression_comes_first(report: Path, lidc20_case: Case) -> None:
    text = report.read_text(encoding="utf-8")
    assert Page(text).texts["impression"] == f"Impression: {impression(lidc20_case.findings)}"
    assert text.index("id=\"impression\"") < min(text.index(marker) for marker in ("<table", "<img", "<section"))
    assert impression(lidc20_case.findings).startswith("1 mass and 2 nodules, largest ")


def test_lesion_crops_in_lung_and_mediastinal_windows_with_the_outline(report: Path) -> None:
    page = Page(report.read_text(encoding="utf-8"))
    structures = [labels.nodule(1), labels.nodule(2), labels.nodule(3, "mass")]
    for structure in structures:  # all three are solid: lung and mediastinal window
        for window in ("lung", "mediastinal"):
            images = crops(page, structure.key, window)
            assert [image["data-view"] for image in images] == ["axial", "coronal", "sagittal"]
            color = np.round(np.asarray(structure.color) * 255).astype(np.uint8)
            for image in images:
                pixels = decode_png(image)
                assert pixels.shape == (200, 200, 3)
                outline = np.all(pixels == color, axis=2)
                assert outline.sum() > 20, f"no outline in {image['alt']}"
                rows, columns = np.nonzero(outline)
                # The crop is centred on the lesion.
                assert abs(rows.mean() - 100) < 15 and abs(columns.mean() - 100) < 15
                assert pixels[~outline].std() > 10, "the CT behind the outline is blank"
    # Soft tissue is white in the lung window and grey in the mediastinal one.
    lung, mediastinal = (decode_png(crops(page, "nodule_1", window)[0]) for window in ("lung", "mediastinal"))
    assert lung[100, 100].mean() > 230 and 60 < mediastinal[100, 100].mean() < 200


def test_crops_are_labelled_with_the_dicom_image_number(report: Path, lidc20_case: Case,
                                                        lidc20_folder: Path) -> None:
    page = Page(report.read_text(encoding="utf-8"))
    numbers = instance_numbers_by_z(lidc20_folder)
    ct = lidc20_case.ct.image
    for nodule, row in zip(lidc20_case.findings.nodules, page.rows["nodules-table"][1:]):
        centre_z = min(numbers, key=lambda z: abs(z - nodule.centroid.lps_mm[2]))
        number = numbers[centre_z]
        images = crops(page, f"nodule_{nodule.id}", "lung")
        assert f", image {number}," in images[0]["alt"] and f"through image {number}," in images[1]["alt"]
        # The table's span: the numbers of the slices the segment covers, from the files' own positions.
        covered = np.flatnonzero((sitk.GetArrayViewFromImage(lidc20_case.label_image)
                                  == labels.nodule(nodule.id).value).any(axis=(1, 2)))
        spanned = [numbers[round(ct.TransformIndexToPhysicalPoint((0, 0, int(k)))[2], 2)] for k in covered]
        assert row[2] == f"{min(spanned)}-{max(spanned)}"
    assert page.rows["nodules-table"][0][2] == "DICOM images"
    assert "<th>Slice numbers</th><td>DICOM image number (InstanceNumber)</td>" in report.read_text(encoding="utf-8")


def test_part_solid_and_ground_glass_lesions_get_the_lung_window_only(lidc20_case: Case, tmp_path: Path) -> None:
    first, second, mass = lidc20_case.findings.nodules
    nodules = [dataclasses.replace(first, type="part-solid"), dataclasses.replace(second, type="ground-glass"), mass]
    path = tmp_path / "report.html"
    write_report_html(dataclasses.replace(lidc20_case.findings, nodules=nodules), lidc20_case.ct,
                      lidc20_case.label_image, path)
    page = Page(path.read_text(encoding="utf-8"))
    assert [len(crops(page, key, "mediastinal")) for key in ("nodule_1", "nodule_2", "nodule_3")] == [0, 0, 3]
    assert [len(crops(page, key, "lung")) for key in ("nodule_1", "nodule_2", "nodule_3")] == [3, 3, 3]


def test_lung_rads_management_per_category_found(report: Path) -> None:
    page = Page(report.read_text(encoding="utf-8"))
    head, *rows = page.rows["management-table"]
    assert rows == [["3", LUNG_RADS_MANAGEMENT["3"]], ["4A", LUNG_RADS_MANAGEMENT["4A"]]]
    assert "rule applied to measurements" in report.read_text(encoding="utf-8")


def test_footer_records_how_the_findings_were_made(lidc20_case: Case, tmp_path: Path) -> None:
    findings = dataclasses.replace(lidc20_case.findings)
    path = tmp_path / "before.html"
    write_report_html(findings, lidc20_case.ct, lidc20_case.label_image, path)
    before = dict(Page(path.read_text(encoding="utf-8")).rows["provenance-table"])
    assert before["Command"] == "not recorded in these findings"
    assert before["Tasks"] == "lungs, nodules, emphysema"
    findings.provenance = {"command": ["lungai", "run", "scan.zip", "--sensitivity", "high"], "operating_point": "high",
                           "threshold": 0.5, "expected_false_positives_per_scan": 4.2, "max_nodules": 30,
                           "tasks": ["lungs", "nodules"]}
    path = tmp_path / "after.html"
    write_report_html(findings, lidc20_case.ct, lidc20_case.label_image, path)
    after = dict(Page(path.read_text(encoding="utf-8")).rows["provenance-table"])
    assert after["Command"] == "lungai run scan.zip --sensitivity high"
    assert after["Operating point"] == "high (score >= 0.50; 4.2 expected false positives per scan)"
    assert after["LungAI"].startswith("version 0.1.0")


def qc_image(page: Page) -> np.ndarray:
    (image,) = [image for image in page.images if image.get("class") == "qc"]
    return decode_png(image)


def test_lung_mask_check_without_findings_and_an_emphysema_estimate(lidc20_case: Case, tmp_path: Path) -> None:
    emphysema = dataclasses.replace(lidc20_case.findings.emphysema, model_probability=0.42)
    findings = dataclasses.replace(lidc20_case.findings, nodules=[], emphysema=emphysema)
    label_image = lidc20_case.label_image < labels.NODULE_BASE_VALUE  # lungs only
    path = tmp_path / "report.html"
    write_report_html(findings, lidc20_case.ct, label_image * lidc20_case.label_image, path)
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert crops(page) == [] and "nodules-table" not in page.rows
    assert "No nodules or masses found." in text
    assert "Emphysema probability 0.42 (model estimate, not a diagnosis)" in text
    pixels = qc_image(page)
    for lung in (labels.LUNG_RIGHT, labels.LUNG_LEFT):
        outline = np.all(pixels == np.round(np.asarray(lung.color) * 255).astype(np.uint8), axis=2)
        assert outline.sum() > 100, f"no {lung.name} outline in the lung-mask check"
    # Right lung on the image's left, as radiologists read a coronal view.
    right = np.nonzero(np.all(pixels == np.round(np.asarray(labels.LUNG_RIGHT.color) * 255), axis=2))[1].mean()
    left = np.nonzero(np.all(pixels == np.round(np.asarray(labels.LUNG_LEFT.color) * 255), axis=2))[1].mean()
    assert right < left


def test_lung_mask_check_says_when_the_mask_is_empty(lidc20_case: Case, tmp_path: Path) -> None:
    findings = dataclasses.replace(lidc20_case.findings, nodules=[])
    empty = lidc20_case.label_image * 0
    path = tmp_path / "report.html"
    write_report_html(findings, lidc20_case.ct, empty, path)
    page = Page(path.read_text(encoding="utf-8"))
    assert qc_image(page).shape[1] == 480
    assert any("The lung mask is empty" in caption for caption in page.captions)


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
    assert {decode_png(image).shape for image in crops(Page(path.read_text(encoding="utf-8")))} == {(96, 96, 3)}


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
    assert len(page.images) == 1 + 3 * 6  # the lung-mask check; 3 solid lesions in 2 windows, 3 views each
    for image in page.images:
        assert (image["data-natural-width"], image["data-natural-height"]) == (image["width"], image["height"]), \
            image["alt"]
    assert page.texts["impression"].startswith("Impression: 1 mass and 2 nodules")
