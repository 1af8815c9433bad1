"""``lungai batch``: many scans on Dask, one output folder per case, cohort tables, resumable.

Thin over :mod:`lungai.batch`. Imports nothing heavy at its top, so ``lungai --help`` stays quick.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from lungai.cli.options import analysis_options, command_line, device_callback, progress_mode, tasks_callback
from lungai.errors import CasesFailedError
from lungai.pipeline.config import ALL_TASKS
from lungai.pipeline.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from lungai.batch.cases import Discovery

logger = logging.getLogger(__name__)


class _CaseBar:
    """A tqdm bar over the batch's cases on stderr, with rate and ETA; failures are counted beside it."""

    def __init__(self) -> None:
        self._bar = None
        self._failed = 0
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm import tqdm

        with self._lock:
            if event.event == "start":
                self._bar = tqdm(total=event.data["to_run"], unit="case", desc="cases", file=sys.stderr)
            elif event.event == "case" and event.status in ("done", "failed") and self._bar is not None:
                self._failed += event.status == "failed"
                self._bar.set_postfix(failed=self._failed, refresh=False)
                self._bar.update(1)

    def close(self) -> None:
        """End the bar's line."""
        if self._bar is not None:
            self._bar.close()


def _print_jsonl(lock: threading.Lock, event: ProgressEvent) -> None:
    with lock:
        click.echo(event.to_json())
        sys.stdout.flush()


@contextmanager
def _reporter(mode: str) -> Iterator[ProgressCallback]:
    """The batch's progress callback: a bar over cases, JSON lines on stdout, or nothing."""
    if mode == "jsonl":
        lock = threading.Lock()
        yield lambda event: _print_jsonl(lock, event)
    elif mode == "bar":
        bar = _CaseBar()
        try:
            yield bar
        finally:
            bar.close()
    else:
        yield lambda _event: None


def _list_cases(found: Discovery) -> None:
    """``--dry-run``: each case (id, path, series, slices), then what was skipped and why."""
    click.echo(f"{len(found.cases)} cases:")
    for case in found.cases:
        series = f" series {case.series_uid}" if case.series_uid else ""
        slices = f" ({case.slices} slices)" if case.slices else ""
        prior = f" follow-up of prior {case.prior}" if case.prior else ""
        click.echo(f"  {case.case_id}\t{case.path}{series}{slices}{prior}")
    if found.skipped:
        click.echo(f"skipped {len(found.skipped)}:")
        for path, why in found.skipped:
            click.echo(f"  {path}\t{why}")


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Batch folder: one folder per case (as `lungai run` writes it), cohort.csv, "
                   "cohort_nodules.csv, cohort.html, batch.json and manifest.jsonl. Rerunning into it resumes.")
@click.option("--dry-run", is_flag=True, help="List the cases found (and what is skipped) without running anything.")
@click.option("--all-series", is_flag=True,
              help="Every CT series of a DICOM study is a case (default: the one with most slices, as `lungai run`).")
@click.option("--retry-failed", is_flag=True, help="Run again the cases that failed in an earlier run of this batch.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Worker processes of the local Dask cluster "
                   "(default: one per core, at most one per 4 GiB of memory).")
@click.option("--threads-per-worker", type=click.IntRange(1), default=1, show_default=True,
              help="Cases each worker runs side by side (their run.log files then share each other's log lines).")
@click.option("--memory-limit", default="auto", show_default=True, metavar="SIZE",
              help="Memory per worker (e.g. 6GiB); auto shares the machine's memory among the workers. "
                   "Dask restarts a worker that exceeds it and retries its case elsewhere.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on an existing Dask cluster (tcp://host:8786) instead of a local one; its workers need "
                   "this LungAI version and must see the inputs and the output folder at the same paths.")
@click.option("--tasks", callback=tasks_callback, default=None, metavar="LIST",
              help=f"Comma-separated tasks from {', '.join(ALL_TASKS)} (default: every task with weights installed).")
@click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]|mps",
              callback=device_callback, help="Where models run, in each worker.")
@click.option("--progress", type=click.Choice(["bar", "jsonl", "none"]), default="bar", show_default=True,
              help="bar: a bar over cases on stderr; "
                   "jsonl: one JSON event per case start, finish and failure on stdout.")
@click.option("--force", is_flag=True, help="Skip soft input checks (e.g. intensities that do not look like HU).")
@click.option("--patient-id", "include_patient_id", is_flag=True, help="Copy the DICOM PatientID into findings.json.")
@analysis_options
@click.pass_context
def batch(ctx: click.Context, inputs: tuple[str, ...], output: Path | None, dry_run: bool, all_series: bool,
          retry_failed: bool, workers: int | None, threads_per_worker: int, memory_limit: str, scheduler: str | None,
          tasks: tuple[str, ...] | None, device: str, progress: str, force: bool, include_patient_id: bool,
          sensitivity: str, detection_threshold: float | None, max_nodules: int, weights_manifest: Path | None,
          emphysema_map: bool, emphysema_probability: bool) -> None:
    """Analyse many scans on Dask: folders, a CSV of case_id,path, or globs; resumable.

    Each INPUT is a folder (every .nrrd/.nhdr/.nii/.nii.gz/.mhd/.mha file, DICOM zip and DICOM
    CT series in it, recursively), a CSV with columns case_id,path (optional series_uid; and
    prior, prior_date, current_date: a row with a prior is a follow-up, whose outputs are those of
    `lungai follow-up PRIOR PATH`, with cohort_follow_up.csv), a scan file or a glob. Each case's
    outputs are those of `lungai run`, in OUTPUT/<case_id>. A case that fails is a failed row of
    cohort.csv and the others go on; rerunning the same command skips the finished cases and
    redoes those whose input or settings changed.
    """
    if output is None and not dry_run:
        raise click.UsageError("give the batch folder with -o (only --dry-run runs without one)")
    from lungai.batch.cases import discover
    from lungai.batch.engine import EngineOptions, RunOptions, run_batch

    found = discover(list(inputs), all_series=all_series)
    if dry_run or output is None:
        _list_cases(found)
        return
    options = RunOptions(tasks=tasks, device=device, force=force, include_patient_id=include_patient_id,
                         sensitivity=sensitivity, detection_threshold=detection_threshold, max_nodules=max_nodules,
                         manifest=str(weights_manifest.absolute()) if weights_manifest else None,
                         emphysema_map=emphysema_map, emphysema_probability=emphysema_probability)
    engine = EngineOptions(workers=workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                           scheduler=scheduler)
    ctx.find_root().obj["interrupted"] = (f"the cases that ended are kept in {output} (cohort.csv lists them); "
                                          "the same command resumes the batch")
    with _reporter(progress_mode(ctx, progress)) as reporter:
        outcome = run_batch(found.cases, output.absolute(), options, engine, retry_failed=retry_failed,
                            command=command_line(ctx), on_event=reporter)
    click.echo(f"{outcome.done} of {outcome.total} cases done, {len(outcome.failed)} failed "
               f"({outcome.skipped} kept from an earlier run); cohort.csv in {output}", err=progress == "jsonl")
    if outcome.failed:
        shown = ", ".join(outcome.failed[:5]) + (", ..." if len(outcome.failed) > 5 else "")
        raise CasesFailedError(f"{len(outcome.failed)} of {outcome.total} cases failed ({shown})",
                               f"see the error column of {output / 'cohort.csv'}; fix the inputs and rerun "
                               "with --retry-failed")
