"""Making a weights release: trained checkpoints -> bundled files, model cards and manifest entries.

A release is described by a JSON file (``weights/releases.json``): per model, the training run
folder it comes from, the storage type, the Hugging Face repository it is published to, its
licence and data, and the ``metrics.json`` of the evaluation of the *released* files with the
command that produced it. Two steps, run from the repository root::

    python -m lungai.weights.release convert weights/releases.json    # run folders -> weights/<name>/
    # evaluate each weights/<name>/ with the command listed in releases.json, then
    python -m lungai.weights.release manifest weights/releases.json   # manifest.json + model cards

``--only NAME`` (both steps) re-releases one model and keeps the other entries of ``manifest.json``.

``convert`` is deterministic (same run folder, same bytes), so the checksums in the manifest are
those of the files that were evaluated. Only tensors are written (safetensors); nothing is
unpickled on the way.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lungai.errors import LungAIError, WeightsError
from lungai.weights.cards import write_card
from lungai.weights.manifest import (
    CONFIG_FILE,
    DTYPES,
    MODEL_FILES,
    WEIGHTS_FILE,
    FileRecord,
    ModelEntry,
    manifest_dict,
    read_manifest,
)
from lungai.weights.resolver import BUNDLED_LIMIT_BYTES
from lungai.weights.verify import file_record

logger = logging.getLogger(__name__)

#: Keys a release entry must have (see :class:`ReleaseSpec`).
REQUIRED_KEYS = ("name", "run", "dtype", "repo_id", "license", "training_data", "evaluation_data",
                 "metrics_file", "metrics", "metrics_command", "intended_use", "limitations")


@dataclass(frozen=True)
class ReleaseSpec:
    """How one model is released.

    Attributes:
        name: manifest name (also the bundled folder name).
        run: the training run folder (``config.json`` + ``model.safetensors``).
        dtype: storage type of the released tensors (one of :data:`DTYPES`).
        repo_id: the Hugging Face repository the model is published to.
        license: licence identifier of the weights.
        training_data: data sets the weights were trained on.
        evaluation_data: what the metrics were measured on.
        metrics_file: the ``metrics.json`` of the evaluation of the released files.
        metrics: the keys of ``metrics_file`` to put in the manifest and the model card; a dotted
            key reads a nested value, digits index lists (``inserted_test.cpm`` is listed as
            ``inserted_test_cpm``, ``methods.0.auc`` as ``methods_0_auc``).
        metrics_command: the command that wrote ``metrics_file``.
        intended_use: for the model card.
        limitations: for the model card.
        revision: the pinned Hub commit, once published; ``None`` before.
        inference: settings the pipeline reads from ``config.json`` (e.g. a probability threshold).
    """

    name: str
    run: Path
    dtype: str
    repo_id: str
    license: str
    training_data: tuple[str, ...]
    evaluation_data: str
    metrics_file: Path
    metrics: tuple[str, ...]
    metrics_command: str
    intended_use: str
    limitations: tuple[str, ...]
    revision: str | None = None
    inference: dict[str, Any] | None = None


def read_specs(path: Path) -> list[ReleaseSpec]:
    """Read a release file; relative paths are taken from the current folder.

    Raises:
        WeightsError: the file is unreadable or an entry lacks a key or has a bad dtype.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read the release file {path} ({exc})", "check the path and the JSON") from None
    specs = []
    for item in data.get("models", []):
        missing = [key for key in REQUIRED_KEYS if key not in item]
        if missing:
            raise WeightsError(f"{path}: model {item.get('name', '?')!r} lacks {', '.join(missing)}",
                               "add the keys (see lungai.weights.release.ReleaseSpec)")
        if item["dtype"] not in DTYPES:
            raise WeightsError(f"{path}: {item['name']}: dtype must be one of {', '.join(DTYPES)}", "fix the dtype")
        specs.append(ReleaseSpec(
            name=item["name"], run=Path(item["run"]), dtype=item["dtype"], repo_id=item["repo_id"],
            license=item["license"], training_data=tuple(item["training_data"]),
            evaluation_data=item["evaluation_data"], metrics_file=Path(item["metrics_file"]),
            metrics=tuple(item["metrics"]), metrics_command=item["metrics_command"],
            intended_use=item["intended_use"], limitations=tuple(item["limitations"]),
            revision=item.get("revision"), inference=item.get("inference")))
    return specs


def convert(spec: ReleaseSpec, bundled_dir: Path) -> Path:
    """Write a model's released files into ``bundled_dir/<name>/``.

    Floating-point tensors are cast to ``spec.dtype``; other tensors (counters) are kept.
    ``config.json`` is the run's, plus ``spec.inference`` under ``"inference"``.

    Returns:
        The model's bundled folder.

    Raises:
        WeightsError: the run folder lacks its files.
    """
    import torch
    from safetensors.torch import load_file, save_file

    for filename in MODEL_FILES:
        if not (spec.run / filename).is_file():
            raise WeightsError(f"{spec.run} has no {filename}", f"train {spec.name} first (see docs/results.md)")
    target = getattr(torch, spec.dtype)
    state = {key: (value.to(target) if value.is_floating_point() else value).contiguous()
             for key, value in load_file(str(spec.run / WEIGHTS_FILE)).items()}
    header = json.loads((spec.run / CONFIG_FILE).read_text(encoding="utf-8"))
    if spec.inference:
        header["inference"] = spec.inference
    folder = bundled_dir / spec.name
    staging = bundled_dir / f".{spec.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
    (staging / CONFIG_FILE).write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    logger.info("%s: %s -> %s (%s)", spec.name, spec.run, folder, spec.dtype)
    return folder


def _metrics(spec: ReleaseSpec) -> dict[str, float]:
    if not spec.metrics_file.is_file():
        raise WeightsError(f"{spec.name}: no evaluation of the released files at {spec.metrics_file}",
                           f"run: {spec.metrics_command}")
    values = json.loads(spec.metrics_file.read_text(encoding="utf-8"))
    picked = {}
    for key in spec.metrics:
        value: Any = values
        for part in key.split("."):
            if isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                value = value.get(part) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise WeightsError(f"{spec.name}: {spec.metrics_file} has no number {key!r}",
                               "pick metric keys that the evaluation writes")
        picked[key.replace(".", "_")] = round(float(value), 4)
    return picked


def entry_for(spec: ReleaseSpec, bundled_dir: Path) -> ModelEntry:
    """The manifest entry of a converted model (checksums of its bundled files).

    Raises:
        WeightsError: the model was not converted or its evaluation is missing.
    """
    folder = bundled_dir / spec.name
    if not all((folder / filename).is_file() for filename in MODEL_FILES):
        raise WeightsError(f"{spec.name} is not converted yet ({folder})", "run the `convert` step first")
    header = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    files: dict[str, FileRecord] = {filename: file_record(folder / filename) for filename in MODEL_FILES}
    return ModelEntry(
        name=spec.name, architecture=header["architecture"], config=header["config"], dtype=spec.dtype,
        files=files, repo_id=spec.repo_id, revision=spec.revision, license=spec.license,
        training_data=spec.training_data, evaluation_data=spec.evaluation_data, metrics=_metrics(spec),
        metrics_command=spec.metrics_command, intended_use=spec.intended_use, limitations=spec.limitations)


def write_manifest(specs: list[ReleaseSpec], bundled_dir: Path, only: Collection[str] | None = None) -> Path:
    """Write ``manifest.json`` and a model card per model into ``bundled_dir``.

    Args:
        specs: every released model, in manifest order.
        bundled_dir: the source folder of ``lungai.weights``.
        only: re-release these models only; the others keep the entries (and cards) the current
            ``manifest.json`` records, so their run folders and evaluations need not be present.

    Raises:
        WeightsError: a model is not converted, lacks its evaluation, is not in the current manifest
            (with ``only``), or the bundle is too large.
    """
    recorded = read_manifest(bundled_dir / "manifest.json").models if only is not None else {}
    entries = []
    for spec in specs:
        if only is None or spec.name in only:
            entries.append(entry_for(spec, bundled_dir))
        elif spec.name in recorded:
            entries.append(recorded[spec.name])
        else:
            raise WeightsError(f"{spec.name} is not in {bundled_dir / 'manifest.json'}",
                               f"release it too (--only {spec.name}) or without --only")
    total = sum(entry.size for entry in entries)
    if total > BUNDLED_LIMIT_BYTES:
        raise WeightsError(f"the bundled weights take {total} bytes, more than {BUNDLED_LIMIT_BYTES}",
                           "store them as float16 or ship fewer models in the package")
    for entry in entries:
        if only is None or entry.name in only:
            write_card(entry, bundled_dir / entry.name)
    path = bundled_dir / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest_dict(entries), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    logger.info("wrote %s: %d models, %.1f MB", path, len(entries), total / 1e6)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line: ``convert`` or ``manifest`` for a release file."""
    parser = argparse.ArgumentParser(prog="python -m lungai.weights.release", description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=("convert", "manifest"))
    parser.add_argument("release_file", type=Path)
    parser.add_argument("--bundled-dir", type=Path, default=Path("weights"),
                        help="the source folder of lungai.weights (default: weights)")
    parser.add_argument("--only", action="append", default=None,
                        help="convert, or re-release in the manifest, only this model (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        specs = read_specs(args.release_file)
        if args.step == "convert":
            for spec in specs:
                if args.only is None or spec.name in args.only:
                    convert(spec, args.bundled_dir)
        else:
            write_manifest(specs, args.bundled_dir, args.only)
    except LungAIError as exc:
        logger.error("%s", exc.message)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
