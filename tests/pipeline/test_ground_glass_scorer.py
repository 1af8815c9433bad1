"""The ground-glass scorer: the shipped file, its mapping onto the detector's score scale, and the pool's merge."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lungai.pipeline.detection import Detection, _new_lesions
from lungai.pipeline.ground_glass import INPUTS, SCORER_FILE, applies_to, feature_matrix, read_scorer
from lungai.pipeline.operating_points import OPERATING_POINTS
from lungai.preprocessing.ground_glass import GroundGlassCandidate


def _candidate(response: float) -> GroundGlassCandidate:
    return GroundGlassCandidate((0.0, 0.0, 0.0), 5.0, response, response, 0.8, 0.9, 0.0, 200.0)


def test_the_shipped_scorer_reads_and_says_where_it_comes_from():
    scorer = read_scorer()
    assert len(scorer.coefficients) == len(scorer.mean) == len(scorer.scale) == len(INPUTS)
    assert scorer.top >= 1 and "validation" in scorer.source and "benchmarks/ground_glass_pool.py" in scorer.source
    assert set(scorer.thresholds) == set(OPERATING_POINTS)


def test_probabilities_map_onto_the_detectors_operating_points():
    scorer = read_scorer()
    for name, probability in scorer.thresholds.items():
        assert scorer.detection_scores(np.array([probability]))[0] == pytest.approx(OPERATING_POINTS[name].threshold)
    grid = np.linspace(0.0, 1.0, 101)
    mapped = scorer.detection_scores(grid)
    assert mapped[0] == 0.0 and mapped[-1] == 1.0 and np.all(np.diff(mapped) >= 0)


def test_a_stronger_response_scores_higher_all_else_equal():
    scorer = read_scorer()
    inputs = feature_matrix([_candidate(0.45), _candidate(0.2)], np.array([0.9, 0.9]))
    assert inputs.shape == (2, len(INPUTS))
    inputs[1, INPUTS.index("log_rank")] = inputs[0, INPUTS.index("log_rank")]
    weak_vs_strong = scorer.probabilities(inputs)
    response = scorer.coefficients[INPUTS.index("response")]
    assert (weak_vs_strong[0] > weak_vs_strong[1]) == (response > 0)
    assert feature_matrix([], np.zeros(0)).shape == (0, len(INPUTS))


def test_a_scorer_with_other_inputs_is_refused(tmp_path):
    data = json.loads(SCORER_FILE.read_text())
    data["inputs"] = data["inputs"][:-1]
    bad = tmp_path / "scorer.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="inputs"):
        read_scorer(bad)
    data = json.loads(SCORER_FILE.read_text())
    data["thresholds"]["high"] = data["thresholds"]["specific"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="rise"):
        read_scorer(bad)


def test_a_blob_candidate_scoring_as_high_is_the_same_lesion():
    blob = Detection((0.0, 0.0, 0.0), 4.0, 0.8)
    near_weaker = Detection((3.0, 0.0, 0.0), 3.0, 0.7, source="ground_glass")
    near_stronger = Detection((3.0, 0.0, 0.0), 3.0, 0.9, source="ground_glass")
    far = Detection((30.0, 0.0, 0.0), 3.0, 0.5, source="ground_glass")
    assert _new_lesions([near_weaker, near_stronger, far], [blob]) == [near_stronger, far]
    assert _new_lesions([far], []) == [far]


def test_the_pool_runs_only_on_grids_it_was_validated_on():
    assert applies_to((0.98, 0.98, 2.0)) and applies_to((0.84, 0.84, 5.0)) and applies_to((1.5, 1.5, 2.5))
    assert not applies_to((4.17, 4.17, 3.99)) and not applies_to((0.7, 0.7, 6.0))
