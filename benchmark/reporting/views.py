"""The report's numbers: views of the long results table (benchmark.reporting.table) and their tests.

Every function takes the long table (one profile, one record per method, task, fraction and
seed, runs that may be compared: benchmark.reporting.sources) and returns a DataFrame plus the
list of what it could not compute and why. All metrics of the built-in tasks (AUC, Dice, IoU)
are higher-is-better.

- Table 3: mean ± s.d. and the t interval of the mean across seeds per method and task; Welch
  t-tests against the baseline method and against the best method of the task (the best is
  chosen on these same scores), each family corrected per task or over the whole benchmark;
  marks from the corrected p-values; the notes of the tests kept with their rows.
- Pairwise tests per task: Welch across seeds (run-level primary metric); Wilcoxon signed-rank
  on per-case values averaged over each method's seeds, paired by case id (segmentation);
  DeLong per seed on the same candidates (classification). Each family (a test on a task, or a
  test over the whole benchmark) is corrected. Every row gives the smallest p its test can reach
  at its n (raw and corrected), a verdict (significant / not significant / cannot reach the
  threshold at this n) and the smallest difference it detects with 80% power. Wilcoxon and
  DeLong hold the trained models fixed (the spread between training runs is not in them), so
  their "significant" is worded about the models: "significant for these trained models".
- Confidence intervals: the t interval of a mean (over seeds; over one run's cases) and the
  stratified BCa bootstrap of one run's AUC (only with enough positives and negatives).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd

from benchmark.reporting import ALPHA, POWER, stats, variants

Gaps = list[str]
BOOTSTRAP_RESAMPLES = 9999
MIN_AUC_CLASS = 10  # positives and negatives each, for the BCa interval of one AUC (docs/statistics.md)
MIN_DELONG_CLASS = 20  # each class, for the DeLong test: its normal approximation over-rejects below (the docs)
TEST_KINDS = ("Welch", "Wilcoxon", "DeLong")
PER_CASE_KINDS = ("Wilcoxon", "DeLong")  # tests over the cases of fixed trained models, not over training runs
PAIRWISE_COLUMNS = ["task", "test", "method_a", "method_b", "pairing", "n", "statistic", "p", "p_corrected", "marks",
                    "verdict", "min_p", "min_p_corrected", "difference", "variability", "variability_of", "mdd",
                    "note", "correction"]


def at_fraction(frame: pd.DataFrame, fraction: float) -> pd.DataFrame:
    return frame[np.isclose(frame["fraction"], fraction, atol=0.0)]  # relative only: 1e-9 is not 5e-9


def seed_interval(values: np.ndarray) -> stats.ConfidenceInterval | None:
    """The t interval of the mean over seeds, or None below 2 seeds or where every seed scored the same."""
    if values.size < 2 or np.ptp(values) == 0.0:
        return None
    return stats.t_interval(values)


def primary_runs(table: pd.DataFrame) -> pd.DataFrame:
    """Run-level rows of each run's primary metric."""
    return table[(table["level"] == "run") & (table["metric"] == table["primary_metric"])]


def primary_cases(table: pd.DataFrame) -> pd.DataFrame:
    """Per-case rows of each run's primary metric (segmentation tasks)."""
    return table[(table["level"] == "case") & (table["metric"] == table["primary_metric"])]


def keep_newest_runs(table: pd.DataFrame) -> tuple[pd.DataFrame, Gaps]:
    """One run per (method, task, profile, fraction, seed): the most recently finished one.

    ``finished_at`` is read as an ISO 8601 time (compared as times, whatever their UTC offsets, not as
    text); a record without one, or with a text that is not a time (an edited record), counts as the
    oldest, which the notes say where it competes with another record."""
    keys = ["method", "task", "profile", "fraction", "seed"]
    runs = table.drop_duplicates("run_id")[[*keys, "run_id", "finished_at"]]
    finished = pd.to_datetime(runs["finished_at"], utc=True, errors="coerce", format="ISO8601")
    runs = runs.assign(finished=finished).sort_values("finished", na_position="first", kind="stable")
    newest = runs.drop_duplicates(keys, keep="last")
    notes = []
    for name, group in runs.groupby(keys):
        if len(group) > 1:
            notes.append(f"{len(group)} records for {name[0]} on {name[1]}, fraction {name[3]:g}, seed {name[4]} "
                         f"({', '.join(group['run_id'])}): the newest ({group['run_id'].iloc[-1]}) is used")
            notes += [f"{run.run_id}: finished_at {str(run.finished_at)[:40]!r} is not a time; counted as the oldest"
                      for run in group.itertuples() if pd.isna(run.finished) and pd.notna(run.finished_at)]
    return table[table["run_id"].isin(newest["run_id"])], notes


def seed_scores(table: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, Gaps]:
    """The primary metric per (task, method, seed) at ``fraction``; NaN scores dropped and listed."""
    rows = at_fraction(primary_runs(table), fraction)
    bad = rows[~np.isfinite(rows["value"])]
    gaps = [f"{r.run_id}: {r.metric} is not a number; left out" for r in bad.itertuples()]
    return rows[np.isfinite(rows["value"])][["task", "method", "seed", "metric", "value", "run_id"]], gaps


def cell_warnings(table: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(task, method) -> the warnings its runs recorded (e.g. released weights trained on the task's data)."""
    runs = table.drop_duplicates("run_id").dropna(subset=["warnings"])
    return {key: "; ".join(sorted(set(own["warnings"]))) for key, own in runs.groupby(["task", "method"])}


def run_warnings(table: pd.DataFrame) -> list[str]:
    """The warnings the runs recorded (e.g. released weights trained on the task's data), once per
    method, task and warning."""
    runs = table.drop_duplicates("run_id").dropna(subset=["warnings"])
    return sorted({f"{row.method} on {row.task}: {row.warnings}" for row in runs.itertuples()})


def backbone_columns(table: pd.DataFrame, methods: list[str]) -> pd.DataFrame:
    """Per method (label): its backbone and the parameters of that backbone's encoder in the runs
    (millions; a range where runs differ, e.g. by their task's input channels)."""
    runs = table.drop_duplicates("run_id")
    labels = variants.backbone_labels(runs)
    rows = {}
    for method in methods:
        own = runs[runs["method"] == method]
        names = sorted({labels[run] for run in own["run_id"]})
        counts = sorted({int(n) for n in own["backbone_parameters"].dropna()})
        millions = [f"{n / 1e6:.2f}" for n in (counts[0], counts[-1])] if counts else []
        rows[method] = {"backbone": ", ".join(names),
                        "encoder parameters (M)": "–".join(dict.fromkeys(millions)) if millions else "?"}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


def _values(scores: pd.DataFrame, task: str, method: str | None) -> np.ndarray:
    chosen = scores[(scores["task"] == task) & (scores["method"] == method)].sort_values("seed")
    return chosen["value"].to_numpy(dtype=float)


def verdict(p_corrected: float, min_p_corrected: float, per_case: bool = False) -> str:
    """What a corrected p-value says, telling "not significant" from "could not have been significant";
    a per-case test's significance is about the trained models it compared, not about their methods."""
    if not np.isfinite(p_corrected):
        return "not computed (see the note)"
    if p_corrected < ALPHA:
        return "significant for these trained models" if per_case else "significant"
    if min_p_corrected >= ALPHA:
        return f"cannot reach p < {ALPHA:g} at this n"
    return "not significant"


def _family_label(correction: stats.Correction, what: str, task: str | None) -> str:
    where = f"on {task}" if task is not None else "over all tasks"
    return f"{correction.label} over {correction.n_tests} {what} {where}"


# --------------------------------------------------------------------------- Table 3


def _welch_or_gap(a: np.ndarray, b: np.ndarray, label: str, gaps: Gaps) -> stats.TestResult | None:
    if a.size < 2 or b.size < 2:
        gaps.append(f"{label}: Welch t-test needs at least 2 seeds per method (have {a.size} and {b.size})")
        return None
    return stats.welch_t(a, b)


def _welch_mdd(test: stats.TestResult, alpha: float) -> float:
    if not np.isfinite(test.p):  # undefined test (both groups constant): no power figure either
        return np.nan
    return stats.detectable_difference_t(test.detail["sd_a"], test.detail["sd_b"], test.n["a"], test.n["b"], alpha,
                                         POWER)


def table3(scores: pd.DataFrame, methods: list[str], tasks: list[str], baseline: str | None, correction: str,
           family: str = "task") -> tuple[pd.DataFrame, Gaps]:
    """One row per (task, method): n, mean, s.d., t interval, best, and the tests against baseline and best.

    ``family``: "task" corrects each task's comparisons with the baseline (and with the best) as one
    family; "benchmark" corrects all tasks' comparisons together.
    """
    rows, gaps = [], []
    missing: dict[str, list[str]] = {}  # method -> the tasks it has no run on at this fraction (one line each)
    for task in tasks:
        present = [m for m in methods if _values(scores, task, m).size]
        for method in sorted(set(methods) - set(present)):
            missing.setdefault(method, []).append(task)
        if not present:
            continue
        means = {m: float(np.mean(_values(scores, task, m))) for m in present}
        best = [m for m in present if means[m] == max(means.values())]
        if baseline is not None and baseline not in present:
            gaps.append(f"table 3: no {baseline} (baseline) run on {task}: no marks against the baseline")
        for method in present:
            values = _values(scores, task, method)
            interval = seed_interval(values)
            vs_baseline = _welch_or_gap(values, _values(scores, task, baseline), f"{task}: {method} vs {baseline} "
                                        "(baseline)", gaps) if baseline in present and method != baseline else None
            vs_best = _welch_or_gap(values, _values(scores, task, best[0]), f"{task}: {method} vs {best[0]} (best)",
                                    gaps) if method not in best else None
            rows.append({
                "task": task, "method": method, "metric": scores[scores["task"] == task]["metric"].iloc[0],
                "n_seeds": values.size, "mean": float(np.mean(values)),
                "sd": float(np.std(values, ddof=1)) if values.size > 1 else np.nan,
                "ci_low": interval.low if interval else np.nan, "ci_high": interval.high if interval else np.nan,
                "ci_method": stats.T_INTERVAL if interval else "", "best": method in best,
                "baseline": method == baseline, "best_method": best[0], "_baseline": vs_baseline, "_best": vs_best,
            })
    for against in ("baseline", "best"):
        _correct_table3(rows, against, correction, family)
    for row in rows:
        notes = [f"vs {against}: {test.detail['note']}" for against in ("baseline", "best")
                 if (test := row.pop(f"_{against}")) is not None and test.detail.get("note")]
        row["note"] = "; ".join(notes)
    gaps[:0] = [f"table 3: {method} on {', '.join(absent)}: no finished run at this fraction"
                for method, absent in sorted(missing.items())]
    return pd.DataFrame(rows), gaps


def _correct_table3(rows: list[dict], against: str, correction: str, family: str) -> None:
    """Fill the p-values, corrected p-values, marks and family of the comparisons with ``against``;
    against the baseline also the smallest difference detectable at the family's Bonferroni level."""
    tested = [row for row in rows if row[f"_{against}"] is not None]
    for row in rows:
        row.update({f"p_vs_{against}": np.nan, f"p_vs_{against}_corrected": np.nan, f"marks_vs_{against}": "",
                    f"family_vs_{against}": ""})
        if against == "baseline":
            row["mdd_vs_baseline"] = np.nan
    key = (lambda row: row["task"]) if family == "task" else (lambda row: "")
    what = "comparisons with the baseline" if against == "baseline" else \
        "comparisons with the best method (chosen on these same scores)"
    for name, group in itertools.groupby(sorted(tested, key=key), key=key):
        group = list(group)
        tests = [row[f"_{against}"] for row in group]
        corrected = stats.correct([test.p for test in tests], correction)
        label = _family_label(corrected, what, name or None)
        for row, test, q in zip(group, tests, corrected.p_corrected):
            row.update({f"p_vs_{against}": test.p, f"p_vs_{against}_corrected": q,
                        f"marks_vs_{against}": stats.significance_marks(q), f"family_vs_{against}": label})
            if against == "baseline":
                row["mdd_vs_baseline"] = _welch_mdd(test, ALPHA / max(corrected.n_tests, 1))


# --------------------------------------------------------------------------- pairwise tests


def _seed_averaged_cases(cases: pd.DataFrame, task: str, method: str, gaps: Gaps) -> pd.Series:
    """Each case's value averaged over the method's seeds; a case whose value is not a finite number in
    some seed is left out (and listed), so that no case is averaged over fewer seeds than the others."""
    chosen = cases[(cases["task"] == task) & (cases["method"] == method)]
    broken = sorted(set(chosen.loc[~np.isfinite(chosen["value"].astype(float)), "case_id"]))
    gap = (f"pairwise {task}: {method}: {len(broken)} case(s) with a value that is not a number in some seed "
           f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}); left out of its paired tests")
    if broken and gap not in gaps:  # once, not once per pair
        gaps.append(gap)
    return chosen[~chosen["case_id"].isin(broken)].groupby("case_id")["value"].mean()


def _test_row(task: str, a: str, b: str, pairing: str, result: stats.TestResult, variability: float,
              variability_of: str, mdd: Callable[[float], float]) -> dict:
    n = result.n if isinstance(result.n, str) else ", ".join(f"{k} {v}" for k, v in result.n.items())
    return {"task": task, "test": result.test, "method_a": a, "method_b": b, "pairing": pairing, "n": n,
            "statistic": result.statistic, "p": result.p, "min_p": result.min_p,
            "difference": result.detail.get("difference", result.detail.get("mean_difference", np.nan)),
            "variability": variability, "variability_of": variability_of, "note": result.detail.get("note", ""),
            "_kind": result.test.split(" ")[0], "_mdd": mdd}


def welch_rows(scores: pd.DataFrame, task: str, pairs: list[tuple[str, str]], gaps: Gaps) -> list[dict]:
    rows = []
    for a, b in pairs:
        va, vb = _values(scores, task, a), _values(scores, task, b)
        if va.size < 2 or vb.size < 2:
            gaps.append(f"pairwise {task}: Welch {a} vs {b} needs at least 2 seeds each (have {va.size}, {vb.size})")
            continue
        result = stats.welch_t(va, vb)
        pooled = np.sqrt(((va.size - 1) * va.var(ddof=1) + (vb.size - 1) * vb.var(ddof=1)) / (va.size + vb.size - 2))
        rows.append(_test_row(task, a, b, "independent runs (seeds)", result, float(pooled), "pooled s.d. of the seeds",
                              lambda alpha, result=result: _welch_mdd(result, alpha)))
    return rows


def wilcoxon_rows(cases: pd.DataFrame, task: str, pairs: list[tuple[str, str]], gaps: Gaps) -> list[dict]:
    rows = []
    for a, b in pairs:
        va, vb = _seed_averaged_cases(cases, task, a, gaps), _seed_averaged_cases(cases, task, b, gaps)
        common = va.index.intersection(vb.index)
        if common.empty:
            gaps.append(f"pairwise {task}: Wilcoxon {a} vs {b}: no test case in common")
            continue
        pairing = f"per case, values averaged over each method's seeds; {common.size} common cases"
        if common.size != max(va.size, vb.size):
            pairing += f" (of {va.size} and {vb.size})"
        differences = va[common].to_numpy() - vb[common].to_numpy()
        spread = float(np.std(differences, ddof=1)) if differences.size > 1 else np.nan
        try:
            result = stats.wilcoxon_signed_rank(va[common].to_numpy(), vb[common].to_numpy())
        except ValueError as error:
            gaps.append(f"pairwise {task}: Wilcoxon {a} vs {b}: {error}")
            continue
        rows.append(_test_row(
            task, a, b, pairing, result, spread,
            "s.d. of the per-case differences (paired t approximation)",
            lambda alpha, spread=spread, n=differences.size:
            stats.detectable_difference_paired(spread, n, alpha, POWER) if n > 1 else np.nan))
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
            positives = int(merged["label_a"].sum())
            if min(positives, len(merged) - positives) < MIN_DELONG_CLASS:
                gaps.append(f"{label}: {positives} positives and {len(merged) - positives} negatives: the DeLong test "
                            f"is given with at least {MIN_DELONG_CLASS} of each (it over-rejects below)")
                continue
            try:
                result = stats.delong(merged["label_a"].to_numpy(int), merged["value_a"], merged["value_b"])
            except ValueError as error:
                gaps.append(f"{label}: {error}")
                continue
            error = result.detail["standard_error"]
            rows.append(_test_row(task, a, b, f"same candidates, seed {seed}", result, error,
                                  "DeLong s.e. of the AUC difference",
                                  lambda alpha, error=error: stats.detectable_difference_z(error, alpha, POWER)))
        if not set(sa["seed"]) & set(sb["seed"]):
            gaps.append(f"pairwise {task}: DeLong {a} vs {b}: no seed run by both")
    return rows


def pairwise_tests(table: pd.DataFrame, scores: pd.DataFrame, fraction: float, tasks: list[str], correction: str,
                   family: str = "task", pairs: list[tuple[str, str]] | None = None,
                   kinds: tuple[str, ...] = TEST_KINDS) -> tuple[pd.DataFrame, Gaps]:
    """Every pair of methods on each task (or only ``pairs``, those of them both run on the task): Welch,
    and Wilcoxon or DeLong where per-case values allow (only the tests of ``kinds``).

    A family is one test on one task (``family="task"``) or one test over all tasks ("benchmark").
    """
    rows: list[dict] = []
    gaps: Gaps = []
    wanted = pairs
    for task in tasks:
        methods = sorted(scores[scores["task"] == task]["method"].unique())
        pairs = list(itertools.combinations(methods, 2)) if wanted is None else \
            [(a, b) for a, b in wanted if a in methods and b in methods]
        if not pairs:
            gaps.append(f"pairwise {task}: only {', '.join(methods) or 'no method'} at this fraction")
            continue
        selected = at_fraction(table[table["task"] == task], fraction)
        cases = primary_cases(selected)
        if "Welch" in kinds:
            rows += welch_rows(scores, task, pairs, gaps)
        if "Wilcoxon" in kinds and not cases.empty:
            rows += wilcoxon_rows(cases, task, pairs, gaps)
        if "DeLong" in kinds and (selected["metric"] == "score").any():
            rows += delong_rows(selected, task, pairs, gaps)
    key = (lambda row: (row["task"], row["_kind"])) if family == "task" else (lambda row: ("", row["_kind"]))
    for (task, kind), group in itertools.groupby(sorted(rows, key=key), key=key):
        _correct_family(list(group), correction, task or None, kind)
    rows.sort(key=lambda row: (tasks.index(row["task"]), TEST_KINDS.index(row["_kind"])))  # stable: pairs in order
    return pd.DataFrame(rows, columns=PAIRWISE_COLUMNS), gaps


def _correct_family(rows: list[dict], correction: str, task: str | None, kind: str) -> None:
    """Correct one family in place: corrected p and its floor, marks, verdict, the smallest difference
    detectable at the family's Bonferroni level (infinite where the threshold cannot be reached)."""
    corrected = stats.correct([row["p"] for row in rows], correction)
    floors = [row["min_p"] for row in rows]  # corrected p-values are monotone in each p: the floors' correction
    if any(floors):  # is the smallest each corrected p can be (a correction of zeros is zeros)
        floors = stats.correct(floors, correction).p_corrected
    label = _family_label(corrected, f"{kind} test(s)", task)
    level = ALPHA / max(corrected.n_tests, 1)  # the level the detectable difference is computed at
    for row, q, floor in zip(rows, corrected.p_corrected, floors):
        mdd = row.pop("_mdd")
        row.update({"p_corrected": q, "min_p_corrected": floor, "marks": stats.significance_marks(q),
                    "verdict": verdict(q, floor, kind in PER_CASE_KINDS), "correction": label,
                    "mdd": np.inf if floor >= ALPHA or row["min_p"] >= level else mdd(level)})


# --------------------------------------------------------------------------- confidence intervals


def confidence_intervals(table: pd.DataFrame, scores: pd.DataFrame, fraction: float,
                         tasks: list[str]) -> tuple[pd.DataFrame, Gaps]:
    """95% intervals: of the mean across seeds per method and task (t), per run of the mean across its
    cases (t) or of its AUC (stratified BCa bootstrap, with at least ``MIN_AUC_CLASS`` of each class)."""
    rows, gaps = [], []
    for task in tasks:
        for method, group in scores[scores["task"] == task].groupby("method"):
            interval = seed_interval(group["value"].to_numpy(dtype=float))
            if interval is None:
                gaps.append(f"CI {method} on {task} across seeds: needs at least 2 seeds that differ (have "
                            f"{len(group)}, {group['value'].nunique()} distinct)")
                continue
            rows.append(_ci_row(task, method, "mean over seeds", None, interval))
        cases = at_fraction(table[(table["level"] == "case") & (table["task"] == task)], fraction)
        for run_id, group in cases.groupby("run_id"):
            first = group.iloc[0]
            try:
                level, interval = _case_interval(group, first["primary_metric"])
            except ValueError as error:
                gaps.append(f"CI {run_id} across cases: {error}")
                continue
            if interval is not None:
                rows.append(_ci_row(first["task"], first["method"], level, first["seed"], interval))
    frame = pd.DataFrame(rows)
    return (frame.astype({"seed": "Int64", "resamples": "Int64"}) if rows else frame), gaps


def _case_interval(group: pd.DataFrame, primary: str) -> tuple[str, stats.ConfidenceInterval | None]:
    per_case = group[group["metric"] == primary]
    if not per_case.empty:
        return "mean over cases, one run", stats.t_interval(per_case["value"].to_numpy())
    candidates = group[group["metric"] == "score"]
    if candidates.empty:
        return "", None
    labels = candidates["label"].to_numpy(int)
    positives, negatives = int(labels.sum()), int(labels.size - labels.sum())
    if min(positives, negatives) < MIN_AUC_CLASS:
        raise ValueError(f"{positives} positives and {negatives} negatives: the bootstrap interval of an AUC is "
                         f"given with at least {MIN_AUC_CLASS} of each")
    return "AUC, one run", stats.auc_bootstrap_ci(labels, candidates["value"].to_numpy(),
                                                  n_resamples=BOOTSTRAP_RESAMPLES)


def _ci_row(task: str, method: str, level: str, seed: int | None, ci: stats.ConfidenceInterval) -> dict:
    n = ", ".join(f"{k} {v}" for k, v in ci.n.items()) if isinstance(ci.n, dict) else ci.n
    return {"task": task, "method": method, "level": level, "seed": seed, "estimate": ci.estimate,
            "low": ci.low, "high": ci.high, "confidence": ci.confidence, "ci_method": ci.method, "n": n,
            "resamples": ci.n_resamples or None, "note": ci.note}
