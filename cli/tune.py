"""``lungai tune nodule-seg --weights RUN --data DIR``: the mask threshold and test-time scales, chosen on validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def parse_scales(text: str | None) -> tuple[float, ...] | None:
    """A comma-separated list of positive spacing factors (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers, e.g. 1,0.8") from None
    if any(not v > 0 for v in values):
        raise click.BadParameter(f"{text!r}: every factor must be above 0")
    return values


def _report_case(done: int, total: int) -> None:
    """Progress on stderr: a running count on a terminal, a line every tenth case in a log."""
    line = f"validation cases {done}/{total}"
    if sys.stderr.isatty():
        click.echo(f"\r{line}", err=True, nl=done == total)
    elif done % 10 == 0 or done == total:
        click.echo(line, err=True)


@click.command("tune")
@click.argument("task", type=click.Choice(["nodule-seg"]))
@click.option("--weights", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="Segmentation checkpoint folder (a run of lungai train); its config.json records the choice.")
@click.option("--data", type=click.Path(path_type=Path, exists=True, file_okay=False), required=True,
              help="Folder laid out like lidc_vois/; only its validation cases of the committed split are read.")
@click.option("--candidates", default="0.7,0.8,0.9", show_default=True,
              help="Factors of the ROI spacing tried besides the trained one (below 1 magnifies the nodule).")
@click.option("--max-set-size", type=click.IntRange(1, 4), default=2, show_default=True,
              help="Most scales averaged together, the trained one included.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="JSON file for every scored setting (default: WEIGHTS/inference_tuning.json).")
@click.option("--dry-run", is_flag=True, help="Report the choice without changing config.json.")
@click.option("--device", default="cpu", show_default=True)
def tune(task: str, weights: Path, data: Path, candidates: str, max_set_size: int, output: Path | None,
         dry_run: bool, device: str) -> None:
    """Choose TASK's mask threshold and test-time scales on the validation split and record them.

    Every set of scales (the trained spacing plus up to MAX_SET_SIZE - 1 candidates) is scored
    with every threshold by mean Dice on the validation VOIs; lungai evaluate and lungai run then
    use the choice. The test split is not read.
    """
    from lungai.evaluation.inference_tuning import TuningConfig, tune_inference

    try:
        config = TuningConfig(weights, data, parse_scales(candidates) or (), max_set_size, device, write=not dry_run)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--candidates") from None
    try:
        result = tune_inference(config, _report_case)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    target = output or weights / "inference_tuning.json"
    target.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    before = result["previous"]
    click.echo(f"threshold {result['threshold']:.2f}, scales {result['scales']}: validation Dice "
               f"{result['val_dice']:.4f} (was threshold {before['threshold']:.2f}, scales {before['scales']}: "
               f"{before['val_dice']:.4f}); {'not recorded (--dry-run)' if dry_run else 'recorded in config.json'}; "
               f"wrote {target}")
