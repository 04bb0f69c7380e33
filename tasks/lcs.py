"""LCS: liver segmentation on LiTS 2017 (Models Genesis target task).

Layout read (the training download as unpacked)::

    root/Training Batch 1/volume-N.nii, segmentation-N.nii
    root/Training Batch 2/volume-N.nii, segmentation-N.nii

Both folders are searched for every number, ``.nii`` or ``.nii.gz``; the segmentation
sits next to its volume. Labels 0 background, 1 liver, 2 tumour; the target is the
liver, label > 0. Split by volume number as in Models Genesis: 0-99 train, 100-114
validation, 115-129 test; other numbers are ignored (a split file keyed ``volume-N``
replaces this split). HU are clipped to [-1000, 1000] and
scaled to [0, 1]. A case is the whole volume (training samples cube-sized patches from
it, testing slides a window over it), padded symmetrically with air where a side is
shorter than the cube's. Decoded, scaled volumes are kept in the preprocessing cache.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from benchmark.api.registry import TASKS
from benchmark.api.segmentation import SegmentationTask
from benchmark.api.task import Case, Splits, TaskData
from benchmark.data.cache import Entry, cached
from benchmark.data.imageio import HU_MAX, HU_MIN, pad_to_cube, read_array, scale_ct
from benchmark.data.phantoms.liver import write_liver_phantom
from benchmark.data.verify import Problem, check_labels, check_same_grid, progress, read_volume
from benchmark.errors import UserError

BATCH_FOLDERS = ("Training Batch 1", "Training Batch 2")
SPLITS = {"train": range(0, 100), "val": range(100, 115), "test": range(115, 130)}
VOLUME_NAME = re.compile(r"volume-(\d+)\.nii(\.gz)?")
LABELS = (0, 1, 2)
LABEL_MEANING = " (LiTS: 0 background, 1 liver, 2 tumour)"


def lits_files(root: Path) -> tuple[dict[int, tuple[Path, Path]], list[Problem]]:
    """Volume number -> (volume, segmentation) over both batch folders, and the faults found on the way
    (a number twice, a volume without its segmentation); UserError if neither folder exists."""
    root = Path(root)
    folders = [root / name for name in BATCH_FOLDERS if (root / name).is_dir()]
    if not folders:
        raise UserError(
            f"{root}: no LiTS folder found (expected '{BATCH_FOLDERS[0]}' and/or '{BATCH_FOLDERS[1]}' "
            "holding volume-N.nii and segmentation-N.nii)"
        )
    found: dict[int, tuple[Path, Path]] = {}
    problems: list[Problem] = []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            match = VOLUME_NAME.fullmatch(path.name)
            if match is None:
                continue
            number = int(match.group(1))
            if number in found:
                problems.append(Problem(str(path), f"volume {number} is also at {found[number][0]}; keep one copy"))
                continue
            segmentation = [folder / f"segmentation-{number}{suffix}" for suffix in (".nii", ".nii.gz")]
            existing = [p for p in segmentation if p.is_file()]
            if not existing:
                problems.append(Problem(str(segmentation[0]), f"missing (the segmentation of {path.name})"))
                continue
            found[number] = (path, existing[0])
    return found, problems


def find_lits_volumes(root: Path) -> dict[int, tuple[Path, Path]]:
    """Volume number -> (volume, segmentation); UserError at the first fault."""
    found, problems = lits_files(root)
    if problems:
        raise UserError(str(problems[0]))
    return found


def case_id(number: int) -> str:
    return f"volume-{number}"


def volume_splits(volumes: dict[int, tuple[Path, Path]], splits: Splits | None) -> dict[int, str]:
    """Volume number -> split: by number as in Models Genesis, unless a split file says otherwise."""
    if splits is not None:
        chosen = splits.choose([case_id(n) for n in volumes], "volume")
        return {n: chosen[case_id(n)] for n in volumes if case_id(n) in chosen}
    return {n: split for n in volumes for split, numbers in SPLITS.items() if n in numbers}


def read_lits_case(
    volume: Path, segmentation: Path, cube: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """One volume as a (1, Z, Y, X) image in [0, 1] and its (Z, Y, X) liver mask, padded to the cube."""

    def compute() -> Entry:
        image = scale_ct(read_array(volume))
        label = np.rint(read_array(segmentation)).astype(np.int16)  # tolerate float label maps
        if label.shape != image.shape:
            raise UserError(
                f"{segmentation}: shape {label.shape} differs from the volume's {image.shape} (z, y, x)"
            )
        bad = ~np.isin(label, LABELS)
        if bad.any():
            raise UserError(f"{segmentation}: label values {np.unique(label[bad])[:5].tolist()} "
                            f"not in LiTS's 0 (background), 1 (liver), 2 (tumour)")
        return Entry({"image": image[None], "mask": (label > 0).astype(np.uint8)})

    entry = cached([volume, segmentation], {"reader": "lits", "hu": [HU_MIN, HU_MAX]}, compute)
    return pad_to_cube(entry.arrays["image"], cube), pad_to_cube(entry.arrays["mask"], cube)


def _empty_split(root: Path, split: str, splits: Splits | None) -> Problem:
    if splits is not None:
        return Problem(str(splits.path), f"no volume of {root} in the {split} split")
    numbers = SPLITS[split]
    return Problem(str(root), f"no LiTS volume numbered {numbers.start}-{numbers.stop - 1} ({split} split) "
                              f"in '{BATCH_FOLDERS[0]}' or '{BATCH_FOLDERS[1]}'")


def load_lits(root: Path, cube: tuple[int, int, int], splits: Splits | None = None) -> TaskData:
    """Read the LiTS training volumes under ``root`` into the Models Genesis splits (or ``splits``)."""
    root = Path(root)
    volumes = find_lits_volumes(root)
    split_of = volume_splits(volumes, splits)
    data: dict[str, list[Case]] = {}
    for split in SPLITS:
        numbers = sorted(n for n, s in split_of.items() if s == split)
        if not numbers:
            raise UserError(str(_empty_split(root, split, splits)))
        data[split] = [Case(case_id(n), *read_lits_case(*volumes[n], cube), group=case_id(n)) for n in numbers]
    return TaskData(**data)


def verify_lits(root: Path, splits: Splits | None = None) -> list[Problem]:
    """Every fault of a LiTS folder: pairs complete, readable, finite, on one grid, labels 0/1/2 with liver."""
    root = Path(root)
    try:
        volumes, problems = lits_files(root)
    except UserError as error:
        return [Problem.from_error(error)]
    if splits is None:
        split_of = volume_splits(volumes, None)
        problems += [_empty_split(root, split, None) for split in SPLITS if split not in split_of.values()]
    else:
        problems += splits.problems([case_id(n) for n in volumes], "volume")
        split_of = {n: splits.assignment[case_id(n)] for n in volumes if case_id(n) in splits.assignment}
    for number in progress(sorted(split_of), "checking LiTS volumes"):
        volume, segmentation = volumes[number]
        image = read_volume(volume, problems)
        label = read_volume(segmentation, problems, "label map")
        if image is not None and label is not None:
            check_same_grid(image, volume, label, segmentation, problems)
            check_labels(label, segmentation, LABELS, problems, LABEL_MEANING)
    return problems


@TASKS.register
class LiverSegmentation(SegmentationTask):
    """Models Genesis LCS: whole-volume liver segmentation on LiTS 2017 CT. Split units: ``volume-N``."""

    name = "lcs"
    description = "Liver segmentation in abdominal CT (LiTS 2017), Dice/IoU per volume"
    in_channels = 1
    metrics = ("dice", "iou")
    primary_metric = "dice"
    write_phantom = staticmethod(write_liver_phantom)

    def load(self, root: Path, cube: tuple[int, int, int], splits: Splits | None = None) -> TaskData:
        return load_lits(root, cube, splits)

    def verify(self, root: Path, splits: Splits | None = None) -> list[Problem]:
        return verify_lits(root, splits)
