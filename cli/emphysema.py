"""The emphysema branches of ``lungai train``, ``lungai evaluate`` and ``lungai compare`` (weak-label CSV data)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


def _csv(data: Path) -> Path:
    if not data.is_file():
        raise click.BadParameter(f"{data} is not a file: emphysema takes a weak-label CSV (path,label[,patient_id])",
                                 param_hint="--data")
    return data


def train_emphysema(model: str, data: Path, out: Path | None, epochs: int | None, batch_size: int | None,
                    lr: float | None, patience: int | None, size: str, device: str, threads: int, seed: int,
                    max_cases: int | None, augment: bool, restart: bool, on_event: Callable[[object], None]) -> None:
    """``lungai train emphysema``: train MODEL on a weak-label CSV."""
    from lungai.training.emphysema import EmphysemaTrainConfig
    from lungai.training.emphysema import train_emphysema as run

    overrides: dict[str, Any] = {key: value for key, value in {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                                               "patience": patience}.items() if value is not None}
    try:
        config = EmphysemaTrainConfig(model=model, data=_csv(data), out=out or Path("runs") / "emphysema" / model,
                                      size=size, device=device, num_threads=threads, seed=seed, max_cases=max_cases,
                                      augment=augment, **overrides)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    try:
        result = run(config, on_event=on_event, resume=not restart)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"best val_auc {result.best_metric:.4f} at epoch {result.best_epoch + 1} of {result.epochs_run}"
               f"{' (stopped early)' if result.stopped_early else ''}; saved in {result.out}")


def _evaluate(weights: tuple[Path, ...], data: Path, split: str, device: str) -> dict:
    from lungai.evaluation.emphysema_eval import EmphysemaEvalConfig, evaluate_models

    try:
        return evaluate_models(EmphysemaEvalConfig(weights=weights, data=_csv(data), split=split, device=device))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _write(result: dict, output: Path, name: str) -> None:
    from lungai.evaluation import report
    from lungai.evaluation.emphysema_eval import comparison_markdown

    cases = result.pop("cases")
    output.mkdir(parents=True, exist_ok=True)
    report.write_json(result, output / f"{name}.json")
    (output / f"{name}.md").write_text(comparison_markdown(result), encoding="utf-8")
    with (output / "cases.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(cases[0]))
        writer.writeheader()
        writer.writerows(cases)
    for method in result["methods"]:
        click.echo(f"{method['name']}: AUC {method['auc']:.3f} ({method['auc_ci_low']:.3f}-{method['auc_ci_high']:.3f})"
                   f", sensitivity {method['sensitivity']:.3f}, specificity {method['specificity']:.3f},"
                   f" F1 {method['f1']:.3f}")
    click.echo(f"wrote {output / f'{name}.md'} and {output / f'{name}.json'}")


def evaluate_emphysema(weights: tuple[Path, ...], data: Path, split: str, output: Path, device: str) -> None:
    """``lungai evaluate emphysema``: one checkpoint (default: the shipped scanner) beside LAA-950."""
    if not weights:
        from lungai.weights.resolver import resolve

        weights = (resolve("convlstm_scanner").folder,)
    if len(weights) != 1:
        raise click.UsageError("emphysema evaluates one model: pass --weights once (lungai compare for several)")
    _write(_evaluate(weights, data, split, device), output, "metrics")


def compare_emphysema(methods: tuple[Path, ...], data: Path, split: str, output: Path, device: str,
                      threads: int = 1) -> None:
    """``lungai compare --task emphysema``: checkpoints and LAA-950 on the same cases (Table 1 layout)."""
    import torch

    torch.set_num_threads(threads)
    _write(_evaluate(methods, data, split, device), output, "compare")
