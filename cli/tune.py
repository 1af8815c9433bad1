"""``lungai tune nodule-seg --weights RUN --data DIR``: the mask threshold and test-time scales, chosen on
validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from lungai.cli.options import parse_scales


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
@click.option("--candidates", default=None,
              help="Comma-separated factors of the ROI spacing tried besides the trained one (below 1 "
                   "magnifies the nodule); default 0.7,0.8,0.9.")
@click.option("--max-set-size", type=click.IntRange(1, 4), default=2, show_default=True,
              help="Most scales averaged together, the trained one included.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="JSON file for every scored setting (default: WEIGHTS/inference_tuning.json).")
@click.option("--tile-mirror/--no-tile-mirror", default=None,
              help="Mirror the tiles of large nodules (8x their model inputs) while tuning, and record "
                   "the choice (default: the checkpoint's setting, mirrored when it has none).")
@click.option("--dry-run", is_flag=True, help="Report the choice without changing config.json.")
@click.option("--device", default="cpu", show_default=True)
def tune(task: str, weights: Path, data: Path, candidates: str | None, max_set_size: int, output: Path | None,
         tile_mirror: bool | None, dry_run: bool, device: str) -> None:
    """Choose TASK's mask threshold and test-time scales on the validation split and record them.

    Every set of scales (the trained spacing plus up to MAX_SET_SIZE - 1 candidates) is scored
    with every threshold by mean Dice on the validation VOIs; lungai evaluate and lungai compare
    then use the choice, and lungai run once the run is released (docs/weights.md). Retraining
    into the same folder replaces the choice. The test split is not read.
    """
    from lungai.evaluation.inference_tuning import DEFAULT_CANDIDATES, TuningConfig, record_choice, tune_inference

    try:
        config = TuningConfig(weights, data, parse_scales(candidates, "--candidates") or DEFAULT_CANDIDATES,
                              max_set_size, device, tile_mirror)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--candidates") from None
    target = output or weights / "inference_tuning.json"
    if not target.parent.is_dir():
        raise click.BadParameter(f"folder {target.parent} does not exist", param_hint="--output")
    try:
        result = tune_inference(config, _report_case)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        target.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        if not dry_run:
            record_choice(weights, result)
    except OSError as exc:
        raise click.ClickException(f"cannot write the tuning result: {exc}") from None
    before = result["previous"]
    tiles = "mirrored" if result["tile_mirror"] else "not mirrored"
    rescored = "" if before["tile_mirror"] == result["tile_mirror"] else f", re-scored with tiles {tiles}"
    click.echo(f"threshold {result['threshold']:.2f}, scales {result['scales']}, tiles {tiles}: validation Dice "
               f"{result['val_dice']:.4f} (was threshold {before['threshold']:.2f}, "
               f"scales {before['scales']}{rescored}: "
               f"{before['val_dice']:.4f}); {'not recorded (--dry-run)' if dry_run else 'recorded in config.json'}; "
               f"wrote {target}")
