"""Run a batch of cases on Dask: an embedded LocalCluster, or an existing cluster's scheduler.

The client sends each worker a case's paths and settings, never a volume. A worker keeps one
:class:`~lungai.pipeline.model_store.ModelStore` per device, weights manifest and thread
(:func:`worker_models`), so each model loads once per worker process (with one thread, the
default), not once per scan. A case runs :func:`lungai.pipeline.runner.run_pipeline`, the same
code and the same atomic writer as ``lungai run``, into ``OUT_DIR/<case_id>``. A user error in a case (a bad scan)
makes it a ``failed`` entry with its exit code and message, and the batch goes on. As each
case ends the client appends it to the manifest (:mod:`lungai.batch.manifest`) and rewrites
the cohort tables and page (:mod:`lungai.batch.cohort`, :mod:`lungai.batch.cohort_html`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lungai import __version__
from lungai.batch.cases import Case
from lungai.batch.cohort import (
    read_nodule_rows,
    summarize_findings,
    summarize_follow_up,
    write_batch_json,
    write_cohort_tables,
)
from lungai.batch.manifest import append_entry, case_key, is_current, read_manifest
from lungai.errors import CaseListError, LungAIError, ResourceError
from lungai.io.findings import utc_timestamp
from lungai.io.output import TEMP_PREFIX
from lungai.pipeline.progress import ProgressCallback, ProgressEvent, ignore_progress

if TYPE_CHECKING:
    from lungai.pipeline.model_store import ModelStore

logger = logging.getLogger(__name__)

#: Memory a worker is given per case when the worker count is chosen from the machine's memory.
MEMORY_PER_WORKER_BYTES = 4 * 1024**3
#: The topic on which workers announce that a case started.
CASE_TOPIC = "lungai-case"
#: Seconds between rewrites of the cohort tables while cases finish (they are always written at the end).
TABLES_EVERY_S = 5.0

_STORES: dict[tuple[str, str | None, int], ModelStore] = {}
_STORES_LOCK = threading.Lock()


@dataclass(frozen=True)
class RunOptions:
    """The ``lungai run`` settings every case of a batch gets (part of each case's resume key)."""

    tasks: tuple[str, ...] | None = None
    device: str = "auto"
    force: bool = False
    include_patient_id: bool = False
    sensitivity: str = "balanced"
    detection_threshold: float | None = None
    max_nodules: int = 30
    manifest: str | None = None
    emphysema_map: bool = False
    emphysema_probability: bool = False


@dataclass(frozen=True)
class EngineOptions:
    """Where the cases run.

    Attributes:
        workers: LocalCluster worker processes (``None``: :func:`default_workers`).
        threads_per_worker: cases one worker runs side by side.
        memory_limit: per worker, as Dask takes it (``"4GiB"``, ``"auto"``: the machine's memory
            shared among the workers).
        scheduler: address of an existing Dask scheduler; no LocalCluster is started then.
    """

    workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    scheduler: str | None = None


@dataclass
class BatchOutcome:
    """How a batch ended: counts of the cases by status, and the ids of the failed ones."""

    total: int
    done: int = 0
    failed: list[str] = field(default_factory=list)
    skipped: int = 0


def default_workers() -> int:
    """One worker per core, as many as the memory gives :data:`MEMORY_PER_WORKER_BYTES` each (at least 1)."""
    import psutil

    cores = os.cpu_count() or 1
    return max(1, min(cores, psutil.virtual_memory().total // MEMORY_PER_WORKER_BYTES))


def worker_models(device: str, manifest: str | None) -> ModelStore:
    """This worker thread's model store for ``device`` and ``manifest``, made on first use and then reused.

    A store records which models its current run uses, so runs side by side (``--threads-per-worker``
    above 1) each get their own: models load once per worker thread, once per process by default.
    """
    from lungai.pipeline.config import RunConfig
    from lungai.pipeline.runner import model_store

    with _STORES_LOCK:
        key = (device, manifest, threading.get_ident())
        if key not in _STORES:
            config = RunConfig(input=Path(), output=Path(), device=device,
                               manifest=Path(manifest) if manifest else None)
            _STORES[key] = model_store(config)
        return _STORES[key]


def _worker_name() -> str:
    """The Dask worker's name, or this process's id outside a worker."""
    from distributed import get_worker

    try:
        return str(get_worker().name)
    except ValueError:
        return f"pid {os.getpid()}"


def _announce(case_id: str) -> None:
    """Tell the client (if any) that a case started."""
    from distributed import get_worker

    try:
        get_worker().log_event(CASE_TOPIC, {"case_id": case_id, "status": "started", "worker": _worker_name()})
    except ValueError:
        pass


def run_case(case: Case, output: str, options: RunOptions, command: str | None) -> dict[str, Any]:
    """Run one case in a worker; never raises for a user error in the case.

    Returns:
        The case's manifest entry (without its key): status ``done`` with the cohort summary
        and nodule rows, or ``failed`` with the exit code and the one-line message; the seconds
        it took, the worker, and ``models_loaded`` (models this call loaded in its process).
    """
    _announce(case.case_id)
    start = time.perf_counter()
    store = worker_models(options.device, options.manifest)
    loaded_before = len(store.loaded)
    entry: dict[str, Any] = {"case_id": case.case_id, "input": str(case.path), "series_uid": case.series_uid}
    if case.prior is not None:
        entry["prior"] = str(case.prior)
        entry.update(_follow_up_case(case, Path(output), options, command, store))
    else:
        entry.update(_run_case(case, Path(output), options, command, store))
    entry.update(seconds=round(time.perf_counter() - start, 2), worker=_worker_name(), finished_utc=utc_timestamp(),
                 models_loaded=len(store.loaded) - loaded_before)
    return entry


def _run_case(case: Case, output: Path, options: RunOptions, command: str | None,
              store: ModelStore) -> dict[str, Any]:
    """A case's ``lungai run`` into ``output``: the entry's status fields (``done`` with the cohort
    summary and nodule rows, or ``failed`` with the exit code and message)."""
    from lungai.pipeline.config import RunConfig
    from lungai.pipeline.runner import run_pipeline

    config = RunConfig(input=case.path, output=output, tasks=options.tasks, device=options.device,
                       overwrite=True, force=options.force, series_uid=case.series_uid,
                       include_patient_id=options.include_patient_id, operating_point=options.sensitivity,
                       detection_threshold=options.detection_threshold, max_nodules=options.max_nodules,
                       manifest=Path(options.manifest) if options.manifest else None,
                       emphysema_map=options.emphysema_map, emphysema_probability=options.emphysema_probability,
                       command=command)
    try:
        result = run_pipeline(config, models=store)
    except LungAIError as error:
        return {"status": "failed", "exit_code": error.exit_code, "error": " ".join(error.message.split())}
    return {"status": "done", "exit_code": 0, "error": None, "summary": summarize_findings(result.findings),
            "nodules": read_nodule_rows(result.output / "nodules.csv")}


def _follow_up_case(case: Case, output: Path, options: RunOptions, command: str | None,
                    store: ModelStore) -> dict[str, Any]:
    """A follow-up case (a CSV row with a ``prior``): ``lungai follow-up PRIOR PATH`` into ``output``.

    Returns:
        The entry's status fields: ``done`` with the current scan's cohort summary, its nodule
        rows (``current/nodules.csv``), the follow-up counts and rows (``follow_up.csv``), or
        ``failed`` with the exit code and message.
    """
    import datetime as dt

    from lungai.followup.engine import FollowUpConfig, run_follow_up

    if case.series_uid is not None:
        return {"status": "failed", "exit_code": CaseListError.exit_code,
                "error": "a follow-up case reads its scan as lungai follow-up does, without choosing a series: "
                         "give the series' own folder as its path and leave series_uid empty"}
    assert case.prior is not None
    config = FollowUpConfig(prior=case.prior, current=case.path, output=output, overwrite=True, force=options.force,
                            prior_date=dt.date.fromisoformat(case.prior_date) if case.prior_date else None,
                            current_date=dt.date.fromisoformat(case.current_date) if case.current_date else None,
                            device=options.device, sensitivity=options.sensitivity,
                            manifest=Path(options.manifest) if options.manifest else None, command=command)
    try:
        result = run_follow_up(config, models=store)
    except LungAIError as error:
        return {"status": "failed", "exit_code": error.exit_code, "error": " ".join(error.message.split())}
    rows = read_nodule_rows(output / "follow_up.csv")
    return {"status": "done", "exit_code": 0, "error": None,
            "summary": {**summarize_findings(result.current.findings), **summarize_follow_up(rows)},
            "nodules": read_nodule_rows(output / "current" / "nodules.csv"), "follow_up": rows}


def _lost_case(case: Case, error: BaseException) -> dict[str, Any]:
    """The entry of a case whose task failed outside the pipeline: workers kept dying running it
    (Dask gave up after ``distributed.scheduler.allowed-failures`` retries), or an internal error."""
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        code = ResourceError.exit_code
        tries = getattr(error, "allowed_failures", None)
        message = (f"every worker that ran this case died ({'' if tries is None else tries + 1} tries); out of "
                   "memory? give workers more with --memory-limit, or run fewer with --workers")
    else:
        code, message = 1, f"internal error ({type(error).__name__}: {error})"
    return {"case_id": case.case_id, "input": str(case.path), "series_uid": case.series_uid, "status": "failed",
            "exit_code": code, "error": " ".join(message.split()), "seconds": None, "worker": None,
            "finished_utc": utc_timestamp()}


@contextmanager
def dask_client(engine: EngineOptions) -> Iterator[Any]:
    """A Dask client: to ``engine.scheduler``, or to a LocalCluster of worker processes started here."""
    import importlib.util

    import dask
    from distributed import Client, LocalCluster

    if engine.scheduler:
        with Client(engine.scheduler) as client:
            yield client
        return
    dashboard = ":8787" if importlib.util.find_spec("bokeh") else None
    workers = engine.workers or default_workers()
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ"),
                 **native_threads_env(workers, engine.threads_per_worker)}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}), \
            LocalCluster(n_workers=workers, threads_per_worker=engine.threads_per_worker,
                         memory_limit=engine.memory_limit, processes=True, dashboard_address=dashboard) as cluster, \
            Client(cluster) as client:
        yield client


def native_threads_env(workers: int, threads_per_worker: int) -> dict[str, int]:
    """Native thread counts (torch, BLAS) for local workers: the machine's cores shared among their cases.

    Dask starts workers with one native thread each (``OMP_NUM_THREADS=1``), which leaves cores idle
    when there are fewer case slots than cores (``--workers 1`` on two cores ran 0.67 times as fast
    as a loop of ``lungai run``, benchmarks/bench_batch.py).
    """
    threads = max(1, (os.cpu_count() or 1) // max(1, workers * threads_per_worker))
    return {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


class _Tables:
    """Rewrites the cohort tables at most every :data:`TABLES_EVERY_S` seconds, and on :meth:`flush`.

    ``batch`` is the data of ``batch.json`` (plus ``skipped``) that heads ``cohort.html``.
    """

    def __init__(self, out_dir: Path, entries: dict[str, dict[str, Any]], batch: dict[str, Any]) -> None:
        self.out_dir, self.entries, self.batch, self._written = out_dir, entries, batch, 0.0

    def update(self, entry: dict[str, Any]) -> None:
        """Record a finished case and rewrite the tables when they are due."""
        self.entries[entry["case_id"]] = entry
        if time.monotonic() - self._written >= TABLES_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Rewrite the tables now."""
        write_cohort_tables(self.out_dir, self.entries.values(), self.batch)
        self._written = time.monotonic()


def run_batch(cases: list[Case], out_dir: Path, options: RunOptions, engine: EngineOptions,
              retry_failed: bool = False, command: str | None = None,
              on_event: ProgressCallback = ignore_progress) -> BatchOutcome:
    """Run every case that has no current result in ``out_dir``, and write the cohort outputs.

    Args:
        cases: the cases (:func:`lungai.batch.cases.discover`).
        out_dir: the batch's folder: a folder per case, the manifest and the cohort tables.
        options: the run settings of every case.
        engine: where to run.
        retry_failed: run again the cases that failed before with the same input and settings.
        command: recorded in each case's ``findings.json`` provenance.
        on_event: receives ``start``, ``case`` (``started``, ``done``, ``failed``) and ``done`` events.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    if engine.workers is None and engine.scheduler is None:
        engine = replace(engine, workers=default_workers())
    settings = asdict(options)
    previous = read_manifest(out_dir)
    keys = {case.case_id: case_key(case, settings) for case in cases}
    todo = [case for case in cases
            if not is_current(previous.get(case.case_id), keys[case.case_id], out_dir, retry_failed)]
    rerun = {case.case_id for case in todo}
    kept = {case.case_id: previous[case.case_id] for case in cases if case.case_id not in rerun}
    outcome = BatchOutcome(total=len(cases), skipped=len(kept))
    info = {"lungai_version": __version__, "settings": settings, "engine": asdict(engine), "command": command,
            "started_utc": utc_timestamp(), "finished_utc": None}
    counts = _counts(kept.values(), len(cases))
    tables = _Tables(out_dir, kept, {**info, "counts": counts, "skipped": len(kept)})
    tables.flush()
    write_batch_json(out_dir, {**info, "counts": counts})
    start = time.perf_counter()
    on_event(ProgressEvent(event="start", total=len(cases), message=f"lungai {__version__} batch of {len(cases)} cases",
                           data={"output": str(out_dir), "cases": len(cases), "to_run": len(todo),
                                 "skipped": len(kept)}))
    try:
        if todo:
            _run_cases(todo, out_dir, options, engine, command, keys, tables, outcome, on_event, start)
    finally:  # stopped or not: the tables hold every case that ended, and no case is half written
        tables.flush()
        remove_stale_staging(out_dir)
    outcome.done = sum(entry["status"] == "done" for entry in tables.entries.values())
    outcome.failed = sorted(case_id for case_id, entry in tables.entries.items() if entry["status"] != "done")
    final = {**info, "finished_utc": utc_timestamp(), "weights": _weights(out_dir, tables.entries),
             "counts": _counts(tables.entries.values(), len(cases))}
    write_batch_json(out_dir, final)
    tables.batch = {**final, "skipped": outcome.skipped}
    tables.flush()  # once more, so that cohort.html shows the end of the batch
    on_event(ProgressEvent(event="done", index=len(cases), total=len(cases), fraction=1.0,
                           elapsed_s=time.perf_counter() - start,
                           data={"output": str(out_dir), "done": outcome.done, "failed": len(outcome.failed),
                                 "skipped": outcome.skipped}))
    return outcome


def remove_stale_staging(out_dir: Path) -> None:
    """Delete the staging folders of cases whose worker or client was killed (SIGKILL, out of memory).

    Only while no case of this batch runs: a batch owns its folder, so none is in use then.
    """
    for staging in out_dir.glob(f"{TEMP_PREFIX}*"):
        logger.info("removing %s, left by a case that was killed", staging)
        shutil.rmtree(staging, ignore_errors=True)


def _run_cases(todo: list[Case], out_dir: Path, options: RunOptions, engine: EngineOptions, command: str | None,
               keys: dict[str, str], tables: _Tables, outcome: BatchOutcome, on_event: ProgressCallback,
               start: float) -> None:
    """Submit the cases to Dask and record each as it ends."""
    from distributed import as_completed

    total = outcome.total
    with dask_client(engine) as client:
        if client.dashboard_link and not engine.scheduler:
            logger.info("Dask dashboard: %s", client.dashboard_link)
        client.subscribe_topic(CASE_TOPIC, lambda event: on_event(ProgressEvent(
            event="case", status="started", total=total, elapsed_s=time.perf_counter() - start,
            message=event[1]["case_id"], data=event[1])))
        futures = {client.submit(run_case, case, str(out_dir / case.case_id), options, command,
                                 key=f"lungai-case-{case.case_id}-{keys[case.case_id][:12]}", pure=False): case
                   for case in todo}
        for future in as_completed(futures):
            case = futures[future]
            try:
                entry = future.result()
            except Exception as error:  # noqa: BLE001 - a dead worker or an internal error fails this case only
                logger.error("case %s: %s", case.case_id, error)
                entry = _lost_case(case, error)
            entry["key"] = keys[case.case_id]
            append_entry(out_dir, entry)
            tables.update(entry)
            finished = len(tables.entries)
            on_event(ProgressEvent(event="case", status=entry["status"], index=finished, total=total,
                                   fraction=finished / total, elapsed_s=time.perf_counter() - start,
                                   message=entry["error"] or entry["case_id"],
                                   data={key: entry.get(key) for key in ("case_id", "exit_code", "seconds", "worker",
                                                                          "models_loaded")}))


def _counts(entries: Any, total: int) -> dict[str, int]:
    """Cases by status; ``pending`` are those not finished yet."""
    statuses = [entry["status"] for entry in entries]
    return {"total": total, "done": statuses.count("done"), "failed": statuses.count("failed"),
            "pending": total - len(statuses)}


def _weights(out_dir: Path, entries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The weights the cases used, from the ``run.weights`` of a finished case's findings.json."""
    from lungai.io.findings import load_findings

    for case_id, entry in sorted(entries.items()):
        if entry["status"] == "done" and (out_dir / case_id / "findings.json").exists():
            return list(load_findings(out_dir / case_id / "findings.json")["run"].get("weights", []))
    return []
