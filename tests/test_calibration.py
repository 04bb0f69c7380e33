"""Calibration: the negative control method, and the report's calibration section checked against scipy on
hand-made records (a null effect at its nominal false-positive rate, a label budget effect, a positive
control)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import unet
from scipy import stats as st
from sklearn.metrics import roc_auc_score

from benchmark.api.registry import METHODS
from benchmark.cli import main
from benchmark.reporting import ALPHA
from benchmark.reporting.calibration import calibration_rows, detected_summary, false_positive_summary


def initialised(name: str, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    model = unet().build_segmenter(1, 1, 2)
    METHODS.create(name).init_weights(model)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_the_negative_control_draws_other_weights_from_the_same_distribution_and_leaves_the_stream() -> None:
    he, control = initialised("scratch-he", 3), initialised("scratch-he-control", 3)
    assert not torch.equal(he, control)
    assert torch.equal(control, initialised("scratch-he-control", 3))  # reproducible from the seed
    assert st.ks_2samp(he.numpy(), control.numpy()).pvalue > 0.01  # the same distribution
    torch.manual_seed(3)
    METHODS.create("scratch-he-control").init_weights(unet().build_segmenter(1, 1, 2))
    after_control = torch.rand(1)
    torch.manual_seed(3)
    unet().build_segmenter(1, 1, 2)
    assert torch.equal(after_control, torch.rand(1))  # what follows the initialisation is untouched
    assert METHODS.get("scratch-he-control").negative_control_of == "scratch-he"


def null_scores(rng: np.random.Generator, tasks: int, seeds: int) -> pd.DataFrame:
    rows = [{"task": f"t{t}", "method": method, "seed": s, "value": rng.normal(0.8, 0.02)}
            for t in range(tasks) for method in ("scratch-he", "scratch-he-control") for s in range(seeds)]
    return pd.DataFrame(rows)


def test_the_negative_control_rows_are_scipys_welch_tests_and_keep_the_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    scores = {0.25: null_scores(rng, 200, 3), 1.0: null_scores(rng, 200, 3)}
    tasks = [f"t{t}" for t in range(200)]
    rows = calibration_rows(scores, {"scratch-he-control": "scratch-he"}, None, [], tasks)
    assert len(rows) == 400 and set(rows["check"]) == {"negative control"}
    first = rows.iloc[0]
    a = scores[0.25].query("task == 't0' and method == 'scratch-he-control'")["value"]
    b = scores[0.25].query("task == 't0' and method == 'scratch-he'")["value"]
    assert first["p"] == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue)
    assert (first["sd"], first["sd_against"]) == pytest.approx((st.tstd(a), st.tstd(b)))  # n - 1 denominator
    share = rows["significant"].mean()
    assert abs(share - ALPHA) < 0.03  # 400 null comparisons at 3 seeds: the t-test is exact under normality
    assert "consistent with the nominal level" in false_positive_summary(rows)


def test_a_control_that_differs_is_flagged_above_the_nominal_level() -> None:
    rng = np.random.default_rng(1)
    scores = null_scores(rng, 60, 5)
    scores.loc[scores["method"] == "scratch-he-control", "value"] += 0.05
    tasks = sorted(scores["task"].unique())
    rows = calibration_rows({1.0: scores}, {"scratch-he-control": "scratch-he"}, None, [], tasks)
    assert "above the nominal level" in false_positive_summary(rows)


def test_the_report_shows_the_controls_the_label_budget_and_a_positive_control(tmp_path, write_run, capsys) -> None:
    results, out = tmp_path / "results", tmp_path / "report"
    rng = np.random.default_rng(2)
    means = {("scratch-he", 0.1): 0.60, ("scratch-he", 1.0): 0.80, ("scratch-he-control", 0.1): 0.60,
             ("scratch-he-control", 1.0): 0.80, ("supervised", 0.1): 0.75, ("supervised", 1.0): 0.82}
    for (method, fraction), mean in means.items():
        for seed in range(4):
            checkpoint = f"{method}-{seed}" if method == "supervised" else None  # not kept with the records
            write_run(results, method, "ncc", seed, fraction, {"auc": float(rng.normal(mean, 0.01))}, "auc",
                      checkpoint_id=checkpoint)
    assert main(["report", "--results", str(results), "--out", str(out), "--no-progress",
                 "--positive-control", "supervised"]) == 0
    assert "restoration picture" not in (out / "not_computed.md").read_text()  # supervised: nothing to restore
    table = pd.read_csv(out / "calibration.csv")
    assert list(table["check"]) == ["negative control", "negative control", "label budget", "positive control"]
    budget = table[table["check"] == "label budget"].iloc[0]
    assert bool(budget["significant"]) and budget["difference"] < 0
    positive = table[table["check"] == "positive control"].iloc[0]
    assert bool(positive["significant"]) and positive["fraction"] == 0.1
    assert list(table["detected"]) == [False, False, True, True]
    seeds = pd.read_csv(out / "results_table.csv").query("fraction == 0.1 and metric == 'auc'")
    a, b = (seeds.query(f"method == '{m}'").drop_duplicates("seed")["value"] for m in ("supervised", "scratch-he"))
    interval = st.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (positive["ci_low"], positive["ci_high"]) == pytest.approx((interval.low, interval.high))
    for name in ("calibration.png", "calibration.pdf", "calibration_column.pdf"):
        assert (out / name).stat().st_size > 0
    text = (out / "calibration.md").read_text()
    assert "Label budget: the expected effect detected on 1 of 1" in text
    assert "Positive control: the expected effect detected on 1 of 1" in text
    assert "too few comparisons" in text  # two null comparisons cannot judge a 5% rate
    assert "per case" not in text  # no per-case values in these runs: no per-case rows, nor a legend for them
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "again"), "--no-progress",
                 "--positive-control", "nope"]) == 2
    assert "--positive-control 'nope'" in capsys.readouterr().err
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "again"), "--no-progress",
                 "--positive-control", "scratch-he"]) == 2
    assert "is the baseline itself" in capsys.readouterr().err
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "again"), "--no-progress",
                 "--positive-control", "supervised", "--positive-control", "supervised"]) == 2
    assert "--positive-control 'supervised' is given twice" in capsys.readouterr().err
    assert not (tmp_path / "again" / ".report-staging").exists()  # refused before any section was computed


def test_a_comparison_with_one_seed_is_named_untested_not_counted_as_a_miss() -> None:
    scores = pd.DataFrame([{"task": task, "method": method, "seed": seed, "value": value}
                           for task, seeds in (("ncc", range(4)), ("ncs", range(1)))
                           for method, value in (("scratch-he", 0.6), ("supervised", 0.9))
                           for seed in seeds])
    scores["value"] += np.random.default_rng(3).normal(0, 0.01, len(scores))
    rows = calibration_rows({0.05: scores}, {}, "scratch-he", ["supervised"], ["ncc", "ncs"])
    assert detected_summary(rows, "positive control") == (
        "positive control: the expected effect detected on 1 of 1 tested comparisons; "
        "1 not tested, fewer than 2 seeds on a side (ncs)")
    one_seed = rows[rows["task"] == "ncs"].iloc[0]
    assert np.isnan(one_seed["sd"]) and np.isnan(one_seed["sd_against"])  # no spread from one seed


def test_an_untested_comparison_is_named_with_its_own_reason() -> None:
    # 3 seeds a side that all scored the same: the t-test is undefined, not short of seeds
    scores = pd.DataFrame([{"task": "ncc", "method": method, "seed": seed, "value": value}
                           for method, value in (("scratch-he", 0.5), ("supervised", 1.0)) for seed in range(3)])
    rows = calibration_rows({0.05: scores}, {}, "scratch-he", ["supervised"], ["ncc"])
    assert detected_summary(rows, "positive control") == (
        "positive control: the expected effect detected on 0 of 0 tested comparisons; 1 not tested, "
        "both groups have zero variance; means differ, the t-test is undefined (no p-value) (ncc)")


def test_the_per_case_tests_are_calibrated_on_the_negative_control_too(tmp_path, write_run) -> None:
    """Two methods alike in distribution whose trained models each carry their own offset: Welch across seeds
    sees no difference to speak of, the per-case tests (models held fixed) see the models' difference. The
    calibration section counts them apart, with the pairwise tables' own uncorrected p-values."""
    results, out = tmp_path / "results", tmp_path / "report"
    rng = np.random.default_rng(5)
    difficulty, labels = np.linspace(0.6, 0.9, 40), np.repeat([0, 1], 25)
    averaged = {}
    for fraction in (0.5, 1.0):
        for method in ("scratch-he", "scratch-he-control"):
            dice = []
            for seed in range(4):
                values = difficulty + rng.normal(0, 0.03) + rng.normal(0, 0.005, difficulty.size)
                dice.append(values)
                write_run(results, method, "seg", seed, fraction, {"dice": float(values.mean())}, "dice",
                          cases={"case_id": [f"s{i}" for i in range(values.size)], "dice": values})
                scores = labels + rng.normal(0, 0.8, labels.size)
                write_run(results, method, "cls", seed, fraction, {"auc": roc_auc_score(labels, scores)}, "auc",
                          cases={"case_id": [f"c{i}" for i in range(labels.size)], "label": labels, "score": scores})
            averaged[fraction, method] = np.mean(dice, axis=0)
    assert main(["report", "--results", str(results), "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "calibration.csv")
    per_case = table[table["check"] == "negative control, per case"]
    assert list(table["check"].drop_duplicates()) == ["negative control", "negative control, per case", "label budget"]
    assert len(per_case) == 2 * (1 + 4)  # per fraction: one Wilcoxon on seg, a DeLong per seed on cls
    wilcoxon = per_case[per_case["note"].str.startswith("Wilcoxon")].set_index("fraction")
    for fraction in (0.5, 1.0):
        expected = st.wilcoxon(averaged[fraction, "scratch-he-control"], averaged[fraction, "scratch-he"]).pvalue
        assert wilcoxon.loc[fraction, "p"] == pytest.approx(expected)
    pairwise = pd.read_csv(out / "pairwise.csv")  # at the report's fraction, 1: the same tests, before correction
    at_one = per_case[per_case["fraction"] == 1.0].set_index("note")["p"]
    case_rows = pairwise[pairwise["test"].str.startswith(("Wilcoxon", "DeLong"))]
    assert len(case_rows) == len(at_one) == 5
    for row in case_rows.itertuples():
        assert at_one[f"{row.test}, {row.pairing}"] == pytest.approx(row.p)
    k = int(per_case["significant"].sum())
    assert k >= 2 and (per_case["significant"] == (per_case["p"] < ALPHA)).all()
    assert (f"Negative control, per case: {k} of 10 comparisons significant at p \\< 0.05: too few comparisons"
            in (out / "calibration.md").read_text())
    significant = case_rows["p_corrected"] < ALPHA
    assert significant.any() and (case_rows.loc[significant, "verdict"] == "significant for these trained models").all()
    assert (out / "calibration.png").stat().st_size > 0
