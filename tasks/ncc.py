"""NCC: lung nodule false-positive reduction on LUNA16 (classify candidates as nodule or not).

Layout (the LUNA16 download): ``subset0..9/<seriesuid>.mhd`` (+ .raw) and
``candidates_V2.csv`` (world millimetres). Split by subset as in Models Genesis:
0-4 train, 5-6 val, 7-9 test. The built-in phantom is the chest phantom that the
pretraining pool also reads (subsets 7-9 never enter the pool).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import UserError
from benchmark.imageio import read_image
from benchmark.phantoms.chest import write_chest_phantom
from benchmark.pool import luna_scans
from benchmark.registry import TASKS
from benchmark.task import Case, Task, TaskData
from tasks._candidates import SPLITS, candidate_cases, keep_negatives, read_candidates

SPLIT_OF_SUBSET = {0: "train", 1: "train", 2: "train", 3: "train", 4: "train", 5: "val", 6: "val",
                   7: "test", 8: "test", 9: "test"}
CANDIDATE_FILES = ("candidates_V2.csv", "candidates_V2/candidates_V2.csv", "CSVFILES/candidates_V2.csv")


def candidates_file(root: Path) -> Path:
    """Where the LUNA16 download keeps ``candidates_V2.csv`` (top level, or its zip's folder)."""
    for name in CANDIDATE_FILES:
        if (root / name).is_file():
            return root / name
    raise UserError(f"{root / CANDIDATE_FILES[0]}: file not found (the LUNA16 candidates list)")


@TASKS.register
class NoduleCandidateClassification(Task):
    name = "ncc"
    description = "Lung nodule false-positive reduction on LUNA16 candidates (classification, AUC)"
    kind = "classification"
    in_channels = 1
    metrics = ("auc",)
    primary_metric = "auc"
    write_phantom = staticmethod(write_chest_phantom)
    max_negatives_per_scan = 20  # LUNA16 has ~850 per scan; see keep_negatives

    def load(self, root: Path, cube: tuple[int, int, int]) -> TaskData:
        root = Path(root)
        scans = luna_scans(root)
        unknown = sorted(set(scans) - set(SPLIT_OF_SUBSET))
        if unknown:
            raise UserError(f"{root}: unexpected folder subset{unknown[0]} (LUNA16 has subset0..subset9)")
        candidates = read_candidates(candidates_file(root))
        splits: dict[str, list[Case]] = {split: [] for split in SPLITS}
        for subset, paths in sorted(scans.items()):
            for path in paths:
                chosen = keep_negatives(path.stem, candidates.get(path.stem, []), self.max_negatives_per_scan)
                if chosen:
                    cases = candidate_cases(path.stem, read_image(path), chosen, cube)
                    splits[SPLIT_OF_SUBSET[subset]] += cases
        empty = [split for split in SPLITS if not splits[split]]
        if empty:
            raise UserError(f"{root}: no candidates for the {' and '.join(empty)} split "
                            "(subsets 0-4 train, 5-6 val, 7-9 test)")
        return TaskData(**splits)
