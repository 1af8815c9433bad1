"""Parse LIDC-IDRI reader XML (``LidcReadMessage``) into per-reader annotations.

An LIDC CT read holds one ``readingSession`` per radiologist (usually four). Each session lists:

- ``unblindedReadNodule`` with contours: a nodule >= 3 mm. One ``roi`` per slice it was
  outlined on: ``imageZposition`` (slice z, mm), ``imageSOP_UID``, ``inclusion`` (``FALSE``
  marks a hole to cut out) and ``edgeMap`` points (``xCoord``, ``yCoord``: pixel column and row
  in the original DICOM grid). Its ``characteristics`` (subtlety, internalStructure,
  calcification, sphericity, margin, lobulation, spiculation, texture, malignancy, each 1-6)
  are present when the reader gave them.
- ``unblindedReadNodule`` whose rois are single points: a nodule < 3 mm, marked at its centre
  only; kept in :attr:`ReaderAnnotation.small_nodules`, never rasterised.
- ``nonNodule``: a non-nodule finding >= 3 mm, marked by one point (``locus``); kept in
  :attr:`ReaderAnnotation.non_nodules`, never rasterised.

Rasterising, grouping readers' nodules and the consensus are in :mod:`lungai.data.lidc_consensus`.
LIDC malignancy ratings are radiologists' suspicion (1 highly unlikely ... 5 highly suspicious),
not pathology.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lungai.errors import InputNotFoundError, UnreadableInputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Contour:
    """One roi: a closed outline on one slice.

    Attributes:
        z_mm: the slice's ``imageZposition`` (world z, mm).
        sop_uid: the slice's ``imageSOP_UID``.
        inclusion: ``False`` for an exclusion contour (a hole inside the nodule).
        points_xy: (N, 2) int array of (column, row) pixel coordinates in the DICOM grid.
    """

    z_mm: float
    sop_uid: str
    inclusion: bool
    points_xy: np.ndarray


@dataclass(frozen=True)
class ReaderNodule:
    """One reader's mark of one nodule.

    Attributes:
        nodule_id: the reader's ``noduleID`` (unique only within the reading session).
        contours: the rois, one or more per slice.
        characteristics: rating name -> value (e.g. ``{"malignancy": 5, ...}``); empty when
            the reader gave none.
    """

    nodule_id: str
    contours: tuple[Contour, ...]
    characteristics: dict[str, int] = field(default_factory=dict)

    @property
    def malignancy(self) -> int | None:
        """The reader's malignancy rating (1-5), or ``None`` when not given."""
        return self.characteristics.get("malignancy")

    @property
    def is_small(self) -> bool:
        """A < 3 mm nodule: every roi is a single centre point, no outline."""
        return all(len(c.points_xy) <= 1 for c in self.contours)


@dataclass(frozen=True)
class NonNodule:
    """A non-nodule finding, marked by one point.

    Attributes:
        non_nodule_id: the reader's ``nonNoduleID``.
        z_mm: slice z (mm).
        sop_uid: the slice's SOP instance UID.
        point_xy: (column, row) in the DICOM grid.
    """

    non_nodule_id: str
    z_mm: float
    sop_uid: str
    point_xy: tuple[int, int]


@dataclass(frozen=True)
class ReaderAnnotation:
    """Everything one radiologist marked in one reading session.

    Attributes:
        reader_index: 0-based position of the session in the file (unique per file).
        radiologist_id: the anonymised ``servicingRadiologistID`` (may repeat or be missing).
        nodules: nodules >= 3 mm with outlines.
        small_nodules: nodules < 3 mm (centre points only).
        non_nodules: non-nodule findings (points).
    """

    reader_index: int
    radiologist_id: str | None
    nodules: tuple[ReaderNodule, ...]
    small_nodules: tuple[ReaderNodule, ...]
    non_nodules: tuple[NonNodule, ...]


def _local(tag: str) -> str:
    """Tag name without its XML namespace (LIDC files use several, or none)."""
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    return found[0].text.strip() if found and found[0].text is not None else None


def _number(element: ET.Element, name: str, where: str) -> float:
    value = _text(element, name)
    if value is None:
        raise UnreadableInputError(f"{where}: <{name}> is missing", "check that it is an LIDC read XML")
    return float(value)


def _point(element: ET.Element, where: str) -> tuple[int, int]:
    return int(round(_number(element, "xCoord", where))), int(round(_number(element, "yCoord", where)))


def _contour(roi: ET.Element, where: str) -> Contour:
    points = [_point(edge, where) for edge in _children(roi, "edgeMap")]
    return Contour(z_mm=_number(roi, "imageZposition", where), sop_uid=_text(roi, "imageSOP_UID") or "",
                   inclusion=(_text(roi, "inclusion") or "TRUE").upper() == "TRUE",
                   points_xy=np.asarray(points, dtype=np.int64).reshape(-1, 2))


def _characteristics(nodule: ET.Element) -> dict[str, int]:
    found = _children(nodule, "characteristics")
    if not found:
        return {}
    return {_local(c.tag): int(c.text) for c in found[0] if c.text and c.text.strip().lstrip("-").isdigit()}


def _reader_nodule(element: ET.Element, where: str) -> ReaderNodule:
    nodule_id = _text(element, "noduleID") or ""
    contours = tuple(_contour(roi, f"{where}, nodule {nodule_id}") for roi in _children(element, "roi"))
    return ReaderNodule(nodule_id=nodule_id, contours=contours, characteristics=_characteristics(element))


def _non_nodule(element: ET.Element, where: str) -> NonNodule:
    loci = _children(element, "locus")
    if not loci:
        raise UnreadableInputError(f"{where}: a nonNodule has no <locus>",
                                   "check that it is an LIDC read XML")
    return NonNodule(non_nodule_id=_text(element, "nonNoduleID") or "",
                     z_mm=_number(element, "imageZposition", where),
                     sop_uid=_text(element, "imageSOP_UID") or "", point_xy=_point(loci[0], where))


def _session(element: ET.Element, index: int, where: str) -> ReaderAnnotation:
    marks = [_reader_nodule(n, f"{where}, reader {index}") for n in _children(element, "unblindedReadNodule")]
    return ReaderAnnotation(reader_index=index, radiologist_id=_text(element, "servicingRadiologistID"),
                            nodules=tuple(m for m in marks if m.contours and not m.is_small),
                            small_nodules=tuple(m for m in marks if m.contours and m.is_small),
                            non_nodules=tuple(_non_nodule(n, f"{where}, reader {index}")
                                              for n in _children(element, "nonNodule")))


def parse_lidc_xml(path: str | Path) -> list[ReaderAnnotation]:
    """Read an LIDC CT read XML.

    Args:
        path: the ``LidcReadMessage`` XML of one CT series.

    Returns:
        One :class:`ReaderAnnotation` per ``readingSession``, in file order.

    Raises:
        InputNotFoundError: the file does not exist.
        UnreadableInputError: not well-formed XML, no reading session (e.g. a chest X-ray
            read), or a required element is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"LIDC XML {path} does not exist", "check the path")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise UnreadableInputError(f"{path} is not well-formed XML ({exc})",
                                   "re-download the annotation") from exc
    sessions = [e for e in root.iter() if _local(e.tag) == "readingSession"]
    if not sessions:
        raise UnreadableInputError(f"{path} has no readingSession",
                                   "give an LIDC CT read XML (LidcReadMessage)")
    readers = [_session(s, i, str(path)) for i, s in enumerate(sessions)]
    logger.info("parsed %s: %d readers, %d nodule marks >= 3 mm", path, len(readers),
                sum(len(r.nodules) for r in readers))
    return readers
