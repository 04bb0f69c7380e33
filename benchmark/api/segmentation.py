"""Binary segmentation (NCS, LCS, BMS): what a segmentation task declares.

Target model: the whole U-Net with a fresh 1x1x1 output convolution. Training batches
are cube-sized patches drawn from the training cases, a third of them centred on a
foreground voxel (nnU-Net's oversampling), each (patch, mask) pair flipped along each
spatial axis with probability 1/2; the loss is BCE + soft Dice. A case is predicted
whole by sliding-window inference (MONAI, Gaussian blending), so a whole-volume task is
evaluated on whole volumes, never on patches. Metrics: the per-case means of ``dice``
and ``iou``, and ``mg_iou`` pooled over the split (``benchmark.api.metrics``). The
threshold baseline labels foreground where one channel is above (or below) a threshold,
the channel, direction and threshold maximising the mean training Dice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from benchmark.api import metrics
from benchmark.api.backbone import Backbone
from benchmark.api.profiles import Profile
from benchmark.api.task import Case, Kind, Task, ThresholdRule, random_flips

FOREGROUND_OVERSAMPLING = 1 / 3
PER_CASE: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"dice": metrics.dice, "iou": metrics.iou}
# a metric pooled over the split: each case's counts, and the metric from their sum
POOLED: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], Callable[[np.ndarray], float]]] = {
    "mg_iou": (metrics.mg_iou_counts, metrics.mg_iou_from_counts)}
THRESHOLDS = np.linspace(0.02, 0.98, 49)  # the threshold baseline's candidate levels


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    dims = tuple(range(1, logits.dim()))
    intersection = (probability * target).sum(dims)
    return (1 - (2 * intersection + eps) / (probability.sum(dims) + target.sum(dims) + eps)).mean()


def _random_patch(case: Case, cube: tuple[int, int, int], rng: np.random.Generator,
                  foreground: bool) -> tuple[np.ndarray, np.ndarray]:
    """A cube-sized (image, mask) patch; centred on a random foreground voxel if asked and possible."""
    shape = case.image.shape[1:]
    if foreground and case.target.any():
        voxels = np.argwhere(case.target)
        centre = voxels[rng.integers(len(voxels))]
        start = [int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip(centre, cube, shape)]
    else:
        start = [int(rng.integers(0, n - s + 1)) for s, n in zip(cube, shape)]
    window = tuple(slice(b, b + s) for b, s in zip(start, cube))
    return case.image[(slice(None), *window)], case.target[window]


def _mean_dice(cases: Sequence[Case], channel: int, above: bool) -> np.ndarray:
    """The mean Dice over ``cases`` of ``channel >= t`` (or ``< t``) for every t of ``THRESHOLDS``."""
    totals = np.zeros(len(THRESHOLDS))
    levels = THRESHOLDS.reshape(-1, 1, 1, 1)
    for case in cases:
        image = case.image[channel][None]
        predicted = image >= levels if above else image < levels
        truth = case.target.astype(bool)[None]
        tp = (predicted & truth).sum(axis=(1, 2, 3))
        denominator = predicted.sum(axis=(1, 2, 3)) + truth.sum()
        totals += np.where(denominator == 0, 1.0, 2 * tp / np.maximum(denominator, 1))
    return totals / len(cases)


class SegmentationTask(Task):
    """A task whose cases are images at least a cube in size with a 0/1 mask (``Case.target``, uint8).

    The metrics it computes: ``dice`` and ``iou`` (means of per-case values) and ``mg_iou``."""

    kind: ClassVar[Kind] = "segmentation"

    def build_model(self, backbone: Backbone, width: int) -> nn.Module:
        return backbone.build_segmenter(self.in_channels, 1, width)

    def sample_batch(self, cases: Sequence[Case], cube: tuple[int, int, int], batch_size: int,
                     rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        patches = [
            _random_patch(cases[rng.integers(len(cases))], cube, rng, rng.random() < FOREGROUND_OVERSAMPLING)
            for _ in range(batch_size)
        ]
        images = np.stack([p[0] for p in patches])
        targets = np.stack([p[1][None] for p in patches]).astype(np.float32)
        images, targets = random_flips(images, targets, rng)
        return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(np.ascontiguousarray(targets))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, targets) + soft_dice_loss(logits, targets)

    def predict(self, model: nn.Module, cases: Sequence[Case], cube: tuple[int, int, int], profile: Profile,
                device: torch.device) -> Iterator[torch.Tensor]:
        """Each volume stays on the CPU; its windows go to ``device`` a batch at a time and the blended
        prediction is accumulated on the CPU, so the device holds a window batch whatever the
        volume's size (a LiTS volume of 512x512x900 needs about three float32 copies of the volume
        in host memory: the input, the sum and the weights)."""
        for case in cases:
            yield sliding_window_inference(
                torch.from_numpy(case.image[None]), roi_size=cube, sw_batch_size=profile.schedule(self.kind).batch,
                predictor=model, overlap=profile.sliding_window_overlap, mode="gaussian", sw_device=device,
                device=torch.device("cpu"),
            )[0, 0]

    def target(self, case: Case) -> torch.Tensor:
        return torch.from_numpy(case.target.astype(np.float32))

    def evaluate(self, cases: Sequence[Case], logits: Iterable[torch.Tensor]) -> tuple[dict[str, float],
                                                                                      pd.DataFrame]:
        per_case: dict[str, list[float]] = {name: [] for name in PER_CASE}
        pooled: dict[str, np.ndarray | int] = {name: 0 for name in POOLED if name in self.metrics}
        for case, x in zip(cases, logits):  # one case's prediction in memory at a time
            probability = torch.sigmoid(x).numpy()
            for name, fn in PER_CASE.items():
                per_case[name].append(fn(case.target, probability))
            for name in pooled:
                pooled[name] = pooled[name] + POOLED[name][0](case.target, probability)
        results = {name: float(np.mean(values)) for name, values in per_case.items()}
        results.update({name: POOLED[name][1](counts) for name, counts in pooled.items()})
        frame = pd.DataFrame({"case_id": [c.case_id for c in cases], "group": [c.group for c in cases], **per_case})
        return {k: v for k, v in results.items() if k in self.metrics}, frame

    def threshold_rule(self, train: Sequence[Case]) -> ThresholdRule:
        """Logits +inf inside the rule's mask and -inf outside: probabilities exactly 1 and 0."""
        options = [(channel, above) for channel in range(train[0].image.shape[0]) for above in (True, False)]
        scored = [(channel, above, _mean_dice(train, channel, above)) for channel, above in options]
        channel, above, dice = max(scored, key=lambda item: item[2].max())
        level = float(THRESHOLDS[int(np.argmax(dice))])

        def logits(case: Case) -> torch.Tensor:
            image = case.image[channel]
            mask = image >= level if above else image < level
            return torch.from_numpy(np.where(mask, np.inf, -np.inf).astype(np.float32))

        return ThresholdRule(f"channel {channel} {'>=' if above else '<'} {level:.2f}", logits)
