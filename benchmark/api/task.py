"""What a task adapter is: the contract every task plugin fulfils.

A task reads its dataset from a root folder laid out as the real download, and can
write a phantom (synthetic dataset) in that same layout, so that one reader serves
both. Arrays are in SimpleITK's order: ``(C, Z, Y, X)`` images, ``(Z, Y, X)`` masks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal

from benchmark.data.cases import Case, Splits, TaskData, read_csv_rows, read_split_file
from benchmark.data.verify import Problem
from benchmark.errors import UserError

__all__ = ["Case", "Kind", "Splits", "Task", "TaskData", "read_csv_rows", "read_split_file"]

Kind = Literal["classification", "segmentation"]
VERIFY_CUBE = (16, 32, 32)  # the cube the default ``Task.verify`` loads at


class Task(ABC):
    """A target task. Subclasses set the class attributes and implement ``load``.

    ``verify(root, splits)`` lists every problem of a dataset (``benchmark verify-data``).
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
