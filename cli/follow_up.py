"""``lungai follow-up PRIOR CURRENT``: compare a scan with the patient's prior. Thin over :mod:`lungai.followup`.

Imports no torch at module level (``lungai --help`` stays fast); :func:`follow_up_options` are
shared with ``lungai run --prior``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lungai.cli.console import warnings_after_results
from lungai.cli.options import command_line, device_callback
from lungai.pipeline.config import OPERATING_POINT_NAMES


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD") from None


#: The dating options ``lungai follow-up`` and ``lungai run --prior`` share.
_DATE_OPTIONS = (
    click.option("--prior-date", callback=_date, default=None, metavar="YYYY-MM-DD",
                 help="The prior scan's date (NRRD, NIfTI and MetaImage carry none; overrides a DICOM header)."),
    click.option("--current-date", callback=_date, default=None, metavar="YYYY-MM-DD",
                 help="The current scan's date, likewise."),
    click.option("--interval-days", type=click.IntRange(0), default=None, metavar="DAYS",
                 help="Days between the scans, when their dates are not known. Without any dates the volume "
                      "doubling time and the time-based Lung-RADS rules are left out; matching still runs."),
)


def follow_up_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the dating options to a command."""
    for option in reversed(_DATE_OPTIONS):
        command = option(command)
    return command


def run_follow_up_command(ctx: click.Context, prior: Path, current: Path, output: Path | None,
                          settings: dict[str, Any]) -> None:
    """Run a follow-up with the CLI's settings and print its summary (``follow-up`` and ``run --prior``)."""
    from lungai.followup.engine import FollowUpConfig, run_follow_up
    from lungai.followup.report import impression
    from lungai.io.reader import scan_stem

    if settings.get("interval_days") is not None and settings.get("prior_date") and settings.get("current_date"):
        raise click.UsageError("give either --interval-days or both dates, not both")
    output = output or Path.cwd() / f"{scan_stem(current)}_follow_up"
    with warnings_after_results(hold=True) as held:
        result = run_follow_up(FollowUpConfig(prior=prior, current=current, output=output,
                                              command=command_line(ctx), **settings))
    registration = result.registration
    click.echo(impression(result))
    click.echo(f"Registration: lung-mask Dice {registration.dice['overall']:.3f} "
               f"(right {registration.dice['right']:.3f}, left {registration.dice['left']:.3f}), "
               f"quality {registration.quality}")
    for pair in result.pairs:
        click.echo(_pair_line(pair))
    click.echo(f"Outputs in {output}")
    held.release(result.warnings)


def _pair_line(pair: Any) -> str:
    prior = "-" if pair.prior is None else f"prior {pair.prior.nodule_id} {pair.prior.size.mean_diameter_mm:.1f} mm"
    current = "-" if pair.current is None else \
        f"current {pair.current.nodule_id} {pair.current.size.mean_diameter_mm:.1f} mm"
    category = "" if pair.lung_rads is None else f", Lung-RADS {pair.lung_rads['category']} (rule on measurements)"
    vdt = "" if pair.growth is None or pair.growth.vdt_days is None else f", VDT {pair.growth.vdt_days:.0f} days"
    return f"  {pair.status:<8} {prior:<24} {current:<26}{vdt}{category}"


@click.command("follow-up")
@click.argument("prior", type=click.Path(path_type=Path))
@click.argument("current", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: ./<current name>_follow_up). Must not exist unless --overwrite.")
@follow_up_options
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]|mps",
              callback=device_callback, help="Where models run.")
@click.option("--sensitivity", type=click.Choice(OPERATING_POINT_NAMES), default="balanced", show_default=True,
              help="Nodule detection operating point for scans analysed now.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder once the new one is complete.")
@click.option("--force", is_flag=True,
              help="Compare scans whose DICOM PatientIDs differ, and skip soft input checks.")
@click.pass_context
def follow_up(ctx: click.Context, prior: Path, current: Path, output: Path | None, **settings: Any) -> None:
    """Compare CURRENT with the patient's PRIOR scan, nodule by nodule.

    PRIOR and CURRENT are scans (anything `lungai run` reads) or LungAI output folders of them
    (reused after checking they match their scan). Writes follow_up.json, follow_up.csv,
    report.html, registration.tfm, prior_registered.nrrd, the current .seg.nrrd with the
    matches in its segment names, and both runs' outputs (prior/, current/).
    """
    run_follow_up_command(ctx, prior, current, output, settings)
