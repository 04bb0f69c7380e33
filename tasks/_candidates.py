"""Shared readers for candidate-classification tasks (NCC, ECC): the LUNA16 candidates CSV
(``seriesuid,coordX,coordY,coordZ,class``, world millimetres), split files, and cropping
every candidate of one scan from a single read of that scan.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.api.task import Case, read_csv_rows
from benchmark.data.cache import CTVolume
from benchmark.data.imageio import HU_MIN, crop_centered, scale_ct, world_to_index
from benchmark.data.verify import SPLITS, Problem, check_points_inside, read_volume
from benchmark.errors import UserError

CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")


@dataclass(frozen=True)
class Candidate:
    row: int  # the CSV line number, which names the case
    world: tuple[float, float, float]  # (x, y, z) mm
    label: int


def parse_candidates(path: Path) -> tuple[dict[str, list[Candidate]], list[Problem]]:
    """Candidates by series UID, in file order, and a problem for each malformed line."""
    candidates: dict[str, list[Candidate]] = {}
    problems: list[Problem] = []
    for line, row in read_csv_rows(path, CANDIDATE_COLUMNS):
        try:
            world = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
            label = int(float(row["class"]))
        except (TypeError, ValueError):
            problems.append(Problem(f"{path}: line {line}", "coordinates and class must be numbers"))
            continue
        if label not in (0, 1) or not all(np.isfinite(world)):
            problems.append(Problem(f"{path}: line {line}", "class must be 0 or 1 and coordinates finite"))
            continue
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
            have = f"only class {present[0]}" if present else "none"
            problems.append(Problem(str(source), f"the {split} split has {have} candidates; it needs both "
                                                 "classes (0 and 1)"))
    return problems


def keep_negatives(uid: str, candidates: list[Candidate], limit: int | None) -> list[Candidate]:
    """All positives and at most ``limit`` negatives, drawn reproducibly per scan.

    Real candidate lists hold hundreds of negatives per scan (LUNA16: ~850), far more
    than fit in memory as crops; the phantoms stay under the limit and keep everything.
    """
    negatives = [c for c in candidates if c.label == 0]
    if limit is None or len(negatives) <= limit:
        return candidates
    rng = np.random.default_rng(zlib.crc32(uid.encode()))
    kept = {negatives[i].row for i in rng.choice(len(negatives), limit, replace=False)}
    return [c for c in candidates if c.label == 1 or c.row in kept]


def candidate_cases(
    uid: str, volume: CTVolume, candidates: list[Candidate], cube: tuple[int, int, int]
) -> list[Case]:
    """One case per candidate: a ``cube`` crop centred on its voxel (direction-aware), air-padded, scaled."""
    cases = []
    for candidate in candidates:
        crop = crop_centered(volume.hu, world_to_index(volume.reference, candidate.world), cube, pad_value=HU_MIN)
        cases.append(Case(f"{uid}:{candidate.row}", scale_ct(crop)[None], candidate.label, uid))
    return cases
