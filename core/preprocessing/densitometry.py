"""Emphysema densitometry: low-attenuation areas and the 15th percentile of lung density.

The standard quantitative CT measures of emphysema, per lung and for both lungs together:

- LAA-950 (and -910, -856): the percentage of lung voxels below the threshold, in HU. -950 is
  the usual emphysema threshold on inspiratory CT, -910 a milder one, -856 the air-trapping
  threshold on expiratory CT. "Below" is strict: a voxel of exactly -950 HU does not count.
- Perc15: the HU value below which 15% of the lung voxels lie (linear interpolation between
  voxel values, as ``numpy.percentile``).
- volume (mL) and mean density (HU).

The lung mask includes vessels and anything the closing brought in (nodules), as in the
usual whole-lung densitometry.

These numbers depend on how the scan was made, so :func:`densitometry_warnings` says when they
are unreliable, from the scan's own header (:func:`describe_acquisition`):

- slices thicker than :data:`MAX_SLICE_THICKNESS_MM` (partial-volume averaging, which usually
  lowers LAA-950 and raises Perc15). The thickness is DICOM SliceThickness, or the largest voxel
  spacing when the input has no DICOM header (NRRD, NIfTI, MetaImage).
- a sharp reconstruction kernel (DICOM ConvolutionKernel, :func:`is_sharp_kernel`): its noise
  raises LAA-950 and lowers Perc15.
- contrast enhancement, from DICOM ContrastBolusAgent only: enhanced blood raises lung density,
  so LAA-950 and Perc15 understate emphysema. Nothing is measured in the image (e.g. the aortic
  blood HU): the header is the only evidence used, so an enhanced scan whose header does not say
  so gets no warning.

:func:`densitometry_notes` says what is always true of the numbers: the scan is assumed
inspiratory, on which LAA-856 (an expiratory air-trapping measure) is not meaningful, and, for
input without a DICOM header, that kernel and contrast could not be checked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydicom
import SimpleITK as sitk

from lungai import labels
from lungai.io.volume import CTVolume
from lungai.preprocessing.emphysema_input import LAA_THRESHOLD_HU

#: Thicker slices than this (mm) get a warning: the usual densitometry reference is <= 3 mm.
MAX_SLICE_THICKNESS_MM = 3.0
#: Sharp reconstruction kernels, matched on the upper-cased DICOM ConvolutionKernel (every value of
#: a multi-valued one). Deliberately small; a kernel it does not know gets no warning.
#:
#: - any name containing one of :data:`SHARP_KERNEL_WORDS` (GE LUNG, BONE, BONEPLUS, EDGE; any
#:   vendor's ``...SHARP...``);
#: - Philips letter kernels in :data:`SHARP_KERNEL_NAMES` (D, E, L and the Y-series YA, YB, ...);
#: - a name of one or two letters and a two-digit sharpness number of at least
#:   :data:`SHARP_KERNEL_NUMBER` (Siemens B60f, B70f, Br64, Bl57, I70f; Canon/Toshiba lung
#:   kernels FC50 and up); Siemens B30f/Br38f/B45f and Canon FC18 stay below it.
SHARP_KERNEL_WORDS: tuple[str, ...] = ("LUNG", "BONE", "EDGE", "SHARP")
SHARP_KERNEL_NAMES: frozenset[str] = frozenset({"D", "E", "L", *(f"Y{letter}" for letter in "ABCDEFGH")})
SHARP_KERNEL_NUMBER = 50
_NUMBERED_KERNEL = re.compile(r"^[A-Z]{1,2}(\d{2})[A-Z]?$")
#: ContrastBolusAgent values that mean "no contrast" (upper-cased, stripped).
NO_CONTRAST_VALUES: frozenset[str] = frozenset({"", "NONE", "NO", "N", "NON", "NA", "N/A", "NO CONTRAST", "0"})
#: Always attached to the densitometry: how LAA-856 is to be read.
LAA_856_NOTE = ("LAA-856 is an expiratory (air-trapping) measure; LungAI assumes an inspiratory scan, "
                "on which it is not meaningful")
#: Attached when the input has no DICOM header.
NO_HEADER_NOTE = ("reconstruction kernel and contrast not checked: no DICOM series header was read "
                  "(slice thickness taken from the voxel spacing)")


@dataclass(frozen=True)
class DensitometryConfig:
    """What to measure.

    Attributes:
        laa_thresholds_hu: thresholds of the low-attenuation-area percentages.
        percentile: the percentile of lung density reported (15 for Perc15).
    """

    laa_thresholds_hu: tuple[int, ...] = (LAA_THRESHOLD_HU, -910, -856)
    percentile: float = 15.0


@dataclass(frozen=True)
class LungDensity:
    """Densitometry of one lung region.

    Attributes:
        volume_ml: volume of the region.
        mean_hu: mean density.
        percentile_hu: the configured percentile of density (Perc15 by default).
        percentile: which percentile ``percentile_hu`` is.
        laa_percent: threshold (HU) -> percentage of voxels below it.
    """

    volume_ml: float
    mean_hu: float
    percentile_hu: float
    percentile: float
    laa_percent: dict[int, float]

    def to_dict(self) -> dict[str, float]:
        """JSON-ready measures.

        Keys: ``laa_950_percent`` (one per threshold), ``perc15_hu`` (named after the
        percentile), ``volume_ml`` and ``mean_hu``.
        """
        result = {f"laa_{abs(t)}_percent": value for t, value in self.laa_percent.items()}
        result[f"perc{self.percentile:g}_hu"] = self.percentile_hu
        result["volume_ml"] = self.volume_ml
        result["mean_hu"] = self.mean_hu
        return result


@dataclass(frozen=True)
class DensitometryResult:
    """Densitometry of the right lung, the left lung and both together, as measured.

    ``findings.json`` keeps four of the measures per region (:class:`lungai.io.findings.Densitometry`).

    Attributes:
        right: the right lung, or ``None`` when the mask has no right lung.
        left: the left lung, or ``None`` when the mask has no left lung.
        total: both lungs.
    """

    right: LungDensity | None
    left: LungDensity | None
    total: LungDensity

    def to_dict(self) -> dict[str, dict[str, float] | None]:
        """JSON-ready ``{"right": {...}, "left": {...}, "total": {...}}``."""
        return {"right": self.right.to_dict() if self.right else None,
                "left": self.left.to_dict() if self.left else None,
                "total": self.total.to_dict()}


def measure_densitometry(image: sitk.Image, lung_labels: sitk.Image,
                         config: DensitometryConfig | None = None) -> DensitometryResult:
    """Measure LAA percentages, Perc15, volume and mean density of the lungs.

    Args:
        image: CT in HU.
        lung_labels: label image on the same grid (``labels.LUNG_RIGHT.value``,
            ``labels.LUNG_LEFT.value``), e.g. ``LungMask.labels``.
        config: thresholds and percentile; the defaults give LAA-950/-910/-856 and Perc15.

    Returns:
        The measures per lung and in total.

    Raises:
        ValueError: the images are not on the same grid, or the label image has no lung.
    """
    cfg = config or DensitometryConfig()
    _check_same_grid(image, lung_labels)
    hu = sitk.GetArrayViewFromImage(image)
    lungs = sitk.GetArrayViewFromImage(lung_labels)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    right = lungs == labels.LUNG_RIGHT.value
    left = lungs == labels.LUNG_LEFT.value
    if not right.any() and not left.any():
        raise ValueError("the lung label image contains no lung voxels")
    total = _measure(hu[right | left], voxel_ml, cfg)
    assert total is not None  # some lung voxel exists (checked above)
    return DensitometryResult(right=_measure(hu[right], voxel_ml, cfg), left=_measure(hu[left], voxel_ml, cfg),
                              total=total)


def _measure(values: np.ndarray, voxel_ml: float, cfg: DensitometryConfig) -> LungDensity | None:
    if values.size == 0:
        return None
    values = values.astype(np.float64)
    laa = {int(t): float(np.count_nonzero(values < t)) * 100.0 / values.size
           for t in cfg.laa_thresholds_hu}
    return LungDensity(volume_ml=values.size * voxel_ml, mean_hu=float(values.mean()),
                       percentile_hu=float(np.percentile(values, cfg.percentile)),
                       percentile=cfg.percentile, laa_percent=laa)


def _check_same_grid(image: sitk.Image, lung_labels: sitk.Image) -> None:
    same = (image.GetSize() == lung_labels.GetSize()
            and np.allclose(image.GetSpacing(), lung_labels.GetSpacing(), atol=1e-4)
            and np.allclose(image.GetOrigin(), lung_labels.GetOrigin(), atol=1e-3)
            and np.allclose(image.GetDirection(), lung_labels.GetDirection(), atol=1e-5))
    if not same:
        raise ValueError("the CT image and the lung labels are not on the same grid")


@dataclass(frozen=True)
class Acquisition:
    """How the scan was made, as far as densitometry depends on it.

    Attributes:
        slice_thickness_mm: DICOM SliceThickness (the largest in the series), or the largest voxel
            spacing when no header gives it.
        thickness_source: ``DICOM SliceThickness`` or ``voxel spacing``.
        kernel: the DICOM ConvolutionKernel (values joined by ``/``); ``None`` when unknown.
        contrast_agent: the DICOM ContrastBolusAgent when it names an agent; ``None`` when absent
            or a "none" value (:data:`NO_CONTRAST_VALUES`).
        has_dicom_header: whether the scan was read with DICOM headers.
    """

    slice_thickness_mm: float
    thickness_source: str
    kernel: str | None
    contrast_agent: str | None
    has_dicom_header: bool


def describe_acquisition(volume: CTVolume) -> Acquisition:
    """Slice thickness, reconstruction kernel and contrast of a scan, from its DICOM headers.

    Args:
        volume: the scan as read (``dicom_headers`` empty for NRRD, NIfTI, MetaImage and
            single-file DICOM input).

    Returns:
        What the headers say; the thickness falls back to the largest voxel spacing.
    """
    headers = volume.dicom_headers
    thicknesses = [t for t in (_number(ds.get("SliceThickness")) for ds in headers) if t is not None and t > 0]
    if thicknesses:
        thickness, source = max(thicknesses), "DICOM SliceThickness"
    else:
        thickness, source = float(max(volume.spacing_xyz)), "voxel spacing"
    return Acquisition(slice_thickness_mm=thickness, thickness_source=source,
                       kernel=_first_text(headers, "ConvolutionKernel"),
                       contrast_agent=_contrast_agent(headers), has_dicom_header=bool(headers))


def is_sharp_kernel(kernel: str | None) -> bool:
    """Whether a DICOM ConvolutionKernel is a sharp (edge-enhancing) kernel; see :data:`SHARP_KERNEL_WORDS`.

    Args:
        kernel: the kernel name, values of a multi-valued one joined by ``/`` or ``\\``; ``None``
            for unknown.

    Returns:
        ``True`` for a kernel of the table, ``False`` for any other (or unknown) kernel.
    """
    if not kernel:
        return False
    for value in re.split(r"[/\\]", kernel.upper()):
        name = value.strip()
        if any(word in name for word in SHARP_KERNEL_WORDS) or name in SHARP_KERNEL_NAMES:
            return True
        numbered = _NUMBERED_KERNEL.match(name)
        if numbered and int(numbered.group(1)) >= SHARP_KERNEL_NUMBER:
            return True
    return False


def densitometry_warnings(acquisition: Acquisition) -> list[str]:
    """Why this scan's LAA and Perc15 are unreliable, one line each; empty when nothing is known against them.

    Args:
        acquisition: the scan's :func:`describe_acquisition`.

    Returns:
        Warnings on slice thickness, a sharp kernel and contrast, in that order.
    """
    warnings = []
    thickness = acquisition.slice_thickness_mm
    if thickness > MAX_SLICE_THICKNESS_MM:
        warnings.append(f"emphysema densitometry: slices are {thickness:.1f} mm thick ({acquisition.thickness_source}; "
                        f"reference <= {MAX_SLICE_THICKNESS_MM:g} mm): partial-volume averaging usually lowers "
                        "LAA-950 and raises Perc15")
    if is_sharp_kernel(acquisition.kernel):
        warnings.append(f"emphysema densitometry: sharp reconstruction kernel {acquisition.kernel!r}: its noise "
                        "raises LAA-950 and lowers Perc15; use a soft or standard kernel series for densitometry")
    if acquisition.contrast_agent is not None:
        warnings.append(f"emphysema densitometry: contrast-enhanced scan (DICOM ContrastBolusAgent "
                        f"{acquisition.contrast_agent!r}): enhanced blood raises lung density, so LAA-950 and "
                        "Perc15 understate emphysema")
    return warnings


def densitometry_notes(acquisition: Acquisition) -> list[str]:
    """What always qualifies the densitometry of this scan (not a problem found in it).

    Args:
        acquisition: the scan's :func:`describe_acquisition`.

    Returns:
        :data:`LAA_856_NOTE`, and :data:`NO_HEADER_NOTE` for input without DICOM headers.
    """
    return [LAA_856_NOTE] + ([] if acquisition.has_dicom_header else [NO_HEADER_NOTE])


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]  # any header value; float() raising TypeError or ValueError is handled
    except (TypeError, ValueError):
        return None


def _text(value: object) -> str | None:
    """A header value as text; multi-valued ones joined by ``/``; ``None`` when empty."""
    if value is None:
        return None
    values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
    text = "/".join(str(item).strip() for item in values if str(item).strip())
    return text or None


def _first_text(headers: Sequence[pydicom.Dataset], keyword: str) -> str | None:
    for ds in headers:
        text = _text(ds.get(keyword))
        if text is not None:
            return text
    return None


def _contrast_agent(headers: Sequence[pydicom.Dataset]) -> str | None:
    agent = _first_text(headers, "ContrastBolusAgent")
    if agent is None or agent.upper() in NO_CONTRAST_VALUES:
        return None
    return agent
