"""NCC: lung nodule false-positive reduction on LUNA16 (classify candidates as nodule or not).

Layout (the LUNA16 download): ``subset0..9/<seriesuid>.mhd`` (+ .raw) and
``candidates_V2.csv`` (world millimetres). Split by subset as in Models Genesis:
0-4 train, 5-6 val, 7-9 test. The built-in phantom is the chest phantom that the
pretraining pool also reads (subsets 7-9 never enter the pool): 90 patients (45 / 18 / 27 scans),
about 4.5 nodules and 12 false-positive candidates each, patients as varied as real ones in
anatomy, nodules and acquisition (``benchmark.data.phantoms.chest``), so that a few labelled
patients do not cover the others.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.tasks._candidates import (
    SPLITS,
    CandidateTask,
    candidate_cases,
    class_problems,
    parse_candidates,
    read_candidates,
    scan_problems,
)

from benchmark.api.registry import TASKS
from benchmark.api.task import Case, Splits, TaskData
from benchmark.data.cache import ct_volume
from benchmark.data.phantoms.chest import write_chest_phantom
from benchmark.data.pool import luna_scans
from benchmark.data.verify import Problem, progress
from benchmark.errors import UserError

SPLIT_OF_SUBSET = {0: "train", 1: "train", 2: "train", 3: "train", 4: "train", 5: "val", 6: "val",
                   7: "test", 8: "test", 9: "test"}
CANDIDATE_FILES = ("candidates_V2.csv", "candidates_V2/candidates_V2.csv", "CSVFILES/candidates_V2.csv")


def candidates_file(root: Path) -> Path:
    """Where the LUNA16 download keeps ``candidates_V2.csv`` (top level, or its zip's folder)."""
    for name in CANDIDATE_FILES:
        if (root / name).is_file():
            return root / name
    raise UserError(f"{root / CANDIDATE_FILES[0]}: file not found (the LUNA16 candidates list)")


def scan_paths(root: Path) -> dict[str, tuple[Path, int]]:
    """Series UID -> (scan, subset) over ``subset0..9``; UserError for another subset folder or a scan twice."""
    found: dict[str, tuple[Path, int]] = {}
    for subset, paths in sorted(luna_scans(root).items()):
        if subset not in SPLIT_OF_SUBSET:
            raise UserError(f"{root}: unexpected folder subset{subset} (LUNA16 has subset0..subset9)")
        for path in paths:
            if path.stem in found:
                raise UserError(f"{path}: scan {path.stem} is also at {found[path.stem][0]}; keep one")
            found[path.stem] = (path, subset)
    return found


def scan_splits(scans: dict[str, tuple[Path, int]], splits: Splits | None) -> dict[str, str]:
    """Series UID -> split: by subset (0-4 train, 5-6 val, 7-9 test) unless a split file says otherwise."""
    if splits is not None:
        return splits.choose(scans, "scan")
    return {uid: SPLIT_OF_SUBSET[subset] for uid, (_, subset) in scans.items()}


@TASKS.register
class NoduleCandidateClassification(CandidateTask):
    """Split units for a split file: series UIDs. Every candidate of ``candidates_V2.csv`` counts unless
    a setting caps them (``CandidateTask``)."""

    name = "ncc"
    description = "Lung nodule false-positive reduction on LUNA16 candidates (classification, AUC)"
    in_channels = 1
    metrics = ("auc",)
    primary_metric = "auc"
    write_phantom = staticmethod(write_chest_phantom)

    def split_scans(self, root: Path, split: str, splits: Splits | None = None) -> set[str]:
        return {uid for uid, chosen in scan_splits(scan_paths(Path(root)), splits).items() if chosen == split}

    def load(self, root: Path, cube: tuple[int, int, int], splits: Splits | None = None) -> TaskData:
        root = Path(root)
        scans = scan_paths(root)
        split_of = scan_splits(scans, splits)
        candidates = read_candidates(candidates_file(root))
        cases: dict[str, list[Case]] = {split: [] for split in SPLITS}
        for uid, split in sorted(split_of.items(), key=lambda item: (scans[item[0]][1], item[0])):  # any row order
            chosen = self.candidates_for(uid, split, candidates.get(uid, []))
            if chosen:
                cases[split] += candidate_cases(uid, ct_volume(scans[uid][0]), chosen, cube)
        empty = [split for split in SPLITS if not cases[split]]
        if empty:
            raise UserError(f"{root}: no candidates for the {' and '.join(empty)} split "
                            "(subsets 0-4 train, 5-6 val, 7-9 test)")
        return self.chosen_cases(cases)

    def verify(self, root: Path, splits: Splits | None = None) -> list[Problem]:
        """Scans readable, finite and not empty; candidates well-formed and inside their scans; both classes
        in every split. Candidates of scans absent from the folder are allowed (a partial download)."""
        root = Path(root)
        try:
            scans = scan_paths(root)
            csv_path = candidates_file(root)
            candidates, problems = parse_candidates(csv_path)
        except UserError as error:
            return [Problem.from_error(error)]
        split_of = {uid: SPLIT_OF_SUBSET[subset] for uid, (_, subset) in scans.items()}
        if splits is not None:
            problems += splits.problems(scans, "scan")
            split_of = {uid: split for uid, split in splits.assignment.items() if uid in scans}
        labels: dict[str, list[int]] = {split: [] for split in SPLITS}
        for uid, split in progress(sorted(split_of.items()), "checking LUNA16 scans"):
            problems += scan_problems(scans[uid][0], candidates.get(uid, []), csv_path)
            labels[split] += [c.label for c in candidates.get(uid, [])]
        return problems + class_problems(labels, csv_path)
