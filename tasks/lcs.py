"""LCS: liver segmentation on LiTS 2017 (Models Genesis target task).

Layout read (the training download as unpacked)::

    root/Training Batch 1/volume-N.nii, segmentation-N.nii
    root/Training Batch 2/volume-N.nii, segmentation-N.nii

Both folders are searched for every number, ``.nii`` or ``.nii.gz``; the segmentation
sits next to its volume. Labels 0 background, 1 liver, 2 tumour; the target is the
liver, label > 0. Split by volume number as in Models Genesis: 0-99 train, 100-114
validation, 115-129 test; other numbers are ignored. HU are clipped to [-1000, 1000] and
scaled to [0, 1]. A case is the whole volume (training samples cube-sized patches from
it, testing slides a window over it), padded symmetrically with air where a side is
shorter than the cube's.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from benchmark.errors import UserError
from benchmark.imageio import read_array, scale_ct
from benchmark.phantoms.liver import write_liver_phantom
from benchmark.registry import TASKS
from benchmark.task import Case, Task, TaskData

BATCH_FOLDERS = ("Training Batch 1", "Training Batch 2")
SPLITS = {"train": range(0, 100), "val": range(100, 115), "test": range(115, 130)}
VOLUME_NAME = re.compile(r"volume-(\d+)\.nii(\.gz)?")


def pad_to_cube(array: np.ndarray, cube: tuple[int, int, int], value: float = 0.0) -> np.ndarray:
    """Pad the last three axes symmetrically so that each is at least the cube's side."""
    widths = []
    for side, want in zip(array.shape[-3:], cube, strict=True):
        missing = max(want - side, 0)
        widths.append((missing // 2, missing - missing // 2))
    if not any(before or after for before, after in widths):
        return array
    return np.pad(array, [(0, 0)] * (array.ndim - 3) + widths, constant_values=value)


def find_lits_volumes(root: Path) -> dict[int, tuple[Path, Path]]:
    """Volume number -> (volume, segmentation) paths over both training batch folders."""
    root = Path(root)
    folders = [root / name for name in BATCH_FOLDERS if (root / name).is_dir()]
    if not folders:
        raise UserError(
            f"{root}: no LiTS folder found (expected '{BATCH_FOLDERS[0]}' and/or '{BATCH_FOLDERS[1]}' "
            "holding volume-N.nii and segmentation-N.nii)"
        )
    found: dict[int, tuple[Path, Path]] = {}
    for folder in folders:
        for path in sorted(folder.iterdir()):
            match = VOLUME_NAME.fullmatch(path.name)
            if match is None:
                continue
            number = int(match.group(1))
            if number in found:
                raise UserError(f"{path}: volume {number} is also at {found[number][0]}; keep one copy")
            segmentation = [folder / f"segmentation-{number}{suffix}" for suffix in (".nii", ".nii.gz")]
            existing = [p for p in segmentation if p.is_file()]
            if not existing:
                raise UserError(f"{segmentation[0]}: missing (the segmentation of {path.name})")
            found[number] = (path, existing[0])
    return found


def read_lits_case(
    volume: Path, segmentation: Path, cube: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """One volume as a (1, Z, Y, X) image in [0, 1] and its (Z, Y, X) liver mask, padded to the cube."""
    image = scale_ct(read_array(volume))
    label = np.rint(read_array(segmentation)).astype(np.int16)  # tolerate float label maps
    if label.shape != image.shape:
        raise UserError(
            f"{segmentation}: shape {label.shape} differs from the volume's {image.shape} (z, y, x)"
        )
    bad = (label < 0) | (label > 2)
    if bad.any():
        raise UserError(
            f"{segmentation}: label values {np.unique(label[bad])[:5].tolist()} "
            "not in LiTS's 0 (background), 1 (liver), 2 (tumour)"
        )
    return pad_to_cube(image[None], cube), pad_to_cube((label > 0).astype(np.uint8), cube)


def load_lits(root: Path, cube: tuple[int, int, int]) -> TaskData:
    """Read the LiTS training volumes under ``root`` into the Models Genesis splits."""
    root = Path(root)
    volumes = find_lits_volumes(root)
    splits: dict[str, list[Case]] = {}
    for split, numbers in SPLITS.items():
        cases = []
        for number in sorted(set(numbers) & set(volumes)):
            image, mask = read_lits_case(*volumes[number], cube)
            cases.append(Case(f"volume-{number}", image, mask, group=f"volume-{number}"))
        if not cases:
            raise UserError(
                f"{root}: no LiTS volume numbered {numbers.start}-{numbers.stop - 1} ({split} split) "
                f"in '{BATCH_FOLDERS[0]}' or '{BATCH_FOLDERS[1]}'"
            )
        splits[split] = cases
    return TaskData(**splits)


@TASKS.register
class LiverSegmentation(Task):
    """Models Genesis LCS: whole-volume liver segmentation on LiTS 2017 CT."""

    name = "lcs"
    description = "Liver segmentation in abdominal CT (LiTS 2017), Dice/IoU per volume"
    kind = "segmentation"
    in_channels = 1
    metrics = ("dice", "iou")
    primary_metric = "dice"
    write_phantom = staticmethod(write_liver_phantom)

    def load(self, root: Path, cube: tuple[int, int, int]) -> TaskData:
        return load_lits(root, cube)
