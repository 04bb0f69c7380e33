"""Cases and splits: what a task's data is made of, and a user's split file.

Arrays are in SimpleITK's order: ``(C, Z, Y, X)`` images, ``(Z, Y, X)`` masks.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from benchmark.data.verify import SPLITS, Problem, check_split_assignment
from benchmark.errors import UserError


class LazyImage(Protocol):
    """An image made when it is needed: ``load()`` returns the float32 ``(C, Z, Y, X)`` array."""

    def load(self) -> np.ndarray: ...


class Case:
    """One evaluation unit.

    ``image``: float32 ``(C, Z, Y, X)`` scaled to [0, 1]. ``target``: a uint8 ``(Z, Y, X)``
    foreground mask (segmentation) or the class label 0/1 (classification).
    ``group``: the patient/scan the case comes from; splits and label-fraction subsets
    are drawn at this level so that one patient never sits on both sides.

    A case may hold its image itself (an array, possibly memory-mapped) or where to make it
    from (a ``LazyImage``, such as a candidate's crop of its memory-mapped scan): ``image`` then
    makes the array at each access and nothing keeps it, so the memory of a task's cases does
    not grow with their images, only with their number. Cases are immutable.
    """

    __slots__ = ("case_id", "_source", "target", "group")
    case_id: str
    target: np.ndarray | int
    group: str

    def __init__(self, case_id: str, image: np.ndarray | LazyImage, target: np.ndarray | int, group: str) -> None:
        for name, value in (("case_id", case_id), ("_source", image), ("target", target), ("group", group)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"a Case is immutable (cannot set '{name}')")

    @property
    def image(self) -> np.ndarray:
        source = self._source
        return source if isinstance(source, np.ndarray) else source.load()

    def __reduce__(self) -> tuple:
        return Case, (self.case_id, self._source, self.target, self.group)

    def __repr__(self) -> str:
        return f"Case({self.case_id!r}, group={self.group!r})"


@dataclass(frozen=True)
class TaskData:
    train: list[Case]
    val: list[Case]
    test: list[Case]

    def split(self, name: str) -> list[Case]:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def iter_csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV that must have ``columns``, each named once, read one at a time
    (a file of a million rows is never held whole); UserError naming the file otherwise, and the line of
    a row with more fields than the header (which fields would it mean?)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not a name
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise UserError(
                    f"{path}: missing column(s) {', '.join(missing)} (the header must have {','.join(columns)})"
                )
            repeated = sorted({name for name in header if name and header.count(name) > 1})
            if repeated:
                raise UserError(f"{path}: line {reader.line_num}: column(s) {', '.join(repeated)} named twice")
            for row in reader:
                if None in row:  # DictReader's key for the fields beyond the header's
                    raise UserError(f"{path}: line {reader.line_num}: {len(header) + len(row[None])} fields, "
                                    f"more than the header's {len(header)}")
                yield reader.line_num, row
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: not a readable CSV text file ({error})") from error


def read_csv_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV that must have ``columns``; UserError naming the file otherwise."""
    return list(iter_csv_rows(path, columns))


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
