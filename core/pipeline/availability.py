"""Which tasks this installation can run: those whose weights are installed locally.

Torch-free on purpose: the Slicer module asks this before anything heavy is imported.
"""

from __future__ import annotations

from lungai.pipeline.config import TASKS_BY_NAME, required_models
from lungai.weights.manifest import Manifest
from lungai.weights.resolver import check


def installed(names: tuple[str, ...], manifest: Manifest) -> bool:
    """Whether every model in ``names`` is in the manifest and verified locally (no network)."""
    return all(name in manifest.models and check(name, manifest).verified for name in names)


def tasks_with_weights(manifest: Manifest) -> tuple[str, ...]:
    """Every task whose weights (and whose needed tasks' weights) are installed locally."""
    return tuple(name for name in TASKS_BY_NAME
                 if installed(tuple(model for _, model in required_models((name,))), manifest))


def default_tasks(manifest: Manifest) -> tuple[str, ...]:
    """The tasks a run without ``--tasks`` runs: those with weights, experimental tasks left out."""
    return tuple(name for name in tasks_with_weights(manifest) if not TASKS_BY_NAME[name].experimental)
