"""The report's statistics on hand-written records: notes reach their tables, tests that cannot reach
significance say so, correction families, power, label savings with intervals, convergence with n."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from benchmark.cli import main
from benchmark.reporting import views
from benchmark.reporting.stats import detectable_difference_t
from benchmark.reporting.table import read_results


def report(results, out, *extra):
    return main(["report", "--results", str(results), "--out", str(out), "--no-progress", *extra])


def write_cases(results, write_run, task, n_cases, scores, seeds=(0, 1)):
    """Segmentation runs whose per-case Dice is ``scores[method] + case / 100``."""
    cases = [f"case{i}" for i in range(n_cases)]
    for method, score in scores.items():
        for seed in seeds:
            values = score + np.arange(n_cases) / 100 + seed / 1000
            write_run(results, method, task, seed, 1.0, {"dice": float(values.mean())}, "dice",
                      cases={"case_id": cases, "dice": values})


def test_notes_and_unreachable_thresholds_reach_the_tables(tmp_path, write_run):
    results = tmp_path / "results"
    for seed in range(3):  # two constant columns: Welch is undefined, no p-value, with a note
        write_run(results, "scratch-he", "flat", seed, 1.0, {"dice": 0.7}, "dice")
        write_run(results, "genesis", "flat", seed, 1.0, {"dice": 0.8}, "dice")
    write_cases(results, write_run, "five", 5, {"scratch-he": 0.7, "genesis": 0.75})
    write_cases(results, write_run, "six", 6, {"scratch-he": 0.7, "genesis": 0.75})
    assert report(results, tmp_path / "out") == 0
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv").set_index(["task", "method"])
    note = "both groups have zero variance; means differ, the t-test is undefined (no p-value)"
    flat = table3.loc[("flat", "genesis")]
    assert note in flat["note"] and pd.isna(flat["marks_vs_baseline"]) and np.isnan(flat["p_vs_baseline"])
    assert np.isnan(flat["ci_low"]) and np.isnan(flat["mdd_vs_baseline"])  # no interval from equal seeds
    markdown = (tmp_path / "out" / "table3.md").read_text(encoding="utf-8")
    assert "**0.800 ± 0.000** (n=3) ‡ |" in markdown and f"‡ genesis on flat: vs baseline: {note}" in markdown
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert note in page and note in (tmp_path / "out" / "table3.tex").read_text(encoding="utf-8")

    tests = pd.read_csv(tmp_path / "out" / "pairwise.csv")
    wilcoxon = tests[tests["test"].str.startswith("Wilcoxon")].set_index("task")
    five, six = wilcoxon.loc["five"], wilcoxon.loc["six"]
    assert five["p"] == pytest.approx(0.0625) and five["min_p"] == pytest.approx(0.0625)
    assert five["verdict"] == "cannot reach p < 0.05 at this n" and five["mdd"] == np.inf
    assert six["p"] == pytest.approx(0.03125) and six["marks"] == "*"
    assert six["verdict"] == "significant for these trained models"  # per case: about the models, not the methods
    assert (tests[tests["test"].str.startswith("Welch")]["min_p"] == 0).all()
    assert "cannot reach p &lt; 0.05 at this n" in page
    welch = tests.set_index(["task", "test"]).loc[("flat", "Welch t-test (two-sided)")]
    assert note in welch["note"] and welch["verdict"] == "not computed (see the note)" and pd.isna(welch["marks"])


def test_a_not_significant_test_shows_the_difference_it_could_have_detected(tmp_path, write_run):
    results = tmp_path / "results"
    scores = {"scratch-he": [0.70, 0.74, 0.69, 0.73], "genesis": [0.72, 0.71, 0.75, 0.70],
              "denoising": [0.71, 0.70, 0.76, 0.72]}
    for method, values in scores.items():
        for seed, value in enumerate(values):
            write_run(results, method, "t", seed, 1.0, {"dice": value}, "dice")
    assert report(results, tmp_path / "out") == 0
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv").set_index("method")
    base = np.array(scores["scratch-he"])
    for method in ("genesis", "denoising"):
        own = np.array(scores[method])
        expected = detectable_difference_t(own.std(ddof=1), base.std(ddof=1), 4, 4, 0.05 / 2)  # a family of 2
        assert table3.loc[method, "mdd_vs_baseline"] == pytest.approx(expected)
        assert table3.loc[method, "family_vs_baseline"] == "Holm over 2 comparisons with the baseline on t"
    power = pd.read_csv(tmp_path / "out" / "power.csv")
    assert len(power) == 3 and (power["verdict"] == "not significant").all() and np.isfinite(power["mdd"]).all()
    row = power[(power["method_a"] == "genesis") & (power["method_b"] == "scratch-he")].iloc[0]
    own = np.array(scores["genesis"])
    assert row["mdd"] == pytest.approx(detectable_difference_t(own.std(ddof=1), base.std(ddof=1), 4, 4, 0.05 / 3))
    legend = (tmp_path / "out" / "table3.md").read_text(encoding="utf-8")
    assert "chosen on these same scores" in legend


def test_the_correction_family_can_be_the_whole_benchmark(tmp_path, write_run):
    results = tmp_path / "results"
    rng = np.random.default_rng(7)
    for task in ("t1", "t2"):
        for method, shift in (("scratch-he", 0.0), ("genesis", 0.03), ("denoising", 0.01)):
            for seed in range(4):
                write_run(results, method, task, seed, 1.0, {"dice": 0.7 + shift + rng.normal(0, 0.01)}, "dice")
    assert report(results, tmp_path / "task") == 0
    assert report(results, tmp_path / "all", "--family", "benchmark") == 0
    per_task = pd.read_csv(tmp_path / "task" / "table3.csv")
    whole = pd.read_csv(tmp_path / "all" / "table3.csv")
    tested = whole.dropna(subset=["p_vs_baseline"])
    assert len(tested) == 4
    assert np.allclose(tested["p_vs_baseline_corrected"], multipletests(tested["p_vs_baseline"], method="holm")[1])
    assert set(tested["family_vs_baseline"]) == {"Holm over 4 comparisons with the baseline over all tasks"}
    assert set(per_task.dropna(subset=["p_vs_baseline"])["family_vs_baseline"]) == {
        "Holm over 2 comparisons with the baseline on t1", "Holm over 2 comparisons with the baseline on t2"}
    welch = pd.read_csv(tmp_path / "all" / "pairwise.csv")
    assert len(welch) == 6 and set(welch["correction"]) == {"Holm over 6 Welch test(s) over all tasks"}
    assert np.allclose(welch["p_corrected"], multipletests(welch["p"], method="holm")[1])


def write_curves(results, write_run, task, baseline_curve, method_curve, spread=0.005):
    """Runs of scratch-he and genesis on ``task``: ``curve`` maps fraction -> mean score; 3 seeds around it."""
    for method, curve in (("scratch-he", baseline_curve), ("genesis", method_curve)):
        for fraction, score in curve.items():
            for seed in (0, 1, 2):
                write_run(results, method, task, seed, fraction, {"dice": score + spread * (seed - 1)}, "dice")


def test_label_savings_are_claimed_only_where_the_task_can_show_them(tmp_path, write_run):
    results = tmp_path / "results"
    write_curves(results, write_run, "clear", {0.25: 0.5, 0.5: 0.6, 1.0: 0.8}, {0.25: 0.6, 0.5: 0.85, 1.0: 0.9})
    write_curves(results, write_run, "flat", {0.25: 0.8, 1.0: 0.8}, {0.25: 0.85, 1.0: 0.9})
    write_curves(results, write_run, "unknown", {1.0: 0.8}, {0.25: 0.85, 1.0: 0.9})
    write_curves(results, write_run, "wide", {0.25: 0.5, 1.0: 0.8}, {0.25: 0.6, 1.0: 0.8}, spread=0.05)
    assert report(results, tmp_path / "out") == 0
    savings = pd.read_csv(tmp_path / "out" / "fewer_labels.csv").set_index("task")

    clear = savings.loc["clear"]
    expected = 1 - (0.25 + 0.25 * 0.2 / 0.25)  # 0.8 reached between 0.6 at 0.25 and 0.85 at 0.5
    assert clear["fewer_labels"] == pytest.approx(expected) and clear["low"] == 0.5 and clear["shown_at"] == 0.5
    shown = st.ttest_ind([0.845, 0.85, 0.855], [0.795, 0.8, 0.805], equal_var=False, alternative="greater").pvalue
    assert clear["p"] == pytest.approx(shown) and clear["headline"]
    assert clear["claim"] == (f"at least 50% fewer labels (genesis at fraction 0.5 above scratch-he at 1, one-sided "
                              f"Welch p = {shown:.2g}; estimate {expected:.0%})")
    assert clear["tests"].startswith(f"p = {shown:.2g} at 0.5, p = 1 at 0.25")

    for task, reason in (
            ("flat", "no claim: flat does not discriminate label budgets at this size (scratch-he at fraction 0.25 vs "
                     "1: mean 0.800 vs 0.800, Welch p = 1)"),
            ("unknown", "no claim: whether unknown discriminates label budgets is unknown (scratch-he was not run with "
                        "at least 2 seeds below fraction 1 and on the full training set)")):
        row = savings.loc[task]
        assert row["fewer_labels"] == pytest.approx(0.75) and not row["headline"] and row["claim"] == reason
        assert row["lower_bound"] and "lower bound" in row["note"]

    wide = savings.loc["wide"]
    assert np.isnan(wide["low"]) and not wide["headline"]
    assert wide["claim"] == ("no claim: no fraction below 1 is shown to reach the baseline's full-data score "
                             "(one-sided Welch p < 0.05: p = 1 at 0.25)")


def test_convergence_counts_the_runs_still_training_and_auc_intervals_need_both_classes(tmp_path, write_run):
    results = tmp_path / "results"
    long, short = [0.2, 0.5, 0.7, 0.8], [0.4, 0.6]
    for seed, curve in enumerate((long, long, short)):
        history = {"epoch": list(range(len(curve))), "val_dice": [v + seed / 100 for v in curve]}
        write_run(results, "scratch-he", "t", seed, 1.0, {"dice": 0.8}, "dice", history=history)
    labels = [1] * 4 + [0] * 30
    aucs = [72 / 120, 73 / 120]  # 4 positives above 18, 18, 18, 18 (seed 1: 19) of the 30 negatives
    for seed in (0, 1):
        write_run(results, "scratch-he", "c", seed, 1.0, {"auc": aucs[seed]}, "auc",
                  cases={"case_id": [f"c{i}" for i in range(len(labels))], "label": labels,
                         "score": [17.5, 17.5, 17.5, 17.5 + seed] + list(range(30))})
    assert report(results, tmp_path / "out") == 0
    curves = pd.read_csv(tmp_path / "out" / "convergence_curves.csv")
    assert curves["n_training"].tolist() == [3, 3, 2, 2] and (curves["runs"] == 3).all()
    assert curves["mean"].iloc[:2].tolist() == pytest.approx([np.mean([0.2, 0.21, 0.42]), np.mean([0.5, 0.51, 0.62])])
    assert curves["mean"].iloc[2:].isna().all()  # not a mean of the runs that happen to be left

    intervals = pd.read_csv(tmp_path / "out" / "confidence_intervals.csv").set_index("task")
    assert intervals.loc["c", "level"] == "mean over seeds"  # no per-run AUC interval with 4 positives
    missing = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8")
    assert "4 positives and 30 negatives: the bootstrap interval of an AUC is given with at least 10 of each" in missing
    low, high = st.t.interval(0.95, 1, loc=np.mean(aucs), scale=st.sem(aucs))
    assert (intervals.loc["c", "low"], intervals.loc["c", "high"]) == (pytest.approx(low), pytest.approx(high))


def test_no_finite_detectable_difference_where_the_test_cannot_reach_the_level_it_is_computed_at() -> None:
    """Benjamini-Hochberg over 3 Wilcoxon tests of 5 cases (smallest p 0.03125 each) leaves each floor below
    .05, but the detectable difference is computed at .05 / 3, which none of them can reach."""
    rows = [{"p": 0.03125, "min_p": 0.03125, "_mdd": lambda alpha: 0.04} for _ in range(3)]
    views._correct_family(rows, "bh", "ncs", "wilcoxon")
    assert all(row["min_p_corrected"] < 0.05 for row in rows)  # BH leaves each floor at 0.03125
    assert [row["mdd"] for row in rows] == [np.inf] * 3
    reachable = [{"p": 0.2, "min_p": 0.0, "_mdd": lambda alpha: alpha} for _ in range(3)]
    views._correct_family(reachable, "bh", "ncs", "welch")
    assert [row["mdd"] for row in reachable] == [pytest.approx(0.05 / 3)] * 3


@pytest.mark.parametrize(("positives", "rows"), [(19, 0), (20, 1)])
def test_delong_is_given_with_at_least_20_candidates_of_each_class(positives: int, rows: int) -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(positives, int), np.zeros(60, int)]
    table = pd.DataFrame([{"task": "ncc", "level": "case", "metric": "score", "method": method, "seed": 0,
                           "case_id": f"c{i}", "label": label, "value": rng.normal(label, 1)}
                          for method in ("a", "b") for i, label in enumerate(labels)])
    gaps: list[str] = []
    assert len(views.delong_rows(table, "ncc", [("a", "b")], gaps)) == rows
    assert gaps == ([] if rows else [f"pairwise ncc: DeLong a vs b, seed 0: {positives} positives and 60 negatives: "
                                     "the DeLong test is given with at least 20 of each (it over-rejects below)"])


def test_a_perfect_ranking_against_a_constant_score_is_listed_not_given_p_zero() -> None:
    labels = np.r_[np.ones(20, int), np.zeros(20, int)]
    values = {"a": labels + 0.1 * np.arange(40) / 40, "b": np.full(40, 0.5)}
    table = pd.DataFrame([{"task": "ncc", "level": "case", "metric": "score", "method": method, "seed": 0,
                           "case_id": f"c{i}", "label": label, "value": values[method][i]}
                          for method in ("a", "b") for i, label in enumerate(labels)])
    gaps: list[str] = []
    assert views.delong_rows(table, "ncc", [("a", "b")], gaps) == []
    assert gaps == ["pairwise ncc: DeLong a vs b, seed 0: the DeLong variance of the AUC difference is zero while the "
                    "AUCs differ (1.000 vs 0.500: a perfect ranking against a constant score), so the test gives no "
                    "p-value"]


def _three_seeds(results, write_run, task="t", methods=("scratch-he", "genesis"), **options):
    folders = []
    for method, base in zip(methods, (0.70, 0.75)):
        for seed in range(3):
            folders.append(write_run(results, method, task, seed, 1.0, {"dice": base + seed / 100}, "dice", **options))
    return folders


def test_a_copied_run_folder_counts_once(tmp_path, write_run):
    results = tmp_path / "results"
    folder = _three_seeds(results, write_run)[0]
    shutil.copytree(folder, folder.with_name(folder.name + "-copy"))
    assert report(results, tmp_path / "out") == 0
    table3 = pd.read_csv(tmp_path / "out" / "table3.csv").set_index("method")
    assert table3.loc["scratch-he", "n_seeds"] == 3
    skipped = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8").replace("\\", "")  # unescaped
    assert f"the record of run {folder.name} in folder {folder.name}-copy" in skipped


@pytest.mark.parametrize("field, value, message", [
    ("finished_at", 12345, "finished_at: '12345' is not text"),
    ("warnings", "leak", "warnings: not a list of strings"),
    ("wall_seconds", "many", "wall_seconds: 'many' is not a number"),
    ("dims", {"name": "4d"}, "dims: '4d' is not one of"),
])
def test_a_record_field_of_the_wrong_type_skips_that_record_with_its_reason(tmp_path, write_run, field, value,
                                                                             message):
    results = tmp_path / "results"
    folder = _three_seeds(results, write_run)[0]
    record = json.loads((folder / "result.json").read_text())
    (folder / "result.json").write_text(json.dumps({**record, field: value}))
    assert report(results, tmp_path / "out") == 0
    assert pd.read_csv(tmp_path / "out" / "table3.csv").set_index("method").loc["scratch-he", "n_seeds"] == 2
    skipped = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8").replace("\\", "")  # unescaped
    assert message in skipped and f"{folder.name}" in skipped


def test_runs_of_one_task_scoring_different_primary_metrics_are_not_pooled(tmp_path, write_run, capsys):
    results = tmp_path / "results"
    folders = _three_seeds(results, write_run)
    for folder in folders[3:]:
        record = json.loads((folder / "result.json").read_text())
        (folder / "result.json").write_text(json.dumps({**record, "primary_metric": "iou", "metrics": {"iou": 0.6}}))
    assert report(results, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "task t: runs made with different primary metrics (dice (3 runs), iou (3 runs))" in err
    assert "--select metric=METRIC" in err
    assert report(results, tmp_path / "dice", "--select", "metric=dice") == 0


def test_cases_not_a_number_in_a_seed_and_repeated_case_ids_are_named_not_paired(tmp_path, write_run):
    results = tmp_path / "results"
    cases = [f"case{i}" for i in range(8)]
    for method, base in (("scratch-he", 0.7), ("genesis", 0.75)):
        for seed in range(2):
            values = base + np.arange(8) / 100 + seed / 1000
            if method == "genesis" and seed == 1:
                values[2] = np.nan
            write_run(results, method, "t", seed, 1.0, {"dice": float(np.nanmean(values))}, "dice",
                      cases={"case_id": cases, "dice": values})
    repeated = write_run(results, "denoising", "t", 0, 1.0, {"dice": 0.7}, "dice",
                         cases={"case_id": ["case0", "case0"], "dice": [0.7, 0.7]})
    assert report(results, tmp_path / "out") == 0
    skipped = (tmp_path / "out" / "not_computed.md").read_text(encoding="utf-8").replace("\\", "")  # unescaped
    assert "genesis: 1 case(s) with a value that is not a number in some seed (case2)" in skipped
    assert f"{repeated / 'cases.csv'}: case id(s) listed twice ('case0')" in skipped
    wilcoxon = pd.read_csv(tmp_path / "out" / "pairwise.csv")
    pair = wilcoxon[wilcoxon["test"].str.startswith("Wilcoxon") & (wilcoxon["method_a"] == "genesis")
                    & (wilcoxon["method_b"] == "scratch-he")]
    assert pair["pairing"].iloc[0].endswith("7 common cases (of 7 and 8)")  # case2 left out, not half-averaged


def test_tiny_fractions_are_told_apart(tmp_path, write_run):
    results = tmp_path / "results"
    for fraction, seeds in ((1e-9, (0,)), (5e-9, (1, 2))):
        for seed in seeds:
            write_run(results, "scratch-he", "t", seed, fraction, {"dice": 0.5}, "dice")
    scores, _ = views.seed_scores(read_results(results).table, 1e-9)
    assert list(scores["seed"]) == [0]
