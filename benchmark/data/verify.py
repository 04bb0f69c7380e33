"""Data integrity checks (in the spirit of nnU-Net's): every problem of a dataset, one line each.

Each task contributes its own checks through ``Task.verify(root, splits)``, built from the
generic checks here (a 3-D image, whole, readable and finite as ``imageio.read_image`` checks,
and not empty; same grid as its label map, label values in a set, points inside the volume,
unique ids, a split assignment that names known cases and fills every split). ``benchmark
verify-data`` prints the report; ``benchmark run`` on a user's folder runs the same checks
first (``preflight``) and stops before training when they fail. A passed check is remembered in the cache under the
data's fingerprint (file names, sizes and times), so an unchanged folder is read once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from benchmark.data.datasets import DataSource, cache_root
from benchmark.data.imageio import read_image, world_to_index
from benchmark.data.pool import HELD_OUT_SUBSETS, PRETRAIN_TRAIN_SUBSETS, PRETRAIN_VAL_SUBSETS, luna_scans
from benchmark.errors import UserError
from benchmark.provenance import code_fingerprint

if TYPE_CHECKING:
    from benchmark.api.task import Task

SPLITS = ("train", "val", "test")
VERIFY_FORMAT = 1
SPACING_RTOL, ORIGIN_ATOL_MM, DIRECTION_ATOL = 1e-4, 1e-3, 1e-4


@dataclass(frozen=True)
class Problem:
    """One fault of a dataset: where (a file, or a file and line) and what is wrong."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"

    @classmethod
    def from_error(cls, error: UserError) -> Problem:
        """A UserError's one-line ``where: reason`` message as a Problem."""
        where, _, reason = str(error).partition(": ")
        return cls(where, reason) if reason else cls("", where)


class DataProblems(UserError):
    """The dataset failed its checks: one line, the summary and then every problem, each after "; "
    (an error is one line; ``benchmark verify-data`` prints the same problems one per line)."""

    def __init__(self, problems: list[Problem], what: str, root: Path) -> None:
        self.problems = problems
        listed = "; ".join(str(problem) for problem in problems)
        super().__init__(f"{summary(problems, what, root)}; stopped before training "
                         f"('benchmark verify-data' gives the same report): {listed}")


def summary(problems: list[Problem], what: str, root: Path) -> str:
    """``root: N problem(s) in M file(s) for <what>``, or that none was found."""
    files = len({problem.where.split(": line ")[0] for problem in problems})
    if not problems:
        return f"{root}: no problems found for {what}"
    return f"{root}: {len(problems)} problem(s) in {files} file(s) for {what}"


def progress(items: Iterable, description: str) -> Iterable:
    """A progress bar on a terminal, nothing elsewhere."""
    return tqdm(items, desc=description, leave=False, disable=None)


# --- generic checks: each appends what it finds to ``problems`` ------------------------------------


def read_volume(path: Path, problems: list[Problem], what: str = "image") -> sitk.Image | None:
    """The image at ``path`` if it is a whole, finite, readable 3-D volume (``imageio.read_image``'s checks),
    else None; a constant image volume is a problem too."""
    path = Path(path)
    if not path.is_file():
        problems.append(Problem(str(path), f"missing ({what})"))
        return None
    try:
        image = read_image(path)
    except UserError as error:
        problems.append(Problem.from_error(error))
        return None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        problems.append(Problem(str(path), f"a {image.GetDimension()}-D image with "
                                           f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel, "
                                           f"size {image.GetSize()}; expected a 3-D scalar volume"))
        return None
    array = sitk.GetArrayViewFromImage(image)
    if array.size == 0:
        problems.append(Problem(str(path), f"empty volume (size {image.GetSize()})"))
        return None
    low, high = array.min(), array.max()
    if low == high and what == "image":
        problems.append(Problem(str(path), f"empty volume (every voxel is {low:g})"))
    return image


def check_same_grid(reference: sitk.Image, reference_path: Path, other: sitk.Image, other_path: Path,
                    problems: list[Problem]) -> None:
    """``other`` must share the reference's voxel grid: size, spacing, origin and direction."""
    name = Path(reference_path).name
    fields = (("size", sitk.Image.GetSize, 0.0, 0.0), ("spacing", sitk.Image.GetSpacing, SPACING_RTOL, 0.0),
              ("origin", sitk.Image.GetOrigin, 0.0, ORIGIN_ATOL_MM),
              ("direction", sitk.Image.GetDirection, 0.0, DIRECTION_ATOL))
    for field, get, rtol, atol in fields:
        expected, found = get(reference), get(other)
        if not np.allclose(expected, found, rtol=rtol, atol=atol):
            problems.append(Problem(str(other_path), f"{field} {_fmt(found)} differs from {name}'s {_fmt(expected)} "
                                                     "(x, y, z)"))


def _fmt(values: tuple) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def check_labels(image: sitk.Image, path: Path, allowed: Iterable[int], problems: list[Problem],
                 meaning: str = "", need_foreground: bool = True) -> None:
    """The label map's values must lie in ``allowed``, and (if asked) some voxel must be foreground (> 0)."""
    values = np.unique(sitk.GetArrayViewFromImage(image))
    allowed = sorted(allowed)
    outside = [v for v in values.tolist() if v not in allowed]
    if outside:
        problems.append(Problem(str(path), f"label values {shown_values(outside)} outside the expected "
                                           f"{', '.join(map(str, allowed))}{meaning}"))
    elif need_foreground and values.max() <= 0:
        problems.append(Problem(str(path), "empty label map: no foreground voxel (label > 0)"))


def shown_values(values: list[float]) -> str:
    """The first six of ``values``, then "..." if there are more."""
    return ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")


def check_points_inside(image: sitk.Image, points: Iterable[tuple[str, tuple[float, float, float]]],
                        problems: list[Problem]) -> None:
    """Each (where, world point in mm) must fall on a voxel of ``image`` (direction-aware)."""
    shape = image.GetSize()[::-1]
    for where, world in points:
        index = world_to_index(image, world)
        if not all(0 <= i < n for i, n in zip(index, shape)):
            problems.append(Problem(where, f"point {_fmt(world)} mm lies outside its volume: voxel "
                                           f"(z, y, x) {index} of a {shape} volume"))


def check_unique(items: Iterable[tuple[str, str]], problems: list[Problem], what: str = "case") -> None:
    """(id, where) pairs: an id seen twice is a problem at its second place."""
    first: dict[str, str] = {}
    for key, where in items:
        if key in first:
            problems.append(Problem(where, f"{what} {key} is also at {first[key]}; keep one"))
        else:
            first.setdefault(key, where)


def check_split_assignment(assignment: Mapping[str, str], available: Iterable[str], source: str,
                           problems: list[Problem], unit: str = "case") -> None:
    """Split ``assignment`` (id -> split) must name only ``available`` ids and fill every split."""
    known = set(available)
    unknown = sorted(set(assignment) - known)
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        problems.append(Problem(source, f"{len(unknown)} unknown {unit} id(s) (not in the data): {shown}"))
    present = {split for key, split in assignment.items() if key in known}
    for split in SPLITS:
        if split not in present:
            problems.append(Problem(source, f"no {unit} of the data is in the {split} split"))


# --- the pretraining pool (a LUNA16-layout folder) --------------------------------------------------


def pool_problems(root: Path) -> list[Problem]:
    """Problems of a LUNA16-layout pretraining folder: scans of subsets 0-6 readable, finite, not empty."""
    problems: list[Problem] = []
    try:
        scans = luna_scans(root)
    except UserError as error:
        return [Problem.from_error(error)]
    used = PRETRAIN_TRAIN_SUBSETS + PRETRAIN_VAL_SUBSETS
    for name, subsets in (("training", PRETRAIN_TRAIN_SUBSETS), ("validation", PRETRAIN_VAL_SUBSETS)):
        if not any(scans.get(s) for s in subsets):
            problems.append(Problem(str(root), f"no pretraining {name} scans (subsets "
                                               f"{subsets[0]}-{subsets[-1]}/<seriesuid>.mhd)"))
    paths = [p for s in sorted(scans) if s in used or s in HELD_OUT_SUBSETS for p in scans[s]]
    check_unique(((p.stem, str(p)) for p in paths), problems, "scan")
    for path in progress([p for s in used for p in scans.get(s, [])], "checking pretraining scans"):
        read_volume(path, problems)
    return problems


# --- running the checks -------------------------------------------------------------------------------


def _stamp(what: str, source: DataSource) -> Path:
    key = json.dumps([VERIFY_FORMAT, code_fingerprint(("api", "data")), what, source.fingerprint])
    return cache_root() / "verified" / f"{what}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def data_problems(task: Task, data: DataSource) -> list[Problem]:
    """Every problem of ``data`` for ``task`` (and of the split override it carries)."""
    return task.verify(data.root, data.splits)


def _check_once(what: str, source: DataSource, checks: Callable[[], list[Problem]]) -> None:
    stamp = _stamp(what, source)
    if stamp.is_file():
        return
    problems = checks()
    if problems:
        raise DataProblems(problems, what, source.root)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()


def preflight(task: Task, data: DataSource, pool: DataSource | None,
              problems_of_pool: Callable[[Path], list[Problem]] = pool_problems) -> None:
    """Check a user's task folder and pretraining folder before a run; DataProblems if they fail.

    The built-in phantoms are not checked (the project writes them); a folder that passed
    once is not read again until a file in it changes.
    """
    if data.kind == "directory":
        _check_once(f"task {task.name}", data, lambda: data_problems(task, data))
    if pool is not None and pool.kind == "directory":
        _check_once("pretraining", pool, lambda: problems_of_pool(pool.root))
