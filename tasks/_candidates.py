"""What candidate-classification tasks (NCC, ECC) share: the LUNA16 candidates CSV
(``seriesuid,coordX,coordY,coordZ,class``, world millimetres), read one row at a time; lazy
cases, each a candidate's centre in its scan's memory-mapped volume, cropped when a batch or a
prediction needs it; and the settings that choose which candidates a run uses.

Every candidate counts by default, as in the paper: the test split is always evaluated on all
of its candidates (the estimand of the AUC), the validation split on all of its candidates
unless ``validation_candidates`` asks for a fixed random subset, and training draws from all
negatives through the class-balanced sampler unless ``max_negatives_per_scan`` caps them.
Both settings are part of the run id and of the record (``task_settings``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.api.classification import ClassificationTask
from benchmark.api.task import Case, TaskData, iter_csv_rows
from benchmark.data.cache import CTVolume
from benchmark.data.imageio import HU_MIN, crop_centered, scale_ct, world_to_index
from benchmark.data.verify import SPLITS, Problem, check_points_inside, read_volume
from benchmark.errors import UserError

CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
CLASSES = {"0": 0, "1": 1}  # the class as written: 0.9, 1.7 or inf is refused, never truncated to one


@dataclass(frozen=True, slots=True)
class Candidate:
    row: int  # the CSV line number, which names the case
    world: tuple[float, float, float]  # (x, y, z) mm
    label: int


def parse_candidates(path: Path) -> tuple[dict[str, list[Candidate]], list[Problem]]:
    """Candidates by series UID, in file order, and a problem for each malformed line."""
    candidates: dict[str, list[Candidate]] = {}
    problems: list[Problem] = []
    for line, row in iter_csv_rows(path, CANDIDATE_COLUMNS):
        where = f"{path}: line {line}"
        try:
            world = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
        except (TypeError, ValueError):
            problems.append(Problem(where, "coordinates and class must be numbers"))
            continue
        label = CLASSES.get((row["class"] or "").strip())
        if label is None:
            problems.append(Problem(where, f"class {row['class']!r} is not 0 or 1"))
        elif not all(np.isfinite(world)):
            problems.append(Problem(where, "coordinates must be finite"))
        else:
            candidates.setdefault((row["seriesuid"] or "").strip(), []).append(Candidate(line, world, label))
    return candidates, problems


def read_candidates(path: Path) -> dict[str, list[Candidate]]:
    """Candidates by series UID, in file order; UserError at the first malformed line."""
    candidates, problems = parse_candidates(path)
    if problems:
        raise UserError(str(problems[0]))
    return candidates


def scan_problems(path: Path, candidates: list[Candidate], csv_path: Path) -> list[Problem]:
    """A candidate scan must be a readable, finite, non-empty volume holding every one of its candidates."""
    problems: list[Problem] = []
    image = read_volume(path, problems)
    if image is not None:
        check_points_inside(image, ((f"{csv_path}: line {c.row}", c.world) for c in candidates), problems)
    return problems


def class_problems(labels: Mapping[str, list[int]], source: Path) -> list[Problem]:
    """Each split needs candidates of both classes (the AUC is undefined otherwise)."""
    problems = []
    for split in SPLITS:
        present = sorted(set(labels.get(split, [])))
        if present != [0, 1]:
            have = f"only class {present[0]} candidates" if present else "no candidates"
            problems.append(Problem(str(source), f"the {split} split has {have}; it needs both classes (0 and 1)"))
    return problems


def keep_negatives(uid: str, candidates: list[Candidate], limit: int | None) -> list[Candidate]:
    """All positives and at most ``limit`` negatives (None: all), drawn reproducibly per scan."""
    negatives = [c for c in candidates if c.label == 0]
    if limit is None or len(negatives) <= limit:
        return candidates
    rng = np.random.default_rng(zlib.crc32(uid.encode()))
    kept = {negatives[i].row for i in rng.choice(len(negatives), limit, replace=False)}
    return [c for c in candidates if c.label == 1 or c.row in kept]


def validation_subset(cases: list[Case], size: int | None) -> list[Case]:
    """Every case when ``size`` is None or not smaller than their number; else ``size`` of them, drawn
    with a fixed seed and kept in their order: every positive if they are at most half of ``size``
    (else half of it drawn at random), negatives for the rest. The AUC does not depend on the share
    of positives, so the subset estimates the split's AUC, with the positives (rare in candidate
    lists) it needs to be precise; the same subset serves every method and seed (paired runs)."""
    if size is None or len(cases) <= size:
        return cases
    labels = np.array([case.target for case in cases])
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    take_negatives = min(size - min(len(positives), size // 2), len(negatives))
    rng = np.random.default_rng(0)
    kept = np.concatenate([rng.choice(positives, size - take_negatives, replace=False),
                           rng.choice(negatives, take_negatives, replace=False)])
    return [cases[i] for i in np.sort(kept)]


@dataclass(frozen=True, slots=True)
class CandidateCrop:
    """A ``cube`` crop centred on voxel ``centre`` (z, y, x) of windowed HU (a candidate's in its scan, a
    nodule's in its crop; memory-mapped from the cache), air-padded outside and scaled to [0, 1]: made
    at each ``load``."""

    hu: np.ndarray
    centre: tuple[int, int, int]
    cube: tuple[int, int, int]

    def load(self) -> np.ndarray:
        return scale_ct(crop_centered(self.hu, self.centre, self.cube, pad_value=HU_MIN))[None]


def candidate_cases(
    uid: str, volume: CTVolume, candidates: list[Candidate], cube: tuple[int, int, int]
) -> list[Case]:
    """One lazy case per candidate: its crop (``CandidateCrop``) at the voxel of its world point
    (direction-aware), made when the case's image is asked for."""
    return [Case(f"{uid}:{c.row}", CandidateCrop(volume.hu, world_to_index(volume.reference, c.world), cube),
                 c.label, uid) for c in candidates]


def check_limit(value: int | None, name: str, least: int) -> int | None:
    """A candidate count setting: None (all) or an integer of at least ``least``; ValueError otherwise."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
        raise ValueError(f"{name} must be None (every candidate) or an integer >= {least}, not {value!r}")
    return value


class CandidateTask(ClassificationTask):
    """A candidate-classification task with the candidate settings (see the module's docstring).

    ``max_negatives_per_scan``: at most this many negatives of each training scan (all positives
    kept; None: every one). ``validation_candidates``: validate on a fixed random subset of this
    many validation candidates (``validation_subset``; None: every one). Subclasses build their
    splits with ``candidate_cases`` and hand them to ``chosen_cases``.
    """

    def __init__(self, max_negatives_per_scan: int | None = None, validation_candidates: int | None = None) -> None:
        self.max_negatives_per_scan = check_limit(max_negatives_per_scan, "max_negatives_per_scan", 1)
        self.validation_candidates = check_limit(validation_candidates, "validation_candidates", 2)

    def candidates_for(self, uid: str, split: str, candidates: list[Candidate]) -> list[Candidate]:
        """The candidates of one scan that the run uses in ``split`` (the negative cap: training only)."""
        return keep_negatives(uid, candidates, self.max_negatives_per_scan) if split == "train" else candidates

    def chosen_cases(self, cases: dict[str, list[Case]]) -> TaskData:
        """The splits' cases, the validation subset drawn."""
        return TaskData(train=cases["train"], val=validation_subset(cases["val"], self.validation_candidates),
                        test=cases["test"])
