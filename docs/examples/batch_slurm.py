"""Run ``lungai batch`` on a SLURM cluster: dask-jobqueue starts the Dask workers as SLURM jobs.

Run this on a login node (or in a small SLURM job) with the LungAI environment active. It starts
a Dask scheduler here, asks SLURM for ``--jobs`` jobs of ``--cores`` Dask workers each, and runs
``lungai batch INPUT... -o OUT_DIR --scheduler <address>``; every option after ``--`` goes to
``lungai batch`` unchanged (``--tasks``, ``--sensitivity``, ...). The inputs, the output folder and
the LungAI environment must be on a file system that the compute nodes see at the same paths.
Rerunning the same command resumes the batch. Needs ``pip install dask-jobqueue`` (not a LungAI
dependency).

Example::

    python docs/examples/batch_slurm.py /shared/cohort/cases.csv -o /shared/cohort/out \
        --jobs 20 --memory 8GiB --walltime 04:00:00 --partition cpu -- --tasks lungs,emphysema
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from typing import Any

logger = logging.getLogger("batch_slurm")

MISSING = ("dask-jobqueue is not installed: `pip install dask-jobqueue` in the environment that runs this "
           "script (the SLURM workers need only LungAI)")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """This script's options, and the options after ``--`` that go to ``lungai batch``."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="Options after -- are passed to `lungai batch`.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="what `lungai batch` takes: folders, CSVs, globs")
    parser.add_argument("-o", "--output", required=True, help="the batch folder, on the shared file system")
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs (default 4)")
    parser.add_argument("--cores", type=int, default=2,
                        help="CPU cores per job, one single-threaded Dask worker each (default 2)")
    parser.add_argument("--memory", default="8GiB",
                        help="memory per job, shared by its workers (default 8GiB: 4GiB a worker; a case peaks "
                             "near 1.2 GB)")
    parser.add_argument("--walltime", default="02:00:00", help="SLURM time limit per job (default 02:00:00)")
    parser.add_argument("--partition", default=None, help="SLURM partition (queue)")
    parser.add_argument("--account", default=None, help="SLURM account")
    parser.add_argument("--prologue", action="append", default=[],
                        help="shell line run before each worker starts, e.g. 'source /shared/lungai/.venv/bin/activate'"
                             " (repeatable)")
    parser.add_argument("--local-directory", default="/tmp", help="node-local scratch for Dask (default /tmp)")
    return parser.parse_args(argv[:split]), argv[split + 1:]


def start_cluster(args: argparse.Namespace) -> Any:
    """A dask_jobqueue SLURMCluster of ``args.jobs`` jobs, each with ``--cores`` single-threaded workers.

    A worker runs one case at a time on one core: Dask's nanny starts workers with
    ``OMP_NUM_THREADS=1``, so torch in a case uses one thread. Each worker keeps one copy of the
    models and gets ``--memory`` / ``--cores`` of memory; Dask restarts a worker that passes it and
    gives its case to another.

    Raises:
        SystemExit: dask-jobqueue is not installed.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise SystemExit(MISSING) from None
    cluster = SLURMCluster(cores=args.cores, processes=args.cores, memory=args.memory, walltime=args.walltime,
                           queue=args.partition, account=args.account, job_script_prologue=args.prologue,
                           local_directory=args.local_directory)
    logger.info("SLURM job script of each worker:\n%s", cluster.job_script())
    cluster.scale(jobs=args.jobs)
    return cluster


def batch_command(args: argparse.Namespace, scheduler: str, extra: list[str]) -> list[str]:
    """``lungai batch`` with this Python, on the cluster at ``scheduler``."""
    return [sys.executable, "-m", "lungai.cli", "batch", *args.inputs, "-o", args.output,
            "--scheduler", scheduler, *extra]


def main(argv: list[str] | None = None) -> int:
    """Start the cluster, run the batch on it, stop the cluster; the batch's exit code."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args, extra = parse_args(argv)
    cluster = start_cluster(args)
    try:
        command = batch_command(args, cluster.scheduler_address, extra)
        logger.info("running: %s", " ".join(command))
        return subprocess.call(command)
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
