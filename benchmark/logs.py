"""The suite's log messages on stderr: one ``LEVEL: message`` line each (the command line, and each
sweep job's own process, whose stderr is its job log)."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm


class _Stderr(logging.Handler):
    """A handler writing to whatever ``sys.stderr`` is when a message comes (tests replace it),
    through tqdm, so that a line never lands in the middle of a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never stop the run: the standard handler's own policy
            self.handleError(record)


def log_to_stderr() -> None:
    """Show the suite's log messages (``benchmark.*`` loggers, INFO and up: a task's skipped cases, a
    damaged cache entry rebuilt) on stderr, one ``LEVEL: message`` line each."""
    logger = logging.getLogger("benchmark")
    logger.setLevel(logging.INFO)
    if not any(isinstance(handler, _Stderr) for handler in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
