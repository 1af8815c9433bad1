"""The run protocol: start the command line, follow its progress, cancel it, report one line.

:class:`CliRun` knows nothing of Qt: the Slicer module calls :meth:`CliRun.poll` from a
timer, so the GUI never waits on the process. The process comes from an injected
:data:`~lungai.slicer.process.Launcher`, which lets tests drive the protocol with a fake.

Cancelling first interrupts the process tree (the command line then removes its partial
outputs) and kills it if it has not ended after a grace period.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lungai.errors import EXIT_CODES
from lungai.slicer.process import BackgroundProcess, ChildProcess, Launcher
from lungai.slicer.progress import ProgressUpdate, parse_progress_line

logger = logging.getLogger(__name__)

#: Seconds a cancelled run may take to clean up before its process tree is killed.
CANCEL_GRACE_S = 3.0

#: stderr lines kept for the error message and the log.
_STDERR_LINES_KEPT = 200


class RunStatus(enum.Enum):
    """How a run ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunOutcome:
    """The end of a run.

    Attributes:
        status: succeeded, failed or cancelled.
        exit_code: the process's exit code; ``None`` if it never started.
        message: one line for the user: the error for a failed run, empty otherwise.
        output: the output folder of a successful run.
    """

    status: RunStatus
    exit_code: int | None
    message: str = ""
    output: Path | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the run succeeded."""
        return self.status is RunStatus.SUCCEEDED


def _ignore(_update: ProgressUpdate) -> None:
    """A progress callback that does nothing."""


class CliRun:
    """One ``lungai run`` in a background process, driven by :meth:`poll`.

    Example::

        run = CliRun(command, on_progress=show)
        run.start()
        # from a GUI timer, until it returns an outcome:
        outcome = run.poll()

    Args:
        command: the command line (see :func:`lungai.slicer.command.build_run_command`).
        output: the output folder the command writes (``-o``).
        launcher: starts the process; default :class:`~lungai.slicer.process.BackgroundProcess`.
        on_progress: called with each progress update, from :meth:`poll`.
        grace_s: seconds a cancelled process may take to end before it is killed.
        clock: monotonic seconds; injected by tests.
    """

    def __init__(self, command: Sequence[str], output: Path, *, launcher: Launcher = BackgroundProcess,
                 on_progress: Callable[[ProgressUpdate], None] = _ignore, grace_s: float = CANCEL_GRACE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._command = list(command)
        self._output = Path(output)
        self._launcher = launcher
        self._on_progress = on_progress
        self._grace_s = grace_s
        self._clock = clock
        self._process: ChildProcess | None = None
        self._outcome: RunOutcome | None = None
        self._kill_at: float | None = None
        self._killed = False
        self._done = False
        self._error_event: ProgressUpdate | None = None
        self._stderr: deque[str] = deque(maxlen=_STDERR_LINES_KEPT)

    @property
    def running(self) -> bool:
        """Whether the run has started and has no outcome yet."""
        return self._process is not None and self._outcome is None

    @property
    def outcome(self) -> RunOutcome | None:
        """How the run ended; ``None`` while it runs."""
        return self._outcome

    @property
    def stderr_tail(self) -> list[str]:
        """The last lines the process wrote on stderr (its log)."""
        return list(self._stderr)

    def start(self) -> None:
        """Start the process; a process that cannot start gives a failed outcome at once.

        Raises:
            RuntimeError: the run was started before.
        """
        if self._process is not None or self._outcome is not None:
            raise RuntimeError("this run was started already")
        try:
            self._process = self._launcher(self._command)
        except OSError as error:
            self._outcome = RunOutcome(RunStatus.FAILED, None,
                                       f"cannot start {self._command[0]} ({error.strerror or error})")
            logger.error("LungAI: %s", self._outcome.message)

    def poll(self) -> RunOutcome | None:
        """Read what the process wrote, report progress and check whether it has ended.

        Returns:
            The outcome once the run has ended (also on later calls), else ``None``.
        """
        if self._outcome is not None or self._process is None:
            return self._outcome
        self._read(self._process)
        code = self._process.poll()
        if code is None:
            if self._kill_at is not None and not self._killed and self._clock() >= self._kill_at:
                logger.warning("LungAI did not stop within %.0f s of cancelling; killing it", self._grace_s)
                self._process.kill()
                self._killed = True
            return None
        self._read(self._process)
        self._outcome = self._finish(code)
        return self._outcome

    def cancel(self, immediately: bool = False) -> None:
        """Stop the run; :meth:`poll` then reports it cancelled once the process has ended.

        Args:
            immediately: kill the process tree now instead of letting it clean up first
                (for closing the application).
        """
        if not self.running:
            return
        assert self._process is not None
        if immediately:
            self._process.kill()
            self._killed = True
        elif self._kill_at is None:
            self._process.interrupt()
        if self._kill_at is None:
            self._kill_at = self._clock() + self._grace_s
            logger.info("LungAI run cancelled")

    def _read(self, process: ChildProcess) -> None:
        stdout, stderr = process.read_lines()
        for line in stderr:
            self._stderr.append(line)
            logger.info("lungai: %s", line)
        for line in stdout:
            update = parse_progress_line(line)
            if update is None:
                continue
            if update.event == "error":
                self._error_event = update
            elif update.event == "done":
                self._done = True
            self._on_progress(update)

    def _finish(self, code: int) -> RunOutcome:
        if self._kill_at is not None:
            return RunOutcome(RunStatus.CANCELLED, code)
        if code == 0 and self._done:
            logger.info("LungAI finished; outputs in %s", self._output)
            return RunOutcome(RunStatus.SUCCEEDED, code, output=self._output)
        message = failure_message(code, self._error_event, self._stderr)
        logger.error("LungAI failed (exit code %d): %s", code, message)
        return RunOutcome(RunStatus.FAILED, code, message)


def failure_message(code: int, error_event: ProgressUpdate | None, stderr: Iterable[str]) -> str:
    """The one line to show for a failed run.

    Args:
        code: the exit code (negative: the process was ended by that signal, on POSIX).
        error_event: the run's ``error`` progress event, if it printed one.
        stderr: what the process wrote on stderr.

    Returns:
        The core's own one-line message when it gave one (from the ``error`` event or the
        last ``error: ...`` line on stderr, whatever its case), else a description of the
        exit code.
    """
    if error_event is not None and error_event.message:
        return error_event.message
    errors = [line.strip()[len("error:"):].strip() for line in stderr
              if line.strip().lower().startswith("error:")]  # click writes "Error: ..." for usage errors
    if errors:
        return errors[-1]
    if code == 0:
        return "lungai ended without reporting its results; see the log for details"
    if code < 0:
        return (f"lungai was ended by signal {-code}; if the computer ran out of memory, "
                "close other programs or choose fewer tasks")
    meaning = EXIT_CODES.get(code, "unknown error; see the log for details")
    return f"lungai stopped with exit code {code}: {meaning}"
