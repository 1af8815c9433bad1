"""Small synthetic scans written in real file formats (DICOM, NRRD, NIfTI) for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_image(array_zyx: np.ndarray, path: Path, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)) -> Path:
    """Write a numpy array (z, y, x) as an image file; the format follows the suffix."""
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def write_dicom_series(folder: Path, array_zyx: np.ndarray, spacing=(0.8, 0.8, 2.5), modality: str = "CT",
                       intercept: float = -1024.0, slope: float = 1.0, series_uid: str | None = None,
                       study_uid: str | None = None, **header: object) -> str:
    """Write a volume as a DICOM series, one file per slice, stored as unsigned values + rescale.

    Args:
        array_zyx: values in the modality's units (HU for CT); stored as (value - intercept) / slope.
        study_uid: the StudyInstanceUID (default: a new study).
        header: further attributes of every slice by keyword (``PatientID="P2"``, ``StudyDate=...``).

    Returns:
        The SeriesInstanceUID.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    stored = np.round((array_zyx - intercept) / slope).astype(np.uint16)
    sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
    for k, plane in enumerate(stored):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"slice{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = modality
        ds.PatientID = "SYNTH-001"
        ds.PatientName = "Synthetic^Phantom"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(k * spacing[2])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = slope
        ds.PixelData = plane.tobytes()
        for keyword, value in header.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / f"slice{k:04d}.dcm", enforce_file_format=True)
    return series_uid


def box_phantom(shape=(24, 48, 48), background: int = -1000, inside: int = 40) -> np.ndarray:
    """A soft-tissue box in air, int16 (z, y, x); a small valid CT for reader tests."""
    array = np.full(shape, background, np.int16)
    array[2:-2, 6:-6, 6:-6] = inside
    return array
