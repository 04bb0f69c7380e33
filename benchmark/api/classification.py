"""Binary classification of cube-sized candidates (NCC, ECC): what a classification task declares.

Target model: the encoder, global average pooling and a two-layer head giving one logit.
Training batches are class-balanced (half positives, half negatives: candidate sets are
heavily imbalanced), every image flipped along each spatial axis with probability 1/2;
the loss is binary cross-entropy. A case is predicted in one forward pass (cases are
already cube-sized) and the candidates of a split are scored together by their AUC.
The threshold baseline scores a candidate by one central-region statistic (the centre
voxel, or the mean of the central quarter of the cube), the statistic and its sign
chosen by the training AUC.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from benchmark.api import metrics
from benchmark.api.backbone import Backbone
from benchmark.api.profiles import Profile
from benchmark.api.task import Case, Kind, Task, ThresholdRule, random_flips

PREDICTION_CHUNK = 4  # cases per forward pass at prediction, in training batches


def _centre_voxel(image: np.ndarray) -> float:
    return float(image[(slice(None), *(n // 2 for n in image.shape[1:]))].mean())


def _centre_mean(image: np.ndarray) -> float:
    window = tuple(slice(n * 3 // 8, n - n * 3 // 8) for n in image.shape[1:])
    return float(image[(slice(None), *window)].mean())


FEATURES: dict[str, Callable[[np.ndarray], float]] = {"centre voxel": _centre_voxel, "centre mean": _centre_mean}


class ClassificationTask(Task):
    """A task whose cases are cube-sized images labelled 0 or 1 (``Case.target`` an int).

    The metric it computes: ``auc`` (over all the split's candidates pooled)."""

    kind: ClassVar[Kind] = "classification"
    stratify_subsets: ClassVar[bool] = True

    def build_model(self, backbone: Backbone, width: int) -> nn.Module:
        return backbone.build_classifier(self.in_channels, 1, width)

    def sample_batch(self, cases: Sequence[Case], cube: tuple[int, int, int], batch_size: int,
                     rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Alternately a positive and a negative case, each drawn uniformly within its class."""
        labels = np.fromiter((case.target for case in cases), dtype=np.int8, count=len(cases))
        pools = [np.flatnonzero(labels == value) for value in (0, 1)]
        pools = [p for p in pools if len(p)]
        chosen = [pools[i % len(pools)][rng.integers(len(pools[i % len(pools)]))] for i in range(batch_size)]
        images = np.stack([cases[i].image for i in chosen])
        targets = np.array([[cases[i].target] for i in chosen], dtype=np.float32)
        images, _ = random_flips(images, images[:, :1], rng)
        return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(targets)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)

    def predict(self, model: nn.Module, cases: Sequence[Case], cube: tuple[int, int, int], profile: Profile,
                device: torch.device) -> Iterator[torch.Tensor]:
        chunk = profile.schedule(self.kind).batch * PREDICTION_CHUNK
        for start in range(0, len(cases), chunk):
            images = np.stack([case.image for case in cases[start:start + chunk]])
            yield from model(torch.from_numpy(images).to(device)).cpu()[:, 0]

    def target(self, case: Case) -> torch.Tensor:
        return torch.tensor(float(case.target))

    def evaluate(self, cases: Sequence[Case], logits: Iterable[torch.Tensor]) -> tuple[dict[str, float],
                                                                                      pd.DataFrame]:
        labels = [int(case.target) for case in cases]
        scores = [float(torch.sigmoid(x)) for x in logits]
        frame = pd.DataFrame({"case_id": [c.case_id for c in cases], "group": [c.group for c in cases],
                              "label": labels, "score": scores})
        return {"auc": metrics.auc(labels, scores)}, frame

    def threshold_rule(self, train: Sequence[Case]) -> ThresholdRule:
        labels = [int(case.target) for case in train]
        values: dict[str, list[float]] = {name: [] for name in FEATURES}
        for case in train:  # each image made once (a lazy case crops it at every access)
            image = case.image
            for name, statistic in FEATURES.items():
                values[name].append(statistic(image))
        name, sign = max(((name, sign) for name in FEATURES for sign in (1, -1)),
                         key=lambda rule: metrics.auc(labels, [rule[1] * v for v in values[rule[0]]]))
        feature = FEATURES[name]
        return ThresholdRule(f"{'high' if sign > 0 else 'low'} {name}",
                             lambda case: torch.tensor(sign * feature(case.image), dtype=torch.float64))
