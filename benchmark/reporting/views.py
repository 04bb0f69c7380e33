"""The report's numbers: views of the long results table (benchmark.reporting.table) and their tests.

Every function takes the long table (one profile, one record per method, task, fraction
and seed) and returns a DataFrame plus the list of what it could not compute and why.
All metrics of the built-in tasks (AUC, Dice, IoU) are higher-is-better.

- Table 3: mean ± s.d. of the primary metric across seeds per method and task; Welch
  t-tests against the baseline method and against the best method of the task, each family
  corrected within the task; marks from the corrected p-values.
- Pairwise tests per task: Welch across seeds (run-level primary metric); Wilcoxon
  signed-rank on per-case values averaged over each method's seeds, paired by case id
  (segmentation); DeLong per seed on the same candidates (classification). Each
  (task, test) family is corrected (Holm or Benjamini-Hochberg).
- Bootstrap 95% confidence intervals: across seeds, and across cases within each run.
- Label efficiency (mean with a t-based 95% band per fraction, "X% fewer labels") and
  convergence (epochs to reach 95% of the best validation score).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy import stats as st

from benchmark.reporting import stats

Gaps = list[str]
CONVERGENCE_SHARE = 0.95
BOOTSTRAP_RESAMPLES = 9999


def at_fraction(frame: pd.DataFrame, fraction: float) -> pd.DataFrame:
    return frame[np.isclose(frame["fraction"], fraction)]


def primary_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Run-level rows of each run's primary metric."""
    return table[(table["level"] == "run") & (table["metric"] == table["primary_metric"])]


def primary_cases(table: pd.DataFrame) -> pd.DataFrame:
    """Per-case rows of each run's primary metric (segmentation tasks)."""
    return table[(table["level"] == "case") & (table["metric"] == table["primary_metric"])]


def keep_newest_runs(table: pd.DataFrame) -> tuple[pd.DataFrame, Gaps]:
    """One run per (method, task, profile, fraction, seed): the most recently finished one."""
    keys = ["method", "task", "profile", "fraction", "seed"]
    runs = table.drop_duplicates("run_id")[[*keys, "run_id", "finished_at"]]
    runs = runs.sort_values("finished_at", na_position="first", kind="stable")
    newest = runs.drop_duplicates(keys, keep="last")
    notes = [f"{len(group)} records for {name[0]} on {name[1]}, fraction {name[3]:g}, seed {name[4]} "
             f"({', '.join(group['run_id'])}): the newest ({group['run_id'].iloc[-1]}) is used"
             for name, group in runs.groupby(keys) if len(group) > 1]
    return table[table["run_id"].isin(newest["run_id"])], notes


def seed_scores(table: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, Gaps]:
    """The primary metric per (task, method, seed) at ``fraction``; NaN scores dropped and listed."""
    rows = at_fraction(primary_runs(table), fraction)
    bad = rows[~np.isfinite(rows["value"])]
    gaps = [f"{r.run_id}: {r.metric} is not a number; left out" for r in bad.itertuples()]
    return rows[np.isfinite(rows["value"])][["task", "method", "seed", "metric", "value", "run_id"]], gaps


def _values(scores: pd.DataFrame, task: str, method: str) -> np.ndarray:
    chosen = scores[(scores["task"] == task) & (scores["method"] == method)].sort_values("seed")
    return chosen["value"].to_numpy(dtype=float)


def _welch_or_gap(a: np.ndarray, b: np.ndarray, label: str, gaps: Gaps) -> float:
    if a.size < 2 or b.size < 2:
        gaps.append(f"{label}: Welch t-test needs at least 2 seeds per method (have {a.size} and {b.size})")
        return np.nan
    return stats.welch_t(a, b).p


def _corrected(p: list[float], correction: str) -> list[float]:
    return list(stats.correct(p, correction).p_corrected) if p else []


def table3(scores: pd.DataFrame, methods: list[str], tasks: list[str], baseline: str | None,
           correction: str) -> tuple[pd.DataFrame, Gaps]:
    """One row per (task, method): n, mean, s.d., best, and the tests against baseline and best."""
    rows, gaps = [], []
    for task in tasks:
        present = [m for m in methods if _values(scores, task, m).size]
        for method in sorted(set(methods) - set(present)):
            gaps.append(f"table 3: {method} on {task}: no finished run at this fraction")
        if not present:
            continue
        means = {m: float(np.mean(_values(scores, task, m))) for m in present}
        top = max(means.values())
        best = [m for m in present if means[m] == top]
        if baseline is not None and baseline not in present:
            gaps.append(f"table 3: no {baseline} (baseline) run on {task}: no marks against the baseline")
        p_base = {m: _welch_or_gap(_values(scores, task, m), _values(scores, task, baseline),
                                   f"{task}: {m} vs {baseline} (baseline)", gaps)
                  for m in present if baseline in present and m != baseline}
        p_best = {m: _welch_or_gap(_values(scores, task, m), _values(scores, task, best[0]),
                                   f"{task}: {m} vs {best[0]} (best)", gaps)
                  for m in present if m not in best}
        base_corr = dict(zip(p_base, _corrected(list(p_base.values()), correction)))
        best_corr = dict(zip(p_best, _corrected(list(p_best.values()), correction)))
        for method in present:
            values = _values(scores, task, method)
            rows.append({
                "task": task, "method": method, "metric": scores[scores["task"] == task]["metric"].iloc[0],
                "n_seeds": values.size, "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if values.size > 1 else np.nan,
                "best": method in best, "baseline": method == baseline,
                "p_vs_baseline": p_base.get(method, np.nan), "p_vs_baseline_corrected": base_corr.get(method, np.nan),
                "marks_vs_baseline": stats.significance_marks(base_corr.get(method)),
                "p_vs_best": p_best.get(method, np.nan), "p_vs_best_corrected": best_corr.get(method, np.nan),
                "marks_vs_best": stats.significance_marks(best_corr.get(method)),
            })
    return pd.DataFrame(rows), gaps


def _seed_averaged_cases(cases: pd.DataFrame, task: str, method: str) -> pd.Series:
    chosen = cases[(cases["task"] == task) & (cases["method"] == method)]
    return chosen.groupby("case_id")["value"].mean()


def _test_row(task: str, a: str, b: str, pairing: str, result: stats.TestResult) -> dict:
    n = result.n if isinstance(result.n, str) else ", ".join(f"{k} {v}" for k, v in result.n.items())
    return {"task": task, "test": result.test, "method_a": a, "method_b": b, "pairing": pairing, "n": n,
            "statistic": result.statistic, "p": result.p,
            "difference": result.detail.get("difference", result.detail.get("mean_difference", np.nan))}


def welch_rows(scores: pd.DataFrame, task: str, pairs: list[tuple[str, str]], gaps: Gaps) -> list[dict]:
    rows = []
    for a, b in pairs:
        va, vb = _values(scores, task, a), _values(scores, task, b)
        if va.size < 2 or vb.size < 2:
            gaps.append(f"pairwise {task}: Welch {a} vs {b} needs at least 2 seeds each (have {va.size}, {vb.size})")
            continue
        rows.append(_test_row(task, a, b, "independent runs (seeds)", stats.welch_t(va, vb)))
    return rows


def wilcoxon_rows(cases: pd.DataFrame, task: str, pairs: list[tuple[str, str]], gaps: Gaps) -> list[dict]:
    rows = []
    for a, b in pairs:
        va, vb = _seed_averaged_cases(cases, task, a), _seed_averaged_cases(cases, task, b)
        common = va.index.intersection(vb.index)
        if common.empty:
            gaps.append(f"pairwise {task}: Wilcoxon {a} vs {b}: no test case in common")
            continue
        pairing = f"per case, values averaged over each method's seeds; {common.size} common cases"
        if common.size != max(va.size, vb.size):
            pairing += f" (of {va.size} and {vb.size})"
        rows.append(_test_row(task, a, b, pairing,
                              stats.wilcoxon_signed_rank(va[common].to_numpy(), vb[common].to_numpy())))
    return rows


def delong_rows(table: pd.DataFrame, task: str, pairs: list[tuple[str, str]], gaps: Gaps) -> list[dict]:
    scores = table[(table["task"] == task) & (table["level"] == "case") & (table["metric"] == "score")]
    rows = []
    for a, b in pairs:
        sa, sb = scores[scores["method"] == a], scores[scores["method"] == b]
        for seed in sorted(set(sa["seed"]) & set(sb["seed"])):
            merged = sa[sa["seed"] == seed].merge(sb[sb["seed"] == seed], on="case_id", suffixes=("_a", "_b"))
            label = f"pairwise {task}: DeLong {a} vs {b}, seed {seed}"
            if merged.empty or not (merged["label_a"] == merged["label_b"]).all():
                gaps.append(f"{label}: the two runs do not share the same labelled candidates")
                continue
            try:
                result = stats.delong(merged["label_a"].to_numpy(int), merged["value_a"], merged["value_b"])
            except ValueError as error:
                gaps.append(f"{label}: {error}")
                continue
            rows.append(_test_row(task, a, b, f"same candidates, seed {seed}", result))
        if not set(sa["seed"]) & set(sb["seed"]):
            gaps.append(f"pairwise {task}: DeLong {a} vs {b}: no seed run by both")
    return rows


def pairwise_tests(table: pd.DataFrame, scores: pd.DataFrame, fraction: float, task: str,
                   correction: str) -> tuple[pd.DataFrame, Gaps]:
    """Every pair of methods on ``task``: Welch, and Wilcoxon or DeLong where per-case values allow."""
    gaps: Gaps = []
    methods = sorted(scores[scores["task"] == task]["method"].unique())
    pairs = list(itertools.combinations(methods, 2))
    if not pairs:
        return pd.DataFrame(), [f"pairwise {task}: only {', '.join(methods) or 'no method'} at this fraction"]
    selected = at_fraction(table[table["task"] == task], fraction)
    cases = primary_cases(selected)
    families: list[list[dict]] = [welch_rows(scores, task, pairs, gaps)]
    if not cases.empty:
        families.append(wilcoxon_rows(cases, task, pairs, gaps))
    if (selected["metric"] == "score").any():
        families.append(delong_rows(selected, task, pairs, gaps))
    rows = []
    for family in families:
        if not family:
            continue
        corrected = stats.correct([r["p"] for r in family], correction)
        label = f"{corrected.label} over {corrected.n_tests} test(s) ({family[0]['test'].split(' (')[0]}) on {task}"
        for row, p in zip(family, corrected.p_corrected):
            rows.append({**row, "p_corrected": p, "correction": label, "marks": stats.significance_marks(p)})
    return pd.DataFrame(rows), gaps


def confidence_intervals(table: pd.DataFrame, scores: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, Gaps]:
    """Bootstrap 95% CIs: across seeds (per method and task) and across cases (per run)."""
    rows, gaps = [], []
    for (task, method), group in scores.groupby(["task", "method"]):
        if len(group) < 2:
            gaps.append(f"CI {method} on {task} across seeds: needs at least 2 seeds (have {len(group)})")
            continue
        ci = stats.bootstrap_ci(group["value"].to_numpy(), n_resamples=BOOTSTRAP_RESAMPLES)
        rows.append(_ci_row(task, method, "mean over seeds", None, ci))
    cases = at_fraction(table[table["level"] == "case"], fraction)
    for run_id, group in cases.groupby("run_id"):
        first = group.iloc[0]
        try:
            ci = _case_ci(group, first["primary_metric"])
        except ValueError as error:
            gaps.append(f"CI {run_id} across cases: {error}")
            continue
        if ci is not None:
            rows.append(_ci_row(first["task"], first["method"], "across cases, one run", first["seed"], ci))
    frame = pd.DataFrame(rows)
    return (frame.astype({"seed": "Int64"}) if rows else frame), gaps


def _case_ci(group: pd.DataFrame, primary: str) -> stats.ConfidenceInterval | None:
    per_case = group[group["metric"] == primary]
    if not per_case.empty:
        return stats.bootstrap_ci(per_case["value"].to_numpy(), n_resamples=BOOTSTRAP_RESAMPLES)
    candidates = group[group["metric"] == "score"]
    if candidates.empty:
        return None
    return stats.auc_bootstrap_ci(candidates["label"].to_numpy(int), candidates["value"].to_numpy(),
                                  n_resamples=BOOTSTRAP_RESAMPLES)


def _ci_row(task: str, method: str, level: str, seed: int | None, ci: stats.ConfidenceInterval) -> dict:
    n = ", ".join(f"{k} {v}" for k, v in ci.n.items()) if isinstance(ci.n, dict) else ci.n
    return {"task": task, "method": method, "level": level, "seed": seed, "estimate": ci.estimate,
            "low": ci.low, "high": ci.high, "confidence": ci.confidence, "ci_method": ci.method, "n": n,
            "resamples": ci.n_resamples, "note": ci.note}


def mean_band(values: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, s.d., low, high): the t-based 95% interval of the mean; NaN band below 2 values."""
    mean = float(np.mean(values))
    if values.size < 2:
        return mean, np.nan, np.nan, np.nan
    sd = float(np.std(values, ddof=1))
    half = float(st.t.ppf(0.975, values.size - 1)) * sd / np.sqrt(values.size)
    return mean, sd, mean - half, mean + half


def label_efficiency(table: pd.DataFrame) -> pd.DataFrame:
    """Primary metric per (task, method, fraction): n seeds, mean, s.d. and the 95% band of the mean."""
    runs = primary_runs(table)
    runs = runs[np.isfinite(runs["value"])]
    rows = []
    for (task, method, fraction), group in runs.groupby(["task", "method", "fraction"]):
        mean, sd, low, high = mean_band(group["value"].to_numpy(dtype=float))
        rows.append({"task": task, "method": method, "fraction": fraction, "n_seeds": len(group),
                     "mean": mean, "sd": sd, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["task", "method", "fraction", "n_seeds", "mean", "sd", "low", "high"])


def fewer_labels(table: pd.DataFrame, baseline: str | None) -> tuple[pd.DataFrame, Gaps]:
    """Per task and method: the share of labels saved to reach the baseline's full-data score."""
    runs = primary_runs(table)
    runs = runs[np.isfinite(runs["value"])]
    rows, gaps = [], []
    for task, group in runs.groupby("task"):
        full = at_fraction(group[group["method"] == baseline], 1.0)
        if full.empty:
            gaps.append(f"fewer labels on {task}: no {baseline or 'baseline'} run on the full training set")
            continue
        target = float(full["value"].mean())
        for method, own in group[group["method"] != baseline].groupby("method"):
            by_fraction = own.groupby("fraction")["value"].apply(list)
            saving = stats.fewer_labels(by_fraction.index.to_numpy(), list(by_fraction), target)
            rows.append({"task": task, "method": method, "baseline": baseline, "baseline_full_score": target,
                         "fractions": ", ".join(f"{f:g}" for f in by_fraction.index),
                         "fewer_labels": np.nan if saving is None else saving,
                         "note": "never reaches the baseline's full-data score" if saving is None else
                         "lower bound: reached at the smallest fraction measured"
                         if saving == 1 - by_fraction.index.min() else ""})
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


def convergence_summary(per_run: pd.DataFrame, baseline: str | None) -> pd.DataFrame:
    """Mean epochs to reach 95% of the best per (task, method), and how much faster than the baseline."""
    if per_run.empty:
        return pd.DataFrame()
    summary = per_run.groupby(["task", "method"]).agg(
        n_seeds=("seed", "size"), mean_epochs_to_95pct=("epochs_to_95pct_of_best", "mean")).reset_index()
    base = summary[summary["method"] == baseline].set_index("task")["mean_epochs_to_95pct"]
    summary["faster_than_baseline"] = 1 - summary["mean_epochs_to_95pct"] / summary["task"].map(base)
    return summary
