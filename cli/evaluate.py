"""``lungai evaluate TASK --data DIR -o OUT``: test-split (or external) metrics and a report."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from lungai.evaluation.segmentation_eval import SegmentationEvalConfig

EVAL_TASKS = ("malignancy", "nodule-seg", "emphysema", "detection")
SHIPPED = {"malignancy": ("measured_nodule",), "nodule-seg": ("resunet3d",)}


def _shipped_weights(task: str) -> tuple[Path, ...]:
    from lungai.weights.resolver import resolve

    return tuple(resolve(name).folder for name in SHIPPED[task])


@click.command("evaluate")
@click.argument("task", type=click.Choice(EVAL_TASKS))
@click.option("--weights", type=click.Path(path_type=Path, exists=True, file_okay=False), multiple=True,
              help="Checkpoint folder (config.json + model.safetensors); repeat for a malignancy ensemble "
                   "(mean probability). Default: the shipped weights.")
@click.option("--data", type=click.Path(path_type=Path, exists=True), required=True,
              help="Folder laid out like lidc_vois/ (image/, mask/, nodules.csv); emphysema: a weak-label CSV.")
@click.option("--split", type=click.Choice(["test", "val", "all"]), default="test", show_default=True,
              help="Cases of the committed split, or all cases of --data (an external test set).")
@click.option("--reference-data", type=click.Path(path_type=Path, exists=True, file_okay=False), default=None,
              help="lidc_vois folder whose train/val split fits the diameter baseline and picks the "
                   "threshold (malignancy; default: --data).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Folder for the report.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="nodule-seg: probability threshold of the mask (default: the checkpoint's validation-chosen one).")
@click.option("--min-diameter-mm", type=float, default=None,
              help="nodule-seg: evaluate only nodules with at least this diameter_mm (e.g. 15 for r3d_denseunet).")
@click.option("--mirror/--no-mirror", default=True, show_default=True,
              help="nodule-seg: average the 8 flips of each ROI, as lungai run does.")
@click.option("--tile/--no-tile", default=True, show_default=True,
              help="nodule-seg: tile nodules that the centred ROI cuts, as lungai run does.")
@click.option("--tile-mirror/--no-tile-mirror", default=None,
              help="nodule-seg: mirror the tiles too (default: the checkpoint's choice).")
@click.option("--scales", default=None,
              help="nodule-seg: comma-separated factors of the ROI spacing whose predictions are averaged, "
                   "e.g. 1,0.8 (default: the checkpoint's, see lungai tune).")
def evaluate(task: str, weights: tuple[Path, ...], data: Path, split: str, reference_data: Path | None,
             output: Path, device: str, threshold: float | None, min_diameter_mm: float | None,
             mirror: bool, tile: bool, tile_mirror: bool | None, scales: str | None) -> None:
    """Evaluate TASK (malignancy or nodule-seg): writes metrics.json, report.md (and roc.png).

    emphysema: one checkpoint beside LAA-950 on the CSV's split; writes metrics.json,
    metrics.md and cases.csv.
    """
    if task == "emphysema":
        from lungai.cli.emphysema import evaluate_emphysema

        evaluate_emphysema(weights, data, split, output, device)
        return
    if task == "detection":
        from lungai.cli.evaluate_detection import evaluate_detection_command

        evaluate_detection_command(weights, data, split, output, device)
        return
    if not data.is_dir():
        raise click.BadParameter(f"{data} is not a folder laid out like lidc_vois/", param_hint="--data")
    from lungai.cli.options import parse_scales
    from lungai.evaluation import report

    folders = weights or _shipped_weights(task)
    output.mkdir(parents=True, exist_ok=True)
    try:
        if task == "malignancy":
            metrics = _malignancy(folders, data, split, reference_data, output, device)
        else:
            from lungai.evaluation.segmentation_eval import SegmentationEvalConfig

            if len(folders) != 1:
                raise click.UsageError("nodule-seg evaluates one model: pass --weights once")
            config = SegmentationEvalConfig(folders[0], data, split, threshold=threshold, device=device,
                                            min_diameter_mm=min_diameter_mm, mirror=mirror, tile=tile,
                                            scales=parse_scales(scales, "--scales"), tile_mirror=tile_mirror)
            metrics = _segmentation(config, output)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    report.write_json(metrics, output / "metrics.json")
    click.echo(f"wrote {output / 'metrics.json'} and {output / 'report.md'}")


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
