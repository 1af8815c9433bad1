"""Reading the CSV files that describe datasets, with one check and message for missing columns."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

from lungai.errors import UnreadableInputError


def read_csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)`` of a CSV whose header (spaces stripped) holds ``required``.

    Raises:
        UnreadableInputError: a required column is missing (the message lists what is there).
    """
    with Path(path).open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        absent = [c for c in required if c not in columns]
        if absent:
            raise UnreadableInputError(f"{path} lacks the column(s) {', '.join(absent)} "
                                       f"(has: {', '.join(columns) or 'none'})",
                                       f"it needs {', '.join(required)}")
        reader.fieldnames = columns
        yield from enumerate(reader, start=2)
