"""Read a CT scan from any format a clinic produces into a validated HU volume.

Supported: a DICOM folder (searched recursively), a zip of DICOM, ``.nrrd``/``.nhdr``,
``.nii``/``.nii.gz`` and ``.mhd``/``.mha``. The result is always an int16 image in Hounsfield
units, reoriented to LPS, with padding values (-2048, -3024, ...) clamped to -1024.
"""

from __future__ import annotations

import logging
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai.errors import InputNotFoundError, NotCTError, UnreadableInputError
from lungai.io import dicom, validation
from lungai.io.volume import CTVolume

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".nrrd": "nrrd", ".nhdr": "nrrd", ".nii": "nifti", ".nii.gz": "nifti",
                  ".mhd": "metaimage", ".mha": "metaimage", ".dcm": "dicom"}
SUPPORTED = "a DICOM folder or .zip, .nrrd, .nhdr, .nii, .nii.gz, .mhd or .mha"
AIR_HU = -1024
CANONICAL_ORIENTATION = "LPS"


@dataclass(frozen=True)
class ReadOptions:
    """How to read a scan.

    Attributes:
        series_uid: DICOM series to use; default: the CT series with the most slices.
        include_patient_id: keep the DICOM PatientID (it identifies a person; off by default).
        force: turn soft validation failures (intensities not in HU) into warnings.
    """

    series_uid: str | None = None
    include_patient_id: bool = False
    force: bool = False


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def scan_stem(path: str | Path) -> str:
    """A scan's file or folder name without its extension (``chest.nii.gz`` -> ``chest``)."""
    name = Path(path).name
    suffix = _suffix(Path(name))
    if suffix in IMAGE_SUFFIXES or suffix == ".zip":
        name = name[: -len(suffix)]
    return name or "scan"


def safe_name(text: str, limit: int = 120) -> str:
    """``text`` made safe as a file name on every file system: letters, digits, ``.``, ``_``, ``-``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return name[:limit] or "scan"


def _is_zip(path: Path) -> bool:
    suffix = _suffix(path)
    return path.is_file() and (suffix == ".zip" or (suffix not in IMAGE_SUFFIXES and zipfile.is_zipfile(path)))


def scan_name(path: str | Path, series_uid: str | None = None) -> str:
    """The base name of a scan's outputs, without reading its pixels.

    For a DICOM folder or zip: ``<PatientID>_<StudyDate>_<SeriesNumber>`` of the series a run
    would read (the parts its header has; the file or folder name for a blank PatientID), made
    safe for file systems, so that every TCIA ``dicom.zip`` gets its own name; without any of
    those fields, or for other formats, the file or folder name without its extension
    (:func:`scan_stem`), as it is. A path that does not exist gets its
    stem (reading it reports the problem).

    Raises:
        UnreadableInputError, NotCTError, AmbiguousInputError: as :func:`read_scan` would for
            the DICOM folder or zip.
    """
    path = Path(path)
    if path.is_dir():
        found = dicom.scan_folder(path)
    elif _is_zip(path):
        found = dicom.scan_zip(path)
    else:
        return scan_stem(path)
    return series_name(dicom.choose_series(found, path, series_uid), path)


def series_name(series: dicom.DicomSeries, source: Path) -> str:
    """``<PatientID>_<StudyDate>_<SeriesNumber>``, the source's stem standing in for a blank PatientID."""
    if not (series.patient_id or series.study_date or series.series_number):
        return scan_stem(source)
    parts = [series.patient_id or scan_stem(source), series.study_date, series.series_number]
    return safe_name("_".join(part for part in parts if part))


def read_scan(path: str | Path, options: ReadOptions | None = None) -> CTVolume:
    """Read and validate a CT scan.

    Args:
        path: DICOM folder, DICOM zip, or a NRRD / NIfTI / MetaImage file.
        options: series choice, patient id, ``force``.

    Returns:
        The scan as an int16 HU volume in LPS.

    Raises:
        InputNotFoundError, UnreadableInputError, NotCTError, SuspiciousInputError, ResourceError:
            each with a one-line message naming the problem and the fix.
    """
    options = options or ReadOptions()
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"input {path} does not exist", "check the path")
    if path.is_dir():
        return _read_dicom_folder(path, path, "dicom", options)
    if not path.is_file():
        raise InputNotFoundError(f"input {path} is neither a file nor a folder", f"give {SUPPORTED}")
    if path.stat().st_size == 0:
        raise UnreadableInputError(f"input {path} is an empty file", f"give {SUPPORTED}")
    suffix = _suffix(path)
    if _is_zip(path):
        with tempfile.TemporaryDirectory(prefix="lungai-zip-") as tmp:
            dicom.extract_zip(path, Path(tmp))
            volume = _read_dicom_folder(Path(tmp), path, "dicom-zip", options)
            volume.dicom_files = []
            return volume
    if suffix not in IMAGE_SUFFIXES:
        raise UnreadableInputError(f"unsupported file type {suffix or '(no extension)'} for {path}",
                                   f"give {SUPPORTED}")
    return _read_image_file(path, IMAGE_SUFFIXES[suffix], options)


def _read_image_file(path: Path, fmt: str, options: ReadOptions) -> CTVolume:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise UnreadableInputError(f"cannot read {path}: the file is corrupt or not a {fmt} image",
                                   f"check the file, or give {SUPPORTED}") from exc
    header = validation.ImageHeader(reader.GetSize(), reader.GetSpacing(), reader.GetNumberOfComponents())
    validation.check_header(header, str(path))
    validation.check_memory(header, str(path))
    modality = None
    if fmt == "dicom":
        modality = reader.GetMetaData("0008|0060").strip() if reader.HasMetaDataKey("0008|0060") else None
        if modality and modality != "CT":
            raise NotCTError(f"{path} has modality {modality}, not CT", "LungAI needs a chest CT")
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise UnreadableInputError(f"cannot read the pixel data of {path}: the file is truncated or corrupt",
                                   "re-export or re-copy the file") from exc
    volume = CTVolume(image=image, source=str(path), format=fmt, modality=modality, name=scan_stem(path))
    return _to_volume(image, volume, options)


def _read_dicom_folder(folder: Path, source: Path, fmt: str, options: ReadOptions) -> CTVolume:
    found = dicom.scan_folder(folder)
    series = dicom.choose_series(found, source, options.series_uid)
    size = (series.columns, series.rows, series.num_slices)
    validation.check_memory(validation.ImageHeader(size, (1.0, 1.0, 1.0)), str(source))
    if series.num_slices < validation.MIN_SLICES:
        validation.check_header(validation.ImageHeader(size, (1.0, 1.0, 1.0)), f"series {series.uid}")
    image = dicom.read_series(series)
    headers = dicom.read_headers(series.files)
    volume = CTVolume(image=image, source=str(source), format=fmt, modality=series.modality,
                      series_uid=series.uid if series.has_uid else None, dicom_files=[str(p) for p in series.files],
                      patient_id=series.patient_id if options.include_patient_id else None,
                      dicom_headers=headers, name=series_name(series, source))
    warning = dicom.uneven_spacing_warning(series)
    if warning:
        logger.warning(warning)
        volume.warnings.append(warning)
    validation.check_header(validation.ImageHeader(image.GetSize(), image.GetSpacing(),
                                                   image.GetNumberOfComponentsPerPixel()), str(source))
    return _to_volume(image, volume, options)


def _to_volume(image: sitk.Image, volume: CTVolume, options: ReadOptions) -> CTVolume:
    """Validate intensities, convert to int16 HU and reorient to LPS."""
    array = sitk.GetArrayViewFromImage(image)
    validation.check_finite(array, volume.source)
    volume.warnings.extend(validation.check_hounsfield(array, volume.source, options.force))
    if np.issubdtype(array.dtype, np.floating):
        array = np.rint(array)
    hu = np.clip(array, AIR_HU, np.iinfo(np.int16).max).astype(np.int16)
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(image)
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    if orientation != CANONICAL_ORIENTATION:
        out = sitk.DICOMOrient(out, CANONICAL_ORIENTATION)
    volume.image = out
    volume.original_orientation = orientation
    logger.info("read %s: %s voxels, spacing %s mm, %s", volume.source, "x".join(map(str, out.GetSize())),
                "x".join(f"{s:.2f}" for s in out.GetSpacing()), volume.format)
    return volume


def to_original_orientation(image: sitk.Image, volume: CTVolume) -> sitk.Image:
    """Reorient an image on the volume's LPS grid back to the input file's axis order."""
    if volume.original_orientation == CANONICAL_ORIENTATION:
        return image
    return sitk.DICOMOrient(image, volume.original_orientation)
