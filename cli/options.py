"""Option values shared by several commands."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lungai.inference.device import DEVICE_PATTERN
from lungai.pipeline.config import OPERATING_POINT_NAMES, parse_tasks


def parse_scales(text: str | None, option: str) -> tuple[float, ...] | None:
    """The value of ``option``: a comma-separated list of positive spacing factors (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers, e.g. 1,0.8",
                                 param_hint=option) from None
    if any(not v > 0 for v in values):
        raise click.BadParameter(f"{text!r}: every factor must be above 0", param_hint=option)
    return values


def tasks_callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    """``--tasks``: the validated tasks in pipeline order (``None``: every task with weights)."""
    try:
        return parse_tasks(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def device_callback(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """``--device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, lower-cased."""
    if not DEVICE_PATTERN.match(value.strip().lower()):
        raise click.BadParameter(f"unknown device {value!r}; use auto, cpu, cuda, cuda:N or mps")
    return value.strip().lower()


def progress_mode(ctx: click.Context, progress: str) -> str:
    """``--progress``, with the bar turned off by ``-q``."""
    return "none" if progress == "bar" and ctx.find_root().obj.get("quiet") else progress


def command_line(ctx: click.Context) -> str:
    """The command line as typed (``lungai`` and its arguments), for findings.json's provenance."""
    return shlex.join(["lungai", *ctx.find_root().obj.get("argv", [])])


#: How each scan is analysed: the options ``lungai run`` and ``lungai batch`` share, in help order.
_ANALYSIS_OPTIONS = (
    click.option("--sensitivity", type=click.Choice(OPERATING_POINT_NAMES), default="balanced", show_default=True,
                 help="Nodule detection operating point (its expected false positives per scan are printed)."),
    click.option("--detection-threshold", type=click.FloatRange(0.0, 1.0), default=None, metavar="SCORE",
                 help="Report nodules with a detection score at or above SCORE (overrides --sensitivity)."),
    click.option("--max-nodules", type=click.IntRange(0), default=30, show_default=True,
                 help="Segment and report at most this many nodules per scan (the highest detection scores)."),
    click.option("--weights-manifest", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
                 help="A weights manifest.json to use instead of the installed one (site-specific releases)."),
    click.option("--emphysema-map", is_flag=True,
                 help="Add a segment of the lung voxels below -950 HU (low-attenuation areas) to the segmentation."),
    click.option("--emphysema-probability", is_flag=True,
                 help="With the emphysema task, also report the convlstm_scanner emphysema probability. Its shipped "
                      "weights are demonstration weights trained on simulated emphysema, not validated on real "
                      "scans: the number is shown with that caveat and is not in the default outputs."),
)


def analysis_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the analysis options (:data:`_ANALYSIS_OPTIONS`) to a command."""
    return apply_options(_ANALYSIS_OPTIONS, command)



def apply_options(options: tuple[Callable[..., Any], ...], command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``options`` to ``command`` so that its help lists them in the tuple's order."""
    for option in reversed(options):
        command = option(command)
    return command


# -- lungai train TASK -----------------------------------------------------------------------------

def train_model_option(models: str) -> Callable[..., Any]:
    """``--model``: the network (or scorer) to train; ``models`` names the task's choices for the help."""
    return click.option("--model", "model", required=True, help=f"Model name ({models}).")


def train_data_option(help_text: str) -> Callable[..., Any]:
    """``--data``: the training data (an existing file or folder; each task checks which)."""
    return click.option("--data", type=click.Path(path_type=Path, exists=True), required=True, help=help_text)


def training_run_options(task: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options of a training run every recipe-based task takes (``--out`` defaults to ``runs/TASK/MODEL``).

    Args:
        task: the task's name, for the default run folder shown in the help.

    Returns:
        A decorator that adds ``--out``, the recipe overrides, ``--size``, ``--device``,
        ``--threads``, ``--seed``, ``--max-cases``, ``--no-augment`` and ``--restart``.
    """
    options = (
        click.option("--out", type=click.Path(path_type=Path), default=None,
                     help=f"Run folder (default: runs/{task}/MODEL). An existing run there is resumed."),
        click.option("--epochs", type=int, default=None, help="Epoch budget (default: the recipe's)."),
        click.option("--batch-size", type=int, default=None, help="Batch size (default: the recipe's)."),
        click.option("--lr", type=float, default=None, help="Learning rate (default: the recipe's)."),
        click.option("--patience", type=int, default=None, help="Early-stopping patience in epochs (0: never)."),
        click.option("--size", type=click.Choice(["paper", "cpu"]), default="paper", show_default=True,
                     help="paper: the paper's network widths; cpu: narrower 3D networks that train on a CPU."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda[:N], mps or auto."),
        threads_option(2),
        seed_option,
        click.option("--max-cases", type=int, default=None, help="Use only the first N cases per split (smoke runs)."),
        click.option("--no-augment", is_flag=True, help="Train without augmentation."),
        click.option("--restart", is_flag=True, help="Ignore a saved state in --out and start from scratch."),
    )
    return lambda command: apply_options(options, command)


def threads_option(default: int) -> Callable[..., Any]:
    """``--threads``: CPU threads for torch."""
    return click.option("--threads", type=int, default=default, show_default=True, help="CPU threads for torch.")


#: ``--seed``: seeds the initialisation, shuffles and augmentation of a training run.
seed_option = click.option("--seed", type=int, default=0, show_default=True)

#: The options of the nodule models' recipes (malignancy and nodule-seg), in help order.
_NODULE_TRAINING_OPTIONS = (
    click.option("--model-config", "model_config", default=None, metavar="JSON",
                 help='Network settings over those of --size, as a JSON object, e.g. '
                      '\'{"filters": [16, 32, 64, 128], "bottom_filters": 256}\' for resunet3d.'),
    click.option("--min-diameter-mm", type=float, default=None,
                 help="Train and validate only on nodules with at least this diameter_mm of the label table "
                      "(case selection, never a model input; e.g. 15 for the tumour model r3d_denseunet)."),
    click.option("--shift-fraction", type=float, default=None,
                 help="How far the augmented crop may move off the VOI centre, as a fraction of the ROI per axis "
                      "(default 0.05; e.g. 0.3 shows large nodules off-centre, as inference tiles do)."),
    click.option("--init-weights", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
                 help="Start from this checkpoint folder's weights (same model and --size) with a fresh optimiser "
                      "and schedule: fine-tuning, e.g. of the shipped weights on more data."),
)


def nodule_training_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the nodule recipes' options (:data:`_NODULE_TRAINING_OPTIONS`) to a command."""
    return apply_options(_NODULE_TRAINING_OPTIONS, command)


# -- lungai evaluate TASK --------------------------------------------------------------------------

def weights_option(help_text: str, required: bool = False) -> Callable[..., Any]:
    """``--weights``: checkpoint folders (repeatable; each task says how many it takes)."""
    return click.option("--weights", type=click.Path(path_type=Path, exists=True, file_okay=False), multiple=True,
                        required=required, help=help_text)


def eval_data_option(help_text: str) -> Callable[..., Any]:
    """``--data``: the evaluation data (an existing file or folder; each task checks which)."""
    return click.option("--data", type=click.Path(path_type=Path, exists=True), required=True, help=help_text)


def split_option(choices: tuple[str, ...], help_text: str) -> Callable[..., Any]:
    """``--split``: which cases to score, ``test`` by default."""
    return click.option("--split", type=click.Choice(choices), default="test", show_default=True, help=help_text)


#: ``-o/--output``: the report folder of an evaluation.
report_folder_option = click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
                                    help="Folder for the report.")

#: ``--device``: where an evaluated network runs.
eval_device_option = click.option("--device", default="cpu", show_default=True, help="cpu, cuda[:N], mps or auto.")
