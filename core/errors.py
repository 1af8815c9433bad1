"""Errors that LungAI reports to users as one line, each with a documented exit code.

Every failure a user can cause (a bad path, a file that is not CT, a scan without lungs)
raises a :class:`LungAIError` subclass. The command line prints ``error: <message>`` and
exits with the class's ``exit_code``; no traceback is shown. The codes are listed in
``docs/exit-codes.md`` and tested in ``tests/cli``.
"""

from __future__ import annotations


class LungAIError(Exception):
    """Base of all user-facing errors.

    Args:
        problem: what is wrong, naming the offending thing.
        fix: what the user can do about it.
    """

    exit_code = 1

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The one-line message shown to users."""
        return f"{self.problem}; {self.fix}" if self.fix else self.problem


class InputNotFoundError(LungAIError):
    """The input path does not exist or is neither a file nor a folder."""

    exit_code = 3


class DemoScanUnavailableError(InputNotFoundError):
    """``lungai demo --real`` cannot get its real scan (offline, no pip, or no such wheel file)."""


class UnreadableInputError(LungAIError):
    """The input exists but cannot be read as an image (corrupt, unknown format, empty folder)."""

    exit_code = 4


class NotCTError(LungAIError):
    """The image is readable but is not a usable chest CT volume (hard check)."""

    exit_code = 5


class SuspiciousInputError(NotCTError):
    """A soft check failed: the image may still be CT; ``--force`` skips these checks."""

    exit_code = 6


class NoLungsFoundError(LungAIError):
    """No lung tissue of plausible size was found in the scan."""

    exit_code = 7


class OutputExistsError(LungAIError):
    """The output folder exists and ``--overwrite`` was not given."""

    exit_code = 8


class OutputNotWritableError(LungAIError):
    """The output folder cannot be created or written (permissions, read-only disk)."""

    exit_code = 11


class ResourceError(LungAIError):
    """The scan is too large for the memory of this machine, or a device is unavailable."""

    exit_code = 9


class WeightsError(LungAIError):
    """Model weights are missing or fail verification."""

    exit_code = 10


class MissingExtraError(LungAIError):
    """An optional dependency (an extra such as ``lungai[nnunet]``) is not installed."""

    exit_code = 12


class ExternalToolError(LungAIError):
    """An external tool that LungAI runs (an nnU-Net command) failed; its log names the cause."""

    exit_code = 13


class AmbiguousInputError(LungAIError):
    """The input holds CT series of several patients or studies and none was chosen with ``--series``."""

    exit_code = 14


class CaseListError(LungAIError):
    """``lungai batch``'s inputs give no usable list of cases (duplicate case ids, a malformed CSV, no scans)."""

    exit_code = 2


class CasesFailedError(LungAIError):
    """Some cases of a ``lungai batch`` failed; the others are done (``cohort.csv`` gives each failure)."""

    exit_code = 15


class DifferentPatientError(LungAIError):
    """``lungai follow-up``: the prior and current scans carry different DICOM PatientIDs (``--force`` allows it)."""

    exit_code = 16


class ScanOrderError(LungAIError):
    """``lungai follow-up``: the prior scan is dated after the current one."""

    exit_code = 17


class RegistrationError(LungAIError):
    """``lungai follow-up``: the two scans' lungs do not overlap after registration."""

    exit_code = 18


class PriorOutputMismatchError(LungAIError):
    """``lungai follow-up``: an output folder given as input does not match its scan, or another version wrote it."""

    exit_code = 19


#: Exit codes of a run stopped by a signal: 128 + the signal number, as shells report it.
SIGNAL_EXIT_CODES: dict[str, int] = {"SIGHUP": 129, "SIGTERM": 143}


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error (LUNGAI_DEBUG=1 shows the traceback; please report it)",
    2: "invalid command-line usage (for lungai batch also: duplicate case ids, a malformed case CSV, no scans)",
    InputNotFoundError.exit_code: "input path does not exist or is not a file/folder",
    UnreadableInputError.exit_code: "input cannot be read as an image (corrupt, unknown format, empty DICOM folder)",
    NotCTError.exit_code: "image is not a usable CT volume (modality, 2D, too few slices, RGB, NaN/inf, spacing)",
    SuspiciousInputError.exit_code: "soft check failed (intensities not in HU, ...); --force skips it",
    NoLungsFoundError.exit_code: "no lungs found in the scan",
    OutputExistsError.exit_code: "output exists; use --overwrite or another -o",
    ResourceError.exit_code: "not enough memory for the scan, or the requested device is unavailable",
    WeightsError.exit_code: "model weights missing or failed verification",
    OutputNotWritableError.exit_code: "the output folder cannot be written",
    MissingExtraError.exit_code: "an optional dependency is not installed (e.g. pip install lungai[nnunet])",
    ExternalToolError.exit_code: "an external tool (nnU-Net) failed; see the log it names",
    AmbiguousInputError.exit_code: "the input holds several patients or studies; choose one series with --series",
    CasesFailedError.exit_code: "lungai batch: some cases failed, the others are done; cohort.csv gives each error",
    DifferentPatientError.exit_code: "lungai follow-up: the two scans have different PatientIDs; --force compares them",
    ScanOrderError.exit_code: "lungai follow-up: the prior scan is dated after the current one",
    RegistrationError.exit_code: "lungai follow-up: the two scans' lungs do not overlap after registration",
    PriorOutputMismatchError.exit_code: ("lungai follow-up: a LungAI output folder given as input does not match "
                                         "its scan or was made by an incompatible version"),
    SIGNAL_EXIT_CODES["SIGHUP"]: "stopped by SIGHUP (its terminal closed), handled like Ctrl-C",
    130: "interrupted by the user (Ctrl-C)",
    SIGNAL_EXIT_CODES["SIGTERM"]: "stopped by SIGTERM (kill, timeout, SLURM, docker stop), handled like Ctrl-C",
}
