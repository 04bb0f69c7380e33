"""Evaluation metrics: AUC, per-case foreground Dice/IoU, and the Models Genesis ``mg_iou``.

The task kinds (``classification``, ``segmentation``) compute the metrics their tasks
declare from these functions; the engine never names a metric. Every metric here is a
score in [0, 1], higher is better (1 for a perfect prediction).

Segmentation probabilities are binarised with ``p >= threshold`` (0.5 by default).
A case whose ground truth and prediction are both empty scores Dice = IoU = 1: the
model did exactly the right thing. ``mg_iou`` is not foreground IoU: it is the
two-class (background, foreground) mean IoU accumulated over all test voxels and
averaged over the thresholds 0.50, 0.55, ..., 0.95, as the paper reports for NCS;
it runs higher than foreground IoU and must never be reported as plain IoU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

MG_IOU_THRESHOLDS = tuple(np.round(np.arange(0.50, 0.951, 0.05), 2))
UNIT_SCORES = frozenset({"auc", "dice", "iou", "mg_iou"})  # the metrics of this module: each in [0, 1]


def auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve over all candidates pooled; NaN if only one class is present."""
    labels = np.asarray(labels)
    if np.unique(labels).size < 2:
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def overlap_counts(truth: np.ndarray, prediction: np.ndarray) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) voxel counts of two boolean masks."""
    truth, prediction = np.asarray(truth, dtype=bool).ravel(), np.asarray(prediction, dtype=bool).ravel()
    tp = int(np.count_nonzero(truth & prediction))
    fp = int(np.count_nonzero(~truth & prediction))
    fn = int(np.count_nonzero(truth & ~prediction))
    return tp, fp, fn, truth.size - tp - fp - fn


def dice(truth: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> float:
    tp, fp, fn, _ = overlap_counts(truth, probability >= threshold)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def iou(truth: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> float:
    tp, fp, fn, _ = overlap_counts(truth, probability >= threshold)
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


def mg_iou_counts(truth: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """One case's (TP, FP, FN, TN) at each of ``MG_IOU_THRESHOLDS``, shape (thresholds, 4): summed
    over cases, they give ``mg_iou`` without holding every case's prediction."""
    truth = np.asarray(truth, dtype=bool)  # converted once, not at every threshold
    return np.array([overlap_counts(truth, probability >= threshold) for threshold in MG_IOU_THRESHOLDS],
                    dtype=np.int64)


def mg_iou_from_counts(counts: np.ndarray) -> float:
    """``mg_iou`` from the summed ``mg_iou_counts`` of a split's cases."""
    scores = []
    for tp, fp, fn, tn in counts.tolist():
        foreground = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        background = tn / (tn + fn + fp) if tn + fn + fp else 1.0
        scores.append((foreground + background) / 2)
    return float(np.mean(scores))


def mg_iou(truths: Sequence[np.ndarray], probabilities: Sequence[np.ndarray]) -> float:
    """The Models Genesis NCS "IoU": two-class mean IoU pooled over all voxels, averaged over thresholds."""
    return mg_iou_from_counts(sum(mg_iou_counts(t, p) for t, p in zip(truths, probabilities)))
