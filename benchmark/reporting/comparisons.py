"""A few variants of one method side by side (its ablations, its restoration losses) with the report's
own statistics: nothing here computes a statistic of its own.

- Per (task, label fraction, method): n seeds, mean, s.d. and the t interval of the mean
  (``curves.label_efficiency``), at every fraction where at least two of the variants (and the
  one the others are compared with, where there is one) were run.
- Tests: ``views.pairwise_tests`` (Welch across seeds; Wilcoxon on per-case values or DeLong on
  the same candidates) on the chosen pairs, at each of those fractions; a family is one test on
  one task at one fraction (``--family task``) or one test over all tasks at one fraction
  (``--family benchmark``), corrected as in the pairwise tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.reporting import curves, views
from benchmark.reporting.variants import Ablations, LossComparison

TEST_COLUMNS = ["task", "fraction", *views.PAIRWISE_COLUMNS[1:]]
SUMMARY_COLUMNS = ["task", "metric", "fraction", "method", "n_seeds", "mean", "sd", "ci_low", "ci_high", "ci_method"]


@dataclass
class Comparison:
    summary: pd.DataFrame  # SUMMARY_COLUMNS, methods in the order given
    tests: pd.DataFrame  # TEST_COLUMNS
    seeds: pd.DataFrame  # task, fraction, method, seed, value: the per-seed scores behind the means
    gaps: list[str] = field(default_factory=list)


def compare(table: pd.DataFrame, methods: list[str], pairs: list[tuple[str, str]], tasks: list[str], correction: str,
            family: str, required: str | None = None) -> Comparison:
    """``methods`` on each task and fraction where at least two of them (``required`` among them, if
    given) have a finite primary score, and the tests of ``pairs`` there."""
    own = table[table["method"].isin(methods)]
    summary = curves.label_efficiency(own, tasks).rename(columns={"low": "ci_low", "high": "ci_high"})
    keys = ["task", "fraction"]
    enough = summary.groupby(keys)["method"].transform("nunique") >= 2
    if required is not None:
        enough &= summary.groupby(keys)["method"].transform(lambda group: (group == required).any())
    summary = summary[enough]
    metric = own.drop_duplicates("task").set_index("task")["primary_metric"]
    summary = summary.assign(metric=summary["task"].map(metric), _order=summary["method"].map(methods.index))
    summary = summary.sort_values(["task", "fraction", "_order"], key=_task_key(tasks), kind="stable")
    tests, seeds, gaps = [], [], []
    for fraction in sorted(summary["fraction"].unique()):
        here = summary[np.isclose(summary["fraction"], fraction, atol=0.0)]
        scores, missing = views.seed_scores(own, fraction)
        scores = scores[scores["task"].isin(here["task"])]
        found, more = views.pairwise_tests(own, scores, fraction, [t for t in tasks if t in set(here["task"])],
                                           correction, family, pairs)
        tests.append(found.assign(fraction=fraction))
        seeds.append(scores.assign(fraction=fraction)[["task", "fraction", "method", "seed", "value"]])
        gaps += [f"fraction {fraction:g}: {gap}" for gap in (*missing, *more)]
    return Comparison(summary=summary[SUMMARY_COLUMNS].reset_index(drop=True),
                      tests=pd.concat(tests, ignore_index=True)[TEST_COLUMNS] if tests else
                      pd.DataFrame(columns=TEST_COLUMNS),
                      seeds=pd.concat(seeds, ignore_index=True) if seeds else
                      pd.DataFrame(columns=["task", "fraction", "method", "seed", "value"]),
                      gaps=gaps)


def _task_key(tasks: list[str]):
    def key(column: pd.Series) -> pd.Series:
        return column.map(tasks.index) if column.name == "task" else column
    return key


def highest_fraction(comparison: Comparison) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary and the seeds of each task at its highest fraction in the comparison (for the figure)."""
    top = comparison.summary.groupby("task")["fraction"].transform("max")
    summary = comparison.summary[np.isclose(comparison.summary["fraction"], top, atol=0.0)]
    tops = summary.drop_duplicates("task").set_index("task")["fraction"]
    seeds = comparison.seeds[np.isclose(comparison.seeds["fraction"], comparison.seeds["task"].map(tops), atol=0.0)]
    return summary, seeds


def ablation_table(comparison: Comparison, ablations: Ablations) -> pd.DataFrame:
    """The summary with, per ablation, its description and the Welch test of the combined scheme against it."""
    welch = comparison.tests[comparison.tests["test"].str.startswith("Welch")
                             & (comparison.tests["method_a"] == ablations.combined)]
    welch = welch.rename(columns={"method_b": "method", "p": "p_vs_combined", "p_corrected": "p_vs_combined_corrected",
                                  "marks": "marks_vs_combined", "verdict": "verdict_vs_combined"})
    descriptions = {ablations.combined: ablations.description, **ablations.ablations}
    frame = comparison.summary.assign(
        role=np.where(comparison.summary["method"] == ablations.combined, "combined", "ablation"),
        scheme=comparison.summary["method"].map(descriptions))
    means = frame[frame["role"] == "combined"].set_index(["task", "fraction"])["mean"]
    frame["combined_minus_this"] = [means.get((task, fraction), np.nan) - mean for task, fraction, mean in
                                    zip(frame["task"], frame["fraction"], frame["mean"])]
    frame.loc[frame["role"] == "combined", "combined_minus_this"] = np.nan
    tested = ["p_vs_combined", "p_vs_combined_corrected", "marks_vs_combined", "verdict_vs_combined", "correction"]
    frame = frame.merge(welch[["task", "fraction", "method", *tested]], on=["task", "fraction", "method"], how="left")
    frame["marks_vs_combined"] = frame["marks_vs_combined"].fillna("")
    return frame[["task", "metric", "fraction", "method", "role", "scheme", "n_seeds", "mean", "sd", "ci_low",
                  "ci_high", "ci_method", "combined_minus_this", *tested]]


def loss_table(comparison: Comparison, losses: LossComparison) -> pd.DataFrame:
    """The summary with each variant's loss."""
    frame = comparison.summary.assign(loss=comparison.summary["method"].map(losses.variants))
    return frame[["task", "metric", "fraction", "method", "loss", *SUMMARY_COLUMNS[4:]]]
