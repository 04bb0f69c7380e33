"""Tests for benchmark.reporting.stats against scipy/statsmodels/sklearn and brute-force references."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from scipy import stats as st
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from benchmark.reporting import stats
from benchmark.reporting.stats import (
    auc_bootstrap_ci,
    auc_variance,
    bootstrap_ci,
    correct,
    delong,
    delong_speed_check,
    detectable_difference_paired,
    detectable_difference_t,
    detectable_difference_z,
    epochs_to_reach,
    fewer_labels,
    fewer_labels_bound,
    significance_marks,
    t_interval,
    welch_greater,
    welch_t,
    wilcoxon_min_p,
    wilcoxon_signed_rank,
)

# --------------------------------------------------------------------------- t-tests

A = np.array([0.81, 0.84, 0.79, 0.86, 0.83])
B = np.array([0.76, 0.80, 0.71, 0.78, 0.74, 0.77, 0.69])


def test_welch_matches_hand_computation():
    va, vb = A.var(ddof=1) / A.size, B.var(ddof=1) / B.size
    t = (A.mean() - B.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (A.size - 1) + vb**2 / (B.size - 1))
    p = 2 * st.t.sf(abs(t), df)
    r = welch_t(A, B)
    assert r.test == "Welch t-test (two-sided)"
    assert r.n == {"a": 5, "b": 7}
    assert r.statistic == pytest.approx(t, rel=1e-12)
    assert r.detail["df"] == pytest.approx(df, rel=1e-12)
    assert r.p == pytest.approx(p, rel=1e-10)
    assert r.detail["difference"] == pytest.approx(A.mean() - B.mean())


def test_student_option_matches_pooled_formula():
    na, nb = A.size, B.size
    sp2 = ((na - 1) * A.var(ddof=1) + (nb - 1) * B.var(ddof=1)) / (na + nb - 2)
    t = (A.mean() - B.mean()) / math.sqrt(sp2 * (1 / na + 1 / nb))
    r = welch_t(A, B, equal_var=True)
    assert r.test.startswith("Student t-test")
    assert r.statistic == pytest.approx(t, rel=1e-12)
    assert r.detail["df"] == na + nb - 2
    assert r.p == pytest.approx(2 * st.t.sf(abs(t), na + nb - 2), rel=1e-10)


def test_t_test_small_groups_and_constant_groups():
    with pytest.raises(ValueError, match="at least 2"):
        welch_t([0.5], [0.4, 0.6])
    with pytest.raises(ValueError, match="NaN"):
        welch_t([0.5, np.nan], [0.4, 0.6])
    same = welch_t([0.7, 0.7, 0.7], [0.7, 0.7])
    assert (same.statistic, same.p) == (0.0, 1.0) and "zero variance" in same.detail["note"]
    diff = welch_t([0.8, 0.8], [0.7, 0.7])
    assert diff.statistic == math.inf and math.isnan(diff.p) and "undefined" in diff.detail["note"]


def test_result_is_frozen():
    r = welch_t(A, B)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.p = 0.0  # type: ignore[misc]


# --------------------------------------------------------------------------- Wilcoxon


def test_wilcoxon_hand_example():
    a = np.array([0.90, 0.70, 0.93, 0.84, 0.85, 0.60])
    b = a - np.array([0.01, -0.02, 0.03, 0.04, 0.05, 0.0])  # differences rank 1..5, one zero
    r = wilcoxon_signed_rank(a, b)
    # W+ = 1 + 3 + 4 + 5 = 13, W- = 2; exact null of W for n = 5: P(W <= 2) = 3/32.
    assert r.n == {"pairs": 6, "nonzero": 5}
    assert r.statistic == pytest.approx(2.0)
    assert r.p == pytest.approx(2 * 3 / 32)
    ref = st.wilcoxon(a, b)
    assert (r.statistic, r.p) == pytest.approx((ref.statistic, ref.pvalue))
    assert "Wilcoxon signed-rank" in r.test


def test_wilcoxon_matches_scipy_larger_sample():
    rng = np.random.default_rng(3)
    a = rng.uniform(0.6, 0.9, size=80)
    b = a - rng.normal(0.01, 0.03, size=80)
    r, ref = wilcoxon_signed_rank(a, b), st.wilcoxon(a, b)
    assert r.statistic == pytest.approx(ref.statistic) and r.p == pytest.approx(ref.pvalue)


def test_wilcoxon_all_zero_and_bad_input():
    r = wilcoxon_signed_rank([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert r.p == 1.0 and r.n == {"pairs": 3, "nonzero": 0} and "zero" in r.detail["note"]
    with pytest.raises(ValueError, match="equal lengths"):
        wilcoxon_signed_rank([0.5, 0.6], [0.5])


# --------------------------------------------------------------------------- DeLong


def _psi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kernel matrix psi(x_i, y_j): 1 if x > y, 1/2 if tied, 0 otherwise."""
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def _brute_delong(labels, score_vectors):
    """Textbook DeLong (1988) by O(m n) pairwise comparisons: AUCs, covariance S, V10, V01."""
    labels = np.asarray(labels, dtype=bool)
    aucs, v10, v01 = [], [], []
    for s in score_vectors:
        s = np.asarray(s, dtype=float)
        k = _psi(s[labels], s[~labels])
        aucs.append(k.mean())
        v10.append(k.mean(axis=1))
        v01.append(k.mean(axis=0))
    m, n = labels.sum(), (~labels).sum()
    s10 = np.cov(np.array(v10))
    s01 = np.cov(np.array(v01))
    return np.array(aucs), s10 / m + s01 / n


def _tied_data(seed: int, size: int = 300, prevalence: float = 0.2):
    rng = np.random.default_rng(seed)
    labels = (rng.random(size) < prevalence).astype(int)
    sa = np.round(rng.normal(size=size) + 1.0 * labels, 1)  # 1 decimal: many ties
    sb = np.round(0.6 * sa + rng.normal(size=size) * 0.8 + 0.5 * labels, 1)
    return labels, sa, sb


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_delong_matches_brute_force_with_ties(seed):
    labels, sa, sb = _tied_data(seed)
    assert np.unique(sa).size < sa.size / 3  # really tied, also across classes
    aucs, cov = _brute_delong(labels, [sa, sb])
    z = (aucs[0] - aucs[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    r = delong(labels, sa, sb)
    assert r.detail["auc_a"] == pytest.approx(aucs[0], abs=1e-14)
    assert r.detail["auc_b"] == pytest.approx(aucs[1], abs=1e-14)
    assert r.detail["auc_a"] == pytest.approx(roc_auc_score(labels, sa), abs=1e-14)
    assert r.detail["auc_b"] == pytest.approx(roc_auc_score(labels, sb), abs=1e-14)
    np.testing.assert_allclose(np.array(r.detail["covariance"]), cov, rtol=1e-10, atol=1e-16)
    assert r.statistic == pytest.approx(z, rel=1e-9)
    assert r.p == pytest.approx(2 * st.norm.sf(abs(z)), rel=1e-9)
    assert r.n == {"positives": int(labels.sum()), "negatives": int((1 - labels).sum())}
    assert auc_variance(labels, sa) == pytest.approx(cov[0, 0], rel=1e-10)
    assert auc_variance(labels.astype(bool), sb) == pytest.approx(cov[1, 1], rel=1e-10)


def test_delong_input_order_and_label_types_do_not_matter():
    labels, sa, sb = _tied_data(5, size=200)
    perm = np.random.default_rng(0).permutation(labels.size)
    r1 = delong(labels, sa, sb)
    r2 = delong(labels[perm].astype(bool), sa[perm], sb[perm])
    assert r1.statistic == pytest.approx(r2.statistic, rel=1e-12)
    # swapping the two score vectors flips the sign only
    r3 = delong(labels, sb, sa)
    assert r3.statistic == pytest.approx(-r1.statistic, rel=1e-12) and r3.p == pytest.approx(r1.p)


def test_delong_identical_and_same_ranking_scores_give_p_one():
    labels, sa, _ = _tied_data(7)
    for other in (sa.copy(), 3.0 * sa + 1.0):  # identical, and a monotone transform (same ranks)
        r = delong(labels, sa, other)
        assert r.statistic == 0.0 and r.p == 1.0
        assert r.detail["difference"] == 0.0 and r.detail["variance_difference"] == 0.0
        assert "note" in r.detail


def test_delong_zero_variance_but_different_aucs():
    labels = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    constant = np.full(6, 0.5)
    with pytest.raises(ValueError, match=r"zero while the AUCs differ \(1.000 vs 0.500"):
        delong(labels, perfect, constant)  # not p = 0: no test of 6 candidates can give that


def test_delong_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 positives"):
        delong([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="binary"):
        delong([0, 2, 0, 2], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="length"):
        delong([0, 1, 0, 1], [0.1, 0.2, 0.3], [0.4, 0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="NaN"):
        delong([0, 1, 0, 1], [0.1, np.nan, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1])


def test_delong_speed_check_smoke():
    # Not a timing test: the full 750k measurement belongs to the benchmark speed command.
    seconds = delong_speed_check(n=20_000, n_positive=40, repeats=1)
    assert seconds > 0


@pytest.mark.parametrize(("nonzero", "expected"), [(1, 1.0), (2, 0.5), (5, 0.0625), (6, 0.03125), (10, 2 ** -9)])
def test_wilcoxon_states_the_smallest_p_it_can_reach(nonzero, expected):
    assert wilcoxon_min_p(np.arange(1.0, nonzero + 1)) == pytest.approx(expected)
    # every outcome with that many non-zero differences has p >= the floor, and the floor is attained
    rng = np.random.default_rng(nonzero)
    differences = [rng.normal(size=nonzero) for _ in range(200)] + [np.arange(1.0, nonzero + 1)]
    ps = [st.wilcoxon(d).pvalue for d in differences]
    assert min(ps) == pytest.approx(expected) and all(p >= expected - 1e-12 for p in ps)
    result = wilcoxon_signed_rank(np.arange(1.0, nonzero + 1), np.zeros(nonzero))
    assert result.min_p == pytest.approx(expected)


@pytest.mark.parametrize("zeros", [0, 6, 8])
def test_wilcoxon_floor_with_zero_and_tied_differences_is_the_smallest_p_of_every_sign_pattern(zeros):
    # zeros and ties send scipy to its normal approximation, whose floor is not 2 / 2^n: brute force
    # over all 2^8 sign patterns of the non-zero differences (ties among them included)
    magnitudes = np.array([0.1, 0.1, 0.2, 0.3, 0.3, 0.3, 0.5, 0.8] + [0.0] * zeros)
    floor = wilcoxon_min_p(magnitudes)
    ps = [st.wilcoxon(np.where(np.array(signs + (1,) * zeros) > 0, magnitudes, -magnitudes)).pvalue
          for signs in itertools.product((-1, 1), repeat=8)]
    assert floor == pytest.approx(min(ps))
    result = wilcoxon_signed_rank(0.5 + magnitudes, np.full(magnitudes.size, 0.5))
    assert result.min_p == pytest.approx(floor) and result.p == pytest.approx(floor)


def test_tests_with_a_continuous_null_can_reach_any_p():
    assert welch_t(A, B).min_p == 0.0
    labels, a, b = _tied_data(0)
    assert delong(labels, a, b).min_p == 0.0
    assert wilcoxon_signed_rank([0.5, 0.6], [0.5, 0.6]).min_p == 1.0  # all differences zero: p is 1 whatever


# --------------------------------------------------------------------------- t interval and its coverage


def test_t_interval_matches_scipy():
    ci = t_interval(A)
    low, high = st.t.interval(0.95, A.size - 1, loc=A.mean(), scale=st.sem(A))
    assert (ci.low, ci.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert ci.method == "t interval (Student, n - 1 df)" and ci.n == {"values": 5} and ci.n_resamples == 0
    assert ci.estimate == pytest.approx(A.mean()) and ci.standard_error == pytest.approx(st.sem(A))
    two = t_interval([0.6, 0.8])  # n = 2: t(0.975, 1) = 12.71 standard errors, not the range of the values
    assert two.high - two.low == pytest.approx(2 * 12.706204736 * 0.1, rel=1e-6)
    with pytest.raises(ValueError, match="all 3 values are equal"):
        t_interval([0.7, 0.7, 0.7])
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([0.7])


def _coverage(n: int, replicates: int, seed: int) -> tuple[float, float]:
    """Share of ``replicates`` samples of ``n`` normal values whose interval covers the true mean: the
    t interval, and the normal (z) interval with the sample s.d. (what ignoring the t distribution gives)."""
    mean = 0.8
    samples = np.random.default_rng(seed).normal(mean, 0.05, size=(replicates, n))
    t_hits = sum(ci.low <= mean <= ci.high for ci in map(t_interval, samples))
    z_hits = np.abs(samples.mean(axis=1) - mean) <= st.norm.ppf(0.975) * st.sem(samples, axis=1)
    return t_hits / replicates, float(np.mean(z_hits))


@pytest.mark.parametrize("n", [3, 5])
def test_seed_intervals_cover_95_percent_at_3_and_5_seeds(n):
    # 20,000 replicates: the coverage's standard error is 0.15 points, the 2-point bound 13 s.e. wide
    t_coverage, z_coverage = _coverage(n, 20_000, seed=2024 + n)
    assert t_coverage == pytest.approx(0.95, abs=0.02)
    # the same simulation catches an interval that under-covers (the z interval: 81% at n = 3, 88% at n = 5)
    assert z_coverage < 0.93


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("ratio", [1.0, 3.0, 10.0])
def test_welch_interval_of_a_difference_covers_at_equal_seed_counts(n, ratio):
    # 20,000 simulated pairs of methods with equal means: Welch's 95% interval covers 0 at least 94% of the time
    rng = np.random.default_rng(int(10 * n + ratio))
    a, b = rng.normal(0.7, 0.02 * ratio, size=(20_000, n)), rng.normal(0.7, 0.02, size=(20_000, n))
    interval = st.ttest_ind(a, b, axis=1, equal_var=False).confidence_interval(0.95)
    assert np.mean((interval.low <= 0) & (0 <= interval.high)) >= 0.94
    sample = welch_t(a[0], b[0]).detail  # the suite's test is this scipy interval
    assert (sample["ci_low"], sample["ci_high"]) == pytest.approx((interval.low[0], interval.high[0]))


# --------------------------------------------------------------------------- power


def _simulated_power(shift: float, n_a: int, n_b: int, alpha: float, paired: bool = False) -> float:
    """Share of 20,000 simulated experiments (unit s.d., true difference ``shift``) that scipy's t-test rejects."""
    rng = np.random.default_rng(7)
    a = rng.normal(shift, 1.0, size=(20_000, n_a))
    if paired:
        return float(np.mean(st.ttest_1samp(a, 0.0, axis=1).pvalue < alpha))
    b = rng.normal(0.0, 1.0, size=(20_000, n_b))
    return float(np.mean(st.ttest_ind(a, b, axis=1).pvalue < alpha))


# at few seeds and Bonferroni levels statsmodels' solve_power stopped at its bracket without a warning
# (3 v 3 at .05/20 gave 5.49 s.d., power 0.58): each case is checked by simulating scipy's own test
@pytest.mark.parametrize(("n_a", "n_b", "alpha"), [(5, 5, 0.05), (3, 5, 0.05), (2, 2, 0.05), (5, 5, 0.01),
                                                  (3, 3, 0.05 / 20), (3, 3, 0.05 / 36), (5, 5, 0.05 / 225),
                                                  (2, 3, 0.05 / 225), (2, 2, 0.05 / 45)])
def test_detectable_difference_of_two_means_has_the_stated_power(n_a, n_b, alpha):
    mdd = detectable_difference_t(1.0, 1.0, n_a, n_b, alpha)
    assert _simulated_power(mdd, n_a, n_b, alpha) == pytest.approx(0.8, abs=0.012)  # s.e. 0.003
    sd_a, sd_b = 0.03, 0.05  # scales with the pooled s.d.
    pooled = math.sqrt(((n_a - 1) * sd_a**2 + (n_b - 1) * sd_b**2) / (n_a + n_b - 2))
    assert detectable_difference_t(sd_a, sd_b, n_a, n_b, alpha) == pytest.approx(mdd * pooled, rel=1e-9)


def test_detectable_difference_grows_with_the_family():
    mdds = [detectable_difference_t(1.0, 1.0, 3, 3, 0.05 / k) for k in range(1, 60)]
    assert all(later > earlier for earlier, later in zip(mdds, mdds[1:]))


def test_no_detectable_difference_from_zero_spread():
    # zero spread across seeds (or cases) is not zero uncertainty: "no difference as large as 0" is never said
    assert math.isnan(detectable_difference_t(0.0, 0.0, 3, 3))
    assert math.isnan(detectable_difference_paired(0.0, 6))
    assert math.isnan(detectable_difference_z(0.0))
    with pytest.raises(ValueError, match="at least 2"):
        detectable_difference_t(0.1, 0.1, 1, 5)


@pytest.mark.parametrize(("n", "alpha"), [(6, 0.05), (20, 0.05 / 225), (3, 0.05 / 10)])
def test_detectable_paired_difference_has_the_stated_power(n, alpha):
    mdd = detectable_difference_paired(1.0, n, alpha)
    assert _simulated_power(mdd, n, 0, alpha, paired=True) == pytest.approx(0.8, abs=0.012)
    assert detectable_difference_paired(0.02, n, alpha) == pytest.approx(0.02 * mdd, rel=1e-9)


def test_detectable_normal_difference_has_the_stated_power():
    z = detectable_difference_z(0.03)
    assert z == pytest.approx((st.norm.ppf(0.975) + st.norm.ppf(0.8)) * 0.03)
    assert st.norm.sf(st.norm.ppf(0.975) - z / 0.03) == pytest.approx(0.8)  # the far tail is negligible
    with pytest.raises(ValueError):
        detectable_difference_z(0.03, alpha=1.5)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_matches_scipy_and_covers_known_mean():
    rng = np.random.default_rng(11)
    x = rng.normal(loc=0.8, scale=0.05, size=40)
    ci = bootstrap_ci(x, n_resamples=2000, seed=4)
    ref = st.bootstrap((x,), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(4))
    assert ci.method == "BCa" and ci.note == ""
    assert ci.low == ref.confidence_interval.low and ci.high == ref.confidence_interval.high
    assert ci.low < 0.8 < ci.high
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.n == {"values": 40}
    # reproducible
    assert bootstrap_ci(x, n_resamples=2000, seed=4) == ci


def test_bootstrap_ci_other_statistic_and_confidence():
    x = np.arange(1.0, 31.0)
    ci = bootstrap_ci(x, statistic=np.median, confidence=0.9, n_resamples=1000, seed=0)
    ref = st.bootstrap(
        (x,), np.median, confidence_level=0.9, n_resamples=1000, method="BCa", rng=np.random.default_rng(0)
    )
    assert (ci.low, ci.high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert ci.low < 15.5 < ci.high


def test_bootstrap_ci_degenerate_falls_back_to_percentile():
    ci = bootstrap_ci([0.75] * 8, n_resamples=500)
    assert ci.method == "percentile" and "BCa degenerate" in ci.note
    assert ci.low == ci.high == 0.75
    with pytest.raises(ValueError):
        bootstrap_ci([0.75])


def _auc_two_samples(x, y, axis=-1):
    """Vectorised AUC of positives x vs negatives y for scipy.stats.bootstrap (ties 1/2)."""
    x = np.moveaxis(np.asarray(x), axis, -1)
    y = np.moveaxis(np.asarray(y), axis, -1)
    k = (x[..., :, None] > y[..., None, :]) + 0.5 * (x[..., :, None] == y[..., None, :])
    return k.mean(axis=(-2, -1))


def _auc_data():
    rng = np.random.default_rng(21)
    labels = np.r_[np.ones(30, int), np.zeros(70, int)]
    scores = np.round(rng.normal(size=100) + 0.9 * labels, 1)
    return labels, scores


def test_auc_bootstrap_replicates_match_naive_stratified_bootstrap():
    labels, scores = _auc_data()
    pos, neg = scores[labels == 1], scores[labels == 0]
    fast = stats._auc_bootstrap_replicates(pos, neg, 6000, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    naive = np.array([_auc_two_samples(rng.choice(pos, pos.size), rng.choice(neg, neg.size)) for _ in range(6000)])
    assert fast.mean() == pytest.approx(naive.mean(), abs=0.003)
    assert fast.std() == pytest.approx(naive.std(), rel=0.06)
    np.testing.assert_allclose(np.percentile(fast, [2.5, 97.5]), np.percentile(naive, [2.5, 97.5]), atol=0.01)
    # the bootstrap standard error agrees with the DeLong standard error
    assert fast.std() == pytest.approx(math.sqrt(auc_variance(labels, scores)), rel=0.1)


def test_auc_bca_acceleration_matches_brute_force_jackknife():
    labels, scores = _auc_data()
    pos, neg = scores[labels == 1], scores[labels == 0]
    nums, dens = [], []
    for j, sample in enumerate((pos, neg)):
        jack = []
        for i in range(sample.size):
            left_out = np.delete(sample, i)
            jack.append(_auc_two_samples(left_out, neg) if j == 0 else _auc_two_samples(pos, left_out))
        jack = np.array(jack)
        u = (sample.size - 1) * (jack.mean() - jack)
        nums.append((u**3).sum() / sample.size**3)
        dens.append((u**2).sum() / sample.size**2)
    accel_ref = sum(nums) / (6 * sum(dens) ** 1.5)
    auc, accel = stats._auc_bca_acceleration(labels.astype(bool), scores)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-14)
    assert accel == pytest.approx(accel_ref, rel=1e-9, abs=1e-14)


def test_auc_bootstrap_ci_close_to_scipy_two_sample_bca():
    labels, scores = _auc_data()
    pos, neg = scores[labels == 1], scores[labels == 0]
    ref = st.bootstrap(
        (pos, neg), _auc_two_samples, n_resamples=6000, batch=500, method="BCa", rng=np.random.default_rng(5)
    )
    ci = auc_bootstrap_ci(labels, scores, n_resamples=6000, seed=6)
    assert ci.method == "BCa (stratified by class)"
    assert ci.estimate == pytest.approx(roc_auc_score(labels, scores))
    assert ci.low == pytest.approx(ref.confidence_interval.low, abs=0.012)
    assert ci.high == pytest.approx(ref.confidence_interval.high, abs=0.012)
    assert ci.n == {"positives": 30, "negatives": 70}
    pct = auc_bootstrap_ci(labels, scores, n_resamples=6000, seed=6, method="percentile")
    assert pct.method.startswith("percentile") and pct.low < pct.estimate < pct.high


@pytest.mark.parametrize("method", ["BCa", "percentile"])
@pytest.mark.parametrize("sign", [1, -1])
def test_auc_bootstrap_ci_gives_no_interval_for_perfect_separation(method, sign):
    """Every replicate equals an AUC of 1 (or 0): a zero-width interval would miss every true AUC but that."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = sign * np.array([0.1, 0.2, 0.2, 0.3, 0.8, 0.9, 0.9])
    with pytest.raises(ValueError, match="perfectly separated"):
        auc_bootstrap_ci(labels, scores, n_resamples=300, method=method)
    scores[0] = sign * 0.85  # one negative among the positives: an interval again
    ci = auc_bootstrap_ci(labels, scores, n_resamples=300, method=method)
    assert ci.low < ci.estimate < 1 and ci.estimate > 0


# --------------------------------------------------------------------------- corrections


P = [0.01, 0.04, 0.03, 0.005]


def test_holm_hand_values_and_statsmodels():
    c = correct(P)  # Holm is the default
    assert c.method == "holm" and c.label == "Holm" and c.n_tests == 4
    # sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, max(0.04*1, 0.06)=0.06
    np.testing.assert_allclose(c.p_corrected, [0.03, 0.06, 0.06, 0.02])
    assert c.reject == (True, False, False, True)
    rej, ref, _, _ = multipletests(P, alpha=0.05, method="holm")
    np.testing.assert_allclose(c.p_corrected, ref)
    assert c.reject == tuple(rej)


def test_bh_hand_values_aliases_and_statsmodels():
    c = correct(P, method="bh")
    assert c.method == "fdr_bh" and "Hochberg" in c.label
    # sorted p*4/rank = 0.02, 0.02, 0.04, 0.04 (step-up minimum)
    np.testing.assert_allclose(c.p_corrected, [0.02, 0.04, 0.04, 0.02])
    assert all(c.reject)
    np.testing.assert_allclose(c.p_corrected, multipletests(P, method="fdr_bh")[1])
    assert correct(P, method="fdr_bh") == c
    with pytest.raises(ValueError, match="unknown correction"):
        correct(P, method="hs")


def test_correction_leaves_nan_out():
    c = correct([0.01, np.nan, 0.04, 0.03, 0.005], method="holm")
    assert c.n_tests == 4
    assert math.isnan(c.p_corrected[1]) and c.reject[1] is False
    np.testing.assert_allclose(np.array(c.p_corrected)[[0, 2, 3, 4]], [0.03, 0.06, 0.06, 0.02])
    empty = correct([np.nan, np.nan])
    assert empty.n_tests == 0 and empty.reject == (False, False)
    assert correct([]).p_corrected == ()
    with pytest.raises(ValueError):
        correct([0.5, 1.5])


def test_significance_marks():
    assert [significance_marks(p) for p in (0.2, 0.05, 0.049, 0.01, 0.0099, 0.001, 0.0009)] == [
        "",
        "",
        "*",
        "*",
        "**",
        "**",
        "***",
    ]
    assert significance_marks(float("nan")) == "" and significance_marks(None) == ""


# --------------------------------------------------------------------------- label efficiency, convergence

FRACTIONS = [0.05, 0.10, 0.25, 0.50, 1.00]
CURVE = [0.60, 0.70, 0.75, 0.80, 0.85]


def test_fewer_labels_known_answers():
    assert fewer_labels(FRACTIONS, CURVE, 0.80) == pytest.approx(0.5)  # reached exactly at 50%
    # 0.775 lies halfway between 0.75 (25%) and 0.80 (50%): f = 0.375
    assert fewer_labels(FRACTIONS, CURVE, 0.775) == pytest.approx(1 - 0.375)
    assert fewer_labels(FRACTIONS, CURVE, 0.90) is None
    assert fewer_labels(FRACTIONS, CURVE, 0.50) == pytest.approx(0.95)  # reached at the smallest fraction
    assert fewer_labels(FRACTIONS, CURVE, 0.85) == pytest.approx(0.0)  # needs all the data


def test_fewer_labels_order_seeds_and_direction():
    order = [3, 0, 4, 2, 1]
    shuffled = fewer_labels([FRACTIONS[i] for i in order], [CURVE[i] for i in order], 0.775)
    assert shuffled == pytest.approx(0.625)
    per_seed = [[c - 0.01, c + 0.01] for c in CURVE]
    assert fewer_labels(FRACTIONS, per_seed, 0.80) == pytest.approx(0.5)
    losses = [1 - c for c in CURVE]
    assert fewer_labels(FRACTIONS, losses, 0.225, higher_is_better=False) == pytest.approx(0.625)
    # first crossing counts even if the curve dips later
    assert fewer_labels(FRACTIONS, [0.6, 0.8, 0.7, 0.9, 0.95], 0.8) == pytest.approx(0.9)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        fewer_labels([5, 10, 25, 50, 100], CURVE, 0.8)
    with pytest.raises(ValueError, match="one score per fraction"):
        fewer_labels(FRACTIONS, CURVE[:-1], 0.8)


def test_fewer_labels_skips_missing_scores():
    assert fewer_labels(FRACTIONS, [np.nan, 0.7, 0.75, 0.8, 0.85], 0.65) == pytest.approx(0.9)  # 0.05 has no score
    assert fewer_labels(FRACTIONS, [np.nan] * 5, 0.65) is None


def _naive_bound(fractions, per_fraction, full, alpha=0.05):
    """The fixed sequence of fewer_labels_bound written out: scipy's one-sided Welch, largest fraction first."""
    shown = np.nan
    for fraction, scores in sorted(zip(fractions, per_fraction), reverse=True):
        if fraction == 1.0:
            continue
        if not st.ttest_ind(scores, full, equal_var=False, alternative="greater").pvalue < alpha:
            break
        shown = fraction
    return 1 - shown


def test_welch_greater_is_scipys_one_sided_welch():
    for a, b in ((A, B), (B, A), (A, A + 0.001)):
        assert welch_greater(a, b) == pytest.approx(st.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    assert math.isnan(welch_greater([0.9, 0.9], [0.8, 0.8])) and math.isnan(welch_greater([0.8, 0.8], [0.9, 0.9]))
    assert welch_greater([0.8, 0.8], [0.8, 0.8]) == 0.5


def test_fewer_labels_bound_is_the_fixed_sequence_of_one_sided_welch_tests():
    rng = np.random.default_rng(7)
    fractions = [0.1, 1.0, 0.25, 0.5]
    for _ in range(200):
        per_fraction = [rng.normal(0.8 + rng.normal(0, 0.05), 0.03, size=3) for _ in fractions]
        full = rng.normal(0.8, 0.03, size=3)
        bound = fewer_labels_bound(fractions, per_fraction, full)
        assert bound.low == pytest.approx(_naive_bound(fractions, per_fraction, full), nan_ok=True)
        assert [f for f, _ in bound.tests] == [0.5, 0.25, 0.1][:len(bound.tests)]
        estimate = fewer_labels(fractions, per_fraction, np.mean(full))
        if bound.low > 0:  # a shown fraction reaches the target in the means too: the estimate is no lower
            assert estimate is not None and estimate >= bound.low - 1e-12


def test_fewer_labels_bound_stops_at_the_first_failure_and_at_one_seed():
    full = [0.80, 0.81, 0.79]
    above, level = [0.90, 0.91, 0.89], [0.80, 0.81, 0.79]
    stopped = fewer_labels_bound([0.25, 0.5, 1.0], [above, level, above], full)
    assert np.isnan(stopped.low) and [f for f, _ in stopped.tests] == [0.5]  # 0.25 is never tested
    one_seed = fewer_labels_bound([0.25, 0.5, 1.0], [[0.95], above, above], full)
    assert one_seed.low == pytest.approx(0.5) and one_seed.fraction == 0.5 and "0.25 not tested" in one_seed.note
    assert one_seed.p == pytest.approx(st.ttest_ind(above, full, equal_var=False, alternative="greater").pvalue)


def test_fewer_labels_bound_claims_a_saving_at_most_alpha_of_the_time_when_there_is_none():
    """The method is the baseline (3 seeds, the least favourable null: equal at the largest fraction below
    1, lower below it): a bound above 0% is a false claim, and it must stay at the nominal 5%."""
    rng = np.random.default_rng(0)
    trials, claims = 4000, 0
    for _ in range(trials):
        curve = {0.25: rng.normal(0.70, 0.03, 3), 0.5: rng.normal(0.80, 0.03, 3), 1.0: rng.normal(0.80, 0.03, 3)}
        full = rng.normal(0.80, 0.03, 3)
        claims += fewer_labels_bound(list(curve), list(curve.values()), full).low > 0
    assert claims / trials <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / trials)


def test_epochs_to_reach():
    history = [0.10, 0.50, 0.80, 0.90, 0.95, 1.00, 0.98]
    assert epochs_to_reach(history) == 5  # 0.95 * 1.00 first reached at epoch 5
    assert epochs_to_reach(history, 0.5) == 2
    assert epochs_to_reach(history, 1.0) == 6
    assert epochs_to_reach(history, 0.95, reference="last") == 5  # target 0.931
    assert epochs_to_reach([np.nan, 0.2, np.nan, 0.4]) == 4
    assert epochs_to_reach([np.nan, np.nan]) is None
    with pytest.raises(ValueError):
        epochs_to_reach(history, 1.5)
