"""A real weights release of tiny, briefly trained models, for pipeline tests.

Each model is trained by the real trainer (CPU widths, one epoch, two VOIs per split) and
released by the real release steps (:mod:`lungai.weights.release`) into a temporary bundled
folder with its own ``manifest.json``: the pipeline resolves and verifies them like shipped
weights. They are far too weak to find anything reliably; tests use them for the wiring.
"""

from __future__ import annotations

import json
from pathlib import Path

from lungai.data.lidc_characteristics import CHARACTERISTICS
from lungai.models.checkpoint import save_model, write_inference_settings
from lungai.models.measured_nodule import MeasuredNodule, MeasuredNoduleConfig
from lungai.preprocessing.nodule_features import FEATURE_NAMES
from lungai.training.recipes import make_config
from lungai.training.trainer import train
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


def train_tiny(name: str, data: Path, out: Path, cases: int = 2) -> Path:
    """Train ``name`` for one epoch on ``cases`` VOIs per split; returns the run folder."""
    if name == "measured_nodule":
        return untrained_measured(out)
    config = make_config(PIPELINE_MODELS[name], name, data, out, size="cpu", epochs=1, max_cases=cases,
                         num_threads=1, augment=False, patience=0, batch_size=2)
    train(config, resume=False)
    return out


def release(runs: dict[str, Path], bundled: Path, inference: dict[str, dict] | None = None) -> Path:
    """Release trained run folders into ``bundled``; returns the ``manifest.json`` path."""
    bundled.mkdir(parents=True, exist_ok=True)
    metrics = bundled / "metrics.json"
    metrics.write_text(json.dumps({"tiny": 0.0}))
    specs = [ReleaseSpec(name=name, run=run, dtype="float32", repo_id=f"lungai-test/{name}", license="apache-2.0",
                         training_data=("LIDC-IDRI VOIs, 2 per split (test fixture)",),
                         evaluation_data="none (test fixture)", metrics_file=metrics, metrics=("tiny",),
                         metrics_command="none", intended_use="Pipeline tests only.",
                         limitations=("Trained for one epoch on two nodules.",),
                         inference=(inference or {}).get(name))
             for name, run in runs.items()]
    for spec in specs:
        convert(spec, bundled)
    return write_manifest(specs, bundled)
