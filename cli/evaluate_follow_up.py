"""``lungai evaluate follow-up --pairs PAIRS --results RESULTS -o OUT``: score follow-up runs on simulated pairs.

Also ``lungai evaluate-follow-up``, its name before ``lungai evaluate`` had one subcommand per task.
"""

from __future__ import annotations

from pathlib import Path

import click

from lungai.cli.group import TaskCommand
from lungai.cli.options import split_option


def _verdict(target: dict) -> str:
    if target["passed"] is None:
        return "n/a (nothing to measure)"
    return "PASS" if target["passed"] else "FAIL"


@click.command("follow-up", cls=TaskCommand, scope="follow-up scoring",
               short_help="lungai follow-up on simulated pairs against their truth.")
@click.option("--pairs", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="Pairs folder from `lungai data simulate-follow-up` (pairs.csv, <pair_id>/truth.json).")
@click.option("--results", type=click.Path(path_type=Path, file_okay=False, exists=True), required=True,
              help="Folder with each pair's `lungai follow-up` output in <pair_id>/.")
@split_option(("test", "tune", "all"), "Which pairs to score.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="JSON report to write (per pair, per nodule and overall).")
def evaluate_follow_up(pairs: Path, results: Path, split: str, output: Path) -> None:
    """Score lungai follow-up on simulated pairs: matching, registration residual, volume change, VDT, growth flag.

    Each acceptance target is printed with PASS or FAIL; the method is in docs/follow-up.md
    (Scoring) and lungai.evaluation.follow_up_eval.
    """
    from lungai.evaluation.follow_up_eval import evaluate_follow_up as evaluate

    report = evaluate(pairs, results, output, split)
    overall = report["overall"]
    click.echo(f"{overall['num_pairs']} {split} pairs ({len(overall['pairs_without_results'])} without results), "
               f"{overall['num_nodules_both_scans']} nodules on both scans, {overall['num_new']} new, "
               f"{overall['num_resolved']} resolved")
    for target in report["targets"]:
        value = target["value"]
        value = "-" if value is None else str(value) if isinstance(value, int) else f"{value:.3f}"
        click.echo(f"{_verdict(target):<4}  {target['description']}: {value} (target {target['op']} "
                   f"{target['limit']:g})")
    click.echo(f"wrote {output}")
