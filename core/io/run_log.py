"""A run's log file: the ``lungai`` logger's records copied into a file while the run lasts.

Training writes ``train.log`` with it, ``lungai run`` its ``run.log`` and ``lungai follow-up``
its ``follow_up.log``; any long run can do the same::

    with RunLog(out / "run.log"):
        ...  # every INFO record of a lungai logger is appended to out/run.log
"""

from __future__ import annotations

import logging
from pathlib import Path

#: The format of every line: time, level, logger, message.
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RunLog:
    """Attach a file handler to the ``lungai`` logger for the duration of a ``with`` block.

    The file is appended to (a resumed run continues its log). While the block runs, the
    ``lungai`` logger passes INFO records on even if its level was higher; the level is restored
    afterwards.

    Args:
        path: the log file (its folder must exist).
        name: the logger to copy (``lungai``: every module of the package).
        level: the lowest level written to the file (``DEBUG`` keeps the details the console hides).
    """

    def __init__(self, path: Path, name: str = "lungai", level: int = logging.INFO) -> None:
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter(LINE_FORMAT))
        self.handler.setLevel(level)
        self.logger = logging.getLogger(name)
        self.level = self.logger.level

    def __enter__(self) -> RunLog:
        self.logger.addHandler(self.handler)
        if self.logger.level == logging.NOTSET or self.logger.level > logging.INFO:
            self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        self.handler.close()
