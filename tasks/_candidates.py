"""Shared readers for candidate-classification tasks (NCC, ECC): the LUNA16 candidates CSV
(``seriesuid,coordX,coordY,coordZ,class``, world millimetres), split files, and cropping
every candidate of one scan from a single read of that scan.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmark.errors import UserError
from benchmark.imageio import HU_MIN, crop_centered, scale_ct, world_to_index
from benchmark.task import Case

CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Candidate:
    row: int  # the CSV line number, which names the case
    world: tuple[float, float, float]  # (x, y, z) mm
    label: int


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


def read_candidates(path: Path) -> dict[str, list[Candidate]]:
    """Candidates by series UID, in file order."""
    candidates: dict[str, list[Candidate]] = {}
    for line, row in read_csv_rows(path, CANDIDATE_COLUMNS):
        try:
            world = (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"]))
            label = int(float(row["class"]))
        except (TypeError, ValueError):
            raise UserError(f"{path}: line {line}: coordinates and class must be numbers") from None
        if label not in (0, 1) or not all(np.isfinite(world)):
            raise UserError(f"{path}: line {line}: class must be 0 or 1 and coordinates finite")
        candidates.setdefault(row["seriesuid"].strip(), []).append(Candidate(line, world, label))
    return candidates


def read_splits(path: Path, key: str) -> dict[str, str]:
    """``key`` -> split (train/val/test) from a two-column split file."""
    splits: dict[str, str] = {}
    for line, row in read_csv_rows(path, (key, "split")):
        name, split = (row[key] or "").strip(), (row["split"] or "").strip()
        if split not in SPLITS:
            raise UserError(f"{path}: line {line}: split must be one of {', '.join(SPLITS)}, not '{split}'")
        if splits.setdefault(name, split) != split:
            raise UserError(f"{path}: line {line}: '{name}' is listed in two splits")
    return splits


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
    uid: str, image: sitk.Image, candidates: list[Candidate], cube: tuple[int, int, int]
) -> list[Case]:
    """One case per candidate: a ``cube`` crop centred on its voxel (direction-aware), air-padded, scaled."""
    hu = sitk.GetArrayViewFromImage(image)
    cases = []
    for candidate in candidates:
        crop = crop_centered(hu, world_to_index(image, candidate.world), cube, pad_value=HU_MIN)
        cases.append(Case(f"{uid}:{candidate.row}", scale_ct(crop)[None], candidate.label, uid))
    return cases
