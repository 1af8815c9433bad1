"""The CT volume contract shared by every LungAI stage."""

from __future__ import annotations

from dataclasses import dataclass, field

import pydicom
import SimpleITK as sitk


@dataclass
class CTVolume:
    """A CT scan in Hounsfield units.

    Attributes:
        image: int16 SimpleITK image in HU; origin, spacing and direction in LPS mm.
        source: the path the scan was read from.
        format: ``dicom``, ``dicom-zip``, ``nrrd``, ``nifti`` or ``metaimage``.
        modality: DICOM modality (``CT``) or ``None`` when the format does not say.
        series_uid: DICOM SeriesInstanceUID, when read from DICOM.
        patient_id: DICOM PatientID, only when asked for (it identifies a person).
        dicom_files: the DICOM files of the series in slice order (folder input only; a zip is
            extracted to a temporary folder that is gone after reading).
        dicom_headers: the headers (no pixel data) of the series' files in slice order, when
            read from DICOM (folder or zip); the DICOM SEG writer references them.
        original_orientation: the input's axis orientation code (e.g. ``RAS``); ``image`` is
            always reoriented to ``LPS`` and outputs are written back in this orientation.
        warnings: problems found while reading that did not stop it.
        name: the base name of the outputs: ``<PatientID>_<StudyDate>_<SeriesNumber>`` from a
            DICOM header (:func:`lungai.io.reader.scan_name`), else the file or folder name
            without its extension.
    """

    image: sitk.Image
    source: str
    format: str
    modality: str | None = None
    series_uid: str | None = None
    patient_id: str | None = None
    dicom_files: list[str] = field(default_factory=list)
    dicom_headers: list[pydicom.Dataset] = field(default_factory=list, repr=False)
    original_orientation: str = "LPS"
    warnings: list[str] = field(default_factory=list)
    name: str = "scan"

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        """Image size as (x, y, z) voxels."""
        return tuple(self.image.GetSize())

    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        """Voxel spacing in mm as (x, y, z)."""
        return tuple(self.image.GetSpacing())
