"""Progress display for the CLI: a bar on stderr, JSON lines on stdout, or nothing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from lungai.errors import LungAIError
from lungai.pipeline.progress import ProgressCallback, ProgressEvent, ignore_progress


class _StageBar:
    """A one-line progress bar on stderr, redrawn at each stage event."""

    width = 30

    def __call__(self, event: ProgressEvent) -> None:
        if event.event != "stage":
            return
        filled = int(round(self.width * event.fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {event.index}/{event.total} {event.stage} {event.status} ({event.elapsed_s:.1f} s)"
        if sys.stderr.isatty():
            click.echo(f"\r{line:<80}", err=True, nl=event.fraction >= 1.0)
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
        yield _StageBar()
    else:
        yield ignore_progress
