"""Writing a LungAI label image as a DICOM Segmentation (SEG) that references its source series.

The SEG is a BINARY multi-frame Segmentation (highdicom) with one segment per structure
present in the label image. Each segment carries the name and the SNOMED CT category, type
and anatomic region of its :mod:`lungai.labels` structure, its display colour, and LungAI
(with its version) as the automatic algorithm. Frames reference the source CT slices they
were derived from, so a PACS or viewer lays the segments over the original series.

The SEG copies the source's patient, study and frame-of-reference attributes (DICOM requires
them on a derived object), so it identifies the patient exactly as the source series does.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.sr.codedict import codes

from lungai import __version__
from lungai.io.segmentation import label_array, present_structures
from lungai.io.volume import CTVolume
from lungai.labels import Code, Structure

logger = logging.getLogger(__name__)

#: Series number of the SEG series (arbitrary; viewers list it after typical CT series numbers).
SEG_SERIES_NUMBER = 901
SERIES_DESCRIPTION = "LungAI segmentation"
CONTENT_LABEL = "LUNGAI"
CONTENT_DESCRIPTION = "LungAI automatic segmentation; research use, not a diagnosis"
MANUFACTURER = "LungAI developers"
MODEL_NAME = "LungAI"
#: Device Serial Number is required (type 1) for the equipment; software has none.
DEVICE_SERIAL_NUMBER = "none"

#: How far (in pixels) a slice's Image Position (Patient) may lie off the grid's slice axis.
_POSITION_TOLERANCE_PIXELS = 0.1
#: Type 3 sequences that highdicom copies from the source's patient and study modules.
#: Patient and study attributes (type 2) a SEG copies from its source.
_COPIED_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate", "StudyTime",
                 "ReferringPhysicianName", "AccessionNumber")
_OPTIONAL_REFERENCES = ("ReferencedStudySequence", "ReferencedPatientSequence")
_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                  "FrameOfReferenceUID")


class SegReferenceError(ValueError):
    """The source series cannot be referenced by a DICOM SEG (no DICOM, blank UIDs, odd grid)."""


def write_dicom_seg(label_image: sitk.Image, ct: CTVolume, structures: Sequence[Structure],
                    path: Path) -> None:
    """Write a label image as a DICOM SEG referencing the CT's source series.

    Args:
        label_image: label image on the grid of ``ct.image`` (LPS), values from
            :mod:`lungai.labels`.
        ct: the CT as read from DICOM; ``ct.dicom_headers`` are the source slices.
        structures: the structures that may appear; those absent from the image get no segment.
        path: output file, conventionally ``<name>.seg.dcm``.

    Raises:
        SegReferenceError: the CT was not read from DICOM, its headers lack the UIDs a
            reference needs, or its slices do not lie on the label image's grid.
        ValueError: the label image holds a value that no structure given has.
    """
    headers = ct.dicom_headers
    _check_headers(headers)
    frames = _frames_in_file_order(label_image, ct)
    present = present_structures(frames, structures)
    if not present:
        raise SegReferenceError("the label image is empty, a DICOM SEG needs at least one segment")
    segment_numbers = np.zeros(int(frames.max()) + 1, dtype=np.uint8 if len(present) < 256 else np.uint16)
    for number, structure in enumerate(present, start=1):
        segment_numbers[structure.value] = number
    pixel_array = segment_numbers[frames]
    algorithm = hd.AlgorithmIdentificationSequence(name=MODEL_NAME, version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [_segment_description(number, structure, algorithm)
                    for number, structure in enumerate(present, start=1)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = _segmentation(headers, pixel_array, descriptions)
    for warning in caught:  # highdicom's remarks on the source's values (e.g. one-part names)
        logger.debug("highdicom: %s", warning.message)
    _drop_incomplete_references(seg)
    seg.save_as(str(path), enforce_file_format=True)
    logger.info("wrote %s (%d frames; %s)", path, int(seg.NumberOfFrames),
                ", ".join(structure.name for structure in present))


def _segmentation(headers: Sequence[pydicom.Dataset], pixel_array: np.ndarray,
                  descriptions: Sequence[hd.seg.SegmentDescription]) -> hd.seg.Segmentation:
    """The BINARY SEG of a label-map style array whose values are segment numbers."""
    return hd.seg.Segmentation(
        source_images=_with_patient_and_study(headers),
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=__version__,
        device_serial_number=DEVICE_SERIAL_NUMBER,
        content_label=CONTENT_LABEL,
        content_description=CONTENT_DESCRIPTION,
        series_description=SERIES_DESCRIPTION,
    )


def _with_patient_and_study(headers: Sequence[pydicom.Dataset]) -> list[pydicom.Dataset]:
    """The headers, each holding the patient and study attributes a SEG copies (empty where absent).

    DICOM requires them (type 2: present, possibly empty), but some exports leave them out.
    """
    completed = []
    for header in headers:
        missing = [keyword for keyword in _COPIED_TYPE2 if keyword not in header]
        if missing:
            header = copy.deepcopy(header)
            for keyword in missing:
                setattr(header, keyword, "")
        completed.append(header)
    return completed


def _drop_incomplete_references(seg: hd.seg.Segmentation) -> None:
    """Remove optional reference sequences copied from the source with items missing a UID.

    Some de-identified series keep a Referenced Study Sequence item without its SOP Class UID;
    copied into the SEG it would make an invalid (type 1) reference.
    """
    for keyword in _OPTIONAL_REFERENCES:
        items = getattr(seg, keyword, None)
        if items is not None and any(not item.get("ReferencedSOPClassUID") or not item.get("ReferencedSOPInstanceUID")
                                     for item in items):
            delattr(seg, keyword)
            logger.debug("left out the source's incomplete %s", keyword)


def _check_headers(headers: Sequence[pydicom.Dataset]) -> None:
    if not headers:
        raise SegReferenceError("the input was not read from DICOM, so there is no series to reference")
    for uid_name in _REQUIRED_UIDS:
        if any(not str(getattr(ds, uid_name, "") or "") for ds in headers):
            raise SegReferenceError(f"the source DICOM has blank {uid_name} values "
                                    "(de-identified without new UIDs), so it cannot be referenced")


def _frames_in_file_order(label_image: sitk.Image, ct: CTVolume) -> np.ndarray:
    """The label voxels as (slice, row, column), slice ``k`` lying on ``ct.dicom_headers[k]``.

    The reader stacks the files in order, so slice ``k`` holds file ``k``'s pixels even when the
    spacing is uneven; this checks that the reorientation back to the files' axes got that
    order and the in-plane axes right.

    Raises:
        SegReferenceError: a slice's size, orientation or pixel spacing differs from the grid's,
            it lies off the grid's in-plane axes, or the slices are out of order.
    """
    if label_image.GetSize() != ct.image.GetSize():
        raise ValueError(f"label image size {label_image.GetSize()} differs from the CT's {ct.image.GetSize()}")
    on_file_grid = label_image
    if ct.original_orientation != sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
            label_image.GetDirection()):
        on_file_grid = sitk.DICOMOrient(label_image, ct.original_orientation)
    columns, rows, slices = on_file_grid.GetSize()
    headers = ct.dicom_headers
    if slices != len(headers):
        raise SegReferenceError(f"{len(headers)} source slices for a {slices}-slice label image")
    direction = np.asarray(on_file_grid.GetDirection()).reshape(3, 3)
    spacing = on_file_grid.GetSpacing()
    origin = np.asarray(on_file_grid.GetOrigin())
    in_plane_tolerance = _POSITION_TOLERANCE_PIXELS * min(spacing[0], spacing[1])
    previous_depth = -np.inf
    for k, ds in enumerate(headers):
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
        pixel_spacing = np.asarray(ds.PixelSpacing, dtype=float)  # (row spacing, column spacing)
        offset = np.asarray(ds.ImagePositionPatient, dtype=float) - origin
        depth = float(offset @ direction[:, 2])
        if (int(ds.Rows), int(ds.Columns)) != (rows, columns) \
                or not np.allclose(orientation[:3], direction[:, 0], atol=1e-4) \
                or not np.allclose(orientation[3:], direction[:, 1], atol=1e-4) \
                or not np.allclose(pixel_spacing, (spacing[1], spacing[0]), atol=1e-4) \
                or abs(float(offset @ direction[:, 0])) > in_plane_tolerance \
                or abs(float(offset @ direction[:, 1])) > in_plane_tolerance \
                or depth <= previous_depth or (k == 0 and abs(depth) > 0.5 * spacing[2]):
            raise SegReferenceError(f"source slice {k + 1} of {slices} is out of order or off the axes the "
                                    "scan was read on (a tilted gantry or mixed orientations)")
        previous_depth = depth
    return label_array(on_file_grid)


def _segment_description(number: int, structure: Structure,
                         algorithm: hd.AlgorithmIdentificationSequence) -> hd.seg.SegmentDescription:
    red, green, blue = (int(round(channel * 255)) for channel in structure.color)
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=structure.name,
        segmented_property_category=_coded(structure.category),
        segmented_property_type=_coded(structure.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_id=structure.name,
        tracking_uid=hd.UID(),
        anatomic_regions=None if structure.region is None else [_coded(structure.region)],
        display_color=hd.color.CIELabColor.from_rgb(red, green, blue),
    )


def _coded(code: Code) -> hd.sr.CodedConcept:
    scheme, value, meaning = code
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)
