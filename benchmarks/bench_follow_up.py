"""Wall time and peak memory of ``lungai follow-up`` on two LIDC-size scans.

The pair: LIDC-IDRI-0002 (NRRD, 512x512x261, 0.68x0.68x1.25 mm; a test patient, used here for
speed only) as the prior, and the same chest moved through an affine transform (3 degrees, 2 %
scale, a 6 mm shift) onto a 0.75x0.75x1.25 mm grid as the current scan. Each follow-up is a fresh
process (imports and reading count as a user sees them); its stages come from
``follow_up.json`` ``timings_s`` (read: reading and checking both scans; analyse: both
``lungai run`` pipelines, lungs and nodules; register; match: matching and segmentation at mapped
positions; the process's wall time adds start-up, imports and writing). A second run reuses the
first one's ``prior/`` and ``current/`` folders (no pipeline), as ``lungai follow-up prior_out/
current_out/`` does.

Usage::

    python benchmarks/bench_follow_up.py [--data ../shared/data] [--repeats 1] [--device cpu]
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

import numpy as np
import SimpleITK as sitk

logger = logging.getLogger("bench_follow_up")

REPO = Path(__file__).resolve().parents[1]
SCAN = Path("lidc_scans/LIDC-IDRI-0002/LIDC-IDRI-0002.nrrd")
STAGES = ("read", "analyse", "register", "match")


def make_pair(scan: Path, folder: Path) -> tuple[Path, Path]:
    """Write the prior (the scan as it is) and the moved current scan into ``folder``."""
    prior = sitk.ReadImage(str(scan))
    angle = np.deg2rad(3.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    transform = sitk.AffineTransform(3)
    transform.SetMatrix((rotation @ np.diag([1.02, 1.0, 1.0])).ravel().tolist())
    transform.SetTranslation((4.0, -6.0, 3.0))
    size = np.array(prior.GetSize())
    transform.SetCenter(prior.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2.0).tolist()))
    spacing = (0.75, 0.75, 1.25)
    grid = sitk.Image([int(n * s / t) for n, s, t in zip(prior.GetSize(), prior.GetSpacing(), spacing)],
                      sitk.sitkInt16)
    grid.SetSpacing(spacing)
    grid.SetOrigin(prior.GetOrigin())
    grid.SetDirection(prior.GetDirection())
    current = sitk.Resample(prior, grid, transform, sitk.sitkLinear, -1024, sitk.sitkInt16)
    paths = folder / "prior.nrrd", folder / "current.nrrd"
    sitk.WriteImage(prior, str(paths[0]), True)
    sitk.WriteImage(current, str(paths[1]), True)
    return paths


def run_once(prior: Path, current: Path, out: Path, device: str) -> dict[str, float]:
    """One ``lungai follow-up`` in a child process: its stage seconds, wall seconds and peak MB."""
    command = [sys.executable, "-c",
               "import resource, sys; from lungai.cli.main import main\n"
               "try:\n    main(sys.argv[1:])\nfinally:\n"
               "    print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)",
               "-q", "follow-up", str(prior), str(current), "-o", str(out), "--device", device,
               "--interval-days", "180"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"lungai follow-up failed: {result.stderr.strip()}")
    peak_kb = next(int(line.split()[1]) for line in result.stderr.splitlines() if line.startswith("PEAK_KB"))
    timings = json.loads((out / "follow_up.json").read_text())["timings_s"]
    return {**{stage: float(timings.get(stage, 0.0)) for stage in STAGES}, "wall (process)": wall,
            "peak memory (MB)": peak_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows: dict[str, list[dict[str, float]]] = {"scans": [], "reused output folders": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prior, current = make_pair(args.data / SCAN, folder)
        for repeat in range(args.repeats):
            first = folder / f"out{repeat}"
            rows["scans"].append(run_once(prior, current, first, args.device))
            rows["reused output folders"].append(run_once(first / "prior", first / "current",
                                                          folder / f"reuse{repeat}", args.device))
    keys = list(rows["scans"][0])
    logger.info("| seconds | %s |", " | ".join(rows))
    logger.info("|---|%s", "---|" * len(rows))
    for key in keys:
        logger.info("| %s | %s |", key, " | ".join(f"{statistics.median(r[key] for r in runs):.1f}"
                                                 for runs in rows.values()))
    logger.info("Median of %d; %s, %d cores, Python %s; 1-minute load average %.1f at the end.", args.repeats,
                platform.processor() or platform.machine(), os.cpu_count() or 0, platform.python_version(),
                os.getloadavg()[0])


if __name__ == "__main__":
    main()
