"""The report's curves: label efficiency with its "X% fewer labels" figure, and convergence.

- Label efficiency: the primary metric per label fraction, mean over seeds with the t interval
  of the mean. "X% fewer labels" (``stats.fewer_labels``, the point estimate) comes with a one-sided
  95% lower bound shown by tests (``stats.fewer_labels_bound``: the method at a smaller fraction
  above the baseline on the full data, fixed-sequence one-sided Welch tests), and it is claimed,
  as "at least" that bound, only when the bound is above 0% and the task discriminates label
  budgets at all: the baseline's score at its smallest fraction is significantly below its score
  on the full training set (Welch, two-sided p < .05). Otherwise the table says why no claim is made.
- Convergence: per run, epochs until the validation metric first reaches 95% of its best; per
  epoch, how many runs still train and their mean, drawn only where every run contributes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.reporting import ALPHA, stats
from benchmark.reporting.views import Gaps, at_fraction, primary_runs, seed_interval

CONVERGENCE_SHARE = 0.95
LABEL_EFFICIENCY_COLUMNS = ["task", "method", "fraction", "n_seeds", "mean", "sd", "low", "high", "ci_method"]


def _finite_primary_runs(table: pd.DataFrame) -> pd.DataFrame:
    runs = primary_runs(table)
    return runs[np.isfinite(runs["value"])]


def label_efficiency(table: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Primary metric per (task, method, fraction): n seeds, mean, s.d. and the t interval of the mean."""
    runs = _finite_primary_runs(table)
    rows = []
    for task in tasks:
        for (method, fraction), group in runs[runs["task"] == task].groupby(["method", "fraction"]):
            values = group["value"].to_numpy(dtype=float)
            interval = seed_interval(values)
            rows.append({"task": task, "method": method, "fraction": fraction, "n_seeds": values.size,
                         "mean": float(np.mean(values)),
                         "sd": float(np.std(values, ddof=1)) if values.size > 1 else np.nan,
                         "low": interval.low if interval else np.nan, "high": interval.high if interval else np.nan,
                         "ci_method": interval.method if interval else ""})
    return pd.DataFrame(rows, columns=LABEL_EFFICIENCY_COLUMNS)


def label_budget_effect(baseline_runs: pd.DataFrame, baseline: str) -> tuple[bool | None, str]:
    """Whether the baseline's score depends on the label budget, and why: its smallest fraction with at
    least 2 seeds against the full training set (Welch, two-sided). None: cannot be told."""
    full = at_fraction(baseline_runs, 1.0)["value"].to_numpy(dtype=float)
    smaller = baseline_runs[baseline_runs["fraction"] < 1].groupby("fraction")["value"].apply(list)
    smaller = smaller[smaller.map(len) >= 2]
    if smaller.empty or full.size < 2:
        return None, f"{baseline} was not run with at least 2 seeds below fraction 1 and on the full training set"
    fraction = float(smaller.index.min())
    low = np.asarray(smaller[smaller.index.min()], dtype=float)
    test = stats.welch_t(low, full)
    text = (f"{baseline} at fraction {fraction:g} vs 1: mean {np.mean(low):.3f} vs {np.mean(full):.3f}, "
            f"Welch p = {test.p:.2g}")
    if not np.isfinite(test.p):
        return None, f"{text} ({test.detail['note']})"
    return bool(test.p < ALPHA and np.mean(low) < np.mean(full)), text


def _claim(task: str, method: str, baseline: str | None, saving: float | None, bound: stats.SavingBound,
           lower_bound: bool, effect: tuple[bool | None, str]) -> tuple[bool, str]:
    """(headline, text): the "X% fewer labels" claim, or why none is made."""
    discriminates, why = effect
    if discriminates is False:
        return False, f"no claim: {task} does not discriminate label budgets at this size ({why})"
    if discriminates is None:
        return False, f"no claim: whether {task} discriminates label budgets is unknown ({why})"
    if saving is None:
        return False, "no claim: never reaches the baseline's full-data score"
    if not bound.low > 0:
        return False, ("no claim: no fraction below 1 is shown to reach the baseline's full-data score "
                       f"(one-sided Welch p < {1 - bound.confidence:g}: {_tested(bound)})")
    return True, (f"at least {bound.low:.0%} fewer labels ({method} at fraction {bound.fraction:g} above {baseline} "
                  f"at 1, one-sided Welch p = {bound.p:.2g}; estimate {'≥ ' if lower_bound else ''}{saving:.0%})")


def _tested(bound: stats.SavingBound) -> str:
    tests = ", ".join(f"p = {p:.2g} at {fraction:g}" for fraction, p in bound.tests)
    return "; ".join(text for text in (tests, bound.note) if text) or "no fraction below 1"


def fewer_labels(table: pd.DataFrame, baseline: str | None, tasks: list[str]) -> tuple[pd.DataFrame, Gaps]:
    """Per task and method: the share of labels saved to reach the baseline's full-data score (estimate),
    its one-sided lower bound shown by tests, and whether it is claimed (see the module's docstring)."""
    runs = _finite_primary_runs(table)
    rows, gaps = [], []
    for task in tasks:
        group = runs[runs["task"] == task]
        base = group[group["method"] == baseline]
        full = at_fraction(base, 1.0)["value"].to_numpy(dtype=float)
        if full.size == 0:
            gaps.append(f"fewer labels on {task}: no {baseline or 'baseline'} run on the full training set")
            continue
        effect = label_budget_effect(base, baseline)
        for method, own in group[group["method"] != baseline].groupby("method"):
            by_fraction = own.groupby("fraction")["value"].apply(list)
            fractions = by_fraction.index.to_numpy(dtype=float)
            saving = stats.fewer_labels(fractions, list(by_fraction), float(np.mean(full)))
            bound = stats.fewer_labels_bound(fractions, list(by_fraction), full)
            lower_bound = bool(saving is not None and np.isclose(saving, 1 - fractions.min()))
            headline, claim = _claim(task, method, baseline, saving, bound, lower_bound, effect)
            rows.append({
                "task": task, "method": method, "baseline": baseline, "baseline_full_score": float(np.mean(full)),
                "seeds": ", ".join(f"{f:g}: {len(v)}" for f, v in by_fraction.items()) + f"; {baseline} at 1: "
                f"{full.size}", "fewer_labels": np.nan if saving is None else saving, "low": bound.low,
                "shown_at": bound.fraction, "p": bound.p, "bound": f"one-sided {bound.confidence:.0%}, {bound.method}",
                "tests": _tested(bound), "lower_bound": lower_bound, "headline": headline, "claim": claim,
                "note": "; ".join(text for text in (
                    "never reaches the baseline's full-data score" if saving is None else "",
                    "estimate is a lower bound: reached at the smallest fraction measured" if lower_bound else "")
                    if text),
            })
    return pd.DataFrame(rows), gaps


def convergence(histories: pd.DataFrame, primary: dict[str, str], fraction: float) -> tuple[pd.DataFrame, Gaps]:
    """Per run at ``fraction``: epochs to reach 95% of its best validation primary metric."""
    rows, gaps = [], []
    for run_id, history in at_fraction(histories, fraction).groupby("run_id"):
        column = f"val_{primary.get(run_id)}"
        curve = history[history["column"] == column].sort_values("epoch")
        first = history.iloc[0]
        reached = stats.epochs_to_reach(curve["value"].to_numpy(dtype=float), CONVERGENCE_SHARE) \
            if not curve.empty else None
        if reached is None:
            gaps.append(f"convergence {run_id}: no finite {column} in its history")
            continue
        rows.append({"task": first["task"], "method": first["method"], "seed": first["seed"], "run_id": run_id,
                     "metric": column, "epochs": len(curve), "best": float(curve["value"].max()),
                     "epochs_to_95pct_of_best": reached})
    return pd.DataFrame(rows), gaps


def convergence_summary(per_run: pd.DataFrame, baseline: str | None, tasks: list[str]) -> pd.DataFrame:
    """Mean epochs to reach 95% of the best per (task, method), and how much faster than the baseline."""
    if per_run.empty:
        return pd.DataFrame()
    summary = per_run.groupby(["task", "method"]).agg(
        n_seeds=("seed", "size"), mean_epochs_to_95pct=("epochs_to_95pct_of_best", "mean")).reset_index()
    base = summary[summary["method"] == baseline].set_index("task")["mean_epochs_to_95pct"]
    summary["faster_than_baseline"] = 1 - summary["mean_epochs_to_95pct"] / summary["task"].map(base)
    return summary.sort_values("task", key=lambda column: column.map(tasks.index), kind="stable")


def convergence_curves(histories: pd.DataFrame, primary: dict[str, str]) -> pd.DataFrame:
    """Per (task, method, epoch): the runs with a finite validation primary metric at that epoch, of how
    many, and their mean, given only where every run contributes (NaN once a run has stopped)."""
    curves = histories[histories["column"] == "val_" + histories["run_id"].map(primary)]
    curves = curves[np.isfinite(curves["value"].to_numpy(dtype=float))]
    rows = []
    for (task, method), own in curves.groupby(["task", "method"]):
        runs = own["run_id"].nunique()
        for epoch, at_epoch in own.groupby("epoch"):
            rows.append({"task": task, "method": method, "epoch": int(epoch), "runs": runs,
                         "n_training": len(at_epoch),
                         "mean": float(at_epoch["value"].mean()) if len(at_epoch) == runs else np.nan})
    return pd.DataFrame(rows, columns=["task", "method", "epoch", "runs", "n_training", "mean"])
