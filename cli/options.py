"""Option values shared by several commands."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lungai.inference.device import DEVICE_PATTERN
from lungai.pipeline.config import SENSITIVITIES, parse_tasks


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
    click.option("--sensitivity", type=click.Choice(SENSITIVITIES), default="balanced", show_default=True,
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
    for option in reversed(_ANALYSIS_OPTIONS):
        command = option(command)
    return command

