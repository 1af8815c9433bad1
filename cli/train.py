"""``lungai train TASK --model NAME --data DIR``: train a nodule model with its paper's recipe."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from lungai.data.negative_rois import NegativeScan
from lungai.training.config import TASKS

#: The shipped malignancy scorer: logistic regressions on measured features (lungai.training.measured).
MEASURED_MODEL = "measured_nodule"


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


@click.command("train")
@click.argument("task", type=click.Choice((*TASKS, "emphysema")))
@click.option("--model", "model", required=True,
              help="Model name (malignancy: measured_nodule, nodule_cnn2d, resnet50_3d; "
                   "nodule-seg: resunet3d, convlstm_nodule, r3d_denseunet).")
@click.option("--data", type=click.Path(path_type=Path, exists=True), required=True,
              help="Folder laid out like lidc_vois/ (image/, mask/, nodules.csv); emphysema: a weak-label CSV "
                   "(path,label[,patient_id]).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder (default: runs/TASK/MODEL). An existing run there is resumed.")
@click.option("--epochs", type=int, default=None, help="Epoch budget (default: the recipe's).")
@click.option("--batch-size", type=int, default=None, help="Batch size (default: the recipe's).")
@click.option("--lr", type=float, default=None, help="Learning rate (default: the recipe's).")
@click.option("--patience", type=int, default=None, help="Early-stopping patience in epochs (0: never).")
@click.option("--size", type=click.Choice(["paper", "cpu"]), default="paper", show_default=True,
              help="paper: the paper's network widths; cpu: narrower 3D networks that train on a CPU.")
@click.option("--model-config", "model_config", default=None, metavar="JSON",
              help='Network settings over those of --size, as a JSON object, e.g. '
                   '\'{"filters": [16, 32, 64, 128], "bottom_filters": 256}\' for resunet3d.')
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda[:N], mps or auto.")
@click.option("--threads", type=int, default=2, show_default=True, help="CPU threads for torch.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-cases", type=int, default=None, help="Use only the first N cases per split (smoke runs).")
@click.option("--min-diameter-mm", type=float, default=None,
              help="Train and validate only on nodules with at least this diameter_mm of the label table "
                   "(case selection, never a model input; e.g. 15 for the tumour model r3d_denseunet).")
@click.option("--no-augment", is_flag=True, help="Train without augmentation.")
@click.option("--shift-fraction", type=float, default=None,
              help="How far the augmented crop may move off the VOI centre, as a fraction of the ROI per axis "
                   "(default 0.05; e.g. 0.3 shows large nodules off-centre, as inference tiles do).")
@click.option("--negatives", "negative_scans", multiple=True, metavar="SCAN[:left|:right]",
              help="nodule-seg: an unlabelled whole scan whose lesion-free soft-tissue ROIs near the lungs join "
                   "training with an empty mask (repeatable; :left / :right keeps only that half of the patient, "
                   "when the other shows a lesion). Never a test patient's scan.")
@click.option("--negatives-per-scan", type=int, default=None, help="Negative ROIs cut from each --negatives scan "
              "(default 100).")
@click.option("--restart", is_flag=True, help="Ignore a saved state in --out and start from scratch.")
@click.option("--init-weights", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="Start from this checkpoint folder's weights (same model and --size) with a fresh optimiser "
                   "and schedule: fine-tuning, e.g. of the shipped weights on more data.")
def train(task: str, model: str, data: Path, out: Path | None, epochs: int | None, batch_size: int | None,
          lr: float | None, patience: int | None, size: str, model_config: str | None, device: str, threads: int,
          seed: int, max_cases: int | None, min_diameter_mm: float | None, no_augment: bool,
          shift_fraction: float | None, negative_scans: tuple[str, ...], negatives_per_scan: int | None,
          restart: bool, init_weights: Path | None) -> None:
    """Train MODEL for TASK (malignancy or nodule-seg) on the committed patient split.

    emphysema: MODEL is convlstm_scanner, mil_max, mil_mean, mil_product or cnn3d, --data a
    weak-label CSV split by patient with a fixed seed (see lungai.training.emphysema).

    The best epoch by the validation metric is saved in --out as config.json +
    model.safetensors + metrics.json, with train.log; last/ holds the resumable state.
    """
    if task == "emphysema":
        unsupported = {"--init-weights": init_weights is not None, "--model-config": model_config is not None,
                       "--min-diameter-mm": min_diameter_mm is not None, "--shift-fraction": shift_fraction is not None,
                       "--negatives": bool(negative_scans), "--negatives-per-scan": negatives_per_scan is not None}
        given = [name for name, used in unsupported.items() if used]
        if given:
            raise click.BadParameter("is not supported for emphysema models (they take --model, --data, --out, "
                                     "--epochs, --batch-size, --lr, --patience, --size, --device, --threads, "
                                     "--seed, --max-cases, --no-augment, --restart)", param_hint=", ".join(given))
        from lungai.cli.emphysema import train_emphysema

        train_emphysema(model, data, out, epochs, batch_size, lr, patience, size, device, threads, seed, max_cases,
                        not no_augment, restart, _EpochBar("val_auc"))
        return
    if not data.is_dir():
        raise click.BadParameter(f"{data} is not a folder laid out like lidc_vois/", param_hint="--data")
    if task == "malignancy" and model == MEASURED_MODEL:
        _train_measured(data, out or Path("runs") / task / model, threads)
        return
    if negatives_per_scan is not None and not negative_scans:
        raise click.BadParameter("needs --negatives", param_hint="--negatives-per-scan")
    if shift_fraction is not None and no_augment:
        raise click.BadParameter("has no effect with --no-augment", param_hint="--shift-fraction")
    for text in negative_scans:
        if not NegativeScan.parse(text).path.exists():
            raise click.BadParameter(f"{text}: no such scan", param_hint="--negatives")
    from lungai.training.recipes import make_config
    from lungai.training.trainer import metric_name
    from lungai.training.trainer import train as run_training

    try:
        config = make_config(task, model, data, out or Path("runs") / task / model, size=size, epochs=epochs,
                             model_config=_model_config(model_config),
                             batch_size=batch_size, lr=lr, patience=patience, device=device, num_threads=threads,
                             seed=seed, max_cases=max_cases, min_diameter_mm=min_diameter_mm,
                             augment=not no_augment, shift_fraction=shift_fraction, init_weights=init_weights,
                             negative_scans=list(negative_scans) or None, negatives_per_scan=negatives_per_scan)
    except (KeyError, ValueError) as exc:
        raise click.BadParameter(str(exc.args[0]) if exc.args else str(exc)) from None
    result = run_training(config, on_event=_EpochBar(metric_name(task)), resume=not restart)
    click.echo(f"best {metric_name(task)} {result.best_metric:.4f} at epoch {result.best_epoch + 1} "
               f"of {result.epochs_run}{' (stopped early)' if result.stopped_early else ''}; saved in {result.out}")
