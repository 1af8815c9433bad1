"""A real weights release of tiny, briefly trained models, for pipeline tests.

Each model is trained by the real trainer (CPU widths, one epoch, two VOIs per split) and
released by the real release steps (:mod:`lungai.weights.release`) into a temporary bundled
folder with its own ``manifest.json``: the pipeline resolves and verifies them like shipped
weights. They are far too weak to find anything reliably; tests use them for the wiring.
"""

from __future__ import annotations

import json
from pathlib import Path

from lungai.training.recipes import make_config
from lungai.training.trainer import train
from lungai.weights.release import ReleaseSpec, convert, write_manifest

#: Every model the pipeline loads, with its training task.
PIPELINE_MODELS: dict[str, str] = {
    "convlstm_nodule": "nodule-seg",
    "resunet3d": "nodule-seg",
    "resnet50_3d": "malignancy",
    "nodule_cnn2d": "malignancy",
}


def train_tiny(name: str, data: Path, out: Path, cases: int = 2) -> Path:
    """Train ``name`` for one epoch on ``cases`` VOIs per split; returns the run folder."""
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
