"""SIGTERM and SIGHUP handled like Ctrl-C.

Batch systems (SLURM, ``timeout``, ``docker stop``) stop a program with SIGTERM, and closing a
terminal sends SIGHUP. Both raise :class:`Stopped`, a ``KeyboardInterrupt``, in the main thread,
so everything that cleans up after Ctrl-C (the staged output folder, temporary zip extractions)
cleans up after them too; the command line then prints one ``error:`` line and exits with
:data:`lungai.errors.SIGNAL_EXIT_CODES` (128 + the signal number).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: The signals handled, where the platform has them.
HANDLED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """The process received SIGTERM or SIGHUP.

    Args:
        signum: the signal's number.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``SIGTERM``."""
        return signal.Signals(self.signum).name


def _stop(signum: int, _frame: FrameType | None) -> None:
    """Ignore further stop signals (so cleanup finishes), then stop the program."""
    for each in HANDLED:
        signal.signal(each, signal.SIG_IGN)
    raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Stopped` during the block; restore the handlers after.

    Only the main thread can handle signals; elsewhere the block runs with the handlers as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {each: signal.signal(each, _stop) for each in HANDLED}
    try:
        yield
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
