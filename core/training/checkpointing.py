"""Resumable training state without pickles: tensors in safetensors, everything else in JSON.

A run folder holds the best model so far (``config.json`` + ``model.safetensors``, the layout
of shipped weights) and ``last/``, the state after the latest epoch::

    last/config.json, last/model.safetensors   the model (lungai.models.checkpoint)
    last/optimizer.safetensors                 optimiser tensors, keyed ``<param index>.<name>``
    last/state.json                            the engine's TrainState (epoch, history, early-
                                               stopping counters) under ``trainer``, optimiser
                                               scalars and param groups, scheduler state

Random generator states are not saved: the training engine (:mod:`lungai.training.engine`)
reseeds from ``(seed, epoch)`` at every epoch, so resuming after epoch ``e`` replays exactly
what an uninterrupted run does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lungai.errors import WeightsError
from lungai.models.checkpoint import save_model

LAST_DIR = "last"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


def _split_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_training_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any, trainer_state: dict[str, Any]) -> Path:
    """Write ``run_dir/last/`` (written beside, then renamed: never half-written).

    Args:
        run_dir: the run folder.
        model: the model.
        optimizer: its optimiser.
        scheduler: an LR scheduler (its ``state_dict`` must be JSON-serialisable) or ``None``.
        trainer_state: the run's counters and history as JSON-ready values
            (:meth:`lungai.training.engine.TrainState.to_json`).

    Returns:
        The ``last`` folder.
    """
    final = run_dir / LAST_DIR
    tmp = run_dir / f".{LAST_DIR}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    save_model(model, tmp)
    tensors, meta = _split_optimizer_state(optimizer.state_dict())
    save_file(tensors, str(tmp / OPTIMIZER_FILE))
    payload = {"trainer": trainer_state, "optimizer": meta,
               "scheduler": scheduler.state_dict() if scheduler is not None else None}
    (tmp / STATE_FILE).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    old = run_dir / f".{LAST_DIR}.old"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        for item in old.iterdir():
            item.unlink()
        old.rmdir()
    return final


def has_training_state(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a resumable state."""
    return (run_dir / LAST_DIR / STATE_FILE).is_file()


def load_training_state(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler: Any) -> dict[str, Any]:
    """Restore model, optimiser and scheduler from ``run_dir/last/``.

    Args:
        run_dir: the run folder.
        model: a model of the saved configuration (weights are overwritten).
        optimizer: an optimiser over its parameters, built with the same settings.
        scheduler: the scheduler, or ``None``.

    Returns:
        The run's counters and history saved with it, as JSON values.

    Raises:
        WeightsError: if the files are missing or do not fit.
    """
    last = run_dir / LAST_DIR
    try:
        payload = json.loads((last / STATE_FILE).read_text(encoding="utf-8"))
        model.load_state_dict(load_file(str(last / "model.safetensors")), strict=True)
        optimizer.load_state_dict(_join_optimizer_state(load_file(str(last / OPTIMIZER_FILE)), payload["optimizer"]))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise WeightsError(f"cannot resume from {last} ({exc})",
                           "delete the run folder or pass a fresh --out to start over") from None
    if scheduler is not None and payload.get("scheduler") is not None:
        scheduler.load_state_dict(payload["scheduler"])
    return payload["trainer"]
