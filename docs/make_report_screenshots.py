"""Make the screenshots of ``report.html`` in docs/outputs.md from real LungAI runs.

For each scan (LIDC-IDRI-0001, LIDC-IDRI-0002, Lung-PET-CT-Dx A0001 from the shared test data)
this runs ``lungai run`` once into ``--runs`` (a folder that already holds a run is reused),
renders the report again from that run's ``findings.json``, label map and scan with the
current report code, and photographs the whole page with headless Chromium (as
``tests/io/test_report_html.py`` renders it). The page is scaled to ``--width`` pixels and
stored as a PNG of 256 colours (an octree palette, which keeps the outlines' colours) in
``docs/images/report_<scan>.png``.

Usage::

    .venv/bin/python docs/make_report_screenshots.py [--runs /tmp/lungai_report_runs] [--out docs/images]

Exit status 0 on success; 1, with the reason logged, when the data, a run or Chromium fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import SimpleITK as sitk
from PIL import Image

from lungai.errors import LungAIError
from lungai.io.findings import findings_from_dict
from lungai.io.reader import read_scan
from lungai.io.report_html import write_report_html

logger = logging.getLogger("make_report_screenshots")

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LUNGAI_TEST_DATA", REPO.parent / "shared" / "data"))
#: (name used in file names, scan path under the data folder).
SCANS = (("LIDC-IDRI-0001", "lidc_scans/LIDC-IDRI-0001/dicom.zip"),
         ("LIDC-IDRI-0002", "lidc_scans/LIDC-IDRI-0002/LIDC-IDRI-0002.nrrd"),
         ("A0001", "lung_pet_ct_dx/A0001/dicom.zip"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--virtual-time-budget=5000"]
PAGE_WIDTH_PX = 1180
#: Added to a copy of the page only, to learn its height before the screenshot.
HEIGHT_PROBE = ("<script>window.addEventListener('load', () => document.body.setAttribute("
                "'data-height', document.documentElement.scrollHeight));</script>")


class ScreenshotError(Exception):
    """A step failed; the message says which and why."""


def run_scan(scan: Path, folder: Path) -> None:
    """``lungai run SCAN -o FOLDER`` in a child process, unless FOLDER already holds a run."""
    if (folder / "findings.json").is_file():
        logger.info("reusing the run in %s", folder)
        return
    if folder.exists():
        raise ScreenshotError(f"{folder} exists but holds no findings.json; remove it or choose another --runs")
    command = [sys.executable, "-m", "lungai.cli", "run", str(scan), "-o", str(folder), "--progress", "none"]
    logger.info("running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ScreenshotError(f"lungai run on {scan} exited {result.returncode}: {result.stderr.strip()[-500:]}")


def render_report(scan: Path, run: Path, page: Path) -> None:
    """Write the report of the run in ``run`` to ``page`` with the current report code."""
    ct = read_scan(scan)
    label_path = next(run.glob("*_labels.nii.gz"), None)
    if label_path is None:
        raise ScreenshotError(f"no *_labels.nii.gz in {run}")
    label_image = sitk.DICOMOrient(sitk.ReadImage(str(label_path)), "LPS")
    label_image.CopyInformation(ct.image)
    write_report_html(findings_from_dict(json.loads((run / "findings.json").read_text(encoding="utf-8"))), ct,
                      label_image, page)


def screenshot(chromium: str, page: Path, png: Path, width: int, colors: int) -> None:
    """A whole-page screenshot of ``page``, scaled to ``width`` pixels, as a PNG of ``colors`` colours."""
    with tempfile.TemporaryDirectory(prefix="lungai-screenshot-") as folder:
        work = Path(folder)
        probe = work / "probe.html"
        probe.write_text(page.read_text(encoding="utf-8").replace("</body>", HEIGHT_PROBE + "</body>"),
                         encoding="utf-8")
        dom = _chromium(chromium, work, [f"--window-size={PAGE_WIDTH_PX},800", "--dump-dom", probe.as_uri()])
        height = re.search(r'data-height="(\d+)"', dom)
        if height is None:
            raise ScreenshotError(f"Chromium did not finish loading {page}")
        shot = work / "page.png"
        _chromium(chromium, work, [f"--window-size={PAGE_WIDTH_PX},{int(height.group(1)) + 20}",
                                   f"--screenshot={shot}", page.as_uri()])
        picture = Image.open(shot).convert("RGB")
    scaled = picture.resize((width, round(picture.height * width / picture.width)), Image.Resampling.LANCZOS)
    png.parent.mkdir(parents=True, exist_ok=True)
    scaled.quantize(colors=colors, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)
    logger.info("wrote %s (%d x %d px, %d KB)", png, scaled.width, scaled.height, png.stat().st_size // 1024)


def _chromium(chromium: str, work: Path, arguments: list[str]) -> str:
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'profile'}", *arguments],
                            capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        raise ScreenshotError(f"Chromium exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path(tempfile.gettempdir()) / "lungai_report_runs",
                        help="folder for the runs (one subfolder per scan; existing runs are reused)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder for the PNGs")
    parser.add_argument("--width", type=int, default=800, help="width of each PNG in pixels")
    parser.add_argument("--colors", type=int, default=256, help="palette size of each PNG (2-256)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        if chromium is None:
            raise ScreenshotError("chromium not found (Debian package chromium)")
        for name, relative in SCANS:
            scan = DATA / relative
            if not scan.exists():
                raise ScreenshotError(f"{scan} not found; set LUNGAI_TEST_DATA to the shared data folder")
            run_scan(scan, args.runs / name)
            page = args.runs / f"{name}.report.html"
            render_report(scan, args.runs / name, page)
            screenshot(chromium, page, args.out / f"report_{name}.png", args.width, args.colors)
    except (ScreenshotError, LungAIError, OSError, subprocess.TimeoutExpired) as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
