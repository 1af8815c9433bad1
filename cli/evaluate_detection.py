"""``lungai evaluate detection --data DATA_ROOT -o OUT``: whole-scan FROC of nodule detection."""

from __future__ import annotations

from pathlib import Path

import click

from lungai.cli.group import TaskCommand
from lungai.cli.options import eval_data_option, eval_device_option, report_folder_option, split_option, weights_option


@click.command("detection", cls=TaskCommand, scope="detection",
               short_help="Whole-scan FROC: metrics.json, report.md, froc.png.")
@weights_option("Classifier checkpoint folder (a run of lungai train detection), once. Default: none, "
                "candidates scored by their strength.")
@eval_data_option("The shared data folder (lidc_scans/, lidc_vois/, backgrounds/, lung_pet_ct_dx/).")
@split_option(("test", "val", "all"), "VOIs pasted into the inserted-nodule scans: test or val (all is refused: "
              "the VOIs of every split).")
@report_folder_option
@eval_device_option
def evaluate_detection(weights: tuple[Path, ...], data: Path, split: str, output: Path, device: str) -> None:
    """Evaluate nodule detection on whole scans: writes metrics.json, report.md and froc.png.

    FROC on LIDC-IDRI-0001/0002 and on scans with inserted nodules of the split, with the
    classifier and with the candidates alone; sensitivity by size and by texture.
    """
    evaluate_detection_command(weights, data, split, output, device)


def evaluate_detection_command(weights: tuple[Path, ...], data: Path, split: str, output: Path, device: str) -> None:
    """Evaluate the detector on LIDC-IDRI-0001/0002 and on inserted-nodule scans of ``split``.

    Args:
        weights: at most one classifier checkpoint folder; none scores by candidate strength.
        data: the shared data folder (``lidc_scans/``, ``lidc_vois/``, ``backgrounds/``, ``lung_pet_ct_dx/``).
        split: ``test`` (the default) or ``val`` VOIs for the inserted scans.
        output: report folder.
        device: where the classifier runs.
    """
    from lungai.evaluation.detection_eval import DetectionEvalConfig, evaluate_detection

    if len(weights) > 1:
        raise click.UsageError("detection evaluates one classifier: pass --weights at most once")
    if split == "all":
        raise click.BadParameter("detection uses the test or val VOIs for its inserted scans", param_hint="--split")
    if not (data / "lidc_scans").is_dir():
        raise click.BadParameter(f"{data} has no lidc_scans/: pass the shared data folder", param_hint="--data")
    config = DetectionEvalConfig(data_root=data, output=output, weights=weights[0] if weights else None,
                                 split=split, device=device)
    summaries = evaluate_detection(config)
    for name, s in summaries.items():
        rates = ", ".join(f"{v:.2f} at {k} FP/scan" for k, v in s["sensitivity_at_fp"].items())
        click.echo(f"{name}: {s['num_scans']} scans, {s['num_nodules']} nodules; sensitivity {rates}; "
                   f"CPM {s['cpm']:.3f}")
    click.echo(f"wrote {output / 'metrics.json'}, {output / 'report.md'} and {output / 'froc.png'}")
