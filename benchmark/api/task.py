"""What a task adapter is: the contract every task plugin fulfils.

A task reads its dataset from a root folder laid out as the real download, and can
write a phantom (synthetic dataset) in that same layout, so that one reader serves
both. Arrays are in SimpleITK's order: ``(C, Z, Y, X)`` images, ``(Z, Y, X)`` masks.

A task also declares everything fine-tuning and evaluation do differently by kind: its
target model, its training batches, its loss, how a case is predicted and how
predictions are scored. ``benchmark.api.classification.ClassificationTask`` and
``benchmark.api.segmentation.SegmentationTask`` implement these for binary
classification and binary segmentation; the built-in tasks subclass one of them. The
engine only calls what a task declares: it names no metric and no kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from benchmark.api.backbone import Backbone
from benchmark.api.profiles import Profile
from benchmark.api.settings import current_values
from benchmark.data.cases import Case, LazyImage, Splits, TaskData, iter_csv_rows, read_csv_rows, read_split_file
from benchmark.data.verify import Problem
from benchmark.errors import UserError

__all__ = ["Case", "Kind", "LazyImage", "Splits", "Task", "TaskData", "ThresholdRule", "iter_csv_rows",
           "random_flips", "read_csv_rows", "read_split_file"]

Kind = Literal["classification", "segmentation"]
VERIFY_CUBE = (16, 32, 32)  # the cube the default ``Task.verify`` loads at


@dataclass(frozen=True)
class ThresholdRule:
    """A rule of one intensity threshold (``benchmark baseline``): what it is, and the logits it gives a case."""

    description: str
    logits: Callable[[Case], torch.Tensor]


def random_flips(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flip each (image, mask) pair of a batch along each spatial axis with probability 1/2."""
    images, masks = images.copy(), masks.copy()
    for index in range(len(images)):
        axes = tuple(1 + int(a) for a in np.flatnonzero(rng.random(3) < 0.5))
        if axes:
            images[index] = np.flip(images[index], axes)
            masks[index] = np.flip(masks[index], axes)
    return images, masks


class Task(ABC):
    """A target task. Subclasses set the class attributes and implement ``load``; the
    kind-specific methods come from a kind's base class (or are written by the task).

    ``verify(root, splits)`` lists every problem of a dataset (``benchmark verify-data``).
    ``write_phantom(root, seed)`` writes the built-in synthetic dataset in the real
    layout; tasks sharing a generator function share its files.
    ``cube_shape(profile_cube)`` gives the input size the task uses for a profile's
    cube (default: the cube itself; ECC, say, uses a cube with equal sides).

    A task's settings are its constructor's keyword arguments (``--task-arg KEY=VALUE``, part of
    the run id and of the record), as a method's are; most tasks have none.

    Evaluation streams: ``predict`` yields one case's logits at a time and ``evaluate`` consumes
    them once, so memory holds one case's prediction (a whole CT volume, for segmentation) and
    the per-case values, never every case's prediction at once.

    Every metric in ``metrics`` is a score that is higher for a better prediction:
    fine-tuning keeps the epoch of the highest validation ``primary_metric``.
    ``kind`` picks the profile's fine-tuning schedule (``Profile.schedule``).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    kind: ClassVar[Kind]
    in_channels: ClassVar[int] = 1
    metrics: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    write_phantom: ClassVar[Callable[[Path, int], None]]
    stratify_subsets: ClassVar[bool] = False  # label fractions drawn per class stratum (``data.subsets``)

    @abstractmethod
    def load(self, root: Path, cube: tuple[int, int, int], splits: Splits | None = None) -> TaskData:
        """Read the dataset under ``root`` into train/val/test cases for ``cube`` (z, y, x).

        ``splits``, when given, replaces the task's own split (see ``Splits``).
        """

    def verify(self, root: Path, splits: Splits | None = None) -> list[Problem]:
        """Every problem of the dataset under ``root`` (file and reason); empty when it is usable.

        The default loads the dataset once and reports the first error; the built-in tasks
        check every file and report all they find.
        """
        try:
            self.load(root, self.cube_shape(VERIFY_CUBE), splits)
        except UserError as error:
            return [Problem.from_error(error)]
        return []

    def cube_shape(self, cube: tuple[int, int, int]) -> tuple[int, int, int]:
        return cube

    def split_scans(self, root: Path, split: str, splits: Splits | None = None) -> set[str]:
        """The series UIDs of the scans the cases of ``split`` under ``root`` come from, so that what a
        run pretrains on can be checked against its test scans across datasets (a pool's scans are named
        by series UID, as LUNA16's are; a supervised source's training scans, of another task).

        Default: none named. A task whose data shares its scans with chest CT of another dataset names
        them (NCC, ECC, and NCS from LIDC-IDRI as downloaded: LUNA16's scans are LIDC-IDRI series).
        """
        return set()

    def settings(self) -> dict[str, Any]:
        """The values of the task's settings (its constructor's keyword arguments): ``TASKS.create(name,
        **settings)`` makes an equal task."""
        return current_values(self)

    @abstractmethod
    def build_model(self, backbone: Backbone, width: int) -> nn.Module:
        """A fresh target model of ``backbone`` at ``width`` for this task's ``in_channels``: its
        classification or segmentation target (``benchmark.api.backbone``).

        Pretrained weights are copied into its ``encoder.`` (and ``decoder.``) modules."""

    @abstractmethod
    def sample_batch(self, cases: Sequence[Case], cube: tuple[int, int, int], batch_size: int,
                     rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One training batch of (images ``(B, C, *cube)``, targets) as float tensors; all randomness from ``rng``."""

    @abstractmethod
    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The scalar training loss of a batch of model outputs."""

    @abstractmethod
    def predict(self, model: nn.Module, cases: Sequence[Case], cube: tuple[int, int, int], profile: Profile,
                device: torch.device) -> Iterable[torch.Tensor]:
        """The logits of each case on the CPU, shaped like ``target(case)``, in the order of ``cases``: a
        generator, so that only the cases being predicted are in memory. Consumed with the model in
        evaluation mode under ``torch.no_grad()``."""

    @abstractmethod
    def target(self, case: Case) -> torch.Tensor:
        """The case's target as a float tensor shaped like its predicted logits."""

    @abstractmethod
    def evaluate(self, cases: Sequence[Case], logits: Iterable[torch.Tensor]) -> tuple[dict[str, float],
                                                                                      pd.DataFrame]:
        """The value of each of ``metrics`` over ``cases``, and a per-case table (columns ``case_id``,
        ``group`` and the per-case values the statistics use). ``logits`` (one per case, in order) is
        read once, one at a time: keep what the metrics need of each, not the logits."""

    def threshold_rule(self, train: Sequence[Case]) -> ThresholdRule:
        """The best single-intensity-threshold rule on ``train`` (``benchmark baseline``)."""
        raise UserError(f"task '{self.name}' declares no threshold baseline")

    def case_loss(self, case: Case, logits: torch.Tensor) -> float:
        """The training loss of one case's whole prediction (a batch of one); its mean over the
        validation cases is the history's ``val_loss``."""
        return float(self.loss(logits[None, None], self.target(case)[None, None]))
