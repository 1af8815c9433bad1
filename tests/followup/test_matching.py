"""Nodule matching: the distance gate, new and resolved nodules, and optimal one-to-one assignment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lungai.followup.matching import MatchingConfig, gate_mm, match


def test_gate_grows_with_the_larger_diameter_from_a_floor() -> None:
    cfg = MatchingConfig(min_gate_mm=8.0, base_gate_mm=5.0, diameter_factor=0.5)
    assert gate_mm(4.0, 5.0, cfg) == 8.0  # 5 + 2.5 < 8: the floor
    assert gate_mm(10.0, 20.0, cfg) == pytest.approx(15.0)
    assert gate_mm(20.0, 10.0, cfg) == gate_mm(10.0, 20.0, cfg)


def test_pair_inside_the_gate_matches_and_outside_does_not() -> None:
    prior = np.array([[0.0, 0.0, 0.0]])
    inside = match(prior, np.array([6.0]), np.array([[7.9, 0.0, 0.0]]), np.array([6.0]))
    assert inside.pairs == [(0, 0, 7.9)]
    outside = match(prior, np.array([6.0]), np.array([[8.1, 0.0, 0.0]]), np.array([6.0]))
    assert outside.pairs == [] and outside.unmatched_prior == [0] and outside.unmatched_current == [0]


def test_large_nodule_gets_a_wider_gate() -> None:
    prior = np.array([[0.0, 0.0, 0.0]])
    current = np.array([[0.0, 12.0, 0.0]])
    assert match(prior, np.array([6.0]), current, np.array([6.0])).pairs == []
    assert match(prior, np.array([20.0]), current, np.array([22.0])).pairs == [(0, 0, 12.0)]


def test_new_and_resolved_nodules_are_the_unmatched_ones() -> None:
    prior = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    current = np.array([[1.0, 0.0, 0.0], [0.0, 100.0, 0.0], [0.0, 0.0, 100.0]])
    result = match(prior, np.array([5.0, 5.0]), current, np.array([5.0, 5.0, 5.0]))
    assert result.pairs == [(0, 0, 1.0)]
    assert result.unmatched_prior == [1]
    assert result.unmatched_current == [1, 2]


def test_empty_sides() -> None:
    assert match(np.zeros((0, 3)), np.zeros(0), np.ones((2, 3)), np.ones(2)).unmatched_current == [0, 1]
    assert match(np.ones((2, 3)), np.ones(2), np.zeros((0, 3)), np.zeros(0)).unmatched_prior == [0, 1]


def test_assignment_is_globally_optimal_not_greedy() -> None:
    # Greedy nearest-first pairs prior 0 with current 0 (2 mm) and leaves prior 1 at 7 mm from
    # current 1 (total 9); the optimum crosses them (3 + 3 = 6).
    prior = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    current = np.array([[2.0, 0.0, 0.0], [-3.0, 0.0, 0.0]])
    result = match(prior, np.array([5.0, 5.0]), current, np.array([5.0, 5.0]))
    assert [(i, j) for i, j, _ in result.pairs] == [(0, 1), (1, 0)]
    assert sum(d for _, _, d in result.pairs) == pytest.approx(6.0)


def test_assignment_prefers_more_pairs_within_the_gate() -> None:
    # Pairing prior 0 with current 0 (1 mm) would leave prior 1 beyond the gate of current 1;
    # the assignment keeps both pairs within the gate instead.
    prior = np.array([[0.0, 0.0, 0.0], [7.0, 0.0, 0.0]])
    current = np.array([[1.0, 0.0, 0.0], [-7.5, 0.0, 0.0]])
    result = match(prior, np.array([4.0, 4.0]), current, np.array([4.0, 4.0]))
    assert [(i, j) for i, j, _ in result.pairs] == [(0, 1), (1, 0)]


def test_random_cases_match_brute_force_optimum() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        prior, current = rng.uniform(0, 30, (3, 3)), rng.uniform(0, 30, (3, 3))
        sizes = rng.uniform(3, 12, 3)
        result = match(prior, sizes, current, sizes)
        distance = np.linalg.norm(prior[:, None] - current[None], axis=2)
        gates = np.array([[gate_mm(a, b) for b in sizes] for a in sizes])
        best = max(((sum(distance[i, p[i]] <= gates[i, p[i]] for i in range(3)),
                     -sum(distance[i, p[i]] for i in range(3) if distance[i, p[i]] <= gates[i, p[i]]))
                    for p in itertools.permutations(range(3))))
        assert len(result.pairs) == best[0]
        assert sum(d for _, _, d in result.pairs) == pytest.approx(-best[1], abs=0.05)
