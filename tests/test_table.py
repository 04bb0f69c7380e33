"""The long-format results table: from real smoke runs and from hand-written records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.errors import UserError
from benchmark.reporting.table import COLUMNS, HISTORY_COLUMNS, export_table, read_results


@pytest.fixture(scope="module")
def smoke_table(smoke_results):
    return read_results(smoke_results)


def test_smoke_runs_give_one_row_per_run_metric_and_per_candidate(smoke_results, smoke_table):
    table = smoke_table.table
    assert list(table.columns) == COLUMNS and smoke_table.skipped == []
    assert table["run_id"].nunique() == 4  # 2 methods x 2 seeds on ncc (tests/conftest.py)
    for path in (smoke_results / "runs").glob("*/result.json"):
        record = json.loads(path.read_text())
        cases = pd.read_csv(path.parent / "cases.csv")
        rows = table[table["run_id"] == record["run_id"]]
        run_level = rows[rows["level"] == "run"]
        assert run_level["case_id"].isna().all()
        assert dict(zip(run_level["metric"], run_level["value"])) == record["metrics"]
        candidates = rows[rows["level"] == "case"]
        assert set(candidates["metric"]) == {"score"} and len(candidates) == len(cases)
        assert list(candidates["case_id"]) == list(cases["case_id"].astype(str))
        assert np.allclose(candidates["value"], cases["score"], rtol=0, atol=0)
        # the recorded AUC is the AUC of the per-candidate rows, computed independently
        assert roc_auc_score(candidates["label"].astype(int), candidates["value"]) == \
            pytest.approx(record["metrics"]["auc"], abs=1e-12)
        expected = {"method": record["method"], "task": "ncc", "profile": "smoke", "seed": record["seed"],
                    "fraction": 1.0, "primary_metric": "auc", "data_kind": record["data"]["kind"],
                    "data_fingerprint": record["data"]["fingerprint"], "device": record["device"],
                    "wall_seconds": record["wall_seconds"], "peak_memory_mb": record["peak_memory_mb"],
                    "code_version": record["versions"]["benchmark"],
                    "checkpoint_id": (record["pretraining"] or {}).get("checkpoint_id")}
        for column, value in expected.items():
            assert (rows[column] == value).all() or (value is None and rows[column].isna().all()), column


def test_smoke_histories_hold_every_epoch_of_every_run(smoke_results, smoke_table):
    histories = smoke_table.histories
    assert list(histories.columns) == HISTORY_COLUMNS
    for path in (smoke_results / "runs").glob("*/history.csv"):
        history = pd.read_csv(path)
        own = histories[histories["run_id"] == path.parent.name]
        curve = own[own["column"] == "val_auc"].sort_values("epoch")
        assert list(curve["value"]) == list(history["val_auc"])
        assert len(own) == history.shape[0] * (history.shape[1] - 1)


def test_hand_written_records_give_the_expected_table(tmp_path, write_run):
    write_run(tmp_path, "m1", "seg", 0, 0.5, {"dice": 0.6, "iou": 0.45, "mg_iou": 0.8}, "dice",
              cases={"case_id": ["a", "b"], "group": ["p1", "p2"], "dice": [0.5, 0.7], "iou": [0.4, 0.5]})
    write_run(tmp_path, "m2", "cls", 3, 1.0, {"auc": 1.0}, "auc",
              cases={"case_id": ["c1", "c2"], "group": ["s1", "s1"], "label": [1, 0], "score": [0.9, 0.2]})
    table = read_results(tmp_path).table
    keys = ["method", "task", "fraction", "seed", "level", "case_id", "group", "metric", "value", "label"]
    expected = pd.DataFrame([
        ("m2", "cls", 1.0, 3, "run", None, None, "auc", 1.0, pd.NA),
        ("m2", "cls", 1.0, 3, "case", "c1", "s1", "score", 0.9, 1),
        ("m2", "cls", 1.0, 3, "case", "c2", "s1", "score", 0.2, 0),
        ("m1", "seg", 0.5, 0, "run", None, None, "dice", 0.6, pd.NA),
        ("m1", "seg", 0.5, 0, "run", None, None, "iou", 0.45, pd.NA),
        ("m1", "seg", 0.5, 0, "run", None, None, "mg_iou", 0.8, pd.NA),
        ("m1", "seg", 0.5, 0, "case", "a", "p1", "dice", 0.5, pd.NA),
        ("m1", "seg", 0.5, 0, "case", "b", "p2", "dice", 0.7, pd.NA),
        ("m1", "seg", 0.5, 0, "case", "a", "p1", "iou", 0.4, pd.NA),
        ("m1", "seg", 0.5, 0, "case", "b", "p2", "iou", 0.5, pd.NA),
    ], columns=keys).astype({"case_id": "string", "group": "string", "label": "Int64"})
    pd.testing.assert_frame_equal(table[keys], expected)
    assert (table["wall_seconds"] == 12.5).all() and (table["data_fingerprint"] == "fp-data").all()
    assert table["checkpoint_id"].isna().all()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_round_trips(smoke_table, tmp_path, suffix):
    path = tmp_path / f"table{suffix}"
    export_table(smoke_table.table, path)
    back = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert list(back.columns) == COLUMNS and len(back) == len(smoke_table.table)
    assert np.array_equal(back["value"].to_numpy(), smoke_table.table["value"].to_numpy())
    assert list(back["run_id"]) == list(smoke_table.table["run_id"])


def test_export_refuses_an_unknown_format(smoke_table, tmp_path):
    with pytest.raises(UserError, match=r"table\.xlsx: unknown table format"):
        export_table(smoke_table.table, tmp_path / "table.xlsx")


def test_unreadable_records_are_skipped_with_a_message_naming_the_file(tmp_path, write_run):
    good = write_run(tmp_path, "m1", "cls", 0, 1.0, {"auc": 1.0}, "auc",
                     cases={"case_id": ["c1", "c2"], "group": ["s1", "s2"], "label": [1, 0], "score": [0.9, 0.1]})
    corrupt = write_run(tmp_path, "m2", "cls", 0, 1.0, {"auc": 0.7}, "auc") / "result.json"
    corrupt.write_text('{"run_id": "x", "metr')
    incomplete = write_run(tmp_path, "m3", "cls", 0, 1.0, {"auc": 0.7}, "auc") / "result.json"
    incomplete.write_text(json.dumps({"run_id": "y", "method": "m3"}))
    no_cases = write_run(tmp_path, "m4", "cls", 0, 1.0, {"auc": 0.6}, "auc")
    bad_cases = write_run(tmp_path, "m5", "cls", 0, 1.0, {"auc": 0.6}, "auc")
    (bad_cases / "cases.csv").write_text("case_id,score\nc1,not-a-number\n")
    results = read_results(tmp_path)
    assert sorted(results.table["method"].unique()) == ["m1", "m4", "m5"]
    skipped = "\n".join(results.skipped)
    assert f"{corrupt}: cannot read the record" in skipped
    assert f"{incomplete}: not a run record (missing" in skipped
    assert f"{no_cases / 'cases.csv'}: missing" in skipped
    assert f"{bad_cases / 'cases.csv'}: a value is not a number" in skipped
    assert f"{good / 'history.csv'}" in skipped  # no history written: no convergence curve for it


def test_a_record_whose_metrics_its_own_cases_contradict_or_that_no_score_can_have_is_skipped(tmp_path, write_run):
    # Table 3 and the Welch tests read a run's metrics, the paired tests and intervals its cases: they must agree
    two_classes = {"case_id": ["c1", "c2", "c3"], "label": [1, 0, 0], "score": [0.9, 0.2, 0.1]}  # AUC 1
    consistent = write_run(tmp_path, "m1", "cls", 0, 1.0, {"auc": 1.0}, "auc", cases=two_classes)
    edited = write_run(tmp_path, "m2", "cls", 0, 1.0, {"auc": 0.61}, "auc", cases=two_classes)
    one_class = write_run(tmp_path, "m3", "cls", 0, 1.0, {"auc": 0.6}, "auc",
                          cases={"case_id": ["c1", "c2"], "label": [0, 0], "score": [0.9, 0.1]})
    dice = write_run(tmp_path, "m4", "seg", 0, 1.0, {"dice": 0.9}, "dice",
                     cases={"case_id": ["a", "b"], "dice": [0.5, 0.7]})
    huge = write_run(tmp_path, "m5", "cls", 0, 1.0, {"auc": 3e299}, "auc")
    plugin = write_run(tmp_path, "m6", "own", 0, 1.0, {"score": -1e300}, "score")
    results = read_results(tmp_path)
    assert sorted(results.table["method"].unique()) == ["m1"]
    skipped = "\n".join(results.skipped)
    assert f"metric 'auc' is 0.61 in the record but 1 from {edited / 'cases.csv'}" in skipped
    assert f"metric 'auc' is 0.6 in the record but nan from {one_class / 'cases.csv'}" in skipped
    assert f"metric 'dice' is 0.9 in the record but 0.6 from {dice / 'cases.csv'}" in skipped
    assert f"{huge / 'result.json'}: metric 'auc' is 3e+299, outside [0, 1]; skipped" in skipped
    assert f"{plugin / 'result.json'}: metric 'score' is -1e+300, beyond ±1e+12; skipped" in skipped
    assert not [line for line in results.skipped if str(consistent) in line and "in the record but" in line]


def test_no_readable_record_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no results here"):
        read_results(tmp_path)
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "result.json").write_text("[]")
    with pytest.raises(UserError, match="no readable run record"):
        read_results(tmp_path)


@pytest.mark.parametrize("cut", ["mid-line", "line-end"])
def test_a_truncated_cases_or_history_file_is_refused_not_read_short(tmp_path, write_run, cut):
    cases = {"case_id": ["c1", "c2", "c3"], "group": ["s1", "s2", "s3"], "label": [1, 0, 1],
             "score": [0.91234, 0.25678, 0.75]}
    history = {"epoch": [0, 1, 2], "train_loss": [0.9, 0.7, 0.61234], "val_auc": [0.5, 0.6, 0.65]}
    folder = write_run(tmp_path, "m1", "cls", 0, 1.0, {"auc": 0.7}, "auc", cases=cases, history=history)
    for name in ("cases.csv", "history.csv"):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[:-4] if cut == "mid-line" else data[:data.rindex(b"\n", 0, -1) + 1])
    results = read_results(tmp_path)
    skipped = "\n".join(results.skipped)
    expected = "its last line is cut short" if cut == "mid-line" else "2 rows where its record gives 3"
    assert f"{folder / 'cases.csv'}: {expected}" in skipped
    assert f"{folder / 'history.csv'}: {expected}" in skipped
    assert set(results.table["level"]) == {"run"} and results.histories.empty


def test_repeated_case_ids_are_named_escaped(tmp_path, write_run):
    """An id is the text of a file: printed as a warning, a control character in it is shown, not sent."""
    write_run(tmp_path, "scratch-he", "t", 0, 1.0, {"dice": 0.7}, "dice",
              cases={"case_id": ["\x1b[2J", "\x1b[2J", "a\nerror: forged"], "dice": [0.7, 0.7, 0.7]})
    (skipped,) = [line for line in read_results(tmp_path).skipped if "listed twice" in line]
    assert "case id(s) listed twice ('\\x1b[2J')" in skipped and skipped.isprintable()
