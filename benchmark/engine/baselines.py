"""A trivial baseline: the best single intensity threshold, chosen on the training split.

It is the floor a learned model must clear on a task, and the check that a phantom
is not solvable by intensity alone. Segmentation: foreground = one channel above (or
below) a threshold; the channel, direction and threshold maximise the mean training
Dice. Classification: the candidate's score is a central-region statistic (centre
voxel, or the mean of the central 1/4 of the cube), the statistic and its sign chosen
by the training AUC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmark.api.task import Case, Task, TaskData
from benchmark.engine import metrics

THRESHOLDS = np.linspace(0.02, 0.98, 49)


def _centre_voxel(image: np.ndarray) -> float:
    return float(image[(slice(None), *(n // 2 for n in image.shape[1:]))].mean())


def _centre_mean(image: np.ndarray) -> float:
    window = tuple(slice(n * 3 // 8, n - n * 3 // 8) for n in image.shape[1:])
    return float(image[(slice(None), *window)].mean())


FEATURES: dict[str, Callable[[np.ndarray], float]] = {"centre voxel": _centre_voxel, "centre mean": _centre_mean}


def _classification(train: Sequence[Case], test: Sequence[Case]) -> dict[str, Any]:
    labels = [int(c.target) for c in train]
    best = max(
        ((name, sign, metrics.auc(labels, [sign * fn(c.image) for c in train]))
         for name, fn in FEATURES.items() for sign in (1, -1)),
        key=lambda item: item[2],
    )
    name, sign, _ = best
    scores = [sign * FEATURES[name](c.image) for c in test]
    return {"rule": f"{'high' if sign > 0 else 'low'} {name}",
            "metrics": {"auc": metrics.auc([int(c.target) for c in test], scores)}}


def _masks(case: Case, channel: int, above: bool) -> np.ndarray:
    """Boolean predictions for every threshold at once: (thresholds, Z, Y, X)."""
    image = case.image[channel][None]
    levels = THRESHOLDS.reshape(-1, 1, 1, 1)
    return image >= levels if above else image < levels


def _mean_dice(cases: Sequence[Case], channel: int, above: bool) -> np.ndarray:
    totals = np.zeros(len(THRESHOLDS))
    for case in cases:
        predicted = _masks(case, channel, above)
        truth = case.target.astype(bool)[None]
        tp = (predicted & truth).sum(axis=(1, 2, 3))
        denominator = predicted.sum(axis=(1, 2, 3)) + truth.sum()
        totals += np.where(denominator == 0, 1.0, 2 * tp / np.maximum(denominator, 1))
    return totals / len(cases)


def _segmentation(task: Task, train: Sequence[Case], test: Sequence[Case]) -> dict[str, Any]:
    options = [(channel, above) for channel in range(train[0].image.shape[0]) for above in (True, False)]
    scored = [(channel, above, _mean_dice(train, channel, above)) for channel, above in options]
    channel, above, dice = max(scored, key=lambda item: item[2].max())
    level = float(THRESHOLDS[int(np.argmax(dice))])
    predictions = [((c.image[channel] >= level) if above else (c.image[channel] < level)).astype(np.float32)
                   for c in test]
    results = {name: float(np.mean([fn(c.target, p) for c, p in zip(test, predictions)]))
               for name, fn in metrics.PER_CASE_SEGMENTATION.items()}
    results["mg_iou"] = metrics.mg_iou([c.target for c in test], predictions)
    return {"rule": f"channel {channel} {'>=' if above else '<'} {level:.2f}",
            "metrics": {k: v for k, v in results.items() if k in task.metrics}}


def threshold_baseline(task: Task, data: TaskData) -> dict[str, Any]:
    """The rule chosen on ``data.train`` and its test metrics."""
    if task.kind == "classification":
        return _classification(data.train, data.test)
    return _segmentation(task, data.train, data.test)
