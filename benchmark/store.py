"""The results store: one folder per run, files written atomically.

Layout under the results root::

    runs/<run-id>/result.json     the record (written last: its presence means "finished")
    runs/<run-id>/cases.csv       per-case values of every metric
    runs/<run-id>/history.csv     per-epoch training and validation history
    checkpoints/<checkpoint-id>/checkpoint.pt (+ meta.json, history.csv)

Every file is written to a temporary name in the same folder and renamed into
place, so a crash or Ctrl-C never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import UserError

RESULT_FILE = "result.json"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def finished_result(results: Path, run_id: str) -> dict[str, Any] | None:
    """The record of a finished run, or None if the run has not finished."""
    path = run_dir(results, run_id) / RESULT_FILE
    return read_json(path) if path.is_file() else None
