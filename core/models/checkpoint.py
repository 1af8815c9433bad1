"""Save and load models as ``config.json`` + ``model.safetensors``; nothing is ever unpickled.

``config.json`` records the format, the architecture (model class name) and its full
configuration; ``model.safetensors`` holds the state dict (parameters and buffers, batch-norm
statistics included). Both files are written under temporary names and renamed at the end,
so an interrupted save leaves no half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lungai import __version__
from lungai.errors import WeightsError
from lungai.models.registry import get_architecture

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "lungai-model"
FORMAT_VERSION = 1


def _as_tuples(value: Any) -> Any:
    return tuple(_as_tuples(v) for v in value) if isinstance(value, list) else value


def config_from_dict(config_class: type, data: dict[str, Any]) -> Any:
    """Rebuild a configuration dataclass from its ``dataclasses.asdict`` form (as JSON keeps it).

    Lists become tuples again (the configs use tuples only). Missing fields take their
    defaults, so checkpoints stay loadable when a later version adds an option.

    Args:
        config_class: the dataclass to build.
        data: field values.

    Returns:
        The configuration.

    Raises:
        WeightsError: if ``data`` has fields the dataclass does not know.
    """
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise WeightsError(
            f"checkpoint configuration has unknown fields for {config_class.__name__}: {', '.join(unknown)}",
            "the checkpoint was written by a newer LungAI; upgrade LungAI",
        )
    return config_class(**{key: _as_tuples(value) for key, value in data.items()})


def save_model(model: nn.Module, directory: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for a registered architecture.

    Args:
        model: a LungAI model (it has a ``config`` dataclass attribute).
        directory: the folder to write into; created if missing, same-named files replaced.

    Returns:
        The folder.

    Raises:
        KeyError: if the model's class is not a registered architecture.
        TypeError: if the model's ``config`` is not a dataclass instance.
    """
    architecture = get_architecture(type(model).__name__)
    config = model.config
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"{type(model).__name__}.config must be a dataclass instance, got {type(config).__name__}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture.model_class.__name__,
        "config": dataclasses.asdict(config),
        "lungai_version": __version__,
    }
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    weights_tmp = folder / f".{WEIGHTS_FILE}.tmp"
    config_tmp = folder / f".{CONFIG_FILE}.tmp"
    save_file(state, str(weights_tmp), metadata={"format": "pt"})
    config_tmp.write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    os.replace(weights_tmp, folder / WEIGHTS_FILE)
    os.replace(config_tmp, folder / CONFIG_FILE)
    logger.info("saved %s to %s", header["architecture"], folder)
    return folder


def read_header(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a checkpoint's ``config.json``.

    Args:
        directory: the checkpoint folder.

    Returns:
        The parsed header (``format``, ``format_version``, ``architecture``, ``config``, ...).

    Raises:
        WeightsError: if the file is missing, not JSON, or not a LungAI model header.
    """
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise WeightsError(f"no {CONFIG_FILE} in {directory}", "point to a folder written by LungAI's save_model")
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path} is not valid JSON ({exc})", "re-download or re-export the model") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a LungAI model configuration", "point to a folder written by save_model")
    if header.get("format_version", 0) > FORMAT_VERSION:
        raise WeightsError(
            f"{path} has format version {header['format_version']}, newer than this LungAI reads",
            "upgrade LungAI",
        )
    return header


def load_model(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from ``config.json`` and load ``model.safetensors`` into it.

    Args:
        directory: the checkpoint folder.
        device: where to put the model.

    Returns:
        The model, in eval mode.

    Raises:
        WeightsError: if a file is missing or unreadable, the architecture is unknown, or
            the weights do not fit the configuration.
    """
    header = read_header(directory)
    try:
        architecture = get_architecture(header["architecture"])
    except KeyError as exc:
        raise WeightsError(str(exc.args[0]), "upgrade LungAI or check the checkpoint") from None
    config = config_from_dict(architecture.config_class, header.get("config", {}))
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsError(f"no {WEIGHTS_FILE} in {directory}", "re-download or re-export the model")
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise WeightsError(f"cannot read {weights} ({exc})", "re-download or re-export the model") from None
    model = architecture.model_class(config).to(device)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise WeightsError(f"{weights} does not fit its config.json ({detail})", "re-export the model") from None
    logger.info("loaded %s from %s", header["architecture"], directory)
    return model.eval()


def write_inference_settings(folder: Path, settings: dict[str, Any]) -> None:
    """Record how the checkpoint in ``folder`` is meant to be applied, in its ``config.json``.

    The settings (e.g. the validation-chosen probability threshold and the ROI) go under the
    ``inference`` key, so they travel with the weights; the file is replaced atomically.
    """
    path = folder / "config.json"
    header = json.loads(path.read_text(encoding="utf-8"))
    header["inference"] = settings
    tmp = folder / ".config.json.tmp"
    tmp.write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
