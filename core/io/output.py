"""An output folder that appears complete or not at all.

A run writes into a hidden temporary folder next to the final one (same file system, so
the final move is a rename) and moves it into place only when everything succeeded. A
failed or interrupted run leaves no half-written outputs, and an existing output folder
is replaced only at the very end of a successful run, and only when asked to.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lungai.errors import OutputExistsError, OutputNotWritableError

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".lungai-tmp-"
_OLD_PREFIX = ".lungai-old-"


@contextmanager
def staged_output(final_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Stage a run's outputs in a temporary folder and move them to ``final_dir`` on success.

    Example::

        with staged_output(Path("out/scan1"), overwrite=False) as folder:
            write_findings_json(findings, folder / "findings.json")

    Args:
        final_dir: the output folder to create; its parent is created if missing.
        overwrite: replace an existing ``final_dir`` (only once the block has succeeded).

    Yields:
        The empty temporary folder to write into.

    Raises:
        OutputExistsError: ``final_dir`` exists and ``overwrite`` is false (checked before the
            block runs and again before the move), or ``final_dir`` is not a folder.
        OutputNotWritableError: the output location cannot be written.
    """
    final_dir = Path(final_dir).absolute()
    check_output_target(final_dir, overwrite)
    # Stage in the nearest existing ancestor, so a failed run creates no parent folders either.
    anchor = next(parent for parent in final_dir.parents if parent.exists())
    staging = _unused_hidden_path(anchor, TEMP_PREFIX)
    try:
        staging.mkdir()  # permissions follow the umask, as for any folder the user creates
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write in {anchor} ({exc.strerror})",
                                     "choose an output folder you can write to with -o") from exc
    logger.debug("staging outputs in %s", staging)
    try:
        yield staging
        check_output_target(final_dir, overwrite)
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        _move_into_place(staging, final_dir)
    except BaseException:  # KeyboardInterrupt and SystemExit too: never leave a half output
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("outputs written to %s", final_dir)


def check_output_target(final_dir: Path, overwrite: bool) -> None:
    """Check that outputs may be written to ``final_dir``, before any work starts.

    :func:`staged_output` runs this check itself; calling it earlier lets a run fail
    before any slow set-up.

    Args:
        final_dir: the output folder.
        overwrite: whether an existing output folder may be replaced.

    Raises:
        OutputExistsError: ``final_dir`` exists and ``overwrite`` is false, or ``final_dir``
            is a file or a link rather than a folder.
    """
    final_dir = Path(final_dir)
    if final_dir.is_symlink() or (final_dir.exists() and not final_dir.is_dir()):
        raise OutputExistsError(f"output path {final_dir} is a file or a link, not a folder",
                                "choose another output folder with -o")
    if final_dir.exists() and not overwrite:
        raise OutputExistsError(f"output folder {final_dir} already exists",
                                "use --overwrite or choose another output folder with -o")


def _unused_hidden_path(parent: Path, prefix: str) -> Path:
    """A path in ``parent`` named ``prefix`` + random hex that does not exist yet."""
    while True:
        candidate = parent / f"{prefix}{secrets.token_hex(4)}"
        if not candidate.exists():
            return candidate


def _move_into_place(staging: Path, final_dir: Path) -> None:
    """Rename ``staging`` to ``final_dir``, replacing an existing ``final_dir``.

    The old folder is first renamed aside, so that if the second rename fails it can be
    put back unchanged.
    """
    if not final_dir.exists():
        staging.rename(final_dir)
        return
    old = _unused_hidden_path(final_dir.parent, _OLD_PREFIX)
    final_dir.rename(old)
    try:
        staging.rename(final_dir)
    except BaseException:
        old.rename(final_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        logger.warning("could not fully remove the previous outputs in %s; delete it by hand", old)
    logger.debug("replaced the previous %s", final_dir)
