"""``lungai compare --task nodule-seg --data DIR --split test A B ...``: methods side by side on the same cases."""

from __future__ import annotations

import csv
from pathlib import Path

import click


@click.command("compare")
@click.argument("methods", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--task", type=click.Choice(["nodule-seg", "emphysema"]), default="nodule-seg", show_default=True)
@click.option("--data", type=click.Path(path_type=Path, exists=True), required=True,
              help="Folder laid out like lidc_vois/ (image/, mask/, nodules.csv); emphysema: a weak-label CSV.")
@click.option("--split", type=click.Choice(["test", "val", "all"]), default="test", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for compare.json, compare.md, cases.csv.")
@click.option("--device", default="cpu", show_default=True, help="Where LungAI models run.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="torch threads of LungAI's prediction (match nnU-Net's).")
def compare(methods: tuple[Path, ...], task: str, data: Path, split: str, output: Path, device: str,
            threads: int) -> None:
    """Compare METHODS (LungAI checkpoint folders or nnU-Net prediction folders; the first is the reference).

    --task emphysema: METHODS are emphysema checkpoints (e.g. the five of lungai train emphysema),
    scored with LAA-950 alone on the same split of the CSV; writes compare.json, compare.md
    (the paper's Table 1 layout) and cases.csv.

    Writes compare.json, compare.md and cases.csv: Dice, precision, recall per case and in
    total (mean, median, by size), time per case, peak memory, Wilcoxon tests against the first.
    """
    if task == "emphysema":
        from lungai.cli.emphysema import compare_emphysema

        compare_emphysema(methods, data, split, output, device, threads)
        return
    if not data.is_dir():
        raise click.BadParameter(f"{data} is not a folder laid out like lidc_vois/", param_hint="--data")
    from lungai.baselines.compare import CompareConfig, compare_methods
    from lungai.baselines.compare_report import compare_markdown
    from lungai.evaluation import report

    output.mkdir(parents=True, exist_ok=True)
    try:
        results, rows = compare_methods(CompareConfig(methods, data, output, split, device, threads))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    results["task"] = task
    report.write_json(results, output / "compare.json")
    (output / "compare.md").write_text(compare_markdown(results), encoding="utf-8")
    with (output / "cases.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for method in results["methods"]:
        click.echo(f"{method['name']}: Dice {method['dice']:.3f} (median {method['dice_median']:.3f})")
    click.echo(f"wrote {output / 'compare.md'} and {output / 'compare.json'}")
