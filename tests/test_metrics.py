"""Each metric against an independent computation (scipy / scikit-learn / by hand)."""

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import f1_score, jaccard_score

from benchmark.api import metrics


def test_auc_equals_the_mann_whitney_statistic():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounded: ties count one half
    u = mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    expected = u / ((labels == 1).sum() * (labels == 0).sum())
    assert metrics.auc(labels, scores) == pytest.approx(expected, abs=1e-12)


def test_auc_with_one_class_is_nan():
    assert np.isnan(metrics.auc([1, 1, 1], [0.2, 0.4, 0.9]))


@pytest.mark.parametrize("seed", range(5))
def test_dice_and_iou_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((6, 7, 8)) < 0.3
    probability = np.clip(truth * 0.4 + rng.random(truth.shape) * 0.6, 0, 1)
    predicted = probability >= 0.5
    assert metrics.dice(truth, probability) == pytest.approx(f1_score(truth.ravel(), predicted.ravel()))
    assert metrics.iou(truth, probability) == pytest.approx(jaccard_score(truth.ravel(), predicted.ravel()))


def test_empty_truth_and_empty_prediction_score_one():
    empty = np.zeros((4, 4, 4), dtype=np.uint8)
    assert metrics.dice(empty, np.zeros((4, 4, 4))) == 1.0
    assert metrics.iou(empty, np.zeros((4, 4, 4))) == 1.0
    assert metrics.dice(empty, np.ones((4, 4, 4))) == 0.0


def test_mg_iou_is_the_thresholded_two_class_mean_iou_pooled_over_cases():
    rng = np.random.default_rng(1)
    truths = [rng.random((5, 6, 7)) < 0.2 for _ in range(3)]
    probabilities = [np.clip(t * 0.5 + rng.random(t.shape) * 0.6, 0, 1) for t in truths]
    pooled_truth = np.concatenate([t.ravel() for t in truths])
    pooled_probability = np.concatenate([p.ravel() for p in probabilities])
    expected = np.mean([
        jaccard_score(pooled_truth, pooled_probability >= t, average="macro")
        for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    ])
    assert metrics.mg_iou(truths, probabilities) == pytest.approx(expected)
    foreground = jaccard_score(pooled_truth, pooled_probability >= 0.5)
    assert metrics.mg_iou(truths, probabilities) != pytest.approx(foreground)
