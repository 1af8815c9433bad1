"""Progress display for the CLI: a bar on stderr, JSON lines on stdout, or nothing."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click

from lungai.errors import LungAIError
from lungai.pipeline.progress import ProgressCallback, ProgressEvent, ignore_progress


class _StageBar:
    """A one-line progress bar on stderr: the stage, what it is doing, and the elapsed time.

    On a terminal the line is redrawn in place, and every :attr:`tick_s` seconds between events so
    the elapsed time keeps counting during long steps; elsewhere (a log file) each event is one line.
    """

    width = 30
    tick_s = 1.0

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._lock = threading.Lock()
        self._last: tuple[ProgressEvent, float] | None = None
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="lungai-progress", daemon=True)
        if self._tty:
            self._ticker.start()

    def __call__(self, event: ProgressEvent) -> None:
        if event.event != "stage":
            return
        with self._lock:
            self._last = (event, time.perf_counter())
            self._draw(event, event.elapsed_s)

    def close(self) -> None:
        """Stop redrawing; end an unfinished line so that what follows starts on its own."""
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        if self._tty and self._last is not None and self._last[0].fraction < 1.0:
            click.echo(err=True)

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            with self._lock:
                if self._last is not None and self._last[0].fraction < 1.0:
                    event, seen = self._last
                    self._draw(event, event.elapsed_s + time.perf_counter() - seen)

    def _draw(self, event: ProgressEvent, elapsed_s: float) -> None:
        filled = int(round(self.width * event.fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        doing = f"{event.stage}: {event.message}" if event.message else f"{event.stage} {event.status}"
        line = f"[{bar}] {event.index}/{event.total} {doing} ({elapsed_s:.0f} s)"
        if self._tty:
            click.echo(f"\r{line:<100}", err=True, nl=event.fraction >= 1.0)
        else:
            click.echo(line, err=True)


def _print_jsonl(event: ProgressEvent) -> None:
    click.echo(event.to_json())
    sys.stdout.flush()


@contextmanager
def make_reporter(mode: str) -> Iterator[ProgressCallback]:
    """Yield the progress callback for ``mode`` (``bar``, ``jsonl`` or ``none``).

    In ``jsonl`` mode a user error is also reported as an ``error`` event before it propagates,
    so a program reading stdout learns the message and exit code.
    """
    if mode == "jsonl":
        try:
            yield _print_jsonl
        except LungAIError as exc:
            _print_jsonl(ProgressEvent(event="error", message=exc.message, data={"exit_code": exc.exit_code}))
            raise
    elif mode == "bar":
        bar = _StageBar()
        try:
            yield bar
        finally:
            bar.close()
    else:
        yield ignore_progress
