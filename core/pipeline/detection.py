"""Nodule detection in the whole scan: blob candidates in the lungs, then false-positive reduction.

1. :func:`lungai.preprocessing.candidates.find_candidates` finds blob-shaped candidates inside
   the lung mask (multi-scale dot-enhancement filter, 3-30 mm).
2. ``convlstm_nodule`` scores the region of interest around each candidate: the model predicts a
   nodule mask for the ROI, and its ROI score is the sigmoid of its largest mask logit in the
   centre of the ROI (:func:`roi_scores`), high when the model sees nodule tissue at the
   candidate. The detection score is the weighted geometric mean
   ``roi_score ** CLASSIFIER_WEIGHT * strength_score ** (1 - CLASSIFIER_WEIGHT)`` of the ROI
   score and the candidate's strength score: on the validation inserted-nodule scans it beat
   either alone (CPM 0.67 against 0.52 for the ROI score and 0.48 for the strength; weights
   0.3, 0.5, 0.7 and 1 tried). The shipped classifier is an ensemble of three trainings
   (:class:`~lungai.models.convlstm_nodule.ConvLSTMNoduleEnsemble`, logits averaged); its first
   member scores every candidate, and the whole ensemble rescores those whose detection score
   by the first reaches :data:`CASCADE_GATE` (:func:`detection_scores`). An ensemble may also
   have *boundary members*, trained with nodules against the lung boundary and weighted more at
   candidates near it (:func:`at_lung_boundary`, :data:`BOUNDARY_WEIGHT`, with test-time
   :data:`FLIPS` from :data:`BOUNDARY_CASCADE_GATE`); the shipped one has one, trained also with
   negatives at the mediastinal border (docs/results.md, "Nodules against the lung boundary").
3. A second pool for subsolid nodules, which the blob filter ranks behind the vessels: the
   strongest ground-glass candidates (:func:`lungai.preprocessing.ground_glass.find_ground_glass`),
   each scored by :mod:`lungai.pipeline.ground_glass` (the filter's measurements and the ROI
   score of the classifier it was fitted with, :func:`ground_glass_classifier`) on the same score
   scale, on scans no coarser than the scorer was validated on
   (:data:`lungai.pipeline.ground_glass.MAX_SPACING_MM`). A ground-glass detection within its
   radius (at least :data:`SAME_LESION_MM`) of a blob candidate that scores at least as high is
   that candidate.
4. Detections at or above the operating point's threshold are returned, strongest first.

Where LungAI deviates from the nodule paper, and why:

* The paper's ROIs are 64x64 pixels; here they are :data:`~lungai.preprocessing.detection_rois.DETECTION_ROI`,
  10 x 32 x 32 voxels at 2.5 x 1.6 x 1.6 mm: the same 25 x 51 x 51 mm field of view at half the in-plane
  resolution, so one ROI costs about a twentieth as much on a CPU (about 50 ms with the
  CPU-sized network instead of about a second) and a scan's candidates fit in seconds.
* The paper uses the ConvLSTM's mask for candidate detection without saying how a mask becomes
  a score; LungAI takes the maximum logit in the ROI's centre (:data:`CENTRE_HALF_SIZE`), and
  trains that maximum with a classification loss next to the mask loss
  (:mod:`lungai.data.detection_dataset`).
* Training data are real LIDC nodule VOIs pasted into real lung tissue (lesion insertion,
  :mod:`lungai.data.lesion_insertion`) and real lung tissue with the candidate filter's hard
  negatives, not LUNA16.

Without a classifier (``classifier=None``) the candidate strength mapped to 0..1 is the score and
a warning says so; :data:`lungai.pipeline.operating_points.CANDIDATE_OPERATING_POINTS` then apply.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from functools import cache

import numpy as np
import SimpleITK as sitk
import torch
from scipy.special import expit
from torch import nn

from lungai.inference.batches import batched_outputs
from lungai.models.convlstm_nodule import ConvLSTMNoduleEnsemble
from lungai.pipeline.ground_glass import MAX_SPACING_MM, GroundGlassScorer, applies_to, feature_matrix, read_scorer
from lungai.pipeline.operating_points import operating_point
from lungai.preprocessing.candidates import Candidate, CandidateConfig, find_candidates, strength_score
from lungai.preprocessing.detection_rois import extract_rois
from lungai.preprocessing.ground_glass import GroundGlassConfig, find_ground_glass

logger = logging.getLogger(__name__)

CENTRE_HALF_SIZE = (2, 6, 6)
"""Half size (z, y, x) in output voxels of the ROI centre whose largest logit is the score."""

CLASSIFIER_WEIGHT = 0.7
"""Weight of the classifier's ROI score against the candidate strength in the detection score."""

CASCADE_GATE = 0.3
"""An ensemble's members after the first score only the candidates whose detection score by the first
reaches this: about 55 of 300 per scan on the 20 validation inserted-nodule scans, with the same CPM
(0.721) and the same nodules at 1 false positive per scan as all members on every candidate
(``benchmarks/candidate_budget.py --cascade 0``). It lies far below every operating point (0.70 and up)."""

BOUNDARY_CASCADE_GATE = 0.6
"""The gate of an ensemble with boundary members (:func:`detection_scores`), whose rescoring costs
sixteen times as many ROIs (every member in every flip). This and the boundary rule's other settings
below were chosen with the first boundary member (``runs/detection/convlstm_ensP``, whose numbers they
quote); the shipped one, trained also with mediastinal negatives, scores CPM 0.630 with them
(docs/results.md, "Nodules against the lung boundary"). About 27 of 300 candidates per scan on the
30 validation inserted-nodule scans (20 with nodules inside the lungs, 10 against the boundary), with
the same CPM (0.670) as rescoring every candidate and one nodule fewer at 1 false positive per scan
(123 of 180 against 124; gate 0.4: 51 per scan, 124; 0.5: 36, 123; ``benchmarks/boundary_classifier.py``)."""

FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (1,), (1, 2))
"""Test-time flips of a ROI rescored by an ensemble with boundary members or with ``flips`` set (axes of
the ``(N, z, y, x)`` ROI array: none, y, z, z and y), whose centre logits are averaged (the centre region
is symmetric under each). On the 30 validation scans the boundary rule scores CPM 0.617 without flips,
0.659 with none and y, 0.642 with none and z, 0.672 with three and 0.670 with all four (106, 119, 121,
122 and 123 of 180 nodules at 1 false positive per scan); the three general members' cascade scores
0.721 without and 0.734 with the four on the 20 scans with nodules inside the lungs, 0.269 and 0.290
on the 10 with nodules against the boundary (``benchmarks/boundary_classifier.py``)."""

BOUNDARY_DEPTH_MM = 3.0
"""A candidate is *at the lung boundary* when its centre lies in the lung mask no deeper than this
(:func:`at_lung_boundary`): about 190 of a scan's 300 candidates, most of them on the mask's edge. Of
the validation nodules among the candidates, 39 of the 50 pasted against the boundary have a candidate
there, and 2 of the 102 pasted inside the lungs. On the 30 validation scans: CPM 0.647 at 1 mm, 0.659
at 2, 0.670 at 3, 0.666 at 5 and 0.640 at 8."""

BOUNDARY_WEIGHT = 0.75
"""At candidates at the boundary, an ensemble's boundary members' mean logit gets this weight against
the other members' mean (elsewhere every member counts alike). On the 30 validation scans: CPM 0.670
and 123 of 180 nodules at 1 false positive per scan, against 0.584 and 107 with the three members
trained without juxtapleural nodules (flipped alike) and 0.604 and 111 with the four averaged
everywhere; weight 0.5: 0.623, 0.6: 0.647, 0.8: 0.666, 1: 0.649."""

SAME_LESION_MM = 5.0
"""A ground-glass detection this close (or within its radius) to a blob candidate scoring at least as
high is the same lesion."""

BATCH_SIZE = 16
"""ROIs per classifier call: on the 2-core CPU LIDC-IDRI-0001's 300 candidate ROIs take 1.29 s in calls
of 16 against 1.93 s in calls of 32 and 1.62 s in calls of 8 (``benchmarks/detector_batches.py``,
median of 6); the scores agree within 1e-7."""


@dataclass(frozen=True)
class Detection:
    """A detected nodule.

    Attributes:
        centre_lps_mm: its centre, LPS mm.
        radius_mm: the blob scale estimate (radius of the strongest filter scale).
        score: 0..1; the combined classifier and strength score (:func:`combined_score`), or the
            strength score alone when there is no classifier; ``None`` for a mass candidate.
        source: ``blob`` (a blob candidate that passed the operating point), ``ground_glass`` (a
            ground-glass candidate that did) or ``mass`` (a thick soft-tissue lesion of
            :func:`lungai.preprocessing.lesion_region.lesion_region`, reported at every operating point).
        extent_mm_zyx: the lesion's rough extent (mm) when known (masses), else ``None``.
    """

    centre_lps_mm: tuple[float, float, float]
    radius_mm: float
    score: float | None
    source: str = "blob"
    extent_mm_zyx: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class DetectionConfig:
    """How detections are selected.

    Attributes:
        operating_point: ``high`` (sensitive), ``balanced`` or ``specific``.
        threshold: a score threshold; overrides the operating point when given.
        candidates: the candidate filter's parameters.
        ground_glass: whether the ground-glass pool runs (it needs the classifier).
        batch_size: ROIs per classifier call (:data:`BATCH_SIZE`).
    """

    operating_point: str = "balanced"
    threshold: float | None = None
    candidates: CandidateConfig = CandidateConfig()
    ground_glass: bool = True
    batch_size: int = BATCH_SIZE


@cache
def ground_glass_scorer() -> GroundGlassScorer:
    """The installed ground-glass scorer (read once)."""
    return read_scorer()


def ground_glass_detections(image: sitk.Image, lung_labels: sitk.Image, classifier: nn.Module, device: str = "cpu",
                            batch_size: int = BATCH_SIZE) -> list[Detection]:
    """Every scored ground-glass candidate (the scorer's ``top`` strongest) as a detection."""
    scorer = ground_glass_scorer()
    found = find_ground_glass(image, lung_labels, replace(GroundGlassConfig(), max_candidates=scorer.top))
    if not found:
        return []
    rois = extract_rois(image, [c.centre_lps_mm for c in found])
    roi = roi_scores(ground_glass_classifier(classifier), rois, device, batch_size)
    scores = scorer.detection_scores(scorer.probabilities(feature_matrix(found, roi)))
    return [Detection(c.centre_lps_mm, c.radius_mm, float(s), source="ground_glass") for c, s in zip(found, scores)]


def ground_glass_classifier(classifier: nn.Module) -> nn.Module:
    """The classifier whose ROI score the ground-glass scorer reads: the one it was fitted with, which is an
    ensemble's first member (:mod:`lungai.pipeline.ground_glass`)."""
    return _members(classifier)[0]


def _members(classifier: nn.Module) -> list[nn.Module]:
    """The networks of a classifier: an ensemble's members, or the classifier itself."""
    return list(classifier.members) if isinstance(classifier, ConvLSTMNoduleEnsemble) else [classifier]


def _new_lesions(glass: list[Detection], blobs: list[Detection]) -> list[Detection]:
    """The ground-glass detections that no blob candidate scoring at least as high already covers."""
    if not blobs:
        return glass
    points = np.array([b.centre_lps_mm for b in blobs])
    scores = np.array([b.score or 0.0 for b in blobs])
    kept = []
    for g in glass:
        near = np.linalg.norm(points - np.asarray(g.centre_lps_mm), axis=1) <= max(g.radius_mm, SAME_LESION_MM)
        if not np.any(near & (scores >= (g.score or 0.0))):
            kept.append(g)
    return kept


def threshold_of(config: DetectionConfig, with_classifier: bool = True) -> float:
    """The score threshold a configuration asks for."""
    if config.threshold is not None:
        return float(config.threshold)
    return operating_point(config.operating_point, with_classifier).threshold


def centre_max_logit(logits: torch.Tensor) -> torch.Tensor:
    """The largest mask logit in the centre of each ROI: ``(N, 1, D, H, W)`` -> ``(N,)``."""
    d, h, w = logits.shape[2:]
    hz, hy, hx = CENTRE_HALF_SIZE
    centre = logits[:, 0, max(d // 2 - hz, 0):d // 2 + hz, max(h // 2 - hy, 0):h // 2 + hy,
                    max(w // 2 - hx, 0):w // 2 + hx]
    return centre.flatten(1).amax(dim=1)


def roi_scores(classifier: nn.Module, rois: np.ndarray, device: str = "cpu",
               batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Detection scores (0..1) of ROIs: the sigmoid of :func:`centre_max_logit`.

    An ensemble's score is the sigmoid of its members' :func:`centre_max_logit` averaged, not the
    centre maximum of their averaged mask: the members' peaks need not share a voxel, and on the 20
    validation inserted-nodule scans averaging the maps gave CPM 0.661 (74 of 120 nodules at 1 false
    positive per scan) against 0.721 (89) for averaging the scores (``benchmarks/candidate_budget.py``).

    Args:
        classifier: a ``convlstm_nodule`` model or ensemble (in eval mode).
        rois: ``(N, z, y, x)`` normalised ROIs.
        device: where to run it.
        batch_size: ROIs per call.

    Returns:
        ``(N,)`` float scores.
    """
    return expit(np.mean([_centre_logits(m, rois, device, batch_size) for m in _members(classifier)], axis=0))


def _centre_logits(network: nn.Module, rois: np.ndarray, device: str, batch_size: int) -> np.ndarray:
    """:func:`centre_max_logit` of one network for each ROI, as float64."""
    def batch(items: range) -> torch.Tensor:
        return torch.from_numpy(rois[items.start:items.stop][:, None])

    batches = batched_outputs(network, len(rois), batch, batch_size, device)
    return np.concatenate([centre_max_logit(logits).double().numpy() for logits in batches]
                          or [np.empty(0, np.float64)])


def combined_score(roi_score: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """The detection score: ``roi_score ** CLASSIFIER_WEIGHT * strength ** (1 - CLASSIFIER_WEIGHT)``."""
    return np.power(roi_score, CLASSIFIER_WEIGHT) * np.power(strength, 1.0 - CLASSIFIER_WEIGHT)


def detection_scores(classifier: nn.Module, rois: np.ndarray, strengths: np.ndarray, device: str = "cpu",
                     batch_size: int = BATCH_SIZE, gate: float | None = None,
                     boundary: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Detection scores (:func:`combined_score`) of candidates' ROIs, and how many the whole ensemble rescored.

    A cascade. A single classifier scores every ROI. An ensemble's first member scores every ROI, and
    the whole ensemble rescores the ROIs whose score by the first reaches ``gate``; the rescored logit
    is the members' mean, in each of the :data:`FLIPS` averaged if the ensemble's ``flips`` is set.
    An ensemble with boundary members (the boundary rule) blends the first pass
    at the boundary with them (:data:`BOUNDARY_WEIGHT`), rescores with every member in each of the
    :data:`FLIPS`, and at the boundary weights the boundary members' mean against the others'
    (:func:`blend_logits`).

    Args:
        classifier: a ``convlstm_nodule`` model or ensemble (in eval mode).
        rois: ``(N, z, y, x)`` normalised ROIs.
        strengths: ``(N,)`` candidate strength scores.
        device: where to run it.
        batch_size: ROIs per call.
        gate: the cascade's gate (0: the whole ensemble scores every ROI; above 1: none); ``None``:
            :data:`CASCADE_GATE`, or :data:`BOUNDARY_CASCADE_GATE` with boundary members.
        boundary: ``(N,)`` bool, the candidates at the lung boundary (:func:`at_lung_boundary`);
            ``None``: none. Used only by an ensemble with boundary members.

    Returns:
        ``(N,)`` float scores, and the number of ROIs rescored (0 for a single network).
    """
    members = _members(classifier)
    special = _boundary_members(classifier)
    if gate is None:
        gate = BOUNDARY_CASCADE_GATE if special else CASCADE_GATE
    at = np.zeros(len(rois), bool) if boundary is None or not special else np.asarray(boundary, bool)
    first = _centre_logits(members[0], rois, device, batch_size)
    cheap = first.copy()
    if at.any():
        own = [_centre_logits(m, rois[at], device, batch_size) for m in members[-special:]]
        cheap[at] = blend_logits(np.array([first[at], *own]), special, np.ones(int(at.sum()), bool))
    scores = combined_score(expit(cheap), strengths)
    gated = np.flatnonzero(scores >= gate) if len(members) > 1 else np.empty(0, int)
    if len(gated):
        flips = FLIPS if special or _flipped(classifier) else ((),)
        logits = [_flipped_logits(m, rois[gated], device, batch_size, flips, first[gated] if i == 0 else None)
                  for i, m in enumerate(members)]
        scores[gated] = combined_score(expit(blend_logits(np.array(logits), special, at[gated])),
                                       strengths[gated])
    logger.debug("detection: the whole ensemble rescored %d of %d ROIs (%d at the boundary)", len(gated), len(rois),
                 int(at.sum()))
    return scores, len(gated)


def _flipped(classifier: nn.Module) -> bool:
    """Whether an ensemble's ``flips`` is set (:class:`~lungai.models.convlstm_nodule.ConvLSTMNoduleEnsembleConfig`)."""
    return isinstance(classifier, ConvLSTMNoduleEnsemble) and classifier.config.flips


def _boundary_members(classifier: nn.Module) -> int:
    """How many of a classifier's members (the last) are boundary members."""
    return classifier.config.boundary_members if isinstance(classifier, ConvLSTMNoduleEnsemble) else 0


def _flipped_logits(network: nn.Module, rois: np.ndarray, device: str, batch_size: int,
                    flips: tuple[tuple[int, ...], ...], unflipped: np.ndarray | None = None) -> np.ndarray:
    """:func:`centre_max_logit` of one network averaged over ``flips`` of each ROI (``unflipped``: the
    unflipped ROIs' logits when already known)."""
    logits = [unflipped if not axes and unflipped is not None
              else _centre_logits(network, np.ascontiguousarray(np.flip(rois, axes)) if axes else rois, device,
                                  batch_size)
              for axes in flips]
    return np.mean(logits, axis=0)


def blend_logits(logits: np.ndarray, special: int, at: np.ndarray, weight: float = BOUNDARY_WEIGHT) -> np.ndarray:
    """Members' ``(M, N)`` logits into one per ROI: their mean, and at the boundary (``at``)
    ``weight`` x the last ``special`` members' mean + (1 - ``weight``) x the others' mean."""
    mean = logits.mean(axis=0)
    if not special:
        return mean
    weighted = weight * logits[-special:].mean(axis=0) + (1.0 - weight) * logits[:-special].mean(axis=0)
    return np.where(at, weighted, mean)


def at_lung_boundary(lung_labels: sitk.Image, centres_lps_mm: list[tuple[float, float, float]],
                     depth_mm: float = BOUNDARY_DEPTH_MM) -> np.ndarray:
    """Whether each point lies in the lung mask no deeper than ``depth_mm`` (:data:`BOUNDARY_DEPTH_MM`).

    The depth is the signed Maurer distance (inside positive, 0 on the mask's outer voxels), computed
    on a box around the point that reaches ``depth_mm`` plus two voxels beyond it, so the whole scan's
    distance map (about 2 s for a 512 x 512 x 261 scan) is never needed: within that reach the box's
    distance is the whole mask's.
    """
    if not centres_lps_mm:
        return np.zeros(0, bool)
    inside = sitk.Cast(lung_labels > 0, sitk.sitkUInt8)
    size = np.array(inside.GetSize())
    reach = np.ceil(depth_mm / np.array(inside.GetSpacing())).astype(int) + 2
    result = []
    for point in centres_lps_mm:
        index = np.array(inside.TransformPhysicalPointToIndex([float(v) for v in point]))
        if np.any(index < 0) or np.any(index >= size) or not inside[[int(i) for i in index]]:
            result.append(False)
            continue
        low = np.maximum(index - reach, 0)
        box = sitk.RegionOfInterest(inside, [int(v) for v in np.minimum(index + reach + 1, size) - low],
                                    [int(v) for v in low])
        depth = sitk.SignedMaurerDistanceMap(box, insideIsPositive=True, squaredDistance=False,
                                             useImageSpacing=True)
        result.append(bool(depth[[int(v) for v in index - low]] <= depth_mm))
    return np.array(result)


def detect_nodules(image: sitk.Image, lung_labels: sitk.Image, config: DetectionConfig, device: str = "cpu",
                   classifier: nn.Module | None = None, candidates: list[Candidate] | None = None) -> list[Detection]:
    """Find nodules in a whole scan.

    Args:
        image: CT, int16 HU, LPS.
        lung_labels: lung labels on the same grid (1 right, 2 left).
        config: operating point or threshold, candidate filter parameters.
        device: where the classifier runs.
        classifier: a trained ``convlstm_nodule`` or ensemble; ``None`` scores by candidate strength (and warns).
        candidates: the scan's candidates for ``config.candidates`` when they were already found
            (the pipeline shares them with the tumour stage); ``None`` finds them.

    Returns:
        The detections (blob and ground-glass) at or above the threshold, highest score first.

    Raises:
        ValueError: unknown operating point, or labels that do not match the image.
    """
    threshold = threshold_of(config, classifier is not None)
    start = time.perf_counter()
    if candidates is None:
        candidates = find_candidates(image, lung_labels, config.candidates)
    if classifier is None:
        logger.warning("no nodule classifier given: detections are scored by the candidate filter's strength only")
        scores = np.array([strength_score(c.strength, config.candidates) for c in candidates])
    else:
        classifier = classifier.to(device).eval()
        rois = extract_rois(image, [c.centre_lps_mm for c in candidates])
        strengths = np.array([strength_score(c.strength, config.candidates) for c in candidates])
        boundary = at_lung_boundary(lung_labels, [c.centre_lps_mm for c in candidates]) \
            if _boundary_members(classifier) else None
        scores, _ = detection_scores(classifier, rois, strengths, device, config.batch_size, boundary=boundary)
    scored = [Detection(c.centre_lps_mm, c.radius_mm, float(s)) for c, s in zip(candidates, scores)]
    if classifier is not None and config.ground_glass:
        if applies_to(image.GetSpacing()):
            scored += _new_lesions(ground_glass_detections(image, lung_labels, classifier, device, config.batch_size),
                                   scored)
        else:
            logger.warning("no ground-glass search: the scan's spacing %s mm is coarser than the %s mm it was "
                           "validated on", tuple(round(v, 2) for v in image.GetSpacing()), MAX_SPACING_MM)
    detections = [d for d in scored if (d.score or 0.0) >= threshold]
    detections.sort(key=lambda d: -(d.score or 0.0))
    logger.info("detection: %d of %d candidates at score >= %.3f in %.1f s", len(detections), len(candidates),
                threshold, time.perf_counter() - start)
    return detections
