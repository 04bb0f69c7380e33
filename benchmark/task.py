"""What a task adapter is: the contract every task plugin fulfils.

A task reads its dataset from a root folder laid out as the real download, and can
write a phantom (synthetic dataset) in that same layout, so that one reader serves
both. Arrays are in SimpleITK's order: ``(C, Z, Y, X)`` images, ``(Z, Y, X)`` masks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

Kind = Literal["classification", "segmentation"]


@dataclass(frozen=True)
class Case:
    """One evaluation unit.

    ``image``: float32 ``(C, Z, Y, X)`` scaled to [0, 1]. ``target``: a uint8 ``(Z, Y, X)``
    foreground mask (segmentation) or the class label 0/1 (classification).
    ``group``: the patient/scan the case comes from; splits and label-fraction subsets
    are drawn at this level so that one patient never sits on both sides.
    """

    case_id: str
    image: np.ndarray
    target: np.ndarray | int
    group: str


@dataclass(frozen=True)
class TaskData:
    train: list[Case]
    val: list[Case]
    test: list[Case]

    def split(self, name: str) -> list[Case]:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


class Task(ABC):
    """A target task. Subclasses set the class attributes and implement ``load``.

    ``write_phantom(root, seed)`` writes the built-in synthetic dataset in the real
    layout; tasks sharing a generator function share its files.
    ``cube_shape(profile_cube)`` gives the input size the task uses for a profile's
    cube (default: the cube itself; ECC, say, uses a cube with equal sides).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    kind: ClassVar[Kind]
    in_channels: ClassVar[int] = 1
    metrics: ClassVar[tuple[str, ...]]
    primary_metric: ClassVar[str]
    write_phantom: ClassVar[Callable[[Path, int], None]]

    @abstractmethod
    def load(self, root: Path, cube: tuple[int, int, int]) -> TaskData:
        """Read the dataset under ``root`` into train/val/test cases for ``cube`` (z, y, x)."""

    def cube_shape(self, cube: tuple[int, int, int]) -> tuple[int, int, int]:
        return cube
