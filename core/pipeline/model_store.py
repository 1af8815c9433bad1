"""The models of one run: resolved through :mod:`lungai.weights.resolver`, loaded once, recorded.

Every model a stage uses comes from the weights manifest (``LUNGAI_WEIGHTS_DIR`` -> bundled ->
Hugging Face cache -> pinned download, sha256-verified), never from a path. What was loaded
is recorded as :class:`~lungai.io.findings.WeightsInfo` for ``findings.json``'s
``run.weights``. A checkpoint's ``config.json`` may carry an ``inference`` block written at
release time (e.g. the validation-chosen mask ``threshold``); :meth:`ModelStore.inference`
returns it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from lungai.errors import WeightsError
from lungai.io.findings import WeightsInfo
from lungai.models.checkpoint import load_model, read_header
from lungai.pipeline.config import required_models
from lungai.preprocessing.roi import RoiSpec
from lungai.weights.manifest import Manifest, read_manifest
from lungai.weights.resolver import resolve, weights_info

logger = logging.getLogger(__name__)


def load_run_manifest(path: Path | None) -> Manifest:
    """The manifest a run uses: ``path``, or the one installed with LungAI."""
    return read_manifest(path)


@dataclass
class ModelStore:
    """Loads each model at most once and remembers which models a run used.

    One store can serve many runs (``run_pipeline(..., models=store)``, ``lungai batch``'s
    workers): models stay loaded, and :meth:`start_run` resets what the next run records.

    Attributes:
        device: where models are put.
        manifest: the weights manifest.
    """

    device: str
    manifest: Manifest
    _models: dict[str, nn.Module] = field(default_factory=dict)
    _headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _used: list[str] = field(default_factory=list)

    def get(self, name: str) -> nn.Module:
        """The model ``name`` in eval mode on :attr:`device`.

        Raises:
            WeightsError: the model is not in the manifest, not installed and not
                downloadable, fails verification or does not load (exit code 10).
        """
        if name not in self._models:
            resolved = resolve(name, self.manifest)
            logger.info("loading %s (%s, revision %s)", name, resolved.source.value, resolved.entry.revision_label)
            self._headers[name] = read_header(resolved.folder)
            self._models[name] = load_model(resolved.folder, self.device)
        if name not in self._used:
            self._used.append(name)
        return self._models[name]

    def start_run(self) -> None:
        """Forget which models the previous run used; they stay loaded."""
        self._used.clear()

    @property
    def loaded(self) -> tuple[str, ...]:
        """The names of the models loaded so far by this store."""
        return tuple(self._models)

    def inference(self, name: str) -> dict[str, Any]:
        """The ``inference`` block of the model's ``config.json`` (``{}`` if none); loads the model."""
        self.get(name)
        block = self._headers[name].get("inference")
        return dict(block) if isinstance(block, dict) else {}

    def check_roi(self, name: str, spec: RoiSpec) -> None:
        """Refuse weights whose ``inference`` block records another ROI than ``spec``.

        Raises:
            WeightsError: the checkpoint was trained on a different ROI shape or spacing.
        """
        block = self.inference(name)
        shape, spacing = block.get("roi_shape_zyx"), block.get("roi_spacing_zyx_mm")
        if (shape is not None and tuple(shape) != tuple(spec.shape)) or (
                spacing is not None and tuple(spacing) != tuple(spec.spacing)):
            raise WeightsError(f"the {name} weights were trained on {shape} ROIs at {spacing} mm, but this LungAI "
                               f"cuts {list(spec.shape)} at {list(spec.spacing)} mm",
                               "use the weights released with this LungAI version")

    @property
    def weights(self) -> list[WeightsInfo]:
        """Name, revision and sha256 of every model this run used, in the order first used."""
        return [weights_info(name, self.manifest) for name in self._used]


def require_weights(tasks: tuple[str, ...], models: ModelStore) -> None:
    """Load every model the tasks need, so that missing weights stop a run before it starts.

    Raises:
        WeightsError: a model is not in the manifest (naming the task), or the resolver cannot
            provide it (its message says what to do).
    """
    for task, name in required_models(tasks):
        if name not in models.manifest.models:
            raise WeightsError(f"the {task} task needs the {name} weights, "
                               "which the weights manifest does not list",
                               f"run without the {task} task (--tasks), or install a LungAI release that ships "
                               "them (`lungai weights list` shows what this one has)")
        models.get(name)
