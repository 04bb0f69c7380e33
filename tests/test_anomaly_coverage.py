"""Coverage of the anomaly detection AUC's interval over scans, by simulation.

Scans differ in opacity share (5-30% of voxels), intensity offset (s.d. 0.5) and opacity
contrast (normal, mean 1.5 s.d. for the difference map and 1.0 for the raw intensity, s.d. 0.7),
with unit noise: the population's pooled AUC is then exactly Phi(contrast / sqrt(2.99)) (pairs of
voxels from two different scans), so coverage is counted against the true value. Run as a script
for the figures in docs/statistics.md: ``python tests/test_anomaly_coverage.py 1000 5,8,12``.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import norm

from benchmark.reporting.anomaly import AnomalyMap, detection_auc, pair_counts, pooled_auc

CONTRASTS = {"difference map": 1.5, "raw intensity": 1.0}
TRUTH = {name: norm.cdf(contrast / np.sqrt(2.99)) for name, contrast in CONTRASTS.items()}
TRUTH["difference - intensity"] = TRUTH["difference map"] - TRUTH["raw intensity"]


def simulated_scan(rng: np.random.Generator, voxels: int) -> AnomalyMap:
    opacity = rng.random(voxels) < rng.uniform(0.05, 0.30)
    difference, intensity = (rng.normal(rng.normal(0, 0.5), 1, voxels) + rng.normal(contrast, 0.7) * opacity
                             for contrast in CONTRASTS.values())
    return AnomalyMap("scan", intensity, intensity, difference, opacity, np.ones(voxels, bool), {})


def coverage(scans: int, trials: int, voxels: int = 400, seed: int = 0) -> dict[str, float]:
    """Share of ``trials`` simulated studies of ``scans`` scans whose 95% interval holds the truth."""
    rng = np.random.default_rng([seed, scans])
    held = dict.fromkeys(TRUTH, 0)
    for trial in range(trials):
        table = detection_auc([simulated_scan(rng, voxels) for _ in range(scans)], seed=trial).set_index("score")
        for name, truth in TRUTH.items():
            held[name] += bool(table.loc[name, "ci_low"] <= truth <= table.loc[name, "ci_high"])
    return {name: count / trials for name, count in held.items()}


def percentile_bootstrap_coverage(scans: int, trials: int, voxels: int = 400, resamples: int = 200) -> float:
    """The same studies with the percentile bootstrap over scans (the interval used before): the
    check below must be able to fail, and fails for it."""
    rng = np.random.default_rng([1, scans])
    held = 0
    for _ in range(trials):
        maps = [simulated_scan(rng, voxels) for _ in range(scans)]
        counts = pair_counts([m.mask for m in maps], [m.difference for m in maps])
        draws = [pooled_auc(counts, np.bincount(rng.integers(0, scans, scans), minlength=scans).astype(float))
                 for _ in range(resamples)]
        low, high = np.nanpercentile(draws, [2.5, 97.5])
        held += bool(low <= TRUTH["difference map"] <= high)
    return held / trials


def test_the_interval_covers_about_95_percent_at_five_scans_where_the_bootstrap_did_not():
    measured = coverage(scans=5, trials=1000)
    assert all(share >= 0.92 for share in measured.values()), measured
    assert percentile_bootstrap_coverage(scans=5, trials=500) < 0.88  # about 82%


if __name__ == "__main__":
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for n in map(int, (sys.argv[2] if len(sys.argv) > 2 else "5,8,12").split(",")):
        print(n, "scans:", {name: round(share, 3) for name, share in coverage(n, trials, voxels=2000).items()},
              flush=True)
