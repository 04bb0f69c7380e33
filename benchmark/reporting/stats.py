"""Statistics used by the report: significance tests, confidence intervals, corrections, label efficiency.

Every test returns a :class:`TestResult` that names the test exactly (e.g. "Welch t-test (two-sided)"),
reports the sample sizes it used, the statistic, the two-sided p-value, and a ``detail`` dict with
everything else worth printing (means, degrees of freedom, AUCs, covariance, notes).

- Across seeds: :func:`welch_t` (Welch by default, Student with ``equal_var=True``).
- Paired per case: :func:`wilcoxon_signed_rank`.
- Correlated ROC AUCs on the same candidates: :func:`delong` (Sun & Xu 2014, O(N log N)),
  :func:`auc_variance`.
- Confidence intervals: :func:`t_interval` (Student t, for means: over seeds, over cases),
  :func:`bootstrap_ci` (scipy BCa), :func:`auc_bootstrap_ci` (stratified, for one AUC).
- Many comparisons: :func:`correct` (Holm or Benjamini-Hochberg, always named explicitly).
- Power: :func:`detectable_difference_t`, :func:`detectable_difference_paired`,
  :func:`detectable_difference_z` (the smallest true difference a test detects with a given power).
- Summaries: :func:`significance_marks`, :func:`fewer_labels`, :func:`epochs_to_reach`.

Every test also reports ``min_p``, the smallest p-value it can return at its sample size (a
Wilcoxon test on 5 pairs cannot go below 0.0625), so that a table can say when a threshold
cannot be reached at all instead of calling the result "not significant".

Nothing here prints; invalid input raises ``ValueError`` with a one-line explanation.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _st
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri
from statsmodels.stats.multitest import multipletests

__all__ = [
    "TestResult",
    "ConfidenceInterval",
    "Correction",
    "welch_t",
    "wilcoxon_signed_rank",
    "delong",
    "auc_variance",
    "delong_speed_check",
    "t_interval",
    "bootstrap_ci",
    "auc_bootstrap_ci",
    "detectable_difference_t",
    "detectable_difference_paired",
    "detectable_difference_z",
    "correct",
    "significance_marks",
    "fewer_labels",
    "fewer_labels_bound",
    "welch_greater",
    "epochs_to_reach",
]


@dataclass(frozen=True)
class TestResult:
    """Outcome of one significance test.

    ``n`` describes the sample sizes (a dict such as ``{"a": 5, "b": 5}``), ``p`` is two-sided;
    ``min_p`` is the smallest p-value the test can return at these sample sizes (0 for tests
    with a continuous null distribution).
    """

    __test__ = False  # not a pytest test class despite the name

    test: str
    n: str | dict[str, int]
    statistic: float
    p: float
    detail: dict[str, Any] = field(default_factory=dict)
    min_p: float = 0.0


@dataclass(frozen=True)
class ConfidenceInterval:
    """A confidence interval; ``method`` is the one actually used (see ``note``)."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: str | dict[str, int]
    n_resamples: int
    standard_error: float
    note: str = ""


@dataclass(frozen=True)
class Correction:
    """Multiple-comparison correction: corrected p-values and rejections in input order.

    ``method`` is the statsmodels name passed to ``multipletests``; ``label`` the readable name.
    NaN inputs stay NaN and are never rejected; ``n_tests`` counts the p-values actually corrected.
    """

    method: str
    label: str
    alpha: float
    p_corrected: tuple[float, ...]
    reject: tuple[bool, ...]
    n_tests: int


# --------------------------------------------------------------------------- helpers


def _finite_1d(x: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values; drop failed runs/cases first")
    return arr


def _binary_labels(labels: ArrayLike) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {lab.shape}")
    if lab.dtype == bool:
        return lab
    if lab.size and not np.all(np.isin(lab, (0, 1))):
        raise ValueError("labels must be binary: 0/1 or False/True (1 = positive)")
    return lab.astype(bool)


# --------------------------------------------------------------------------- tests across seeds / cases


def welch_t(a: ArrayLike, b: ArrayLike, equal_var: bool = False) -> TestResult:
    """Independent two-sample t-test, two-sided (``scipy.stats.ttest_ind``).

    Welch's unequal-variance test by default; ``equal_var=True`` gives Student's pooled-variance test.
    ``detail`` holds the 95% interval of the difference of means (``ci_low``, ``ci_high``, the test's own
    t interval). Each group needs at least 2 values. When both groups are constant the test is undefined:
    equal means give statistic 0 and p = 1, different means an infinite statistic and p NaN (not
    computed: a few seeds that happen to agree say nothing of the variance; both with a note).
    """
    x, y = _finite_1d(a, "a"), _finite_1d(b, "b")
    if x.size < 2 or y.size < 2:
        raise ValueError(f"t-test needs at least 2 values per group (got n_a={x.size}, n_b={y.size})")
    name = "Student t-test (two-sided, pooled variance)" if equal_var else "Welch t-test (two-sided)"
    sd_a, sd_b = float(np.std(x, ddof=1)), float(np.std(y, ddof=1))
    detail: dict[str, Any] = {
        "mean_a": float(np.mean(x)),
        "mean_b": float(np.mean(y)),
        "sd_a": sd_a,
        "sd_b": sd_b,
        "difference": float(np.mean(x) - np.mean(y)),
        "equal_var": equal_var,
    }
    if np.ptp(x) == 0.0 and np.ptp(y) == 0.0:  # np.std of equal floats can be 1e-17, not 0
        same = bool(x[0] == y[0])
        detail["sd_a"] = detail["sd_b"] = 0.0
        detail["df"] = float(x.size + y.size - 2)
        detail["note"] = "both groups have zero variance; " + (
            "means equal, p set to 1" if same else "means differ, the t-test is undefined (no p-value)"
        )
        stat = 0.0 if same else math.copysign(math.inf, float(x[0] - y[0]))
        return TestResult(name, {"a": x.size, "b": y.size}, stat, 1.0 if same else math.nan, detail)
    res = _st.ttest_ind(x, y, equal_var=equal_var)
    interval = res.confidence_interval(0.95)
    detail.update(df=float(res.df), ci_low=float(interval.low), ci_high=float(interval.high))
    return TestResult(name, {"a": x.size, "b": y.size}, float(res.statistic), float(res.pvalue), detail)


def wilcoxon_signed_rank(a: ArrayLike, b: ArrayLike) -> TestResult:
    """Wilcoxon signed-rank test on paired values (same cases, same order), two-sided.

    Uses ``scipy.stats.wilcoxon`` with its defaults (zero differences dropped, ``method="auto"``).
    ``n`` reports the number of pairs and of non-zero differences. If every difference is zero
    the result is statistic 0, p = 1 with a note instead of an exception. ``min_p`` is the p-value
    of the most extreme outcome with these absolute differences (see :func:`wilcoxon_min_p`).
    """
    x, y = _finite_1d(a, "a"), _finite_1d(b, "b")
    if x.size != y.size:
        raise ValueError(f"paired test needs equal lengths (got {x.size} and {y.size})")
    if x.size == 0:
        raise ValueError("paired test needs at least one pair")
    d = x - y
    nonzero = int(np.count_nonzero(d))
    name = "Wilcoxon signed-rank test (two-sided, zero differences dropped)"
    n = {"pairs": int(x.size), "nonzero": nonzero}
    detail: dict[str, Any] = {"median_difference": float(np.median(d)), "mean_difference": float(np.mean(d))}
    if nonzero == 0:
        detail["note"] = "all paired differences are zero; p set to 1"
        return TestResult(name, n, 0.0, 1.0, detail, min_p=1.0)
    res = _st.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided", method="auto")
    detail["scipy_method"] = "auto"
    return TestResult(name, n, float(res.statistic), float(res.pvalue), detail, min_p=wilcoxon_min_p(d))


def wilcoxon_min_p(differences: ArrayLike) -> float:
    """The smallest two-sided p-value :func:`wilcoxon_signed_rank` can return for paired differences
    with these absolute values: every non-zero one of the same sign, by the same scipy call.

    The same zeros and ties are kept because they choose scipy's method: without them and up to 50
    pairs the exact test, whose floor is 2 / 2ⁿ (n non-zero differences); with them the normal
    approximation, whose floor can be higher (16 pairs of which 8 are zero: .0117, not 2/2⁸ = .0078).
    """
    magnitudes = np.abs(np.asarray(differences, dtype=np.float64).ravel())
    if not np.any(magnitudes):
        return 1.0
    return float(_st.wilcoxon(magnitudes, zero_method="wilcox", alternative="two-sided", method="auto").pvalue)


# --------------------------------------------------------------------------- DeLong


def _twice_placements(is_pos: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sun & Xu's structural components, as exact integers doubled, in input order.

    For a positive x: 2·(#negatives below x) + #negatives tied with x = 2·(Tz − Tx), where Tz is the
    midrank of x among all candidates and Tx its midrank among the positives. For a negative y:
    2·(#positives above y) + #positives tied with y = 2·(m − (Tz − Ty)). One argsort does it all:
    midranks are per tie group of the sorted scores, so the counts follow from cumulative sums.
    Dividing by 2n resp. 2m gives V10 resp. V01 (ties count ½).
    """
    order = np.argsort(scores, kind="quicksort")
    s = scores[order]
    pos_sorted = is_pos[order]
    total = s.size
    m = int(np.count_nonzero(is_pos))
    new = np.empty(total, dtype=bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    starts = np.flatnonzero(new)  # tie groups of the sorted scores: [starts[g], ends[g])
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = total
    pos_cum = np.zeros(total + 1, dtype=np.int64)
    np.cumsum(pos_sorted, out=pos_cum[1:])
    pos_before = pos_cum[starts]
    pos_in = pos_cum[ends] - pos_before
    neg_before = starts - pos_before
    neg_in = (ends - starts) - pos_in
    sorted_values = np.repeat(2 * (m - pos_before - pos_in) + pos_in, ends - starts)  # as if negative
    pos_at = np.flatnonzero(pos_sorted)
    group_of_pos = np.searchsorted(starts, pos_at, side="right") - 1
    sorted_values[pos_at] = (2 * neg_before + neg_in)[group_of_pos]
    values = np.empty(total, dtype=np.int64)
    values[order] = sorted_values
    return values[is_pos], values[~is_pos]


def _prepare_auc_inputs(labels: ArrayLike, *score_vectors: ArrayLike) -> tuple[np.ndarray, list[np.ndarray]]:
    is_pos = _binary_labels(labels)
    vectors = [_finite_1d(s, "scores") for s in score_vectors]
    for s in vectors:
        if s.size != is_pos.size:
            raise ValueError(f"scores ({s.size}) and labels ({is_pos.size}) differ in length")
    m = int(np.count_nonzero(is_pos))
    n = is_pos.size - m
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 positives and 2 negatives (got {m} and {n})")
    return is_pos, vectors


def auc_variance(labels: ArrayLike, scores: ArrayLike) -> float:
    """DeLong estimate of the variance of one ROC AUC: var(V10)/m + var(V01)/n (ddof 1)."""
    is_pos, (s,) = _prepare_auc_inputs(labels, scores)
    m = int(np.count_nonzero(is_pos))
    n = is_pos.size - m
    p2, n2 = _twice_placements(is_pos, s)
    v10, v01 = p2 / (2.0 * n), n2 / (2.0 * m)
    return float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)


def delong(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> TestResult:
    """DeLong test for two correlated ROC AUCs computed on the same candidates, two-sided.

    Fast algorithm of Sun & Xu (2014): the structural components V10 (per positive) and V01 (per
    negative) come from midranks, one sort per score vector, so the cost is O(N log N); ties count
    ½. ``labels`` are 0/1 or bool (1 = positive); higher score = more likely positive.

    ``statistic`` is z = (AUC_a − AUC_b) / sqrt(var(AUC_a − AUC_b)); ``detail`` holds ``auc_a``,
    ``auc_b``, ``difference``, ``covariance`` (2×2, nested lists), ``variance_difference`` and
    ``standard_error``. When the variance of the difference is zero (e.g. identical rankings)
    z = 0 and p = 1 if the AUCs are equal (a note says so). Zero variance with unequal AUCs (a perfect
    ranking against a constant score) leaves the normal approximation without a scale: ValueError, not
    the p = 0 of an infinite z, which no test of a finite sample can give.
    """
    is_pos, (sa, sb) = _prepare_auc_inputs(labels, scores_a, scores_b)
    m = int(np.count_nonzero(is_pos))
    n = is_pos.size - m
    pa, na = _twice_placements(is_pos, sa)
    pb, nb = _twice_placements(is_pos, sb)
    auc_a = float(pa.sum()) / (2.0 * m * n)
    auc_b = float(pb.sum()) / (2.0 * m * n)
    v10 = np.vstack([pa, pb]) / (2.0 * n)
    v01 = np.vstack([na, nb]) / (2.0 * m)
    cov = np.cov(v10) / m + np.cov(v01) / n
    # Variance of the difference from exact integer differences: exactly 0 for identical rankings.
    d10 = (pa - pb) / (2.0 * n)
    d01 = (na - nb) / (2.0 * m)
    var_diff = float(np.var(d10, ddof=1) / m + np.var(d01, ddof=1) / n)
    diff = float(pa.sum() - pb.sum()) / (2.0 * m * n)
    detail: dict[str, Any] = {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "difference": diff,
        "covariance": cov.tolist(),
        "variance_difference": var_diff,
        "standard_error": math.sqrt(max(var_diff, 0.0)),
    }
    if var_diff <= 0.0:
        if diff != 0.0:
            raise ValueError(f"the DeLong variance of the AUC difference is zero while the AUCs differ "
                             f"({auc_a:.3f} vs {auc_b:.3f}: a perfect ranking against a constant score), "
                             "so the test gives no p-value")
        z, p = 0.0, 1.0
        detail["note"] = "zero variance of the AUC difference and equal AUCs; p set to 1"
    else:
        z = diff / math.sqrt(var_diff)
        p = float(2.0 * _st.norm.sf(abs(z)))
    name = "DeLong test for two correlated ROC AUCs (two-sided)"
    return TestResult(name, {"positives": m, "negatives": n}, float(z), p, detail)


def delong_speed_check(n: int = 750_000, n_positive: int = 1_500, repeats: int = 3, seed: int = 0) -> float:
    """Seconds for one :func:`delong` call on ``n`` synthetic candidates (best of ``repeats``).

    Scores are rounded to 3 decimals so there are many ties, like real detector outputs. Data
    generation is not timed. Meant for a ``benchmark speed`` command, not for unit tests.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=bool)
    labels[rng.choice(n, size=n_positive, replace=False)] = True
    signal = labels.astype(np.float64)
    scores_a = np.round(rng.normal(size=n) + 1.5 * signal, 3)
    scores_b = np.round(0.5 * scores_a + rng.normal(size=n) + 1.0 * signal, 3)
    best = math.inf
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        delong(labels, scores_a, scores_b)
        best = min(best, time.perf_counter() - start)
    return best


# --------------------------------------------------------------------------- confidence intervals

T_INTERVAL = "t interval (Student, n - 1 df)"


@functools.lru_cache(maxsize=256)
def _t_quantile(level: float, df: int) -> float:
    return float(_st.t.ppf(level, df))


def t_interval(values: ArrayLike, confidence: float = 0.95) -> ConfidenceInterval:
    """Student t interval of the mean: mean ± t((1 + c)/2, n − 1) · s / √n (as ``scipy.stats.t.interval``).

    Exact for normally distributed values at every n ≥ 2; the tests check its coverage by
    simulation at n = 3 and 5 (the BCa bootstrap of a mean covers only about 73% and 86% there,
    and at n = 2 it is the range of the two values). All values equal: a ValueError, as a zero-width
    interval would claim a certainty that a few equal values do not give.
    """
    x = _finite_1d(values, "values")
    if x.size < 2:
        raise ValueError(f"a t interval needs at least 2 values (got {x.size})")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if np.ptp(x) == 0.0:  # np.std of equal floats can be 1e-17, not 0
        raise ValueError(f"all {x.size} values are equal ({x[0]:g}): no t interval (zero spread is not zero "
                         "uncertainty)")
    mean = float(np.mean(x))
    sem = float(np.std(x, ddof=1) / math.sqrt(x.size))
    half = _t_quantile((1.0 + confidence) / 2.0, x.size - 1) * sem
    return ConfidenceInterval(estimate=mean, low=mean - half, high=mean + half, confidence=confidence,
                              method=T_INTERVAL, n={"values": int(x.size)}, n_resamples=0, standard_error=sem)


def bootstrap_ci(
    values: ArrayLike,
    statistic: Callable[..., Any] = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int | None = 0,
) -> ConfidenceInterval:
    """Bootstrap confidence interval of ``statistic(values)`` via ``scipy.stats.bootstrap``, BCa.

    Falls back to the percentile method only when BCa is degenerate (e.g. all values equal, where
    the bias correction is undefined); ``method`` and ``note`` then say so. ``seed`` seeds a
    ``numpy.random.default_rng`` passed as ``rng``, so results are reproducible.
    """
    x = _finite_1d(values, "values")
    if x.size < 2:
        raise ValueError(f"bootstrap needs at least 2 values (got {x.size})")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")

    def run(method: str) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _st.bootstrap(
                (x,),
                statistic,
                n_resamples=n_resamples,
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(seed),
            )

    res, method, note = run("BCa"), "BCa", ""
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        res, method = run("percentile"), "percentile"
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        note = "BCa degenerate (e.g. all values or all resampled statistics equal); used percentile"
    return ConfidenceInterval(
        estimate=float(statistic(x)),
        low=low,
        high=high,
        confidence=confidence,
        method=method,
        n={"values": int(x.size)},
        n_resamples=n_resamples,
        standard_error=float(res.standard_error),
        note=note,
    )


def _auc_bootstrap_replicates(
    pos: np.ndarray, neg: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """AUCs of ``n_resamples`` stratified bootstrap resamples, without re-sorting anything.

    Resampling the n negatives with replacement puts a Multinomial(n, bin sizes / n) number of them
    into each bin of the partition "below / tied with / between the distinct positive scores", and
    the AUC depends on the negatives only through these counts; likewise the positives through
    Multinomial(m, tie-group sizes / m). So each replicate costs O(#distinct positive scores).
    """
    m, n = pos.size, neg.size
    uniq, pos_counts = np.unique(pos, return_counts=True)
    neg_sorted = np.sort(neg)
    lt = np.searchsorted(neg_sorted, uniq, side="left")
    le = np.searchsorted(neg_sorted, uniq, side="right")
    k = uniq.size
    bins = np.empty(2 * k + 1, dtype=np.int64)
    bins[0] = lt[0]
    bins[1 : 2 * k : 2] = le - lt  # tied with each distinct positive score
    bins[2 : 2 * k : 2] = lt[1:] - le[:-1]  # strictly between consecutive distinct positive scores
    bins[2 * k] = n - le[-1]
    p_neg = bins / n
    p_pos = pos_counts / m
    chunk = max(1, min(n_resamples, 4_000_000 // (2 * k + 1)))
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        counts = rng.multinomial(n, p_neg, size=b)
        below = np.cumsum(counts, axis=1)[:, 0 : 2 * k : 2]
        tied = counts[:, 1 : 2 * k : 2]
        weights = rng.multinomial(m, p_pos, size=b)
        out[start : start + b] = np.sum(weights * (2 * below + tied), axis=1) / (2.0 * m * n)
    return out


def _auc_bca_acceleration(is_pos: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(AUC, BCa acceleration) with the jackknife done analytically, per stratum as scipy does.

    Leaving out positive i gives AUC_(−i) = (m·AUC − V10_i)/(m − 1), so the jackknife influence
    (m − 1)(mean − AUC_(−i)) is V10_i − AUC; likewise V01_j − AUC for negatives.
    """
    m = int(np.count_nonzero(is_pos))
    n = is_pos.size - m
    p2, n2 = _twice_placements(is_pos, scores)
    auc = float(p2.sum()) / (2.0 * m * n)
    u_pos = p2 / (2.0 * n) - auc
    u_neg = n2 / (2.0 * m) - auc
    num = np.sum(u_pos**3) / m**3 + np.sum(u_neg**3) / n**3
    den = np.sum(u_pos**2) / m**2 + np.sum(u_neg**2) / n**2
    accel = float(num / (6.0 * den**1.5)) if den > 0 else math.nan
    return auc, accel


def auc_bootstrap_ci(
    labels: ArrayLike,
    scores: ArrayLike,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int | None = 0,
    method: Literal["BCa", "percentile"] = "BCa",
) -> ConfidenceInterval:
    """Stratified bootstrap CI of the ROC AUC: positives and negatives are resampled separately.

    Each replicate draws m positives from the m positives and n negatives from the n negatives,
    with replacement (the same scheme as ``scipy.stats.bootstrap`` on the two samples), so every
    replicate has both classes. Replicates are generated exactly but cheaply through multinomial
    bin counts (see ``_auc_bootstrap_replicates``), so 750k candidates are fine.

    ``method="BCa"`` (default, as scipy): bias correction from the share of replicates below the
    AUC (ties ½), acceleration from the jackknife of each stratum (computed analytically from the
    DeLong structural components). Falls back to ``"percentile"`` when BCa is degenerate (zero
    jackknife spread, say), saying so in ``note``.
    ``method="percentile"``: the plain (1 − c)/2 and (1 + c)/2 percentiles of the replicates.

    ValueError for an AUC of 0 or 1 (the classes perfectly separated): every replicate then equals
    it, and the zero-width interval [1, 1] would miss every true AUC below 1 (simulated, binormal,
    true AUC 0.95 with 10 positives and 10 negatives: 19% of samples separate perfectly, and that
    interval covered 80%).
    """
    if method not in ("BCa", "percentile"):
        raise ValueError(f"method must be 'BCa' or 'percentile', got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    is_pos, (s,) = _prepare_auc_inputs(labels, scores)
    if s[is_pos].min() > s[~is_pos].max() or s[is_pos].max() < s[~is_pos].min():
        raise ValueError("the classes are perfectly separated (AUC 0 or 1): every bootstrap replicate equals the "
                         "AUC, so the bootstrap gives no interval")
    rng = np.random.default_rng(seed)
    replicates = _auc_bootstrap_replicates(s[is_pos], s[~is_pos], n_resamples, rng)
    auc, accel = _auc_bca_acceleration(is_pos, s)
    alpha = (1.0 - confidence) / 2.0
    levels = np.array([alpha, 1.0 - alpha])
    used, note = method, ""
    if method == "BCa":
        share = (np.count_nonzero(replicates < auc) + np.count_nonzero(replicates <= auc)) / (2.0 * n_resamples)
        z0 = ndtri(share)
        zs = ndtri(levels)
        with np.errstate(all="ignore"):
            bca = ndtr(z0 + (z0 + zs) / (1.0 - accel * (z0 + zs)))
        if np.all(np.isfinite(bca)):
            levels = bca
        else:
            used = "percentile"
            note = "BCa degenerate (all replicates on one side of the AUC, or zero jackknife spread)"
    low, high = np.percentile(replicates, 100.0 * levels)
    m = int(np.count_nonzero(is_pos))
    return ConfidenceInterval(
        estimate=auc,
        low=float(low),
        high=float(high),
        confidence=confidence,
        method=f"{used} (stratified by class)",
        n={"positives": m, "negatives": int(is_pos.size - m)},
        n_resamples=n_resamples,
        standard_error=float(np.std(replicates, ddof=1)),
        note=note,
    )


# --------------------------------------------------------------------------- power


def _check_power_arguments(alpha: float, power: float) -> None:
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha} and {power}")


def _two_sided_t_power(noncentrality: float, df: float, alpha: float) -> float:
    """P(|T| > t(1 − α/2, df)) for T noncentral t with ``df`` degrees of freedom: a two-sided t-test's power.

    Both tails from scipy's noncentral-t survival function (its cdf returns NaN far in the lower tail)."""
    critical = _st.t.ppf(1.0 - alpha / 2.0, df)
    with warnings.catch_warnings():  # far in a tail scipy's series can stop short of 1e-16: the bracket needs no more
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(_st.nct.sf(critical, df, noncentrality) + _st.nct.sf(critical, df, -noncentrality))


def _smallest_effect(power_at: Callable[[float], float], power: float) -> float:
    """The effect at which ``power_at`` (increasing, = α at 0) reaches ``power``: a doubling bracket, then
    Brent's method. statsmodels' ``solve_power`` is not used: at few seeds and strict levels it returns
    its bracket's edge without a warning (3 against 3 seeds at α = .05/20 gave 5.5 s.d., power 0.58)."""
    high = 1.0
    while power_at(high) < power:
        high *= 2.0
        if high > 1e9:
            return math.inf
    return float(brentq(lambda effect: power_at(effect) - power, 0.0, high, xtol=1e-12, rtol=1e-12))


def detectable_difference_t(sd_a: float, sd_b: float, n_a: int, n_b: int, alpha: float = 0.05,
                            power: float = 0.8) -> float:
    """The smallest true difference of two means a two-sided two-sample t-test at level ``alpha``
    detects with probability ``power``, for groups of ``n_a`` and ``n_b`` values whose s.d. are
    ``sd_a`` and ``sd_b`` (pooled): Student's test's power from the noncentral t (the usual
    approximation of Welch's power). NaN when both s.d. are 0: zero spread is not zero uncertainty."""
    _check_power_arguments(alpha, power)
    if n_a < 2 or n_b < 2:
        raise ValueError(f"power needs at least 2 values per group (got {n_a} and {n_b})")
    pooled = math.sqrt(((n_a - 1) * sd_a**2 + (n_b - 1) * sd_b**2) / (n_a + n_b - 2))
    if pooled == 0.0:
        return math.nan
    scale = math.sqrt(n_a * n_b / (n_a + n_b))  # noncentrality per s.d. of difference
    effect = _smallest_effect(lambda d: _two_sided_t_power(d * scale, n_a + n_b - 2, alpha), power)
    return effect * pooled


def detectable_difference_paired(sd_difference: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean paired difference a two-sided paired t-test at level ``alpha`` detects
    with probability ``power`` from ``n`` pairs whose differences have s.d. ``sd_difference`` (the
    noncentral t; the approximation used for the Wilcoxon signed-rank test). NaN when that s.d. is 0."""
    _check_power_arguments(alpha, power)
    if n < 2:
        raise ValueError(f"power needs at least 2 pairs (got {n})")
    if sd_difference == 0.0:
        return math.nan
    effect = _smallest_effect(lambda d: _two_sided_t_power(d * math.sqrt(n), n - 1, alpha), power)
    return effect * sd_difference


def detectable_difference_z(standard_error: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference a two-sided z-test at level ``alpha`` detects with probability
    ``power`` when its estimate has standard error ``standard_error``: (z(1 − α/2) + z(power)) · s.e.
    (the DeLong test's power). NaN when the standard error is 0."""
    _check_power_arguments(alpha, power)
    if standard_error == 0.0:
        return math.nan
    return float((ndtri(1.0 - alpha / 2.0) + ndtri(power)) * standard_error)


# --------------------------------------------------------------------------- corrections and marks

_CORRECTIONS: dict[str, tuple[str, str]] = {
    "holm": ("holm", "Holm"),
    "bh": ("fdr_bh", "Benjamini-Hochberg"),
    "fdr_bh": ("fdr_bh", "Benjamini-Hochberg"),
    "benjamini-hochberg": ("fdr_bh", "Benjamini-Hochberg"),
    "bonferroni": ("bonferroni", "Bonferroni"),
}


def correct(p_values: ArrayLike, method: str = "holm", alpha: float = 0.05) -> Correction:
    """Correct p-values for multiple comparisons with ``statsmodels.stats.multitest.multipletests``.

    ``method``: "holm" (default) or "bh"/"fdr_bh" (Benjamini-Hochberg); "bonferroni" also accepted.
    The method is always passed explicitly (statsmodels' own default is Holm-Sidak). NaN p-values are
    left out of the family, stay NaN and are not rejected.
    """
    key = method.lower()
    if key not in _CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose one of {sorted(_CORRECTIONS)}")
    sm_method, label = _CORRECTIONS[key]
    p = np.asarray(p_values, dtype=np.float64).ravel()
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    corrected = np.full(p.shape, np.nan)
    reject = np.zeros(p.shape, dtype=bool)
    if np.any(ok):
        rej, p_corr, _, _ = multipletests(p[ok], alpha=alpha, method=sm_method)
        corrected[ok] = p_corr
        reject[ok] = rej
    return Correction(
        method=sm_method,
        label=label,
        alpha=alpha,
        p_corrected=tuple(float(v) for v in corrected),
        reject=tuple(bool(v) for v in reject),
        n_tests=int(np.count_nonzero(ok)),
    )


def significance_marks(p: float | None) -> str:
    """ "***" for p < .001, "**" for p < .01, "*" for p < .05, else "" (also for None/NaN)."""
    if p is None or not np.isfinite(p):
        return ""
    if p < 0.001:
        return "***"
    if p < 0.01:
        return "**"
    if p < 0.05:
        return "*"
    return ""


# --------------------------------------------------------------------------- label efficiency, convergence


def fewer_labels(
    fractions: Sequence[float],
    method_scores: Sequence[float | Sequence[float]],
    scratch_full_score: float,
    scratch_fraction: float = 1.0,
    higher_is_better: bool = True,
) -> float | None:
    """Label saving "X% fewer labels" as a fraction: 1 − f_method / f_scratch, or None.

    ``fractions`` are training-label fractions in (0, 1] (need not be sorted); ``method_scores[i]``
    is the method's mean score at ``fractions[i]`` (a sequence of per-seed values is averaged).
    f_method is the smallest fraction at which the mean score reaches ``scratch_full_score``
    (scratch trained on ``scratch_fraction`` = 1.0, the full data): the first crossing going up
    the fractions, linearly interpolated between the two fractions around it. If the method
    already reaches it at the smallest fraction tested, that fraction is used (no extrapolation,
    so the saving is a lower bound). Returns None if it is never reached; may be negative when
    ``scratch_fraction`` < 1 and the method needs more data than scratch.
    """
    f = _label_fractions(fractions)
    scores = np.array([float(np.mean(s)) for s in method_scores], dtype=np.float64)
    if f.size != scores.size:
        raise ValueError(f"need one score per fraction (got {f.size} fractions, {scores.size} scores)")
    if not 0 < scratch_fraction <= 1:
        raise ValueError("scratch_fraction must lie in (0, 1]")
    order = np.argsort(f)
    sign = 1.0 if higher_is_better else -1.0
    saving = _saving(f[order], scores[order], scratch_full_score, scratch_fraction, sign)
    return None if np.isnan(saving) else float(saving)


FEWER_LABELS_BOUND = "fixed-sequence one-sided Welch tests, largest fraction first"


@dataclass(frozen=True)
class SavingBound:
    """A one-sided lower confidence bound of the label saving, shown by tests (see :func:`fewer_labels_bound`).

    ``low`` is 1 − ``fraction``, the smallest fraction shown to reach the target (NaN: none was);
    ``tests`` lists (fraction, one-sided p) in the order tested, the last one the first that failed
    unless every fraction passed; ``p`` is the p-value at ``fraction`` (NaN: none passed).
    """

    low: float
    fraction: float
    p: float
    tests: tuple[tuple[float, float], ...]
    confidence: float
    method: str = FEWER_LABELS_BOUND
    note: str = ""


def welch_greater(a: ArrayLike, b: ArrayLike) -> float:
    """One-sided p of Welch's t-test that mean(a) > mean(b) (``ttest_ind(..., alternative="greater")``);
    both groups constant: NaN where their values differ (undefined, as in :func:`welch_t`: no claim rests
    on it), 0.5 where they are equal."""
    result = welch_t(a, b)
    half = result.p / 2.0
    return half if result.statistic > 0 else 1.0 - half


def fewer_labels_bound(
    fractions: Sequence[float],
    method_scores: Sequence[Sequence[float]],
    scratch_full_scores: Sequence[float],
    confidence: float = 0.95,
) -> SavingBound:
    """A one-sided ``confidence`` lower bound of :func:`fewer_labels` (higher-is-better scores).

    The fractions below 1 are tested from the largest down: at each, Welch's one-sided t-test that the
    method's mean there is above the baseline's full-data mean (``method_scores[i]`` are its per-seed
    scores at ``fractions[i]``); the sequence stops at the first fraction that does not pass at
    alpha = 1 − ``confidence``, or that has fewer than 2 seeds. A fixed sequence needs no correction:
    the chance that any passing fraction does not truly reach the target is at most alpha, so
    1 − (the smallest passing fraction) is a lower bound of the saving with that confidence (the true
    curve first reaches the target at or below that fraction, whatever its shape). The bound moves in
    the steps of the fractions measured and assumes near-normal seed scores, as every t-test here; at
    3 seeds its power is low, so a missing bound often says "not shown", not "no saving".
    """
    f = _label_fractions(fractions)
    values = [_finite_1d(v, "method_scores") for v in method_scores]
    full = _finite_1d(scratch_full_scores, "scratch_full_scores")
    if len(values) != f.size or full.size == 0:
        raise ValueError("need one list of seed scores per fraction and at least one baseline score")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    tests: list[tuple[float, float]] = []
    shown, shown_p, note = math.nan, math.nan, ""
    for i in sorted((i for i in range(f.size) if f[i] < 1.0), key=lambda i: -f[i]):
        if values[i].size < 2 or full.size < 2:
            note = f"fraction {f[i]:g} not tested: a t-test needs at least 2 seeds on each side"
            break
        p = welch_greater(values[i], full)
        tests.append((float(f[i]), p))
        if not p < alpha:
            break
        shown, shown_p = float(f[i]), p
    return SavingBound(low=1.0 - shown, fraction=shown, p=shown_p, tests=tuple(tests), confidence=confidence,
                       note=note)


def _label_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size == 0:
        raise ValueError("need at least one label fraction")
    if np.any(~np.isfinite(f)) or np.any((f <= 0) | (f > 1)):
        raise ValueError("fractions must lie in (0, 1] (e.g. 0.05 for 5%)")
    if np.unique(f).size != f.size:
        raise ValueError("fractions must be distinct")
    return f


def _saving(f: np.ndarray, scores: np.ndarray, target: float, scratch_fraction: float, sign: float) -> float:
    """1 − f_method / scratch_fraction, where f_method is the fraction at which ``scores`` (at the
    ascending fractions ``f``) first reach ``target``, interpolated linearly from the point below;
    NaN where they never reach it (see :func:`fewer_labels`)."""
    gap = sign * (scores - target)  # >= 0 means reached; NaN never reaches
    with np.errstate(invalid="ignore"):
        reached = gap >= 0
    if not reached.any():
        return float("nan")
    first = int(np.argmax(reached))
    if first == 0 or np.isnan(gap[first - 1]):  # no usable point below: the first fraction that reaches
        f_method = f[first]
    else:
        g0, g1 = gap[first - 1], gap[first]
        f_method = f[first - 1] + (f[first] - f[first - 1]) * (-g0) / (g1 - g0)
    return float(1.0 - f_method / scratch_fraction)


def epochs_to_reach(
    history_metric: Sequence[float],
    fraction_of_final: float = 0.95,
    reference: Literal["best", "last"] = "best",
) -> int | None:
    """First epoch (1-based: ``history_metric[0]`` is epoch 1) whose value reaches a share of the final.

    The target is ``fraction_of_final`` × the best (max, default) or last value of the history, for
    a non-negative, higher-is-better validation metric (Dice, AUC, ...). NaN epochs never count.
    Returns None if the history has no finite value.
    """
    h = np.asarray(history_metric, dtype=np.float64)
    if h.ndim != 1:
        raise ValueError("history_metric must be one-dimensional")
    if not 0 < fraction_of_final <= 1:
        raise ValueError("fraction_of_final must lie in (0, 1]")
    if reference not in ("best", "last"):
        raise ValueError("reference must be 'best' or 'last'")
    finite = np.isfinite(h)
    if not np.any(finite):
        return None
    final = float(np.max(h[finite])) if reference == "best" else float(h[finite][-1])
    if final < 0:
        raise ValueError("epochs_to_reach needs a non-negative final value (a higher-is-better score)")
    target = fraction_of_final * final
    with np.errstate(invalid="ignore"):
        hits = np.flatnonzero(finite & (h >= target))
    return int(hits[0]) + 1
