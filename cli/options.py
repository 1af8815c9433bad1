"""Option values shared by several commands."""

from __future__ import annotations

import click


def parse_scales(text: str | None, option: str) -> tuple[float, ...] | None:
    """The value of ``option``: a comma-separated list of positive spacing factors (``None`` stays ``None``)."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers, e.g. 1,0.8", param_hint=option) from None
    if any(not v > 0 for v in values):
        raise click.BadParameter(f"{text!r}: every factor must be above 0", param_hint=option)
    return values
