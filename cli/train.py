"""``lungai train TASK --model NAME --data DIR``: train a model with its paper's recipe, one subcommand per task.

``lungai train malignancy``, ``nodule-seg`` and ``emphysema`` train on the committed patient
split (emphysema: a weak-label CSV); ``lungai train detection`` (:mod:`lungai.cli.train_detection`)
trains the detector's false-positive classifier. Each subcommand has only its task's options.
This module imports nothing heavy at its top, so ``lungai train --help`` stays quick.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from lungai.cli.group import TaskCommand, TaskGroup
from lungai.cli.options import nodule_training_options, train_data_option, train_model_option, training_run_options
from lungai.cli.train_detection import train_detection, train_detection_ensemble

#: The shipped malignancy scorer: logistic regressions on measured features (lungai.training.measured).
MEASURED_MODEL = "measured_nodule"

#: The models each task trains, for the help (``tests/training`` checks them against the recipes).
TASK_MODELS: dict[str, tuple[str, ...]] = {
    "malignancy": (MEASURED_MODEL, "nodule_cnn2d", "resnet50_3d"),
    "nodule-seg": ("resunet3d", "convlstm_nodule", "r3d_denseunet"),
    "emphysema": ("convlstm_scanner", "mil_max", "mil_mean", "mil_product", "cnn3d"),
}

_LIDC_VOIS_DATA = "Folder laid out like lidc_vois/ (image/, mask/, nodules.csv)."


def _train_measured(data: Path, out: Path, threads: int) -> None:
    """Fit the measured scorer and its characteristic heads, each chosen on the validation split."""
    import torch

    from lungai.training.measured import MeasuredTrainConfig, train_measured

    torch.set_num_threads(threads)
    report = train_measured(MeasuredTrainConfig(data=data, out=out))
    chosen = ", ".join(f"{head}: {block['feature_set']}" for head, block in report["heads"].items())
    click.echo(f"validation-chosen feature sets: {chosen}; saved in {out}")


class _EpochBar:
    """One progress line per epoch on stderr: steps, running loss, last validation metric."""

    width = 24

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def __call__(self, event: Any) -> None:
        """Draw one event: a classification/segmentation or a detection training event (same fields)."""
        step, steps = event.step, event.steps
        filled = int(self.width * step / steps)
        val = event.val_metric
        line = (f"epoch {event.epoch + 1}/{event.epochs} [{'#' * filled}{'-' * (self.width - filled)}] "
                f"{step}/{steps} loss {event.loss:.4f} {self.metric} "
                f"{'-' if math.isnan(val) else f'{val:.4f}'}")
        done = event.kind == "epoch"
        if sys.stderr.isatty():
            click.echo(f"\r{line:<90}", err=True, nl=done)
        elif done:
            click.echo(line, err=True)


def _model_config(text: str | None) -> dict[str, Any] | None:
    """``--model-config`` as a dict (``None`` when not given); ``make_config`` checks its settings."""
    if text is None:
        return None
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"is not JSON ({exc.msg})", param_hint="--model-config") from None
    if not isinstance(settings, dict):
        raise click.BadParameter("must be a JSON object of network settings", param_hint="--model-config")
    return settings


def _lidc_vois(data: Path) -> Path:
    """``--data`` of a nodule task: refused unless it is a folder."""
    if not data.is_dir():
        raise click.BadParameter(f"{data} is not a folder laid out like lidc_vois/", param_hint="--data")
    return data


def _train_nodule_model(task: str, model: str, data: Path, out: Path | None, options: dict[str, Any]) -> None:
    """Train ``model`` for ``task`` (malignancy or nodule-seg) with its recipe and the given overrides.

    Args:
        task: ``malignancy`` or ``nodule-seg``.
        model: the recipe's model name.
        data: a folder laid out like ``lidc_vois/``.
        out: the run folder (``None``: ``runs/TASK/MODEL``).
        options: the command's other options, by their parameter names.
    """
    from lungai.training.recipes import make_config
    from lungai.training.trainer import metric_name
    from lungai.training.trainer import train as run_training

    negative_scans: tuple[str, ...] = options.get("negative_scans", ())
    try:
        config = make_config(task, model, data, out or Path("runs") / task / model, size=options["size"],
                             epochs=options["epochs"], model_config=_model_config(options["model_config"]),
                             batch_size=options["batch_size"], lr=options["lr"], patience=options["patience"],
                             device=options["device"], num_threads=options["threads"], seed=options["seed"],
                             max_cases=options["max_cases"], min_diameter_mm=options["min_diameter_mm"],
                             augment=not options["no_augment"], shift_fraction=options["shift_fraction"],
                             init_weights=options["init_weights"], negative_scans=list(negative_scans) or None,
                             negatives_per_scan=options.get("negatives_per_scan"))
    except (KeyError, ValueError) as exc:
        raise click.BadParameter(str(exc.args[0]) if exc.args else str(exc)) from None
    result = run_training(config, on_event=_EpochBar(metric_name(task)), resume=not options["restart"])
    click.echo(f"best {metric_name(task)} {result.best_metric:.4f} at epoch {result.best_epoch + 1} "
               f"of {result.epochs_run}{' (stopped early)' if result.stopped_early else ''}; saved in {result.out}")


def _check_augmentation(shift_fraction: float | None, no_augment: bool) -> None:
    if shift_fraction is not None and no_augment:
        raise click.BadParameter("has no effect with --no-augment", param_hint="--shift-fraction")


@click.group("train", cls=TaskGroup)
def train() -> None:
    """Train a model with its recipe: one subcommand per task.

    malignancy and nodule-seg train on the committed patient split of a lidc_vois/ folder,
    emphysema on a weak-label CSV, detection on nodules inserted into the shared backgrounds.
    Each run saves the best epoch by the validation metric in --out (config.json +
    model.safetensors + metrics.json, with train.log; last/ holds the resumable state).
    `lungai train TASK --help` lists the task's options.
    """


@train.command("malignancy", cls=TaskCommand, scope="malignancy models",
               short_help="measured_nodule, nodule_cnn2d or resnet50_3d on lidc_vois/.")
@train_model_option(", ".join(TASK_MODELS["malignancy"]))
@train_data_option(_LIDC_VOIS_DATA)
@training_run_options("malignancy")
@nodule_training_options
def train_malignancy(model: str, data: Path, out: Path | None, **options: Any) -> None:
    """Train a malignancy model (measured_nodule, nodule_cnn2d, resnet50_3d) on the committed patient split.

    measured_nodule fits logistic regressions on measured features (the shipped scorer;
    of the other options it uses only --out and --threads); the networks train with their
    paper's recipe. The best epoch by validation AUC is saved in --out.
    """
    _lidc_vois(data)
    if model == MEASURED_MODEL:
        _train_measured(data, out or Path("runs") / "malignancy" / model, options["threads"])
        return
    _check_augmentation(options["shift_fraction"], options["no_augment"])
    _train_nodule_model("malignancy", model, data, out, options)


@train.command("nodule-seg", cls=TaskCommand, scope="nodule-seg models",
               short_help="resunet3d, convlstm_nodule or r3d_denseunet on lidc_vois/.")
@train_model_option(", ".join(TASK_MODELS["nodule-seg"]))
@train_data_option(_LIDC_VOIS_DATA)
@training_run_options("nodule-seg")
@nodule_training_options
@click.option("--negatives", "negative_scans", multiple=True, metavar="SCAN[:left|:right]",
              help="An unlabelled whole scan whose lesion-free soft-tissue ROIs near the lungs join training with "
                   "an empty mask (repeatable; :left / :right keeps only that half of the patient, when the other "
                   "shows a lesion). Never a test patient's scan.")
@click.option("--negatives-per-scan", type=int, default=None,
              help="Negative ROIs cut from each --negatives scan (default 100).")
def train_nodule_seg(model: str, data: Path, out: Path | None, **options: Any) -> None:
    """Train a nodule segmentation model (resunet3d, convlstm_nodule, r3d_denseunet) on the committed patient split.

    The best epoch by validation Dice is saved in --out; --negatives adds lesion-free ROIs
    of whole scans with an empty mask (the tumour model's whole-scan negatives).
    """
    from lungai.data.negative_rois import NegativeScan

    _lidc_vois(data)
    if options["negatives_per_scan"] is not None and not options["negative_scans"]:
        raise click.BadParameter("needs --negatives", param_hint="--negatives-per-scan")
    _check_augmentation(options["shift_fraction"], options["no_augment"])
    for text in options["negative_scans"]:
        if not NegativeScan.parse(text).path.exists():
            raise click.BadParameter(f"{text}: no such scan", param_hint="--negatives")
    _train_nodule_model("nodule-seg", model, data, out, options)


@train.command("emphysema", cls=TaskCommand, scope="emphysema models",
               short_help="convlstm_scanner, the MIL models or cnn3d on a weak-label CSV.")
@train_model_option(", ".join(TASK_MODELS["emphysema"]))
@train_data_option("A weak-label CSV (path,label[,patient_id]).")
@training_run_options("emphysema")
def train_emphysema(model: str, data: Path, out: Path | None, epochs: int | None, batch_size: int | None,
                    lr: float | None, patience: int | None, size: str, device: str, threads: int, seed: int,
                    max_cases: int | None, no_augment: bool, restart: bool) -> None:
    """Train an emphysema model on a weak-label CSV, split by patient with a fixed seed.

    See lungai.training.emphysema. The best epoch by validation AUC is saved in --out.
    """
    from lungai.cli.emphysema import train_emphysema as run

    run(model, data, out, epochs, batch_size, lr, patience, size, device, threads, seed, max_cases, not no_augment,
        restart, _EpochBar("val_auc"))


train.add_command(train_detection)
train.add_command(train_detection_ensemble)
