"""The number a reader types into a viewer to find an axial slice: DICOM image number or slice index.

LungAI works on the scan reoriented to LPS, where slice ``k`` counts from the feet. A reader
looks a finding up by the DICOM image number (InstanceNumber) in PACS, or, for a file without a
DICOM header, by the 1-based slice index in the order the file stores its slices. This module
maps LPS slice indices to that number and says which of the two it is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pydicom

from lungai.io.volume import CTVolume

logger = logging.getLogger(__name__)

#: A DICOM slice belongs to an LPS slice when its position is within this fraction of a slice spacing.
_POSITION_TOLERANCE = 0.25


@dataclass(frozen=True)
class ImageNumbers:
    """The number readers use for each axial slice of the LPS volume.

    Attributes:
        numbers: LPS slice index ``k`` (0-based, from the feet) -> the number shown to readers;
            empty when the volume's slices are not the file's slices (a sagittal or coronal
            acquisition), so no axial slice has a number of its own.
        kind: ``instance`` (DICOM InstanceNumber) or ``index`` (1-based slice index).
        description: what the numbers are, in words, for the report.
    """

    numbers: dict[int, int]
    kind: str
    description: str

    def label(self, k: int) -> str | None:
        """``image 57`` or ``slice 57`` for LPS slice ``k``, or ``None`` when it has no number."""
        number = self.numbers.get(int(k))
        if number is None:
            return None
        return f"{'image' if self.kind == 'instance' else 'slice'} {number}"

    def span(self, low_k: int, high_k: int) -> str | None:
        """The numbers of LPS slices ``low_k..high_k`` as ``images 52-61`` (or ``image 57``)."""
        numbers = sorted(self.numbers[k] for k in range(int(low_k), int(high_k) + 1) if k in self.numbers)
        if not numbers:
            return None
        noun = "image" if self.kind == "instance" else "slice"
        if numbers[0] == numbers[-1]:
            return f"{noun} {numbers[0]}"
        return f"{noun}s {numbers[0]}-{numbers[-1]}"


def image_numbers(ct: CTVolume) -> ImageNumbers:
    """The reader-facing number of every axial slice of ``ct``.

    DICOM input whose every slice has a distinct InstanceNumber gets those numbers; other DICOM
    input gets the 1-based slice index counted from the head (the order PACS stacks a chest CT);
    any other file gets its own 1-based slice index in the order it stores slices.

    Args:
        ct: the scan as LungAI read it (LPS).
    """
    depth = ct.image.GetSize()[2]
    if ct.dicom_headers:
        numbers = _instance_numbers(ct)
        if numbers is not None:
            return ImageNumbers(numbers, "instance", "DICOM image number (InstanceNumber)")
        return ImageNumbers({k: depth - k for k in range(depth)}, "index",
                            "slice number counted from the head, 1-based (the series has no usable InstanceNumber)")
    axis = ct.original_orientation[2:3]
    if axis == "S":
        return ImageNumbers({k: k + 1 for k in range(depth)}, "index", "slice number in the file's order, 1-based")
    if axis == "I":
        return ImageNumbers({k: depth - k for k in range(depth)}, "index", "slice number in the file's order, 1-based")
    return ImageNumbers({}, "index", f"no slice numbers: the file's slices are not axial ({ct.original_orientation})")


def _instance_numbers(ct: CTVolume) -> dict[int, int] | None:
    """LPS slice index -> InstanceNumber, or ``None`` unless every slice has exactly one distinct number."""
    image = ct.image
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    origin = float(np.dot(image.GetOrigin(), normal))
    spacing, depth = image.GetSpacing()[2], image.GetSize()[2]
    numbers: dict[int, int] = {}
    for header in ct.dicom_headers:
        position, number = _position_and_number(header)
        if position is None or number is None:
            continue
        offset = (float(np.dot(position, normal)) - origin) / spacing
        k = int(round(offset))
        if 0 <= k < depth and abs(offset - k) <= _POSITION_TOLERANCE:
            numbers.setdefault(k, number)
    if len(numbers) != depth or len(set(numbers.values())) != depth:
        logger.info("InstanceNumber missing or repeated on %d of %d slices; numbering slices from the head",
                    depth - len(set(numbers.values())), depth)
        return None
    return numbers


def _position_and_number(header: pydicom.Dataset) -> tuple[np.ndarray | None, int | None]:
    """A header's ImagePositionPatient and InstanceNumber, each ``None`` when absent or malformed."""
    try:
        values = np.asarray([float(value) for value in header.ImagePositionPatient], dtype=float)
        position = values if values.shape == (3,) else None
    except (AttributeError, TypeError, ValueError):
        position = None
    try:
        number = int(header.InstanceNumber)
    except (AttributeError, TypeError, ValueError):
        number = None
    return position, number
