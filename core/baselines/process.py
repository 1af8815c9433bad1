"""Run a command as a child process, logging its output and measuring its wall time and peak memory."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measured:
    """A finished child process.

    Attributes:
        returncode: its exit status.
        seconds: wall time from start to exit (start-up and model loading included).
        peak_rss_mb: peak resident memory of the child and of the children it waited for.
    """

    returncode: int
    seconds: float
    peak_rss_mb: float


def run_measured(command: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> Measured:
    """Run ``command``, appending the command line and its stdout/stderr to ``log``.

    Args:
        command: program and arguments.
        log: the log file (appended to; its folder is created).
        env: the child's environment (default: this process's).

    Returns:
        Exit status, wall time and peak memory (from ``os.wait4``, so only this child counts).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    logger.info("running %s (log: %s)", shlex.join(command), log)
    start = time.perf_counter()
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n$ {shlex.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(list(command), env=None if env is None else dict(env), stdout=handle,
                                   stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux.
    return Measured(process.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024.0)
