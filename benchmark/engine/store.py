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
and a killed process never leaves a stale lock behind (nor do its forked data-loader workers, which
let go of the locks they inherit).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmark.data import files
from benchmark.engine.runtime import MAX_SEED
from benchmark.errors import UserError
from benchmark.names import NAME_LENGTH, check_name

log = logging.getLogger(__name__)

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


MAX_RECORD_BYTES = 256 * 1024  # a record's file (a run writes a few KB): a larger one is refused unread
MAX_TEXT = 4096  # characters of any text in a record that is not a name (a warning, a setting, a path)
NAME_FIELDS = ("method", "profile", "primary_metric")  # texts that name things, besides the ids checked as names

RECORD_KEYS = ("run_id", "method", "task", "seed", "fraction", "profile", "metrics", "transfer", "cases",
               "finetune", "wall_seconds", "peak_memory_mb", "device", "data")


def finished_result(results: Path, run_id: str) -> dict[str, Any] | None:
    """The record of a finished run, or None if the run has not finished; ``UnreadableRecord`` for a
    record file that is not JSON, not an object, lacks keys, holds values of the wrong kind
    (``check_record``) or belongs to another run."""
    path = run_dir(results, run_id) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        check_record_size(path)
        record = files.read_json(path)
    except UserError as error:
        raise UnreadableRecord(f"{error}; 'benchmark run --force' replaces it") from error
    missing = [key for key in RECORD_KEYS if key not in record] if isinstance(record, dict) else ["all"]
    reason = f"missing {', '.join(missing)}" if missing else _fault(record, run_id)
    if reason:
        raise UnreadableRecord(f"{path}: not a record of this run ({reason}); 'benchmark run --force' replaces it")
    return record


def _fault(record: dict[str, Any], run_id: str) -> str:
    """What makes a record with every key unfit to stand for run ``run_id`` (empty: nothing)."""
    try:
        check_record(record)
    except UserError as error:
        return str(error)
    return "another run's record" if record["run_id"] != run_id else ""


def check_record_size(path: Path) -> None:
    """UserError naming ``path`` if its file is larger than a record can be (``MAX_RECORD_BYTES``): it is
    refused before it is read, a hostile record's megabytes never reach a report's tables."""
    try:
        size = path.stat().st_size
    except OSError:
        return  # reading it reports why it cannot be read
    if size > MAX_RECORD_BYTES:
        raise UserError(f"{path}: {size} bytes, more than a record's {MAX_RECORD_BYTES}")


def check_record(record: dict[str, Any]) -> None:
    """UserError (one line) if a record's fields are not of the kinds the suite reads: ids that are valid
    names (they become file names), non-empty strings no longer than a name, a seed from 0 to ``MAX_SEED``,
    a fraction in (0, 1], metrics that are numbers a float holds, split sizes that are counts, no text
    longer than ``MAX_TEXT``; a record may be damaged or hostile."""
    for key in ("run_id", "task"):
        check_name(record[key], key)
    pretraining = record.get("pretraining")
    if isinstance(pretraining, dict) and pretraining.get("checkpoint_id") is not None:
        check_name(pretraining["checkpoint_id"], "pretraining.checkpoint_id")
    for key in NAME_FIELDS:
        if key in record and not (isinstance(record[key], str) and record[key]):
            raise UserError(f"'{key}' is not a non-empty string")
    seed = record["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"'seed' is not an integer from 0 to {MAX_SEED} ({_shown(seed)})")
    fraction = record["fraction"]
    if not _is_number(fraction) or not 0 < fraction <= 1:
        raise UserError(f"'fraction' is not a number in (0, 1] ({_shown(fraction)})")
    metrics = record["metrics"]
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in metrics.items()):
        raise UserError("'metrics' is not an object of numbers")
    cases = record.get("cases", {})
    if not isinstance(cases, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                              for v in cases.values()):
        raise UserError("'cases' is not an object of counts")
    _check_text_lengths(record)


def _check_text_lengths(record: dict[str, Any]) -> None:
    """UserError if a name (``NAME_FIELDS``, the backbone's, a metric's) is longer than ``NAME_LENGTH`` or any
    other text of the record (a key or a value, at any depth) is longer than ``MAX_TEXT``."""
    backbone = record.get("backbone")
    names = [(f"'{key}'", record.get(key)) for key in NAME_FIELDS]
    names += [("'backbone.name'", backbone.get("name") if isinstance(backbone, dict) else None)]
    names += [("a metric's name", name) for name in record["metrics"]]  # check_record found an object
    for what, name in names:
        if isinstance(name, str) and len(name) > NAME_LENGTH:
            raise UserError(f"{what} is {len(name)} characters long, more than a name's {NAME_LENGTH}")
    for key, value in record.items():
        longest = max(map(len, _texts({key: value})))
        if longest > MAX_TEXT:
            raise UserError(f"a text in {_shown(key)} is {longest} characters long, more than {MAX_TEXT}")


def _texts(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included (without recursion: a record may be nested deeply)."""
    pending = [value]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            pending += [*value.keys(), *value.values()]
        elif isinstance(value, list):
            pending += value


def _is_number(value: Any) -> bool:
    """An int or float that is not a bool and fits a float (JSON integers have no bound)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _shown(value: Any) -> str:
    """A record's value for a message, cut to a line's length (a hostile record may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def discard_finished_run(folder: Path) -> None:
    """Remove a run's record and its training state before it is computed again (``--force``): a run
    killed on the way then leaves no old record to be mixed with its new files, and its new training
    starts afresh instead of resuming a finished one's state."""
    for name in (RESULT_FILE, LATEST_FILE):
        (folder / name).unlink(missing_ok=True)


def clear_finished_run(results: Path, run_id: str) -> None:
    """Remove what a run killed just after writing its record left in its folder (its training state, a
    temporary file of a record being written), under the run's lock; nothing while another process holds
    it (a ``--force`` computing the run again). A folder without such files is left untouched, unlocked
    (a results root that is read-only keeps serving its records)."""
    folder = run_dir(results, run_id)
    leftovers = [name for name in os.listdir(folder) if name == LATEST_FILE or files.TEMPORARY_FILE.fullmatch(name)]
    if not leftovers:
        return
    with exclusive(lock_path(results, run_id), wait=False) as obtained:
        if obtained:
            (folder / LATEST_FILE).unlink(missing_ok=True)
            files.remove_leftovers(folder, files.TEMPORARY_FILE, age=0)


def lock_path(results: Path, name: str) -> Path:
    return Path(results) / "locks" / f"{name}.lock"


_HELD_LOCKS: set[int] = set()  # the descriptors of the locks this process holds now


def _drop_inherited_locks() -> None:
    """In a forked child (a data-loader worker): let go of the parent's locks.

    A ``flock`` lock belongs to the open file, which a fork shares with the child: a worker that
    outlives its killed parent by a few seconds would keep the run locked meanwhile. Each inherited
    descriptor is pointed at /dev/null rather than closed, so that its number stays valid for the
    parent's file objects the child holds copies of."""
    if not _HELD_LOCKS:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for descriptor in _HELD_LOCKS:
            os.dup2(null, descriptor)
    finally:
        os.close(null)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


@contextmanager
def exclusive(path: Path, wait: bool, holder: str = "another process holds it") -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``path`` for the ``with`` block; yield whether it was obtained.

    With ``wait`` the call blocks until the holder finishes, after logging one line ``waiting for <path>:
    <holder>`` when the lock is taken (what the other process is doing: a wait is never silent); without
    it, yields False at once when another process holds the lock. A symbolic link at ``path`` is refused
    (UserError), never followed: a link planted there would have the lock file created wherever it points.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(_open_lock_file(path), "ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            log.info("waiting for %s: %s", path, holder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        _HELD_LOCKS.add(handle.fileno())
        try:
            yield True
        finally:
            _HELD_LOCKS.discard(handle.fileno())
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_lock_file(path: Path) -> int:
    """A descriptor of the lock file ``path``, created if absent; UserError if ``path`` is a symbolic link."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:  # what O_NOFOLLOW answers for a link
            raise UserError(f"{path}: a symbolic link, not a lock file; remove it") from error
        raise


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
