"""Calibration: does the suite detect an effect known to exist, and report none where none exists?

A measuring instrument is shown to work by calibration. The report's calibration section
(``calibration.md``, ``calibration.csv``) is written when the results hold a negative control: a
method whose class names, in ``negative_control_of``, the method it copies in distribution
(``scratch-he-control`` for ``scratch-he``: the same initialisation from another random stream).

* Negative control: per task and label fraction, the Welch t-test (two-sided, across seeds) of the
  control against the method it copies. No difference exists, so each p-value is uniform and the
  share of comparisons with p < alpha should be alpha. The section gives k of n, the share, its
  exact (Clopper-Pearson) 95% interval and the one-sided binomial test of a share above alpha
  (``scipy.stats.binomtest``); with fewer than ``MIN_COMPARISONS`` comparisons it says there are too
  few to judge. Uncorrected on purpose: it calibrates the Welch test across seeds behind Table 3's
  marks and the pairwise Welch rows, before any correction (not the Wilcoxon and DeLong rows). The
  binomial figures treat the comparisons as independent; those of one task at several fractions
  share its seeds, so read them as approximate.
* Negative control, per case: the same pairs with the pairwise tables' per-case tests (Wilcoxon on
  the per-case values averaged over each method's seeds; DeLong per seed on the same candidates),
  uncorrected, and the same share of p < alpha. These tests hold the trained models fixed: the spread
  between training runs is not in them, so two runs of one method on the same cases can differ
  "significantly". Their share measures how far their "significant" is from a verdict on methods
  (the pairwise tables word it "significant for these trained models"). Its binomial figures are
  approximate too: a classification task gives one DeLong row per seed on the same candidates, a
  segmentation task one Wilcoxon row per fraction (counted even where it cannot reach p < alpha).
* Label budget: per task, the baseline at its lowest label fraction against full labels (Welch,
  two-sided): a benchmark that measures label efficiency must see this effect.
* Positive controls (``report --positive-control METHOD``, repeatable): each against the baseline at
  the lowest label fraction both have on each task (Welch, two-sided), an effect the user expects to
  exist (supervised pretraining on a second site of the same task, say).

Each row gives each side's mean and standard deviation across seeds (``sd``, ``sd_against``; n - 1 in the
denominator) and the difference of means with its 95% Welch interval (``ci_low``, ``ci_high``). The figure
(``calibration.png``) draws the negative control's p-values against the uniform distribution they follow
when no difference exists, and the known effects with their intervals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from benchmark.api.registry import METHODS
from benchmark.reporting import ALPHA, stats, views

NEGATIVE, NEGATIVE_PER_CASE = "negative control", "negative control, per case"
MIN_COMPARISONS = 20  # fewer null comparisons cannot tell a 5% false-positive rate from a much higher one
COLUMNS = ["check", "task", "fraction", "method", "against", "n", "mean", "sd", "mean_against", "sd_against",
           "difference", "ci_low", "ci_high", "p", "significant", "detected", "note"]
EXPECTED_SIGN = {"label budget": -1, "positive control": 1}  # fewer labels score lower; a positive control higher


def negative_controls(table: pd.DataFrame) -> dict[str, str]:
    """Control label -> the label of the method it copies, for the registered controls in ``table`` whose
    reference is there too (runs with the defaults only: a label that is the method's name)."""
    labels = set(table["method"].unique())
    pairs = {}
    for name in labels & set(METHODS.names()):
        reference = METHODS.get(name).negative_control_of
        if reference and reference in labels:
            pairs[name] = reference
    return pairs


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else np.nan


def _sd(values: np.ndarray) -> float:
    """The sample standard deviation across seeds (n - 1 in the denominator); none with fewer than 2 seeds."""
    return float(np.std(values, ddof=1)) if values.size > 1 else np.nan


def _welch_row(check: str, task: str, fraction: float, method: str, against: str, a: np.ndarray,
               b: np.ndarray) -> dict:
    row = {"check": check, "task": task, "fraction": fraction, "method": method, "against": against,
           "n": f"{a.size} vs {b.size}", "mean": _mean(a), "sd": _sd(a), "mean_against": _mean(b),
           "sd_against": _sd(b)}
    row["difference"] = row["mean"] - row["mean_against"]
    if a.size < 2 or b.size < 2:
        return {**row, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "significant": False,
                "note": "fewer than 2 seeds on a side"}
    result = stats.welch_t(a, b)
    return {**row, "ci_low": result.detail.get("ci_low", np.nan), "ci_high": result.detail.get("ci_high", np.nan),
            "p": result.p, "significant": bool(result.p < ALPHA), "note": result.detail.get("note", "")}


def _values(scores: pd.DataFrame, task: str, method: str) -> np.ndarray:
    return scores[(scores["task"] == task) & (scores["method"] == method)].sort_values("seed")["value"].to_numpy(float)


def calibration_rows(scores_by_fraction: dict[float, pd.DataFrame], controls: dict[str, str], baseline: str | None,
                     positive: Sequence[str], tasks: Sequence[str]) -> pd.DataFrame:
    """Every comparison of the section (see the module docstring), one row each."""
    rows = []
    fractions = sorted(scores_by_fraction)
    for fraction in fractions:
        scores = scores_by_fraction[fraction]
        for control, reference in sorted(controls.items()):
            for task in tasks:
                a, b = _values(scores, task, control), _values(scores, task, reference)
                if a.size or b.size:
                    rows.append(_welch_row(NEGATIVE, task, fraction, control, reference, a, b))
    if baseline is not None and len(fractions) > 1 and 1.0 in scores_by_fraction:
        for task in tasks:
            low = next((f for f in fractions if f < 1 and _values(scores_by_fraction[f], task, baseline).size), None)
            if low is not None:
                rows.append(_welch_row("label budget", task, low, f"{baseline} at {low:g}", f"{baseline} at 1",
                                       _values(scores_by_fraction[low], task, baseline),
                                       _values(scores_by_fraction[1.0], task, baseline)))
    for method in positive:
        for task in tasks:
            low = next((f for f in fractions if _values(scores_by_fraction[f], task, method).size
                        and baseline is not None and _values(scores_by_fraction[f], task, baseline).size), None)
            if low is not None and baseline is not None:
                scores = scores_by_fraction[low]
                rows.append(_welch_row("positive control", task, low, method, baseline, _values(scores, task, method),
                                       _values(scores, task, baseline)))
    table = pd.DataFrame(rows, columns=COLUMNS)
    expected = table["check"].map(EXPECTED_SIGN)
    same_direction = np.sign(table["difference"]) == expected
    table["detected"] = expected.notna() & table["significant"].astype(bool) & same_direction
    return table


def per_case_rows(table: pd.DataFrame, scores_by_fraction: dict[float, pd.DataFrame], controls: dict[str, str],
                  tasks: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Each negative control against the method it copies with the per-case tests of the pairwise tables
    (``views.pairwise_tests``), at every fraction, one row per test, uncorrected; and what could not be
    tested there."""
    rows, gaps = [], []
    for fraction, scores in sorted(scores_by_fraction.items()):
        for control, reference in sorted(controls.items()):
            both = [task for task in tasks if {control, reference} <= set(scores.loc[scores["task"] == task, "method"])]
            if not both:
                continue
            tests, missing = views.pairwise_tests(table, scores, fraction, both, "holm", pairs=[(control, reference)],
                                                  kinds=views.PER_CASE_KINDS)
            gaps += [f"calibration at fraction {fraction:g}: {gap}" for gap in missing]
            for test in tests.itertuples():
                note = "; ".join(filter(None, [f"{test.test}, {test.pairing}", test.note]))
                rows.append({"check": NEGATIVE_PER_CASE, "task": test.task, "fraction": fraction, "method": control,
                             "against": reference, "n": test.n, "difference": test.difference, "p": test.p,
                             "significant": bool(test.p < ALPHA), "detected": False, "note": note})
    return pd.DataFrame(rows, columns=COLUMNS), gaps


def false_positive_summary(rows: pd.DataFrame, check: str = NEGATIVE) -> str:
    """A negative control's share of 'significant' comparisons (of ``check``) against the nominal level, in
    words."""
    tested = rows[(rows["check"] == check) & rows["p"].notna()]
    if tested.empty:
        return f"{check}: no comparison" + (" with at least 2 seeds on each side" if check == NEGATIVE else "")
    k, n = int(tested["significant"].sum()), len(tested)
    if n < MIN_COMPARISONS:
        return (f"{check}: {k} of {n} comparisons significant at p < {ALPHA:g}: too few comparisons "
                f"(fewer than {MIN_COMPARISONS}) to judge the false-positive rate")
    test = scipy_stats.binomtest(k, n, ALPHA, alternative="greater")
    interval = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    verdict = ("above the nominal level" if test.pvalue < ALPHA else "consistent with the nominal level")
    return (f"{check}: {k} of {n} comparisons significant at p < {ALPHA:g} ({k / n:.1%}; exact 95% "
            f"interval {interval.low:.1%}-{interval.high:.1%}; one-sided binomial test of a share above "
            f"{ALPHA:.0%}: p = {test.pvalue:.3g}): {verdict}")


def detected_summary(rows: pd.DataFrame, check: str) -> str:
    """How many of a check's tested comparisons found the expected effect (significant, in the expected
    direction); the comparisons left untested (fewer than 2 seeds on a side, or both sides constant) are
    named apart with their reason, never counted as misses."""
    own = rows[rows["check"] == check]
    if own.empty:
        return f"{check}: no comparison"
    tested, untested = own[own["p"].notna()], own[own["p"].isna()]
    found = tested[tested["detected"]]
    missed = sorted(set(tested["task"]) - set(found["task"]))
    text = (f"{check}: the expected effect detected on {len(found)} of {len(tested)} tested comparisons"
            + (f" (not on {', '.join(missed)})" if missed else ""))
    for note, group in untested.groupby("note", sort=True):
        text += f"; {len(group)} not tested, {note} ({', '.join(sorted(set(group['task'])))})"
    return text
