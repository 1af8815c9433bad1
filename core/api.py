"""The short Python API: ``lungai.run``, ``lungai.load_models`` and ``lungai.read_findings``
(:func:`lungai.io.findings.read_findings`: the typed findings of a ``findings.json`` or output folder).

``import lungai`` stays light (no torch): these names are imported from here on first use.
What ``lungai run`` does on the command line, :func:`run` does from Python, with the same
outputs and the same errors (:mod:`lungai.errors`)::

    import lungai

    models = lungai.load_models()                  # each model loads once
    for scan in scans:
        result = lungai.run(scan, out / scan.stem, models=models)
        print(len(result.findings.nodules), "lesions in", result.output)
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from lungai.io.findings import read_findings
from lungai.pipeline.config import RunConfig, parse_tasks
from lungai.pipeline.model_store import ModelStore
from lungai.pipeline.progress import ProgressCallback, ignore_progress
from lungai.pipeline.runner import RunResult, model_store, run_pipeline

__all__ = ["load_models", "read_findings", "run"]

Pathish = str | PathLike[str]


def run(scan: Pathish, output: Pathish, *, tasks: str | tuple[str, ...] | None = None,
        operating_point: str = "balanced", models: ModelStore | None = None,
        on_progress: ProgressCallback = ignore_progress, **options: Any) -> RunResult:
    """Analyse one chest CT and write its outputs, like ``lungai run SCAN -o OUTPUT``.

    Args:
        scan: a DICOM folder or zip, ``.nrrd``/``.nhdr``, NIfTI or MetaImage file.
        output: the output folder (must not exist unless ``overwrite=True``).
        tasks: ``"lungs,nodules"`` or a tuple of task names; ``None``: every task whose weights
            are installed.
        operating_point: the nodule detector's operating point (``high``, ``balanced``, ``specific``).
        models: a store from :func:`load_models` to reuse across scans; ``None``: a new one.
        on_progress: receives each :class:`~lungai.pipeline.progress.ProgressEvent`.
        **options: any other :class:`~lungai.pipeline.config.RunConfig` field (``device``,
            ``overwrite``, ``force``, ``series_uid``, ``detection_threshold``, ``max_nodules``, ...).

    Returns:
        The findings and the output folder.

    Raises:
        LungAIError: for every problem a user can cause; nothing is left at ``output`` then.
        TypeError: an option that :class:`RunConfig` does not have.
    """
    chosen = parse_tasks(tasks) if isinstance(tasks, str) else tasks
    config = RunConfig(input=Path(scan), output=Path(output), tasks=chosen, operating_point=operating_point, **options)
    return run_pipeline(config, on_progress, models)


def load_models(device: str = "auto", manifest: Pathish | None = None) -> ModelStore:
    """A model store for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``): models load on first
    use and stay loaded for every :func:`run` given it.

    Args:
        device: where the models run.
        manifest: a weights manifest; ``None``: the weights installed with LungAI.
    """
    config = RunConfig(input=Path(), output=Path(), device=device,
                       manifest=Path(manifest) if manifest is not None else None)
    return model_store(config)
