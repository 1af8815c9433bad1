"""``lungai evaluate TASK --data DIR -o OUT``: test-split (or external) metrics and a report, one subcommand per task.

``lungai evaluate malignancy``, ``nodule-seg`` and ``emphysema`` score checkpoints on the
committed split (or all cases of an external set); ``detection``
(:mod:`lungai.cli.evaluate_detection`) scores whole-scan detection, ``follow-up``
(:mod:`lungai.cli.evaluate_follow_up`) ``lungai follow-up`` on simulated pairs. Each subcommand has
only its task's options. This module imports nothing heavy at its top.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lungai.cli.evaluate_detection import evaluate_detection
from lungai.cli.evaluate_follow_up import evaluate_follow_up
from lungai.cli.group import TaskCommand, TaskGroup
from lungai.cli.options import eval_data_option, eval_device_option, report_folder_option, split_option, weights_option

if TYPE_CHECKING:
    from lungai.evaluation.segmentation_eval import SegmentationEvalConfig

SHIPPED = {"malignancy": ("measured_nodule",), "nodule-seg": ("resunet3d",)}

_LIDC_VOIS_DATA = "Folder laid out like lidc_vois/ (image/, mask/, nodules.csv)."
_SPLIT_HELP = "Cases of the committed split, or all cases of --data (an external test set)."


def _shipped_weights(task: str) -> tuple[Path, ...]:
    from lungai.weights.resolver import resolve

    return tuple(resolve(name).folder for name in SHIPPED[task])


def _lidc_vois(data: Path) -> Path:
    """``--data`` of a nodule task: refused unless it is a folder."""
    if not data.is_dir():
        raise click.BadParameter(f"{data} is not a folder laid out like lidc_vois/", param_hint="--data")
    return data


def _write_metrics(metrics: dict, output: Path) -> None:
    from lungai.evaluation import report

    report.write_json(metrics, output / "metrics.json")
    click.echo(f"wrote {output / 'metrics.json'} and {output / 'report.md'}")


@click.group("evaluate", cls=TaskGroup)
def evaluate() -> None:
    """Evaluate a model and write a report: one subcommand per task.

    A checkpoint is scored on the test split of the committed patient split (or all cases of
    an external set); follow-up scores lungai follow-up outputs on simulated pairs.
    `lungai evaluate TASK --help` lists the task's options.
    """


@evaluate.command("malignancy", cls=TaskCommand, scope="malignancy models",
                  short_help="AUC against the diameter baseline: metrics.json, report.md.")
@weights_option("Checkpoint folder (config.json + model.safetensors); repeat for an ensemble (mean probability). "
                "Default: the shipped weights (measured_nodule).")
@eval_data_option(_LIDC_VOIS_DATA)
@split_option(("test", "val", "all"), _SPLIT_HELP)
@click.option("--reference-data", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="lidc_vois folder whose train/val split fits the diameter baseline and picks the "
                   "threshold (default: --data).")
@report_folder_option
@eval_device_option
def evaluate_malignancy(weights: tuple[Path, ...], data: Path, split: str, reference_data: Path | None,
                        output: Path, device: str) -> None:
    """Evaluate a malignancy model: writes metrics.json, report.md and roc.png.

    AUC with its confidence interval, against the diameter baseline; the measured scorer
    adds calibration (reliability.png) and its characteristics.
    """
    _lidc_vois(data)
    folders = weights or _shipped_weights("malignancy")
    output.mkdir(parents=True, exist_ok=True)
    try:
        metrics = _malignancy(folders, data, split, reference_data, output, device)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _write_metrics(metrics, output)


@evaluate.command("nodule-seg", cls=TaskCommand, scope="nodule-seg models",
                  short_help="Dice against the readers' masks: metrics.json, report.md.")
@weights_option("Checkpoint folder (config.json + model.safetensors), once. Default: the shipped weights "
                "(resunet3d).")
@eval_data_option(_LIDC_VOIS_DATA)
@split_option(("test", "val", "all"), _SPLIT_HELP)
@report_folder_option
@eval_device_option
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="Probability threshold of the mask (default: the checkpoint's validation-chosen one).")
@click.option("--min-diameter-mm", type=float, default=None,
              help="Evaluate only nodules with at least this diameter_mm (e.g. 15 for r3d_denseunet).")
@click.option("--mirror/--no-mirror", default=True, show_default=True,
              help="Average the 8 flips of each ROI, as lungai run does.")
@click.option("--tile/--no-tile", default=True, show_default=True,
              help="Tile nodules that the centred ROI cuts, as lungai run does.")
@click.option("--tile-mirror/--no-tile-mirror", default=None,
              help="Mirror the tiles too (default: the checkpoint's choice).")
@click.option("--scales", default=None,
              help="Comma-separated factors of the ROI spacing whose predictions are averaged, "
                   "e.g. 1,0.8 (default: the checkpoint's, see lungai tune).")
def evaluate_nodule_seg(weights: tuple[Path, ...], data: Path, split: str, output: Path, device: str,
                        threshold: float | None, min_diameter_mm: float | None, mirror: bool, tile: bool,
                        tile_mirror: bool | None, scales: str | None) -> None:
    """Evaluate a nodule segmentation model: writes metrics.json, report.md and cases.csv.

    Dice, precision and recall against the readers' consensus mask, with the long axis and
    volume that lungai run reports, beside a threshold baseline.
    """
    from lungai.cli.options import parse_scales

    _lidc_vois(data)
    folders = weights or _shipped_weights("nodule-seg")
    output.mkdir(parents=True, exist_ok=True)
    try:
        from lungai.evaluation.segmentation_eval import SegmentationEvalConfig

        if len(folders) != 1:
            raise click.UsageError("nodule-seg evaluates one model: pass --weights once")
        config = SegmentationEvalConfig(folders[0], data, split, threshold=threshold, device=device,
                                        min_diameter_mm=min_diameter_mm, mirror=mirror, tile=tile,
                                        scales=parse_scales(scales, "--scales"), tile_mirror=tile_mirror)
        metrics = _segmentation(config, output)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _write_metrics(metrics, output)


@evaluate.command("emphysema", cls=TaskCommand, scope="emphysema models",
                  short_help="One checkpoint beside LAA-950: metrics.json, metrics.md.")
@weights_option("Checkpoint folder (config.json + model.safetensors), once. Default: the shipped weights "
                "(convlstm_scanner).")
@eval_data_option("A weak-label CSV (path,label[,patient_id]).")
@split_option(("test", "val", "all"), "Cases of the CSV's patient split, or all of them.")
@report_folder_option
@eval_device_option
def evaluate_emphysema(weights: tuple[Path, ...], data: Path, split: str, output: Path, device: str) -> None:
    """Evaluate an emphysema model beside LAA-950: writes metrics.json, metrics.md and cases.csv.

    One checkpoint on the CSV's split (lungai compare --task emphysema for several).
    """
    from lungai.cli.emphysema import evaluate_emphysema as run

    run(weights, data, split, output, device)


evaluate.add_command(evaluate_detection)
evaluate.add_command(evaluate_follow_up)


def _malignancy(folders: tuple[Path, ...], data: Path, split: str, reference: Path | None, output: Path,
                device: str) -> dict:
    from lungai.evaluation import report
    from lungai.evaluation.malignancy_eval import MalignancyEvalConfig, evaluate_malignancy
    from lungai.evaluation.measured_eval import is_measured_checkpoint
    from lungai.evaluation.metrics import roc_curve

    if len(folders) == 1 and is_measured_checkpoint(folders[0]):
        return _measured(folders[0], data, split, reference, output)
    metrics, arrays = evaluate_malignancy(MalignancyEvalConfig(folders, data, split, reference, device=device))
    report.roc_png([(roc_curve(arrays["scores"], arrays["labels"]), "blue"),
                    (roc_curve(arrays["baseline"], arrays["labels"]), "orange")], output / "roc.png")
    (output / "report.md").write_text(report.malignancy_markdown(metrics, "roc.png"), encoding="utf-8")
    click.echo(f"AUC {metrics['auc']:.3f} ({metrics['auc_ci_low']:.3f}-{metrics['auc_ci_high']:.3f}); "
               f"8-20 mm {metrics['auc_8_20mm']}; diameter baseline {metrics['auc_diameter_baseline']:.3f}")
    return metrics


def _measured(folder: Path, data: Path, split: str, reference: Path | None, output: Path) -> dict:
    """The measured scorer: suspicion of malignancy with calibration, and the characteristics."""
    from lungai.evaluation import report
    from lungai.evaluation.calibration import reliability_png
    from lungai.evaluation.measured_eval import MeasuredEvalConfig, evaluate_measured, measured_markdown
    from lungai.evaluation.metrics import roc_curve

    metrics, arrays = evaluate_measured(MeasuredEvalConfig(folder, data, split, reference))
    labels = arrays["labels"]
    report.roc_png([(roc_curve(arrays["scores"], labels), "blue"), (roc_curve(arrays["baseline"], labels), "orange"),
                    (roc_curve(arrays["size_scores"], labels), "green")], output / "roc.png")
    reliability_png(arrays["scores"], labels, output / "reliability.png",
                    f"radiologists' suspicion on LIDC ({split} split)")
    (output / "report.md").write_text(measured_markdown(metrics, "roc.png", "reliability.png"), encoding="utf-8")
    band = metrics["vs_diameter"]["8_20mm"]
    click.echo(f"AUC {metrics['auc']:.3f} ({metrics['auc_ci_low']:.3f}-{metrics['auc_ci_high']:.3f}); "
               f"8-20 mm {format(band['auc'], '.3f') if band else 'n/a'}; "
               f"diameter baseline {metrics['auc_diameter_baseline']:.3f}; "
               f"ECE {metrics['ece']:.3f}, Brier {metrics['brier']:.3f}")
    return metrics


def _segmentation(config: SegmentationEvalConfig, output: Path) -> dict:
    from lungai.evaluation import report
    from lungai.evaluation.segmentation_eval import evaluate_segmentation

    metrics, rows = evaluate_segmentation(config)
    with (output / "cases.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (output / "report.md").write_text(report.segmentation_markdown(metrics), encoding="utf-8")
    click.echo(f"Dice {metrics['dice']:.3f} (>= 10 mm {metrics['dice_ge10mm']}); "
               f"threshold baseline {metrics['baseline_dice']:.3f}")
    return metrics
