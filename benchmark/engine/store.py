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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmark.data import files

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"


def run_dir(results: Path, run_id: str) -> Path:
    return Path(results) / "runs" / run_id


def checkpoint_dir(results: Path, checkpoint_id: str) -> Path:
    return Path(results) / "checkpoints" / checkpoint_id


def checkpoint_ready(folder: Path) -> bool:
    """Whether the checkpoint folder was written completely (its meta.json is written last)."""
    return (folder / CHECKPOINT_FILE).is_file() and (folder / "meta.json").is_file()


def finished_result(results: Path, run_id: str) -> dict[str, Any] | None:
    """The record of a finished run, or None if the run has not finished."""
    path = run_dir(results, run_id) / RESULT_FILE
    return files.read_json(path) if path.is_file() else None


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
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
