"""Pairing the prior's nodules with the current scan's.

1. Each prior nodule's centroid is mapped into the current scan (LPS mm) by the registration.
2. The cost of a pair is the distance (mm) between the mapped prior centroid and the current
   centroid. A pair is allowed only within the gate
   ``max(MatchingConfig.min_gate_mm, MatchingConfig.base_gate_mm + MatchingConfig.diameter_factor * d)``
   with ``d`` the larger of the two mean diameters: a large nodule's centroid moves more when it
   grows or when its segmentation differs, and the registration leaves a few millimetres.
3. ``scipy.optimize.linear_sum_assignment`` chooses the pairs that minimise the summed distance
   (one to one); gated-out pairs get a cost larger than any allowed sum, and an assignment that
   falls on one is dropped. Prior nodules left over are ``resolved`` candidates, current ones
   ``new`` candidates (:mod:`lungai.followup.engine` then segments at the mapped position).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class MatchingConfig:
    """The distance gate.

    Attributes:
        min_gate_mm: smallest gate.
        base_gate_mm: registration and centroid slack added to every gate.
        diameter_factor: gate growth per mm of the larger mean diameter.
    """

    min_gate_mm: float = 8.0
    base_gate_mm: float = 5.0
    diameter_factor: float = 0.5


@dataclass(frozen=True)
class Matches:
    """The result of :func:`match`.

    Attributes:
        pairs: ``(prior index, current index, distance mm)``, by prior index.
        unmatched_prior: prior indices without a partner.
        unmatched_current: current indices without a partner.
    """

    pairs: list[tuple[int, int, float]]
    unmatched_prior: list[int]
    unmatched_current: list[int]


def gate_mm(prior_diameter_mm: float, current_diameter_mm: float, config: MatchingConfig | None = None) -> float:
    """The largest distance (mm) at which two nodules of these mean diameters may be paired."""
    cfg = config or MatchingConfig()
    return max(cfg.min_gate_mm, cfg.base_gate_mm + cfg.diameter_factor * max(prior_diameter_mm, current_diameter_mm))


def match(prior_mm: np.ndarray, prior_diameters: np.ndarray, current_mm: np.ndarray,
          current_diameters: np.ndarray, config: MatchingConfig | None = None) -> Matches:
    """Pair prior and current nodules (see the module docstring).

    Args:
        prior_mm: ``(N, 3)`` prior centroids mapped into the current scan, LPS mm.
        prior_diameters: ``(N,)`` their mean diameters (mm).
        current_mm: ``(M, 3)`` current centroids, LPS mm.
        current_diameters: ``(M,)`` their mean diameters (mm).
        config: the gate.

    Returns:
        The pairs and the unmatched nodules of each side.
    """
    prior_mm = np.asarray(prior_mm, float).reshape(-1, 3)
    current_mm = np.asarray(current_mm, float).reshape(-1, 3)
    n, m = len(prior_mm), len(current_mm)
    if n == 0 or m == 0:
        return Matches([], list(range(n)), list(range(m)))
    distance = np.linalg.norm(prior_mm[:, None, :] - current_mm[None, :, :], axis=2)
    gates = np.array([[gate_mm(a, b, config) for b in current_diameters] for a in prior_diameters])
    allowed = distance <= gates
    cost = np.where(allowed, distance, float(distance[allowed].sum() if allowed.any() else 0.0) + 1e6)
    rows, cols = linear_sum_assignment(cost)
    pairs = sorted((int(r), int(c), round(float(distance[r, c]), 2)) for r, c in zip(rows, cols) if allowed[r, c])
    paired_prior, paired_current = {p[0] for p in pairs}, {p[1] for p in pairs}
    return Matches(pairs, [i for i in range(n) if i not in paired_prior],
                   [j for j in range(m) if j not in paired_current])
