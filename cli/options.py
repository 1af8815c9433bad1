"""Option values shared by several commands."""

from __future__ import annotations

import shlex

import click

from lungai.inference.device import DEVICE_PATTERN
from lungai.pipeline.config import parse_tasks


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
