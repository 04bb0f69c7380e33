"""The long-format results table: every number of every finished run, one row per value.

One row per (method, task, profile, fraction, seed, case, metric) with its ``value``:

- ``level == "run"``: the run's recorded metrics (``result.json``: AUC, mean Dice, ``mg_iou`` ...),
  ``case_id`` empty;
- ``level == "case"``: the per-case values of ``cases.csv`` (Dice and IoU per test case; for
  classification the per-candidate ``score`` with its ``label``, which DeLong needs).

``method`` is the method's label: its name, followed by the settings it ran with where they
differ from that name's defaults (``genesis [loss=mae]``, ``benchmark.reporting.variants``), so
runs of one method with different settings are never pooled; ``method_name`` is the recorded
name and ``method_settings`` the recorded settings (JSON). ``profile`` is likewise the profile's
name followed by the fields the run replaced (``quick [classification.epochs=50]``: ``--profile-arg``
or a speed switch), so a run with another schedule is never pooled with the named profile's;
``profile_name`` and ``profile_settings`` are the recorded name and fields.

Each row carries the run's metadata (run id, data source and fingerprint, pretraining data,
checkpoint id, code fingerprint and git commit, machine, wall time, peak memory, label subset ...).
Tables and plots of the report are views of it. The per-epoch validation histories
(``history.csv``) form a second long table, one row per (run, epoch, column). A record that
cannot be read (not JSON, not an object, a key missing or of the wrong type, an id that is not a
valid name) is skipped with a one-line message naming its file.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.api import metrics
from benchmark.api.backbone import DEFAULT_BACKBONE
from benchmark.data import files
from benchmark.engine import store
from benchmark.errors import UserError
from benchmark.model.dims import DIMS
from benchmark.reporting import formats, variants

REQUIRED_KEYS = ("run_id", "method", "task", "seed", "fraction", "profile", "metrics")
KEY_COLUMNS = ["method", "task", "profile", "fraction", "seed", "level", "case_id", "group", "metric", "value",
               "label"]
METADATA_COLUMNS = ["run_id", "method_name", "method_settings", "task_name", "task_settings", "profile_name",
                    "profile_settings", "protocol",
                    "backbone_name", "backbone_settings", "backbone_parameters", "dims", "adapter", "warnings",
                    "primary_metric", "data_kind", "data_root",
                    "data_fingerprint", "pretrain_data_kind", "pretrain_data_fingerprint", "checkpoint_id",
                    "weights_fingerprint", "code_version",
                    "code_fingerprint", "git_commit", "git_dirty", "wall_seconds", "peak_memory_mb",
                    "peak_device_memory_mb", "device", "device_name", "finetune_epochs", "finetune_best_epoch",
                    "finetune_samples_seen", "finetune_seconds", "pretrain_cubes_seen", "pretrain_seconds",
                    "subset_seed", "subset_hash", "finished_at"]
COLUMNS = KEY_COLUMNS + METADATA_COLUMNS
HISTORY_COLUMNS = ["run_id", "method", "task", "profile", "fraction", "seed", "epoch", "column", "value"]
CASE_ID_COLUMNS = ("case_id", "group", "label")
MAX_SCORE = 1e12
NUMBER_FIELDS = ("backbone_parameters", "wall_seconds", "peak_memory_mb", "peak_device_memory_mb", "finetune_epochs",
                 "finetune_best_epoch", "finetune_samples_seen", "finetune_seconds", "pretrain_cubes_seen",
                 "pretrain_seconds", "subset_seed")
TEXT_FIELDS = ("protocol", "backbone_name", "dims", "adapter", "primary_metric", "data_kind", "data_root",
               "data_fingerprint", "pretrain_data_kind", "pretrain_data_fingerprint", "checkpoint_id",
               "weights_fingerprint", "code_version", "code_fingerprint", "git_commit", "device", "device_name",
               "subset_hash", "finished_at")


@dataclass
class Results:
    """What was read from a results root: the long table, the histories, and what was skipped."""

    table: pd.DataFrame
    histories: pd.DataFrame
    skipped: list[str] = field(default_factory=list)


def _get(data: dict[str, Any] | None, *keys: str) -> Any:
    """``data[k1][k2]...`` or None where any level is missing (optional record fields)."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def run_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """The run's metadata columns; optional fields missing from older records are None, a field of the
    wrong type a ValueError naming it (the record is then skipped, not half-read)."""
    warnings = record.get("warnings") or []
    if not (isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
        raise ValueError("warnings: not a list of strings")
    metadata = _metadata(record)
    _check_types(metadata)
    return {**metadata, "warnings": "; ".join(warnings) or None}


def _check_types(metadata: dict[str, Any]) -> None:
    for name in NUMBER_FIELDS:
        value = metadata[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name}: {str(value)[:40]!r} is not a number")
    for name in TEXT_FIELDS:
        if metadata[name] is not None and not isinstance(metadata[name], str):
            raise ValueError(f"{name}: {str(metadata[name])[:40]!r} is not text")
    if metadata["git_dirty"] is not None and not isinstance(metadata["git_dirty"], bool):
        raise ValueError("versions.git.dirty: not true or false")
    if metadata["dims"] not in DIMS:
        raise ValueError(f"dims: {metadata['dims'][:40]!r} is not one of {', '.join(DIMS)}")


def _metadata(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": record["run_id"], "method_name": record["method"],
        "method_settings": variants.settings_text(record.get("method_settings")),
        "task_name": record["task"], "task_settings": variants.settings_text(record.get("task_settings")),
        "profile_name": record["profile"],
        "profile_settings": variants.settings_text(variants.profile_fields(_get(record, "identity", "profile"))),
        "protocol": _get(record, "protocol", "name") or "full",
        "backbone_name": _get(record, "backbone", "name") or DEFAULT_BACKBONE,
        "backbone_settings": variants.settings_text(_get(record, "backbone", "settings")),
        "backbone_parameters": _get(record, "backbone", "encoder_parameters"),
        "dims": _get(record, "dims", "name") or "3d", "adapter": _get(record, "dims", "adapter"),
        "primary_metric": record.get("primary_metric"),
        "data_kind": _get(record, "data", "kind"), "data_root": _get(record, "data", "root"),
        "data_fingerprint": _get(record, "data", "fingerprint"),
        "pretrain_data_kind": _get(record, "pretrain_data", "kind"),
        "pretrain_data_fingerprint": _get(record, "pretrain_data", "fingerprint"),
        "checkpoint_id": _get(record, "pretraining", "checkpoint_id"),
        "weights_fingerprint": _get(record, "weights", "fingerprint"),
        "code_version": _get(record, "versions", "benchmark") or _get(record, "identity", "version"),
        "code_fingerprint": _get(record, "versions", "code"),
        "git_commit": _get(record, "versions", "git", "commit"), "git_dirty": _get(record, "versions", "git", "dirty"),
        "wall_seconds": record.get("wall_seconds"), "peak_memory_mb": record.get("peak_memory_mb"),
        "peak_device_memory_mb": record.get("peak_device_memory_mb"), "device": record.get("device"),
        "finetune_epochs": _get(record, "finetune", "epochs"),
        "finetune_best_epoch": _get(record, "finetune", "best_epoch"),
        "device_name": _get(record, "compute", "device_name"),
        "finetune_samples_seen": _get(record, "finetune", "samples_seen"),
        "finetune_seconds": _get(record, "compute", "finetune_seconds"),
        "pretrain_cubes_seen": _get(record, "pretraining", "cubes_seen"),
        "pretrain_seconds": _get(record, "compute", "pretrain_seconds"),
        "subset_seed": _get(record, "subset", "seed"), "subset_hash": _get(record, "subset", "hash"),
        "finished_at": record.get("finished_at"),
    }


def _run_keys(record: dict[str, Any]) -> dict[str, Any]:
    return {"method": record["method"], "task": record["task"], "profile": record["profile"],
            "fraction": float(record["fraction"]), "seed": int(record["seed"])}


def run_rows(record: dict[str, Any]) -> pd.DataFrame:
    """One row per metric of the record (``level == "run"``, no case)."""
    metrics = record["metrics"]
    return pd.DataFrame({"level": "run", "case_id": None, "group": None, "metric": list(metrics),
                         "value": [float(v) for v in metrics.values()], "label": None})


def case_rows(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, value column) of a ``cases.csv`` (``level == "case"``)."""
    labels = pd.to_numeric(cases["label"], errors="raise").astype("Int64") if "label" in cases else None
    ids = pd.DataFrame({"case_id": cases["case_id"].astype(str),
                        "group": cases["group"].astype(str) if "group" in cases else None,
                        "label": labels})
    values = [c for c in cases.columns if c not in CASE_ID_COLUMNS]
    long = pd.concat([ids.assign(metric=c, value=pd.to_numeric(cases[c], errors="raise")) for c in values],
                     ignore_index=True)
    return long.assign(level="case")


def read_record(path: Path) -> dict[str, Any]:
    """A ``result.json`` with the keys the table needs, of the right types, its ids valid names
    (they become file names); UserError naming the file otherwise."""
    store.check_record_size(Path(path))
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read the record ({error})") from error
    except RecursionError as error:
        raise UserError(f"{path}: cannot read the record (nested too deeply)") from error
    if not isinstance(record, dict):
        raise UserError(f"{path}: not a run record (a JSON object expected, found {type(record).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise UserError(f"{path}: not a run record (missing {', '.join(missing)})")
    try:
        store.check_record(record)
        check_metric_values(record["metrics"])
    except UserError as error:
        raise UserError(f"{path}: {error}") from error
    return record


def check_metric_values(values: dict[str, float]) -> None:
    """UserError unless each metric is NaN or a plausible score: in [0, 1] for the suite's own metrics
    (AUC, Dice, IoU, mg_iou), within ±MAX_SCORE for a plugin's (a damaged or edited record could
    otherwise top a table with an AUC of 1e300, or break a figure's axis)."""
    for name, value in values.items():
        value = float(value)
        if math.isnan(value):
            continue
        if name in metrics.UNIT_SCORES and not 0.0 <= value <= 1.0:
            raise UserError(f"metric '{name}' is {value:.10g}, outside [0, 1]")
        if not abs(value) <= MAX_SCORE:
            raise UserError(f"metric '{name}' is {value:.10g}, beyond ±{MAX_SCORE:g}")


def _metrics_from_cases(cases: pd.DataFrame, names: list[str]) -> dict[str, float]:
    """The run-level metrics a per-case table determines: the mean of a column named like the metric
    (per-case Dice, IoU), and the AUC of its scores against its labels."""
    found = {name: float(pd.to_numeric(cases[name]).mean()) for name in names if name in cases.columns}
    if "auc" in names and {"score", "label"} <= set(cases.columns):
        found["auc"] = metrics.auc(pd.to_numeric(cases["label"]).to_numpy(), pd.to_numeric(cases["score"]).to_numpy())
    return found


def check_metrics_agree_with_cases(record: dict[str, Any], cases: pd.DataFrame, path: Path) -> None:
    """UserError if a recorded metric is not what the run's own per-case table gives: Table 3 and the
    Welch tests read the metrics, the paired tests and intervals the cases, and the two must not differ."""
    recorded = record["metrics"]
    for name, expected in _metrics_from_cases(cases, list(recorded)).items():
        value = float(recorded[name])
        if math.isnan(value) and math.isnan(expected):
            continue
        if not math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9):
            raise UserError(f"metric '{name}' is {value:.6g} in the record but {expected:.6g} from {path} "
                            "(a damaged or edited run)")


def read_whole_csv(path: Path, **options: Any) -> pd.DataFrame:
    """A CSV file the suite wrote (``pd.read_csv`` with ``options``), refused when its last line is
    cut short: a truncated file would otherwise read as fewer rows, or a last value parsed from a
    fragment, without a word. UserError naming the file otherwise."""
    try:
        data = Path(path).read_bytes()
        frame = pd.read_csv(io.BytesIO(data), **options)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        raise UserError(f"{path}: cannot read ({str(error).splitlines()[0] if str(error) else error})") from error
    if not data.endswith(b"\n"):
        raise UserError(f"{path}: its last line is cut short (a truncated file)")
    return frame


def _read_csv(path: Path, required: tuple[str, ...], rows: Any = None) -> pd.DataFrame:
    """A CSV file a run wrote whole (``read_whole_csv``) with the ``required`` columns and, where the
    record gives it (``rows``, an integer), that many rows: one cut at a line's end reads short."""
    if not path.is_file():
        raise UserError(f"{path}: missing")
    frame = read_whole_csv(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    if isinstance(rows, int) and not isinstance(rows, bool) and len(frame) != rows:
        raise UserError(f"{path}: {len(frame)} rows where its record gives {rows} (a truncated or foreign file)")
    return frame


def _unique_cases(cases: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``cases`` if no case id repeats (paired tests join on it); UserError naming the file and the ids
    otherwise, each as ``repr`` shows it (an id is the file's text: a control character is shown escaped, never
    sent to the terminal the warning is printed on)."""
    repeated = cases["case_id"].astype(str)
    repeated = sorted(set(repeated[repeated.duplicated()]))
    if repeated:
        raise UserError(f"{path}: case id(s) listed twice ({', '.join(map(repr, repeated[:3]))}): "
                        "not one row per case")
    return cases


def record_table(record: dict[str, Any], folder: Path, skipped: list[str]) -> pd.DataFrame:
    """The long-table rows of one run: its recorded metrics, then its per-case values."""
    parts = [run_rows(record)]
    cases_path = folder / "cases.csv"
    run_level_only = f"only the run-level metrics of {record['run_id']} are used"
    try:
        cases = _unique_cases(_read_csv(cases_path, ("case_id",), _get(record, "cases", "test")), cases_path)
        parts.append(case_rows(cases))
    except UserError as error:
        skipped.append(f"{error}; {run_level_only}")
    except (ValueError, TypeError) as error:
        skipped.append(f"{cases_path}: a value is not a number ({error}); {run_level_only}")
    else:
        check_metrics_agree_with_cases(record, cases, cases_path)
    rows = pd.concat(parts, ignore_index=True)
    return rows.assign(**_run_keys(record), **run_metadata(record))


def history_rows(record: dict[str, Any], path: Path) -> pd.DataFrame:
    """The per-epoch history of one run in long form (one row per epoch and column)."""
    history = _read_csv(path, ("epoch",), _get(record, "finetune", "epochs"))
    long = history.melt(id_vars="epoch", var_name="column", value_name="value")
    try:
        long["epoch"] = pd.to_numeric(long["epoch"], errors="raise").astype(int)
    except (ValueError, TypeError) as error:
        raise UserError(f"{path}: an epoch is not a whole number ({error})") from error
    long["value"] = pd.to_numeric(long["value"], errors="coerce")  # a non-number is a missing value
    return long.assign(run_id=record["run_id"], **_run_keys(record))


def read_results(results: Path) -> Results:
    """Read every finished run under ``results``; unreadable files are skipped and listed."""
    runs = Path(results) / "runs"
    if not runs.is_dir():
        raise UserError(f"{results}: no results here (expected {runs}/<run-id>/{store.RESULT_FILE})")
    tables, histories, skipped = [], [], []
    for path in sorted(runs.glob(f"*/{store.RESULT_FILE}")):
        try:
            record = read_record(path)
            if record["run_id"] != path.parent.name:
                raise UserError(f"{path}: the record of run {record['run_id']} in folder {path.parent.name} (a copied "
                                "or renamed folder: each run is counted once, from its own folder)")
            tables.append(record_table(record, path.parent, skipped))
        except UserError as error:
            skipped.append(f"{error}; skipped")
            continue
        except (KeyError, TypeError, ValueError) as error:
            skipped.append(f"{path}: malformed record ({type(error).__name__}: {error}); skipped")
            continue
        history_path = path.parent / "history.csv"
        try:
            histories.append(history_rows(record, history_path))
        except UserError as error:
            skipped.append(f"{error}; no convergence curve for {record['run_id']}")
    if not tables:
        raise UserError(f"{results}: no readable run record under {runs}")
    table = pd.concat(tables, ignore_index=True)[COLUMNS]
    table = variants.label_methods(table.astype({"case_id": "string", "group": "string", "label": "Int64"}))
    history = pd.concat(histories, ignore_index=True)[HISTORY_COLUMNS] if histories else \
        pd.DataFrame(columns=HISTORY_COLUMNS)
    labels = table.drop_duplicates("run_id").set_index("run_id")
    history["method"] = history["run_id"].map(labels["method"])
    history["task"] = history["run_id"].map(labels["task"])
    history["profile"] = history["run_id"].map(labels["profile"])
    return Results(table=table, histories=history, skipped=skipped)


def export_table(table: pd.DataFrame, path: Path) -> None:
    """Write the table as CSV (its text cells safe to open in a spreadsheet) or Parquet (by the file's
    suffix), atomically."""
    path = Path(path)
    if path.suffix == ".csv":
        files.write_csv(path, formats.spreadsheet_safe(table))
    elif path.suffix == ".parquet":
        files.write_atomic(path, lambda tmp: table.to_parquet(tmp, index=False))
    else:
        raise UserError(f"{path}: unknown table format (use .csv or .parquet)")
