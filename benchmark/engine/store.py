"""The results store: one folder per run, files written atomically.

Layout under the results root::

    runs/<run-id>/result.json     the record (written last: its presence means "finished")
    runs/<run-id>/cases.csv       per-case values of every metric
    runs/<run-id>/history.csv     per-epoch training and validation history
    checkpoints/<checkpoint-id>/checkpoint.pt (+ meta.json, history.csv)
    locks/<run-or-checkpoint-id>.lock   who is computing what right now

Every file is written to a temporary name in the same folder and renamed into
place, so a crash or Ctrl-C never leaves a half-written file that looks finished.
Work in progress is guarded by advisory ``flock`` locks, which the operating system
releases when the holding process ends, however it ends: two processes (two sweeps,
or a sweep and a ``benchmark run``) never compute the same run or checkpoint at once,
and a killed process never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmark.data import files
from benchmark.errors import UserError

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
LATEST_FILE = "latest.pt"  # the state an interrupted training resumes from (removed once the result is written)
LOG_FILE = "train.log"  # the per-epoch lines of a run (its pretraining's included)


def run_dir(results: Path, run_id: str) -> Path:
    return Path(results) / "runs" / run_id


def checkpoint_dir(results: Path, checkpoint_id: str) -> Path:
    return Path(results) / "checkpoints" / checkpoint_id


def checkpoint_ready(folder: Path) -> bool:
    """Whether the checkpoint folder was written completely (its meta.json is written last)."""
    return (folder / CHECKPOINT_FILE).is_file() and (folder / "meta.json").is_file()


class UnreadableRecord(UserError):
    """A run's record exists but is not a record of that run (damaged, truncated, edited)."""


RECORD_KEYS = ("run_id", "method", "task", "seed", "fraction", "profile", "metrics", "transfer", "cases",
               "finetune", "wall_seconds", "peak_memory_mb", "device", "data")


def finished_result(results: Path, run_id: str) -> dict[str, Any] | None:
    """The record of a finished run, or None if the run has not finished; ``UnreadableRecord`` for a
    record file that is not JSON, not an object, lacks keys or belongs to another run."""
    path = run_dir(results, run_id) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        record = files.read_json(path)
    except UserError as error:
        raise UnreadableRecord(f"{error}; 'benchmark run --force' replaces it") from error
    missing = [key for key in RECORD_KEYS if key not in record] if isinstance(record, dict) else ["all"]
    if missing or record["run_id"] != run_id or not isinstance(record["metrics"], dict):
        reason = f"missing {', '.join(missing)}" if missing else "another run's record or no metrics"
        raise UnreadableRecord(f"{path}: not a record of this run ({reason}); 'benchmark run --force' replaces it")
    return record


def discard_finished_run(folder: Path) -> None:
    """Remove a run's record and its training state before it is computed again (``--force``): a run
    killed on the way then leaves no old record to be mixed with its new files, and its new training
    starts afresh instead of resuming a finished one's state."""
    for name in (RESULT_FILE, LATEST_FILE):
        (folder / name).unlink(missing_ok=True)


def lock_path(results: Path, name: str) -> Path:
    return Path(results) / "locks" / f"{name}.lock"


@contextmanager
def exclusive(path: Path, wait: bool) -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``path`` for the ``with`` block; yield whether it was obtained.

    With ``wait`` the call blocks until the holder finishes; without it, yields False
    at once when another process holds the lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def training_log(path: Path) -> Iterator[None]:
    """Append the ``benchmark`` loggers' INFO lines (one per epoch, resumes, warnings) to ``path``
    while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("benchmark")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    level = logger.level
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()
