"""A fake child process for the run protocol's tests: the test controls its output and exit."""

from __future__ import annotations

from collections.abc import Sequence

from lungai.pipeline.progress import ProgressEvent


def event_line(event: str, **fields: object) -> str:
    """A ``--progress jsonl`` line as the pipeline prints it."""
    return ProgressEvent(event=event, **fields).to_json()  # type: ignore[arg-type]


class FakeProcess:
    """A process whose output and exit the test controls."""

    def __init__(self, obeys_interrupt: bool = True) -> None:
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.code: int | None = None
        self.obeys_interrupt = obeys_interrupt
        self.interrupts = 0
        self.kills = 0

    def feed(self, stdout: Sequence[str] = (), stderr: Sequence[str] = ()) -> None:
        self.stdout.extend(stdout)
        self.stderr.extend(stderr)

    def poll(self) -> int | None:
        return self.code

    def read_lines(self) -> tuple[list[str], list[str]]:
        lines = (self.stdout, self.stderr)
        self.stdout, self.stderr = [], []
        return lines

    def interrupt(self) -> None:
        self.interrupts += 1
        if self.obeys_interrupt:
            self.code = 130

    def kill(self) -> None:
        self.kills += 1
        self.code = -9
