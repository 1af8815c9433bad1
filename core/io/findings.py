"""The versioned ``findings.json`` schema, and the ``nodules.csv`` table derived from it.

The dataclasses below mirror the JSON one to one: :meth:`Findings.to_dict` is what is
written. Every coordinate names its frame (``lps_mm``, ``ras_mm``, ``voxel_index``).
Readers check ``schema_version``: a change of the major number means a change that old
readers cannot follow; minor versions only add fields.

History: 1.0 first version; 1.1 adds ``distance_to_pleura_mm`` and ``solid_component_mm`` to
each nodule (and as the last two ``nodules.csv`` columns); 1.2 adds ``emphysema.model_caveat``,
``emphysema.warnings`` and ``emphysema.notes``, and ``emphysema.model_probability`` is ``null``
unless asked for (``--emphysema-probability``) while the scanner's weights are demonstration weights;
2.0 removes ``tumour`` (the whole-scan tumour task is gone), and adds ``detection`` (the operating
point, its expected sensitivity and false positives, known weak spots) and, to each nodule, ``kind``
(``nodule`` or ``mass``), ``detected_by`` and ``operating_point`` (also the last three
``nodules.csv`` columns); a nodule's ``detection_score`` may be ``null`` (masses); 2.1 adds
``provenance`` (the command or API call, operating point, threshold and expected false positives
per scan, ``max_nodules``, tasks, and fingerprints of the input files), and ``nodules.csv``
rounds coordinates and measurements (:data:`CSV_DECIMALS`); 2.2 adds ``malignancy.estimates`` (what the
number estimates: :data:`SUSPICION_LABEL`) and ``malignancy.calibration``, each nodule's ``characteristics``
(texture, calcification, spiculation, lobulation, ill-defined margin: model estimates of LIDC readers'
ratings) and ``lung_rads.rule`` may name the benign-calcification rule (category 1); ``nodules.csv``
gains the last eight columns of :data:`NODULE_CSV_COLUMNS`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungai.errors import UnreadableInputError
from lungai.io.volume import CTVolume

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "2.2"

#: Keys of the per-region dicts (``lungs``, ``emphysema.densitometry``).
REGIONS = ("right", "left", "total")

NODULE_TYPES = ("solid", "part-solid", "ground-glass")

#: What a lesion is: a nodule (long axis at most 30 mm) or a mass.
LESION_KINDS = ("nodule", "mass")

#: What every model probability is, in the words shown to users.
ESTIMATE_LABEL = "model estimate, not a diagnosis"

#: What the malignancy number estimates (LIDC's malignancy labels are readers' ratings, not pathology).
SUSPICION_LABEL = "radiologists' suspicion on LIDC"

#: What the characteristics are.
CHARACTERISTICS_LABEL = "model estimates of LIDC readers' ratings, not a diagnosis"

Point = tuple[float, float, float]

NODULE_CSV_COLUMNS = (
    "id",
    "centroid_lps_x_mm", "centroid_lps_y_mm", "centroid_lps_z_mm",
    "centroid_ras_x_mm", "centroid_ras_y_mm", "centroid_ras_z_mm",
    "centroid_voxel_i", "centroid_voxel_j", "centroid_voxel_k",
    "long_axis_mm", "short_axis_mm", "volume_mm3", "mean_hu", "type",
    "malignancy_probability", "malignancy_models", "lung_rads_category",
    "detection_score", "location", "distance_to_pleura_mm", "solid_component_mm",
    "kind", "detected_by", "operating_point",
    "malignancy_estimates", "lung_rads_rule", "texture", "texture_probability", "calcification_probability",
    "spiculation_probability", "lobulation_probability", "ill_defined_margin_probability",
)

#: Decimals of the millimetre and HU columns of ``nodules.csv`` (0.1 mm is finer than any CT voxel).
CSV_DECIMALS = 1


def lps_to_ras(point: Sequence[float]) -> Point:
    """Convert a point between LPS and RAS millimetres (the map is its own inverse).

    Args:
        point: (x, y, z) in one frame.

    Returns:
        (-x, -y, z), the point in the other frame.
    """
    x, y, z = point
    return (-float(x), -float(y), float(z))


def utc_timestamp() -> str:
    """The current time as an ISO 8601 UTC timestamp, e.g. ``2025-01-31T12:00:00Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class InputInfo:
    """The scan the findings are about.

    Attributes:
        source: path the scan was read from.
        format: ``dicom``, ``dicom-zip``, ``nrrd``, ``nifti`` or ``metaimage``.
        modality: DICOM modality, or ``None`` when the format does not say.
        series_uid: DICOM SeriesInstanceUID, if read from DICOM.
        size_xyz: voxels along x, y, z.
        spacing_xyz_mm: voxel spacing along x, y, z.
        patient_id: DICOM PatientID; left out of the JSON when ``None``.
    """

    source: str
    format: str
    modality: str | None
    series_uid: str | None
    size_xyz: tuple[int, int, int]
    spacing_xyz_mm: Point
    patient_id: str | None = None

    @classmethod
    def from_volume(cls, volume: CTVolume) -> InputInfo:
        """Describe a loaded CT volume."""
        return cls(source=volume.source, format=volume.format, modality=volume.modality,
                   series_uid=volume.series_uid, size_xyz=volume.shape_xyz,
                   spacing_xyz_mm=volume.spacing_xyz, patient_id=volume.patient_id)


@dataclass
class LungVolume:
    """Size of one lung region.

    Attributes:
        volume_ml: volume in millilitres.
    """

    volume_ml: float


@dataclass
class Densitometry:
    """CT densitometry of one lung region (inspiration CT).

    Attributes:
        laa_950_percent: percentage of voxels below -950 HU (emphysema index).
        laa_910_percent: percentage of voxels below -910 HU.
        laa_856_percent: percentage of voxels below -856 HU (air trapping on expiration CT).
        perc15_hu: 15th percentile of the HU histogram.
    """

    laa_950_percent: float
    laa_910_percent: float
    laa_856_percent: float
    perc15_hu: float


@dataclass
class Emphysema:
    """Emphysema measures.

    Attributes:
        densitometry: per region (keys from :data:`REGIONS`).
        model_probability: emphysema probability from the volume-level model; ``None`` if not run
            (demonstration weights run only when asked for, see ``RunConfig.emphysema_probability``).
        model: which weights gave ``model_probability`` (name, revision, sha256); ``None`` if not run.
        model_caveat: what limits ``model_probability`` beyond being a model estimate (e.g.
            demonstration weights trained on simulated emphysema); ``None`` if not run or none.
        warnings: why this scan's emphysema figures may be unreliable or incomplete: the
            densitometry (slice thickness, sharp kernel, contrast), the model's probability
            (disagreeing with LAA-950), the model not run; each is also in the findings' ``warnings``.
        notes: what always qualifies the densitometry (LAA-856 on an inspiratory scan; checks that
            could not be made without a DICOM header).
    """

    densitometry: dict[str, Densitometry]
    model_probability: float | None = None
    model: WeightsInfo | None = None
    model_caveat: str | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Centroid:
    """A lesion centre in all three frames.

    Attributes:
        lps_mm: world position, LPS millimetres.
        ras_mm: the same position, RAS millimetres (3D Slicer's frame).
        voxel_index: nearest voxel (i, j, k) = (x, y, z) index, 0-based.
    """

    lps_mm: Point
    ras_mm: Point
    voxel_index: tuple[int, int, int]

    @classmethod
    def from_lps(cls, lps_mm: Sequence[float], image: sitk.Image) -> Centroid:
        """Build a centroid from an LPS position on the grid of ``image``.

        Args:
            lps_mm: (x, y, z) in LPS millimetres.
            image: the CT (or label) image that defines the voxel grid.
        """
        lps = (float(lps_mm[0]), float(lps_mm[1]), float(lps_mm[2]))
        index = image.TransformPhysicalPointToIndex(lps)
        return cls(lps_mm=lps, ras_mm=lps_to_ras(lps),
                   voxel_index=(int(index[0]), int(index[1]), int(index[2])))


@dataclass
class Malignancy:
    """The malignancy estimate for a nodule: radiologists' suspicion on LIDC, not pathology.

    Attributes:
        probability: estimated probability that LIDC radiologists would rate the nodule
            suspicious (at least 2 readers rating malignancy > 3), 0..1.
        models: names of the models that gave it.
        label: states what the number is.
        estimates: what it estimates (:data:`SUSPICION_LABEL`).
        calibration: how the probability was calibrated; ``None`` if it was not.
    """

    probability: float
    models: list[str]
    label: str = ESTIMATE_LABEL
    estimates: str = SUSPICION_LABEL
    calibration: str | None = None


@dataclass
class Characteristics:
    """What radiologists read beside size, estimated from the nodule's measured features.

    Each probability estimates the LIDC readers' consensus rating (``lungai.data.lidc_characteristics``):
    texture ground-glass (rated 1-2), part-solid (3-4) or solid (5); calcification (any pattern);
    spiculation and lobulation (rated 3 or more); an ill-defined margin (rated 1-2).

    Attributes:
        texture: the most probable texture, one of :data:`NODULE_TYPES`.
        texture_probability: its probability.
        calcification_probability: probability of calcification.
        spiculation_probability: probability of spiculation.
        lobulation_probability: probability of lobulation.
        ill_defined_margin_probability: probability of an ill-defined margin.
        present: the binary characteristics whose probability is at least 0.5, in the order above.
        label: states what the numbers are (:data:`CHARACTERISTICS_LABEL`).
    """

    texture: str
    texture_probability: float
    calcification_probability: float
    spiculation_probability: float
    lobulation_probability: float
    ill_defined_margin_probability: float
    present: list[str] = field(default_factory=list)
    label: str = CHARACTERISTICS_LABEL


@dataclass
class LungRads:
    """A Lung-RADS category suggested from the nodule's size and type only.

    Attributes:
        category: ``"1"``, ``"2"``, ``"3"``, ``"4A"``, ``"4B"``...
        rule: which part of Lung-RADS was applied (``size rule``, or the benign-calcification rule).
    """

    category: str
    rule: str = "size rule"


@dataclass
class Nodule:
    """One detected lung nodule.

    Attributes:
        id: 1-based; the nodule's segment is ``lungai.labels.nodule(id)``.
        centroid: centre of the nodule's segmentation.
        long_axis_mm: longest in-plane diameter.
        short_axis_mm: longest diameter perpendicular to the long axis, same plane.
        volume_mm3: segmented volume.
        mean_hu: mean attenuation inside the segmentation.
        type: one of :data:`NODULE_TYPES`.
        detection_score: detector confidence, 0..1; ``None`` for a lesion found by the mass
            rule (thick soft tissue in the lungs' search region), which no classifier scores.
        location: where it is, e.g. ``"right lung"``; ``None`` if unknown.
        malignancy: the estimate of radiologists' suspicion on LIDC; ``None`` if not run.
        lung_rads: suggested category; ``None`` if not computed.
        distance_to_pleura_mm: gap between the nodule and the lung mask's edge (0: touching).
        solid_component_mm: mean diameter of a part-solid nodule's solid part, else ``None``.
        kind: ``nodule``, or ``mass`` for a lesion whose long axis exceeds 30 mm.
        detected_by: ``blob`` (blob candidate scored by the classifier), ``ground_glass`` (ground-glass
            candidate scored by the ground-glass scorer) or ``mass`` (the mass rule).
        operating_point: the strictest operating point (``specific``, ``balanced``, ``high``) its
            detection score passes; ``None`` for the mass rule or a score below them all.
        characteristics: texture, calcification, spiculation, lobulation and margin estimates;
            ``None`` if not computed (like ``malignancy``).

    Raises:
        ValueError: ``type`` is not one of :data:`NODULE_TYPES`, ``kind`` not one of
            :data:`LESION_KINDS`, or ``id`` is below 1.
    """

    id: int
    centroid: Centroid
    long_axis_mm: float
    short_axis_mm: float
    volume_mm3: float
    mean_hu: float
    type: str
    detection_score: float | None
    location: str | None = None
    malignancy: Malignancy | None = None
    lung_rads: LungRads | None = None
    distance_to_pleura_mm: float | None = None
    solid_component_mm: float | None = None
    kind: str = "nodule"
    detected_by: str = "blob"
    operating_point: str | None = None
    characteristics: Characteristics | None = None

    def __post_init__(self) -> None:
        if self.type not in NODULE_TYPES:
            raise ValueError(f"nodule type must be one of {NODULE_TYPES}, got {self.type!r}")
        if self.kind not in LESION_KINDS:
            raise ValueError(f"lesion kind must be one of {LESION_KINDS}, got {self.kind!r}")
        if self.id < 1:
            raise ValueError(f"nodule id starts at 1, got {self.id}")


@dataclass
class DetectionInfo:
    """The operating point lesions were reported at, and what it is known to miss.

    Attributes:
        operating_point: ``high``, ``balanced``, ``specific``, or ``custom`` (``--detection-threshold``).
        threshold: the detection score threshold.
        expected_sensitivity: fraction of validation nodules found at it (``None``: custom threshold).
        expected_fp_per_scan: false positives per scan at it on the validation scans (``None``: custom).
        known_limitations: measured weak spots (docs/results.md), to read "none found" with.
    """

    operating_point: str
    threshold: float
    expected_sensitivity: float | None = None
    expected_fp_per_scan: float | None = None
    known_limitations: list[str] = field(default_factory=list)


@dataclass
class WeightsInfo:
    """One set of model weights used in the run.

    Attributes:
        name: model name (``resunet3d``, ...).
        revision: the weights' release or Hugging Face revision.
        sha256: checksum of the weights file that was loaded.
    """

    name: str
    revision: str
    sha256: str


@dataclass
class RunInfo:
    """How the findings were produced.

    Attributes:
        lungai_version: ``lungai.__version__``.
        tasks: the stages that ran, in order (``lungs``, ``nodules``, ...).
        device: ``cpu``, ``cuda:0``, ...
        started_utc: ISO 8601 UTC timestamp (see :func:`utc_timestamp`).
        finished_utc: ISO 8601 UTC timestamp; ``None`` until the run ends.
        weights: weights used, one entry per model.
        timings_s: seconds per stage.
    """

    lungai_version: str
    tasks: list[str]
    device: str
    started_utc: str
    finished_utc: str | None = None
    weights: list[WeightsInfo] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass
class InputFile:
    """The fingerprint of one input the findings were computed from.

    Attributes:
        path: the file or folder, as given.
        series_uid: the DICOM SeriesInstanceUID read from it; ``None`` for other formats.
        files: how many files the fingerprint covers (a DICOM folder: the series' slices).
        size_bytes: their total size.
        sha256: the file's sha256; for a DICOM folder the sha256 of its slices' sha256 hex digests,
            one per line in slice order; ``None`` for files too large to hash (then ``mtime_utc``).
        mtime_utc: the latest modification time (ISO 8601 UTC) when ``sha256`` is ``None``.
    """

    path: str
    series_uid: str | None
    files: int
    size_bytes: int
    sha256: str | None = None
    mtime_utc: str | None = None


@dataclass
class Provenance:
    """How the findings were asked for, to read them later (an empty ``nodules`` list included).

    Attributes:
        command: the command line (``lungai run ...``), or ``python API: run_pipeline(RunConfig(...))``
            with the settings that differ from the defaults.
        operating_point: the nodule operating point (``high``, ``balanced``, ``specific``, or
            ``custom`` for a set threshold); ``None`` when the nodules task did not run.
        threshold: its detection score threshold; ``None`` without the nodules task.
        expected_false_positives_per_scan: measured at that operating point on validation scans;
            ``None`` for a custom threshold or without the nodules task.
        max_nodules: at most this many detections were segmented and reported.
        tasks: the tasks the run was asked for, with the tasks they need.
        inputs: fingerprints of the input files.
    """

    command: str
    operating_point: str | None
    threshold: float | None
    expected_false_positives_per_scan: float | None
    max_nodules: int
    tasks: list[str]
    inputs: list[InputFile] = field(default_factory=list)


@dataclass(kw_only=True)
class Findings:
    """Everything one ``lungai run`` found, as written to ``findings.json``.

    Attributes:
        schema_version: :data:`SCHEMA_VERSION`, set automatically.
        input: the scan.
        lungs: lung volumes per region (keys from :data:`REGIONS`).
        emphysema: emphysema measures, ``None`` if not run.
        nodules: detected lesions (nodules and masses), by ``id``.
        detection: the operating point they were reported at; ``None`` if detection did not run.
        warnings: things the user should know (soft input checks, skipped stages).
        run: how the findings were produced.
        provenance: how the run was asked for and what it read; ``None`` in findings built
            outside :func:`lungai.pipeline.runner.run_pipeline`.
        review: a reviewer's decisions, when the findings were reviewed in 3D Slicer
            (:mod:`lungai.slicer.review`; docs/outputs.md); ``None`` (left out of the JSON) otherwise.
    """

    schema_version: str = field(default=SCHEMA_VERSION, init=False)
    input: InputInfo
    lungs: dict[str, LungVolume] = field(default_factory=dict)
    emphysema: Emphysema | None = None
    nodules: list[Nodule] = field(default_factory=list)
    detection: DetectionInfo | None = None
    warnings: list[str] = field(default_factory=list)
    run: RunInfo
    provenance: Provenance | None = None
    review: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict: plain types only, non-finite numbers as ``None``.

        ``input.patient_id`` and ``review`` are left out when they are ``None``.
        """
        data = _plain(dataclasses.asdict(self))
        if data["input"]["patient_id"] is None:
            del data["input"]["patient_id"]
        if data["review"] is None:
            del data["review"]
        return data


def write_findings_json(findings: Findings, path: Path) -> None:
    """Write ``findings.json``.

    Args:
        findings: the findings to write.
        path: output file.
    """
    text = json.dumps(findings.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")
    logger.info("wrote %s", path)


def load_findings(path: Path) -> dict[str, Any]:
    """Read a ``findings.json`` written by a compatible LungAI version.

    Args:
        path: the file.

    Returns:
        The findings as a plain dict (the layout of :meth:`Findings.to_dict`); :func:`read_findings`
        reads them as :class:`Findings`.

    Raises:
        UnreadableInputError: the file is not JSON, has no ``schema_version``, or its major
            version differs from :data:`SCHEMA_VERSION`'s.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnreadableInputError(f"cannot read findings file {path} ({error})",
                                   "check that it is a findings.json written by lungai") from error
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, str):
        raise UnreadableInputError(f"{path} has no schema_version",
                                   "check that it is a findings.json written by lungai")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise UnreadableInputError(
            f"{path} has findings schema {version}, this LungAI reads {SCHEMA_VERSION}",
            "re-run lungai run on the scan, or use the LungAI version that wrote the file")
    return data


def write_nodules_csv(nodules: Sequence[Nodule], path: Path) -> None:
    """Write one row per nodule to ``nodules.csv``; the header is written even with no nodules.

    Args:
        nodules: the nodules, in the order to write.
        path: output file.
    """
    with Path(path).open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(NODULE_CSV_COLUMNS)
        for nodule in nodules:
            writer.writerow(_nodule_row(nodule))
    logger.info("wrote %s (%d nodules)", path, len(nodules))


def _csv_value(column: str, value: Any) -> Any:
    """A CSV cell: empty for ``None``; millimetres and HU rounded to :data:`CSV_DECIMALS`."""
    value = None if value is None else _plain(value)
    if isinstance(value, float) and column.endswith(("_mm", "_mm3", "_hu")):
        return round(value, CSV_DECIMALS)
    return "" if value is None else value


def _nodule_row(nodule: Nodule) -> list[object]:
    malignancy, lung_rads, features = nodule.malignancy, nodule.lung_rads, nodule.characteristics
    row: list[object] = [
        nodule.id,
        *nodule.centroid.lps_mm, *nodule.centroid.ras_mm, *nodule.centroid.voxel_index,
        nodule.long_axis_mm, nodule.short_axis_mm, nodule.volume_mm3, nodule.mean_hu, nodule.type,
        None if malignancy is None else malignancy.probability,
        None if malignancy is None else ";".join(malignancy.models),
        None if lung_rads is None else lung_rads.category,
        nodule.detection_score, nodule.location, nodule.distance_to_pleura_mm, nodule.solid_component_mm,
        nodule.kind, nodule.detected_by, nodule.operating_point,
        None if malignancy is None else malignancy.estimates, None if lung_rads is None else lung_rads.rule,
        *((None,) * 6 if features is None else (
            features.texture, features.texture_probability, features.calcification_probability,
            features.spiculation_probability, features.lobulation_probability,
            features.ill_defined_margin_probability)),
    ]
    return [_csv_value(column, value) for column, value in zip(NODULE_CSV_COLUMNS, row)]


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars made Python scalars, tuples made lists, NaN/inf made None."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        logger.warning("a non-finite measurement (%s) is written as null", value)
        return None
    return value


def read_findings(path: str | PathLike[str]) -> Findings:
    """The typed findings of a ``findings.json`` written by a compatible LungAI version, or of the
    output folder holding one.

    Raises:
        UnreadableInputError: the file cannot be read (see :func:`load_findings`), or its content
            does not follow the findings schema.
    """
    target = Path(path)
    target = target / "findings.json" if target.is_dir() else target
    data = load_findings(target)
    try:
        return findings_from_dict(data)
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        raise UnreadableInputError(f"{target} does not follow the findings schema ({error})",
                                   "check that it is a findings.json written by lungai") from error


def findings_from_dict(data: dict[str, Any]) -> Findings:
    """The :class:`~lungai.io.findings.Findings` of a findings dict (the layout of ``Findings.to_dict``).

    Keys the dataclasses do not have are left out (with a debug log line).
    """
    return _from_plain(Findings, data)


def _from_plain(kind: Any, value: Any) -> Any:
    """``value`` (plain JSON types) as an instance of the annotated type ``kind``."""
    if value is None:
        return None
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        fields = {item.name for item in dataclasses.fields(kind) if item.init}
        unknown = set(value) - fields - {"schema_version"}
        if unknown:
            logger.debug("%s: left out %s", kind.__name__, ", ".join(sorted(unknown)))
        return kind(**{name: _from_plain(hints[name], item) for name, item in value.items() if name in fields})
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return _from_plain(next(argument for argument in arguments if argument is not type(None)), value)
    if origin is list:
        return [_from_plain(arguments[0], item) for item in value]
    if origin is tuple:
        return tuple(_from_plain(arguments[0] if arguments[-1] is Ellipsis else arguments[index], item)
                     for index, item in enumerate(value))
    if origin is dict:
        return {key: _from_plain(arguments[1], item) for key, item in value.items()}
    return value
