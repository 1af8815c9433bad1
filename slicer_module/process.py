"""A child process that runs in its own process group and is read without blocking.

3D Slicer must stay responsive while LungAI works, so the command line runs in a child
process whose stdout and stderr are read by two threads into a queue; the GUI drains the
queue from a timer. The child starts a new process group (a new session on POSIX, a new
process group on Windows), so cancelling ends everything it started, not only itself.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Protocol

logger = logging.getLogger(__name__)

_STDOUT, _STDERR = "stdout", "stderr"


class ChildProcess(Protocol):
    """What the run protocol needs from a process; tests inject fakes."""

    def poll(self) -> int | None:
        """The exit code once the process has ended and all its output was read, else ``None``."""

    def read_lines(self) -> tuple[list[str], list[str]]:
        """The stdout and stderr lines that arrived since the last call, without line endings."""

    def interrupt(self) -> None:
        """Ask the process and its children to stop (they may clean up first)."""

    def kill(self) -> None:
        """End the process and all its children now."""


Launcher = Callable[[Sequence[str]], ChildProcess]


class BackgroundProcess:
    """A started command whose output is collected by reader threads; the default :data:`Launcher`.

    The child gets the current environment, with unbuffered UTF-8 output for Python.

    Args:
        command: program and arguments.

    Raises:
        OSError: the program cannot be started (missing, not executable).
    """

    def __init__(self, command: Sequence[str]) -> None:
        child_env = dict(os.environ)
        child_env.setdefault("PYTHONUNBUFFERED", "1")  # progress lines arrive as they are printed
        child_env.setdefault("PYTHONIOENCODING", "utf-8")
        options: dict[str, object] = {}
        if sys.platform == "win32":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            options["start_new_session"] = True
        self._popen = subprocess.Popen(  # noqa: S603 - the command is built by lungai.slicer.command
            list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            encoding="utf-8", errors="replace", env=child_env, **options)  # type: ignore[call-overload]  # subprocess.Popen's overloads do not cover text mode with **options
        logger.info("started process %d: %s", self._popen.pid, subprocess.list2cmdline(list(command)))
        self._lines: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._readers = [self._reader(self._popen.stdout, _STDOUT), self._reader(self._popen.stderr, _STDERR)]

    @property
    def pid(self) -> int:
        """The process id (also the id of its process group on POSIX)."""
        return self._popen.pid

    def poll(self) -> int | None:
        """The exit code once the process has ended and both pipes are read to the end."""
        code = self._popen.poll()
        if code is None or any(reader.is_alive() for reader in self._readers):
            return None
        return code

    def read_lines(self) -> tuple[list[str], list[str]]:
        """The stdout and stderr lines read since the last call."""
        lines: dict[str, list[str]] = {_STDOUT: [], _STDERR: []}
        while True:
            try:
                kind, line = self._lines.get_nowait()
            except queue.Empty:
                return lines[_STDOUT], lines[_STDERR]
            lines[kind].append(line)

    def interrupt(self) -> None:
        """Send SIGINT to the process group (POSIX); on Windows, end the tree at once."""
        if sys.platform == "win32":
            self.kill()
        else:
            self._signal_group(signal.SIGINT)

    def kill(self) -> None:
        """End the process and everything it started."""
        if sys.platform == "win32":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(self.pid)], capture_output=True,  # noqa: S603, S607
                           check=False, creationflags=subprocess.CREATE_NO_WINDOW)
        else:
            self._signal_group(signal.SIGKILL)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            logger.debug("process group %d already ended", self.pid)
        else:
            logger.info("sent signal %d to process group %d", signum, self.pid)

    def _reader(self, stream: IO[str] | None, kind: str) -> threading.Thread:
        def read() -> None:
            assert stream is not None
            with stream:
                for line in stream:
                    self._lines.put((kind, line.rstrip("\r\n")))

        thread = threading.Thread(target=read, name=f"lungai-{kind}-{self.pid}", daemon=True)
        thread.start()
        return thread

