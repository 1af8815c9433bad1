"""report.pdf: laid out from report.html without a browser, with the same text and images."""

from __future__ import annotations

import base64
import re
import zlib
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from outputs_cases import Case

from lungai.io.report_html import write_report_html
from lungai.io.report_pdf import write_report_pdf
from lungai.io.report_text import impression


def pdf_text(pdf: bytes) -> str:
    """The strings the PDF's page content streams show, joined (fpdf2 compresses streams with zlib)."""
    shown = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            content = zlib.decompress(stream)
        except zlib.error:
            continue  # an image
        shown += [part.replace(rb"\(", b"(").replace(rb"\)", b")").decode("latin-1")
                  for part in re.findall(rb"\(((?:[^()\\]|\\.)*)\) ?Tj", content)]
    return " ".join(shown)


@pytest.fixture(scope="module")
def report_pdf(lidc20_case: Case, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report_pdf")
    write_report_html(lidc20_case.findings, lidc20_case.ct, lidc20_case.label_image, folder / "report.html")
    assert write_report_pdf(folder / "report.html", folder / "report.pdf")
    return folder / "report.pdf"


def test_pdf_has_the_reports_images_and_pages(report_pdf: Path) -> None:
    data = report_pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    # The lung-mask check and 3 solid lesions x 2 windows x 3 views, each a distinct image.
    assert len(re.findall(rb"/Subtype /Image", data)) == 1 + 18
    assert len(re.findall(rb"/Type /Page\b", data)) >= 2


def test_pdf_text_matches_the_report(report_pdf: Path, lidc20_case: Case) -> None:
    text = " ".join(pdf_text(report_pdf.read_bytes()).split())
    words = impression(lidc20_case.findings).split()
    assert " ".join(words[:6]) in text  # the impression, wrapped over lines as the page width allows
    for expected in ("Lung-RADS management (rule applied to measurements)", "Lung-mask check",
                     "How these findings were made", "not recorded in these findings", "mm³"):
        assert expected in text.replace("mm\xb3", "mm³"), expected


def test_characters_beyond_latin1_do_not_stop_the_pdf(tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    html.write_text("<html><head><title>LungAI report: a&amp;b</title></head><body>\n<h1>LungAI report</h1>"
                    "<p>score ≥ 0.80 – ok 肺</p>\n</body></html>", encoding="utf-8")
    assert write_report_pdf(html, tmp_path / "report.pdf")
    assert "score >= 0.80 - ok ?" in pdf_text((tmp_path / "report.pdf").read_bytes())


def test_a_page_fpdf2_cannot_lay_out_leaves_no_pdf(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    html = tmp_path / "report.html"
    image = base64.b64encode(iio.imwrite("<bytes>", np.zeros((4, 4, 3), np.uint8), extension=".png")).decode()
    html.write_text(f"<html><body>\n<table><tr><td><img src=\"data:image/png;base64,{image}\">"
                    "<figcaption>a caption beside an image in one cell</figcaption></td></tr></table>\n</body></html>",
                    encoding="utf-8")  # nested tags in a table cell: fpdf2 cannot lay them out
    assert not write_report_pdf(html, tmp_path / "report.pdf")
    assert not (tmp_path / "report.pdf").exists()
    assert "report.pdf not written" in caplog.text
