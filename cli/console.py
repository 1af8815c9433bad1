"""What the command line logs on stderr: each message once, warnings of a run printed with its results.

A run's warnings that end up in its findings are printed once, in the summary on stdout. While a
run is in progress the console therefore holds warnings back (:func:`warnings_after_results`);
once the summary is printed it lets through those the summary did not show, and a failed run
lets them all through before its ``error:`` line. With ``-v`` nothing is held back.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"


class ConsoleFilter(logging.Filter):
    """Drops a message already shown, and holds warnings back while :attr:`holding`."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.held: list[logging.LogRecord] = []
        self._shown: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        if key in self._shown:
            return False
        if self.holding and record.levelno == logging.WARNING:
            if all(held.getMessage() != key[1] for held in self.held):
                self.held.append(record)
            return False
        self._shown.add(key)
        return True


class _Console:
    """The stderr handler of the ``lungai`` logger and its filter."""

    handler: logging.Handler | None = None
    filter: ConsoleFilter | None = None


def setup_logging(verbose: int, quiet: bool) -> None:
    """Log ``lungai`` messages to stderr: warnings and errors (``-q``: errors), ``-v`` info, ``-vv`` debug."""
    level = logging.ERROR if quiet else logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    handler.setLevel(level)
    _Console.filter = ConsoleFilter()
    handler.addFilter(_Console.filter)
    _Console.handler = handler
    root = logging.getLogger("lungai")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)


class HeldWarnings:
    """The warnings held back during a run; :meth:`release` prints those the results did not show."""

    def __init__(self, console_filter: ConsoleFilter | None, handler: logging.Handler | None) -> None:
        self._filter, self._handler = console_filter, handler

    def release(self, shown: Sequence[str] = ()) -> None:
        """Print each held warning that is not (the start of) one of ``shown``, then stop holding."""
        if self._filter is None or self._handler is None:
            return
        held, self._filter.held, self._filter.holding = self._filter.held, [], False
        for record in held:
            message = record.getMessage()
            if not any(message.startswith(text) for text in shown) and record.levelno >= self._handler.level:
                self._handler.handle(record)


@contextmanager
def warnings_after_results(hold: bool) -> Iterator[HeldWarnings]:
    """Hold the console's warnings back during the block (when ``hold`` and not verbose).

    The caller prints the results, then calls :meth:`HeldWarnings.release` with the warnings they
    showed. When the block fails, every held warning is printed before the error propagates.
    """
    console_filter, handler = _Console.filter, _Console.handler
    holding = hold and console_filter is not None and handler is not None and handler.level >= logging.WARNING
    if holding and console_filter is not None:
        console_filter.holding = True
    held = HeldWarnings(console_filter if holding else None, handler)
    try:
        yield held
    except BaseException:
        held.release()
        raise
    finally:
        if holding and console_filter is not None:
            console_filter.holding = False
