"""``report.pdf``: the report's page as a printable PDF, made from ``report.html`` without a browser.

The PDF is laid out by fpdf2 (a pure-Python package) from the very HTML of ``report.html``, so
both hold the same impression, tables, images and footer; the CSS is not applied (fpdf2 reads
the HTML tags only). It uses the PDF's built-in Helvetica, which covers Latin-1: other
characters are spelt in ASCII (``≥`` as ``>=``) or replaced by ``?``.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path

from fpdf import FPDF, FontFace
from fpdf.errors import FPDFException

logger = logging.getLogger(__name__)

#: Characters outside Latin-1 that LungAI's texts use, and their ASCII spelling.
_ASCII = {"≥": ">=", "≤": "<=", "–": "-", "—": "-", "−": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "…": "...",
          "×": "x", "→": "->"}
#: Headings in black, sized like the page's.
_TAG_STYLES = {"h1": FontFace(color=(0, 0, 0), size_pt=18, emphasis="BOLD"),
               "h2": FontFace(color=(0, 0, 0), size_pt=13, emphasis="BOLD"),
               "h3": FontFace(color=(0, 0, 0), size_pt=11, emphasis="BOLD")}


def write_report_pdf(html_path: Path, pdf_path: Path) -> bool:
    """Write the PDF of a report written by :func:`lungai.io.report_html.write_report_html`.

    Args:
        html_path: the ``report.html`` to lay out.
        pdf_path: the PDF to write.

    Returns:
        ``True`` when the PDF was written; ``False`` (with a warning logged) when fpdf2 could not
        lay the page out, in which case no PDF is left behind.
    """
    text = Path(html_path).read_text(encoding="utf-8")
    body = text[text.index("<body>") + len("<body>"):text.rindex("</body>")]
    pdf = FPDF(format="A4")
    title = re.search(r"<title>(.*?)</title>", text)
    pdf.set_title(_latin1(html.unescape(title.group(1))) if title else "LungAI report")
    pdf.set_creator("LungAI")
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    pdf.set_font("helvetica", size=9)
    try:
        pdf.write_html(_latin1(_without_image_sizes(body)), tag_styles=_TAG_STYLES)
        pdf.output(str(pdf_path))
    except (FPDFException, NotImplementedError, ValueError, KeyError) as error:
        logger.warning("report.pdf not written: fpdf2 could not lay out %s (%s)", html_path, error)
        Path(pdf_path).unlink(missing_ok=True)
        return False
    logger.info("wrote %s (%d pages)", pdf_path, pdf.pages_count)
    return True


def _without_image_sizes(body: str) -> str:
    """The HTML without ``width``/``height`` on images: fpdf2 sizes images to their table cell or the page."""
    return re.sub(r"(<img\b[^>]*?)\s(?:width|height)=\"\d+\"(?:\s(?:width|height)=\"\d+\")?", r"\1", body)


def _latin1(text: str) -> str:
    """``text`` with every character the built-in PDF fonts cannot show spelt in ASCII or replaced by ``?``."""
    for character, ascii_text in _ASCII.items():
        text = text.replace(character, ascii_text)
    return text.encode("latin-1", "replace").decode("latin-1")
