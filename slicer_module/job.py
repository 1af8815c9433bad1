"""One analysis started from Slicer: its run folder, the command-line run, loading the outputs.

:class:`AnalysisJob` decides what is kept: a successful run's outputs are loaded (the
exported scan is deleted, the outputs stay for "Save report"); a failed, cancelled or
unloadable run leaves no files and, because loading happens only after success and undoes
itself on failure, no nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lungai.slicer.process import BackgroundProcess, Launcher
from lungai.slicer.progress import ProgressUpdate
from lungai.slicer.run_folder import RunFolder
from lungai.slicer.runner import CliRun, RunOutcome, RunStatus

logger = logging.getLogger(__name__)


def _ignore(_update: ProgressUpdate) -> None:
    """A progress callback that does nothing."""


class AnalysisJob:
    """Run the command line in ``folder`` and load what it wrote.

    Args:
        folder: the run's folder; the command writes into ``folder.output``.
        command: the command line (see :func:`lungai.slicer.command.build_run_command`).
        load: turns the output folder into scene nodes, e.g. a partial of
            :func:`lungai.slicer.mrml.load_results`.
        launcher: starts the process.
        on_progress: called with each progress update.
        input_name: what users call the input (the volume's name); error messages name it
            instead of the exported file's temporary path.
    """

    def __init__(self, folder: RunFolder, command: Sequence[str], load: Callable[[Path], Any], *,
                 launcher: Launcher = BackgroundProcess, on_progress: Callable[[ProgressUpdate], None] = _ignore,
                 input_name: str | None = None) -> None:
        self.folder = folder
        self._load = load
        self._input_name = input_name
        self._run = CliRun(command, folder.output, launcher=launcher, on_progress=on_progress)
        self._ended: tuple[RunOutcome, Any | None] | None = None

    def start(self) -> None:
        """Start the command line (a start failure shows up in the first :meth:`poll`)."""
        self._run.start()

    def poll(self) -> tuple[RunOutcome, Any | None] | None:
        """Follow the run; once it has ended, load or clean up.

        Returns:
            ``None`` while the run goes on; then the outcome and the loaded results (``None``
            unless the run succeeded and its outputs were loaded; a loading error turns the
            outcome into a failure with a one-line message).
        """
        if self._ended is not None:
            return self._ended
        outcome = self._run.poll()
        if outcome is None:
            return None
        results = None
        if outcome.succeeded:
            self.folder.remove_scan()
            try:
                results = self._load(outcome.output or self.folder.output)
            except Exception as error:  # noqa: BLE001 - any loading problem becomes the run's one-line error
                logger.exception("the outputs in %s could not be loaded", outcome.output)
                outcome = RunOutcome(RunStatus.FAILED, outcome.exit_code,
                                     f"the results could not be loaded ({error})")
        if results is None:
            self.folder.discard()
        if outcome.message and self._input_name is not None:
            outcome = replace(outcome, message=outcome.message.replace(str(self.folder.scan), f"'{self._input_name}'"))
        self._ended = (outcome, results)
        return self._ended

    def cancel(self, immediately: bool = False) -> None:
        """Stop the run (see :meth:`CliRun.cancel`); ``immediately`` also deletes its files now.

        Args:
            immediately: kill the process tree and delete the run folder at once (application
                exit, when no further :meth:`poll` will come).
        """
        self._run.cancel(immediately=immediately)
        if immediately:
            self.folder.discard()
