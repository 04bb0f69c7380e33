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
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import UserError

RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The file gets the permissions of an ordinary new file (``0o666`` less the umask), not the
    owner-only ones of a temporary file: a results root shared by a group stays readable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read JSON ({error})") from error


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
    return read_json(path) if path.is_file() else None


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
