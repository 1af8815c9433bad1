"""Throughput of ``lungai batch`` against sequential ``lungai run`` calls on real LIDC scans.

N cases (the two shared whole scans, LIDC-IDRI-0001 as a DICOM zip and LIDC-IDRI-0002 as NRRD,
taken in turn under ids ``case01``... through a ``case_id,path`` CSV; nothing is copied) run
first as N fresh ``lungai run`` processes one after another, then as one ``lungai batch`` per
worker layout (``--workers W --threads-per-worker T``), on the same machine in the same run.

For each mode the table gives the wall time, cases per minute, the throughput against the
sequential runs, and the overhead per case: the wall time not spent in the cases' own stages
(``run.timings_s`` of each ``findings.json``: read, lungs, ..., write). ``(wall - sum of
stages) / cases`` is the plain figure (for the sequential runs: Python start-up, imports and
model loading of every process); with cases running side by side it turns negative, so the
table also gives ``(wall x slots - sum of stages) / cases``, where slots = workers x threads:
the slot-seconds a case costs beyond its stages. Outputs go to a temporary folder under /tmp.

Usage::

    python benchmarks/bench_batch.py [--cases 4] [--tasks lungs,emphysema] [--layouts 1x1,1x2,2x1] \
        [--repeats 1] [--data ../shared/data] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("bench_batch")

REPO = Path(__file__).resolve().parents[1]
#: The shared whole scans the cases cycle through, relative to the data folder.
SCANS = (Path("lidc_scans/LIDC-IDRI-0001/dicom.zip"), Path("lidc_scans/LIDC-IDRI-0002/LIDC-IDRI-0002.nrrd"))
#: Keys of ``run.timings_s`` that are not stages (none today; kept out of the stage sum if they appear).
NOT_STAGES = frozenset({"total"})


@dataclass(frozen=True)
class Measurement:
    """One mode's run over all cases.

    Attributes:
        mode: ``sequential`` or ``batch WxT``.
        slots: cases that can run at once (1 for sequential runs, workers x threads for a batch).
        wall_s: wall time of the whole mode, processes started and ended included.
        stage_s: each case's sum of stage seconds from its findings.json.
    """

    mode: str
    slots: int
    wall_s: float
    stage_s: tuple[float, ...]


def parse_layout(text: str) -> tuple[int, int]:
    """``"2x1"`` -> ``(2, 1)``: workers and threads per worker.

    Raises:
        ValueError: not two positive integers joined by ``x``.
    """
    workers, _, threads = text.strip().lower().partition("x")
    pair = (int(workers), int(threads or "1"))
    if min(pair) < 1:
        raise ValueError(f"layout {text!r}: workers and threads must be at least 1")
    return pair


def case_rows(data: Path, count: int) -> list[tuple[str, Path]]:
    """``count`` cases ``(case_id, scan)``, cycling through :data:`SCANS` under ``data``."""
    return [(f"case{index + 1:02d}", data / SCANS[index % len(SCANS)]) for index in range(count)]


def write_case_csv(rows: list[tuple[str, Path]], path: Path) -> Path:
    """Write ``rows`` as a ``case_id,path`` CSV (absolute paths) at ``path`` and return it."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case_id", "path"])
        writer.writerows((case_id, str(scan.absolute())) for case_id, scan in rows)
    return path


def stage_seconds(findings: dict) -> float:
    """Sum of a findings.json's stage timings (``run.timings_s``), in seconds."""
    timings = findings["run"]["timings_s"]
    return float(sum(value for key, value in timings.items() if key not in NOT_STAGES))


def overhead_per_case(wall_s: float, stage_s: list[float] | tuple[float, ...], slots: int = 1) -> float:
    """Seconds per case not spent in the cases' stages: ``(wall x slots - sum of stages) / cases``.

    With ``slots=1`` this is ``(wall - sum of stages) / cases``.
    """
    if not stage_s:
        raise ValueError("no cases")
    return (wall_s * slots - sum(stage_s)) / len(stage_s)


def throughput_ratio(reference_wall_s: float, wall_s: float) -> float:
    """How many times faster than the reference the same cases went (> 1: faster)."""
    return reference_wall_s / wall_s


def _lungai(*arguments: str) -> list[str]:
    """The command line of ``lungai ARGUMENTS`` with this Python, quiet."""
    return [sys.executable, "-m", "lungai.cli", "-q", *arguments]


def _timed(command: list[str], what: str) -> float:
    """Run ``command``; its wall time in seconds.

    Raises:
        RuntimeError: it exited with an error (its stderr in the message).
    """
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed (exit code {result.returncode}): {result.stderr.strip()[-2000:]}")
    return wall


def run_sequential(rows: list[tuple[str, Path]], out: Path, options: list[str]) -> Measurement:
    """One fresh ``lungai run`` process per case, one after another."""
    wall, stages = 0.0, []
    for case_id, scan in rows:
        case_out = out / case_id
        wall += _timed(_lungai("run", str(scan), "-o", str(case_out), "--progress", "none", *options),
                       f"lungai run {case_id}")
        stages.append(stage_seconds(json.loads((case_out / "findings.json").read_text())))
        logger.info("run %s: %.1f s of stages", case_id, stages[-1])
    return Measurement("sequential `lungai run`", 1, wall, tuple(stages))


def run_batch(case_csv: Path, case_ids: list[str], out: Path, workers: int, threads: int,
              options: list[str]) -> Measurement:
    """One ``lungai batch`` over the CSV on a local cluster of ``workers`` x ``threads``."""
    wall = _timed(_lungai("batch", str(case_csv), "-o", str(out), "--workers", str(workers),
                          "--threads-per-worker", str(threads), "--progress", "none", *options),
                  f"lungai batch {workers}x{threads}")
    stages = tuple(stage_seconds(json.loads((out / case_id / "findings.json").read_text())) for case_id in case_ids)
    return Measurement(f"`lungai batch` {workers} worker(s) x {threads} thread(s)", workers * threads, wall, stages)


def summarize(runs: list[Measurement], reference_wall_s: float) -> dict[str, float]:
    """Medians over a mode's repeats: wall, cases/min, throughput ratio, both overheads, mean stage time."""
    cases = len(runs[0].stage_s)
    return {
        "wall": statistics.median(run.wall_s for run in runs),
        "per_min": statistics.median(60 * cases / run.wall_s for run in runs),
        "ratio": statistics.median(throughput_ratio(reference_wall_s, run.wall_s) for run in runs),
        "overhead": statistics.median(overhead_per_case(run.wall_s, run.stage_s) for run in runs),
        "slot_overhead": statistics.median(overhead_per_case(run.wall_s, run.stage_s, run.slots) for run in runs),
        "stages": statistics.median(sum(run.stage_s) / cases for run in runs),
    }


def markdown_table(results: dict[str, list[Measurement]], cases: int, tasks: str, repeats: int, machine: str) -> str:
    """The table: one row per mode, the sequential runs first (the throughput reference)."""
    reference = statistics.median(run.wall_s for run in next(iter(results.values())))
    lines = ["| mode | slots | wall (s) | cases/min | throughput vs sequential | (wall - Σ stages) / case (s) "
             "| (wall × slots - Σ stages) / case (s) | stages per case (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for mode, runs in results.items():
        row = summarize(runs, reference)
        lines.append(f"| {mode} | {runs[0].slots} | {row['wall']:.1f} | {row['per_min']:.2f} | {row['ratio']:.2f}x "
                     f"| {row['overhead']:.1f} | {row['slot_overhead']:.1f} | {row['stages']:.1f} |")
    return ("\n".join(lines) + f"\n\n{cases} cases (LIDC-IDRI-0001 DICOM zip and LIDC-IDRI-0002 NRRD in turn), "
            f"tasks {tasks}; median of {repeats} run(s); machine: {machine}.\n")


def machine_description() -> str:
    """CPU, cores, memory and load of this machine (as in bench_run.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_run import machine_description as describe

    return describe()


def measure(data: Path, count: int, layouts: list[tuple[int, int]], options: list[str], repeats: int,
            tmp: Path) -> dict[str, list[Measurement]]:
    """Every mode ``repeats`` times, into fresh folders under ``tmp``; sequential runs first."""
    rows = case_rows(data, count)
    case_csv = write_case_csv(rows, tmp / "cases.csv")
    results: dict[str, list[Measurement]] = {}
    for repeat in range(repeats):
        sequential = run_sequential(rows, tmp / f"run-{repeat}", options)
        results.setdefault(sequential.mode, []).append(sequential)
        logger.info("%s: %.1f s", sequential.mode, sequential.wall_s)
        for workers, threads in layouts:
            out = tmp / f"batch-{workers}x{threads}-{repeat}"
            batch = run_batch(case_csv, [case_id for case_id, _ in rows], out, workers, threads, options)
            results.setdefault(batch.mode, []).append(batch)
            logger.info("%s: %.1f s", batch.mode, batch.wall_s)
    return results


def main() -> None:
    """Run the benchmark and print (or also write) the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("LUNGAI_TEST_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--cases", type=int, default=4, help="number of cases N (default 4)")
    parser.add_argument("--tasks", default="lungs,emphysema", help="--tasks of every run (default lungs,emphysema)")
    parser.add_argument("--layouts", default="1x1,1x2,2x1",
                        help="comma-separated WORKERSxTHREADS batch layouts (default 1x1,1x2,2x1)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for scan in SCANS:
        if not (args.data / scan).exists():
            raise SystemExit(f"benchmark scan missing: {args.data / scan}")
    options = ["--tasks", args.tasks, "--device", args.device]
    layouts = [parse_layout(text) for text in args.layouts.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_batch_", dir="/tmp") as tmp:
        results = measure(args.data, args.cases, layouts, options, args.repeats, Path(tmp))
    table = markdown_table(results, args.cases, args.tasks, args.repeats, machine_description())
    print(table)
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
