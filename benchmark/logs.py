"""The suite's log messages on stderr: one ``LEVEL: message`` line each (the command line, and each
sweep job's own process, whose stderr is its job log)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a message comes (tests replace it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def log_to_stderr() -> None:
    """Show the suite's log messages (``benchmark.*`` loggers, INFO and up: a task's skipped cases, a
    damaged cache entry rebuilt) on stderr, one ``LEVEL: message`` line each."""
    logger = logging.getLogger("benchmark")
    logger.setLevel(logging.INFO)
    if not any(isinstance(handler, _Stderr) for handler in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
