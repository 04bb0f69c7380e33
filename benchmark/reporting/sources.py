"""Where the numbers come from: provenance per task, and no pooling of runs that are not comparable.

Runs of one task are compared with each other (Table 3, the tests, the curves), so they must
have been made on the same data (data fingerprint) and by the same code (code fingerprint; older
records without one count as one group, "unknown"), and score the same primary metric (a record
whose task scored Dice beside one that scored IoU would compare the two); the runs of one method on a task (its seeds
and fractions), from the same pretraining data and the same released weights file (``--weights``:
two files of one layout, say MedicalNet's weights trained on other datasets, are two models) too.
Methods may pretrain on different data (the chest CT pool, radiographs, a supervised source task):
that is part of what a method is, and the provenance table names each one's. A results root mixing
them is refused with a one-line error naming the groups, unless ``--select`` keeps one (``data=``,
``pretrain_data=``, ``weights=`` or ``code=`` a fingerprint, ``metric=`` a metric): the report never pools them silently
and never splits them behind the reader's back.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from benchmark.errors import UserError

UNKNOWN = "unknown"
POOLING_KEYS = {"data": "data_fingerprint", "pretrain_data": "pretrain_data_fingerprint",
                "weights": "weights_fingerprint", "code": "code_fingerprint", "metric": "primary_metric"}
POOLING_LABELS = {"data": "data", "pretrain_data": "pretraining data", "weights": "weights files", "code": "code",
                  "metric": "primary metrics"}
PER_METHOD_KEYS = ("pretrain_data", "weights")  # what only some methods have, the same for all of one method's runs
PROVENANCE_COLUMNS = ["data_kind", "data_root", "data_fingerprint", "pretrain_data", "profile", "code_fingerprint",
                      "git_commit", "machine"]


def _runs(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop_duplicates("run_id")


def _key_values(runs: pd.DataFrame, key: str) -> pd.Series:
    """The pooling key of each run as text; for pretraining data and weights, runs without any are left out."""
    values = runs[POOLING_KEYS[key]]
    if key in PER_METHOD_KEYS:
        return values.dropna().astype(str)
    return values.fillna(UNKNOWN).astype(str)


def select(table: pd.DataFrame, selections: Sequence[str]) -> pd.DataFrame:
    """The rows of ``table`` whose runs match every ``KEY=VALUE`` of ``selections`` (``--select``)."""
    for item in selections:
        key, sep, value = item.partition("=")
        if not sep or key not in POOLING_KEYS or not value:
            raise UserError(f"--select {item}: expected KEY=VALUE with KEY one of {', '.join(POOLING_KEYS)}")
        values = _key_values(_runs(table), key)
        if value not in set(values):
            present = ", ".join(sorted(set(values))) or "none"
            raise UserError(f"--select {item}: no run has {POOLING_LABELS[key]} {value} (the results hold {present})")
        column = POOLING_KEYS[key]
        matches = table[column].fillna(UNKNOWN).astype(str) == value
        table = table[matches | table[column].isna()] if key in PER_METHOD_KEYS else table[matches]
    return table


def check_pooling(table: pd.DataFrame) -> None:
    """UserError when the runs of a task differ in data or code fingerprint, or the runs of one method on a
    task in pretraining data or weights file."""
    for task, runs in _runs(table).groupby("task"):
        for key in POOLING_KEYS:
            groups = runs.groupby("method") if key in PER_METHOD_KEYS else [(None, runs)]
            for method, own in groups:
                counts = _key_values(own, key).value_counts()
                if len(counts) > 1:
                    listed = ", ".join(f"{value} ({count} runs)" for value, count in sorted(counts.items()))
                    whose = f"runs of {method}" if method is not None else "runs"
                    raise UserError(f"task {task}: {whose} made with different {POOLING_LABELS[key]} ({listed}) are "
                                    f"not pooled into one comparison: choose one with --select {key}="
                                    f"{'METRIC' if key == 'metric' else 'FINGERPRINT'}")


def _joined(values: pd.Series, missing: str = UNKNOWN) -> str:
    present = sorted({str(v) for v in values.dropna()})
    return ", ".join(present) if present else missing


def _commits(runs: pd.DataFrame) -> str:
    known = runs.dropna(subset=["git_commit"])
    commits = {f"{commit[:12]}{' (dirty)' if dirty is True else ''}"
               for commit, dirty in zip(known["git_commit"].astype(str), known["git_dirty"])}
    return ", ".join(sorted(commits)) if commits else UNKNOWN


def provenance(table: pd.DataFrame, tasks: Sequence[str]) -> pd.DataFrame:
    """One row per task: its data source and fingerprint, pretraining data, profile, code and machine."""
    rows = []
    runs = _runs(table)
    for task in tasks:
        own = runs[runs["task"] == task]
        pretrain = own.dropna(subset=["pretrain_data_fingerprint"])
        rows.append({
            "task": task, "runs": len(own), "data_kind": _joined(own["data_kind"]),
            "data_root": _joined(own["data_root"]), "data_fingerprint": _joined(own["data_fingerprint"]),
            "pretrain_data": _joined(pretrain["pretrain_data_kind"].fillna(UNKNOWN) + " " +
                                     pretrain["pretrain_data_fingerprint"].astype(str), "none"),
            "profile": _joined(own["profile"]), "code_fingerprint": _joined(own["code_fingerprint"]),
            "git_commit": _commits(own), "machine": _joined(own["device_name"].fillna(own["device"])),
        })
    return pd.DataFrame(rows, columns=["task", "runs", *PROVENANCE_COLUMNS])


def provenance_sentence(sources: pd.DataFrame) -> str:
    """The provenance in one paragraph (for captions): data per task, then what all tasks share or not."""
    data = "; ".join(f"{r.task}: {r.data_kind} {r.data_fingerprint}" for r in sources.itertuples())
    shared = [f"{label} {_joined(sources[column])}" for label, column in
              (("Pretraining data", "pretrain_data"), ("profile", "profile"), ("code", "code_fingerprint"),
               ("commit", "git_commit"), ("machine", "machine"))]
    return f"Data (kind, fingerprint): {data}. " + "; ".join(shared) + "."
