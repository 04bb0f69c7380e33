"""What a task adapter is: the contract every task plugin fulfils.

A task reads its dataset from a root folder laid out as the real download, and can
write a phantom (synthetic dataset) in that same layout, so that one reader serves
both. Arrays are in SimpleITK's order: ``(C, Z, Y, X)`` images, ``(Z, Y, X)`` masks.
"""

from __future__ import annotations

import csv
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from benchmark.errors import UserError
from benchmark.verify import SPLITS, Problem, check_split_assignment

Kind = Literal["classification", "segmentation"]
VERIFY_CUBE = (16, 32, 32)  # the cube the default ``Task.verify`` loads at


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


def read_csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV that must have ``columns``; UserError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(
                f"{path}: missing column(s) {', '.join(missing)} (the header must have {','.join(columns)})"
            )
        return [(reader.line_num, row) for row in reader]


def read_split_file(path: Path, key: str = "case_id") -> dict[str, str]:
    """``key`` -> split (train/val/test) from a two-column split file; each id once."""
    splits: dict[str, str] = {}
    for line, row in read_csv_rows(path, (key, "split")):
        name, split = (row[key] or "").strip(), (row["split"] or "").strip()
        if not name:
            raise UserError(f"{path}: line {line}: empty {key}")
        if split not in SPLITS:
            raise UserError(f"{path}: line {line}: split must be one of {', '.join(SPLITS)}, not '{split}'")
        if splits.setdefault(name, split) != split:
            raise UserError(f"{path}: line {line}: '{name}' is listed in two splits")
    return splits


@dataclass(frozen=True)
class Splits:
    """A user's split file (CSV ``case_id,split``) replacing a task's shipped split.

    Its ids are the task's split units (a scan, a case or a volume, as each task documents);
    units of the data that the file does not list are left out of the run.
    """

    path: Path
    assignment: dict[str, str]

    @classmethod
    def read(cls, path: Path) -> Splits:
        assignment = read_split_file(path)
        missing = [split for split in SPLITS if split not in assignment.values()]
        if missing:
            raise UserError(f"{path}: no case in the {' and '.join(missing)} split")
        return cls(Path(path), assignment)

    @property
    def fingerprint(self) -> str:
        text = "".join(f"{key},{split}\n" for key, split in sorted(self.assignment.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def problems(self, available: Iterable[str], unit: str = "case") -> list[Problem]:
        """Unknown ids and splits left empty, against the ids the data holds."""
        problems: list[Problem] = []
        check_split_assignment(self.assignment, available, str(self.path), problems, unit)
        return problems

    def choose(self, available: Iterable[str], unit: str = "case") -> dict[str, str]:
        """The assignment, checked against the data's ids; UserError naming the first fault."""
        problems = self.problems(available, unit)
        if problems:
            raise UserError(str(problems[0]))
        return dict(self.assignment)


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
