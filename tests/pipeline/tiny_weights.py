"""A real weights release of tiny untrained models, for pipeline tests.

Each model is built at its recipe's CPU widths with seeded random weights, saved as a checkpoint
with the ``inference`` block a training run records (threshold and ROI), and released by the real
release steps (:mod:`lungai.weights.release`) into a temporary bundled folder with its own
``manifest.json``: the pipeline resolves and verifies them like shipped weights. What they find
is meaningless; tests use them for the wiring (training itself is tested in ``tests/training``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lungai.data.lidc_characteristics import CHARACTERISTICS
from lungai.models.checkpoint import config_from_dict, save_model, write_inference_settings
from lungai.models.measured_nodule import MeasuredNodule, MeasuredNoduleConfig
from lungai.models.registry import build_model, get_spec
from lungai.pipeline.config import DETECTOR_MODEL
from lungai.preprocessing.nodule_features import FEATURE_NAMES
from lungai.preprocessing.roi import roi_spec
from lungai.training.recipes import recipe
from lungai.weights.manifest import packaged_dir
from lungai.weights.release import ReleaseSpec, convert, write_manifest

#: Every model the pipeline loads, with its training task.
PIPELINE_MODELS: dict[str, str] = {
    "convlstm_nodule": "nodule-seg",
    "resunet3d": "nodule-seg",
    "measured_nodule": "malignancy",
}
#: The decisions an untrained measured scorer records (a calcification probability of 0.5 never reaches 0.9).
MEASURED_SETTINGS = {"present_from": 0.5, "calcified_category1_from": 0.9, "texture_for_lung_rads": False,
                     "malignancy_calibration": None}


def untrained_measured(out: Path) -> Path:
    """A ``measured_nodule`` checkpoint with every coefficient 0 (each binary probability 0.5)."""
    heads = ("malignancy", *CHARACTERISTICS)
    model = MeasuredNodule(MeasuredNoduleConfig(features=FEATURE_NAMES, heads=heads,
                                                classes=tuple(2 if h == "malignancy" else CHARACTERISTICS[h][1]
                                                              for h in heads),
                                                feature_sets=("size + HU + shape",) * len(heads)))
    save_model(model, out)
    write_inference_settings(out, MEASURED_SETTINGS)
    return out


def tiny_checkpoint(name: str, out: Path, seed: int = 0) -> Path:
    """``name`` at its recipe's CPU widths with seeded random weights, saved as a run folder would be."""
    if name == "measured_nodule":
        return untrained_measured(out)
    torch.manual_seed(seed)
    config = config_from_dict(get_spec(name).architecture.config_class, dict(recipe(name).cpu_model_config))
    save_model(build_model(name, config), out)
    spec = roi_spec(name)
    settings = {"threshold": 0.5, "threshold_source": "test fixture (untrained)", "roi_shape_zyx": list(spec.shape),
                "roi_spacing_zyx_mm": list(spec.spacing), "min_diameter_mm": None}
    if name == DETECTOR_MODEL:  # the installed detector's points, as lungai train-detection records its own
        settings = json.loads((packaged_dir() / DETECTOR_MODEL / "config.json").read_text())["inference"]
    write_inference_settings(out, settings)
    return out


def release(runs: dict[str, Path], bundled: Path, inference: dict[str, dict] | None = None) -> Path:
    """Release run folders into ``bundled``; returns the ``manifest.json`` path."""
    bundled.mkdir(parents=True, exist_ok=True)
    metrics = bundled / "metrics.json"
    metrics.write_text(json.dumps({"tiny": 0.0}))
    specs = [ReleaseSpec(name=name, run=run, dtype="float32", repo_id=f"lungai-test/{name}", license="apache-2.0",
                         training_data=("none: seeded random weights (test fixture)",),
                         evaluation_data="none (test fixture)", metrics_file=metrics, metrics=("tiny",),
                         metrics_command="none", intended_use="Pipeline tests only.",
                         limitations=("Untrained.",),
                         inference=(inference or {}).get(name))
             for name, run in runs.items()]
    for spec in specs:
        convert(spec, bundled)
    return write_manifest(specs, bundled)
