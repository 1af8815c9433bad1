"""Per-stage wall time and peak memory of ``lungai run`` on the real LIDC test scans.

Each run is a fresh process (``python -m lungai.cli run``), so imports and reading count
as a user sees them. Stage times come from the run's ``findings.json``; the peak memory
is the child process's maximum resident set size.

Every task whose weights are installed runs (``--tasks`` to choose), so the table has one row
per stage: read, lungs, nodules, malignancy, emphysema, write.

Usage::

    python benchmarks/bench_run.py [--data ../shared/data] [--repeats 3] [--scans 0001] \
        [--weights-manifest weights/manifest.json] [--tasks lungs,nodules] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("bench_run")

REPO = Path(__file__).resolve().parents[1]
SCANS = {
    "LIDC-IDRI-0001 (DICOM zip, 512x512x133)": Path("lidc_scans/LIDC-IDRI-0001/dicom.zip"),
    "LIDC-IDRI-0002 (NRRD, 512x512x261)": Path("lidc_scans/LIDC-IDRI-0002/LIDC-IDRI-0002.nrrd"),
}


def run_once(scan: Path, device: str, extra: list[str] | None = None) -> dict[str, float]:
    """One ``lungai run`` in a child process: stage seconds, total seconds and peak MB.

    Args:
        scan: the scan.
        device: ``--device``.
        extra: more ``lungai run`` options (``--tasks``, ``--weights-manifest``).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        command = [sys.executable, "-c",
                   "import resource, sys; from lungai.cli.main import main\n"
                   "try:\n    main(sys.argv[1:])\nfinally:\n"
                   "    print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)",
                   "-q", "run", str(scan), "-o", str(out), "--device", device, "--progress", "none", *(extra or [])]
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        total = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"lungai run failed on {scan}: {result.stderr.strip()}")
        peak_kb = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("PEAK_KB"))
        timings = json.loads((out / "findings.json").read_text())["run"]["timings_s"]
    return {**timings, "total (process)": total, "peak_mb": peak_kb / 1024}


def machine_description() -> str:
    """CPU model, core count and memory of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (f"{cpu}, {os.cpu_count()} cores, {memory_gb:.0f} GB RAM, Python {platform.python_version()}; "
            f"1-minute load average {load:.1f} at the end (other work on the machine inflates times)")


def markdown_table(results: dict[str, list[dict[str, float]]], repeats: int) -> str:
    """Median per stage over the repeats, one column per scan."""
    names = list(results)
    stages: list[str] = []
    for runs in results.values():
        for key in runs[0]:
            if key not in stages:
                stages.append(key)
    lines = ["| stage | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for stage in stages:
        unit = "MB" if stage == "peak_mb" else "s"
        label = "peak memory (MB)" if stage == "peak_mb" else f"{stage} (s)"
        cells = []
        for name in names:
            values = [run[stage] for run in results[name] if stage in run]
            cells.append(f"{statistics.median(values):.0f}" if unit == "MB" else f"{statistics.median(values):.2f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nMedian of {repeats} runs; machine: {machine_description()}.\n"


def main() -> None:
    """Run the benchmark and print (or write) the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("LUNGAI_TEST_DATA", REPO.parent / "shared" / "data")))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--scans", default=",".join(name.split()[0][-4:] for name in SCANS),
                        help="comma-separated scan numbers to run (default: all)")
    parser.add_argument("--tasks", default=None, help="lungai run --tasks (default: all with weights)")
    parser.add_argument("--weights-manifest", type=Path, default=None, help="lungai run --weights-manifest")
    args = parser.parse_args()
    extra = (["--tasks", args.tasks] if args.tasks else []) + (
        ["--weights-manifest", str(args.weights_manifest)] if args.weights_manifest else [])
    chosen = args.scans.split(",")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results: dict[str, list[dict[str, float]]] = {}
    for name, relative in SCANS.items():
        if name.split()[0][-4:] not in chosen:
            continue
        scan = args.data / relative
        if not scan.exists():
            raise SystemExit(f"benchmark scan missing: {scan}")
        results[name] = []
        for repeat in range(args.repeats):
            results[name].append(run_once(scan, args.device, extra))
            logger.info("%s run %d: %.1f s, %.0f MB", name, repeat + 1, results[name][-1]["total (process)"],
                        results[name][-1]["peak_mb"])
    table = markdown_table(results, args.repeats)
    sys.stdout.write(table)
    if args.markdown:
        args.markdown.write_text(table)


if __name__ == "__main__":
    main()
