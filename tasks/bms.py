"""BMS: brain tumour segmentation on BraTS 2018 (Models Genesis target task).

Layout read (the training download as unpacked)::

    root/HGG/<case>/<case>_flair.nii.gz, _t1, _t1ce, _t2, _seg
    root/LGG/<case>/...

(``.nii`` accepted too). Labels {0, 1, 2, 4}; the target is the whole tumour, label > 0.
The Medical Segmentation Decathlon's repackaging (Task01_BrainTumour: 4D
``imagesTr/BRATS_xxx.nii.gz``, labels renumbered 1/2/3) is detected and refused.

Input: 4 channels in the order (flair, t1, t1ce, t2). Each case is cropped to the
bounding box of its brain (voxels non-zero in any modality) with a 4-voxel margin, then
each modality is scaled on its own: brain voxels are clipped to their 0.5 and 99.5
percentiles, then the image is min-max scaled to [0, 1] (the background, 0 in BraTS,
stays the minimum). Sides shorter than the cube's are padded symmetrically with 0.

Split: the Models Genesis 3-fold cross-validation, shipped as ``tasks/data/
brats2018_fold{1,2,3}.txt``. By default fold 3 is the test set and folds 1 + 2 train,
of which every 8th case of their sorted id list (positions 7, 15, ...) validates; a
case's split depends only on the fold files, never on which other cases are on disk.
Fold cases missing on disk are skipped (a partial copy works); cases on disk in no fold
are ignored; both are counted in the log. A split file keyed by case id replaces the folds.
Cropped, scaled cases are kept in the preprocessing cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmark.api.registry import TASKS
from benchmark.api.segmentation import SegmentationTask
from benchmark.api.task import Case, Splits, TaskData
from benchmark.data.cache import Entry, cached
from benchmark.data.files import read_text
from benchmark.data.imageio import pad_to_cube, read_array, scale_min_max
from benchmark.data.phantoms.brain import MODALITIES, write_brain_phantom
from benchmark.data.verify import Problem, check_labels, check_same_grid, check_unique, progress, read_volume
from benchmark.errors import UserError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

log = logging.getLogger(__name__)

GRADES = ("HGG", "LGG")
LABELS = (0, 1, 2, 4)
KINDS = (*MODALITIES, "seg")
CROP_MARGIN = 4
PERCENTILES = (0.5, 99.5)
VAL_EVERY = 8
FOLD_FILES: tuple[Traversable, ...] = tuple(
    files(__package__) / "data" / f"brats2018_fold{fold}.txt" for fold in (1, 2, 3)
)


def read_fold(path: Path | Traversable) -> list[str]:
    """The case ids of a fold file: one a line; blank lines and '#' comments skipped."""
    text = read_text(path, "the fold file")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def brats_splits(
    fold_files: Sequence[Path | Traversable] = FOLD_FILES, test_fold: int = 3
) -> dict[str, list[str]]:
    """Case ids per split: fold ``test_fold`` (1-based) tests, the others train and validate."""
    if not 1 <= test_fold <= len(fold_files):
        raise UserError(f"test fold {test_fold} out of range: {len(fold_files)} fold files")
    folds = [read_fold(path) for path in fold_files]
    seen: dict[str, int] = {}
    for number, fold in enumerate(folds, start=1):
        for case in fold:
            if case in seen:
                raise UserError(f"{fold_files[number - 1]}: case {case} is also in fold {seen[case]}")
            seen[case] = number
    rest = sorted(case for number, fold in enumerate(folds, start=1) if number != test_fold for case in fold)
    return {
        "train": [case for i, case in enumerate(rest) if i % VAL_EVERY != VAL_EVERY - 1],
        "val": rest[VAL_EVERY - 1 :: VAL_EVERY],
        "test": sorted(folds[test_fold - 1]),
    }


def check_not_decathlon(root: Path) -> None:
    """Refuse the Medical Segmentation Decathlon's repackaging of BraTS with a clear message."""
    markers = [root / "dataset.json", root / "imagesTr", root / "Task01_BrainTumour"]
    if any(marker.exists() for marker in markers) or any(root.glob("BRATS_*.nii*")):
        raise UserError(
            f"{root}: this is the Medical Segmentation Decathlon repackaging of BraTS (Task01_BrainTumour: "
            "4D imagesTr/BRATS_xxx.nii.gz, labels renumbered 1/2/3), not BraTS 2018; it is not read as such. "
            "Point to the BraTS 2018 training folder holding HGG/ and LGG/"
        )


def brats_folders(root: Path) -> list[tuple[str, Path]]:
    """(case id, folder) over ``root/HGG`` and ``root/LGG``; an id may appear twice (a fault)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: folder not found")
    check_not_decathlon(root)
    grades = [root / grade for grade in GRADES if (root / grade).is_dir()]
    if not grades:
        raise UserError(f"{root}: no HGG/ or LGG/ folder (expected the BraTS 2018 training layout)")
    return [(folder.name, folder) for grade in grades for folder in sorted(p for p in grade.iterdir() if p.is_dir())]


def find_brats_cases(root: Path) -> dict[str, Path]:
    """Case id -> case folder over ``root/HGG`` and ``root/LGG``."""
    found: dict[str, Path] = {}
    for case, folder in brats_folders(root):
        if case in found:
            raise UserError(f"{folder}: case {case} is also at {found[case]}; keep one")
        found[case] = folder
    return found


def _case_file(folder: Path, suffix: str) -> Path:
    candidates = [folder / f"{folder.name}_{suffix}{ext}" for ext in (".nii.gz", ".nii")]
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(
        f"{candidates[0]}: missing (a BraTS 2018 case holds _flair, _t1, _t1ce, _t2 and _seg .nii.gz files)"
    )


def _scale_modality(channel: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Clip brain voxels to their 0.5-99.5 percentiles, then min-max the image to [0, 1]."""
    low, high = np.percentile(channel[brain], PERCENTILES)
    clipped = np.where(brain, np.clip(channel, low, high), channel)
    return scale_min_max(clipped)


def read_brats_case(folder: Path, cube: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One case as a (4, Z, Y, X) image in [0, 1] (flair, t1, t1ce, t2) and its whole-tumour mask."""
    sources = [_case_file(folder, kind) for kind in KINDS]
    settings = {"reader": "brats", "margin": CROP_MARGIN, "percentiles": list(PERCENTILES)}
    entry = cached(sources, settings, lambda: _preprocess_brats_case(folder))
    return pad_to_cube(entry.arrays["image"], cube), pad_to_cube(entry.arrays["mask"], cube)


def _preprocess_brats_case(folder: Path) -> Entry:
    """Decode, crop to the brain and scale one case (see the module docstring)."""
    seg_path = _case_file(folder, "seg")
    label = np.rint(read_array(seg_path)).astype(np.int16)  # tolerate float label maps
    channels = []
    for modality in MODALITIES:
        path = _case_file(folder, modality)
        channel = read_array(path)
        if channel.shape != label.shape:
            raise UserError(
                f"{path}: shape {channel.shape} differs from the segmentation's {label.shape} (z, y, x)"
            )
        channels.append(channel)
    bad = ~np.isin(label, LABELS)
    if bad.any():
        raise UserError(
            f"{seg_path}: label values {np.unique(label[bad])[:5].tolist()} are not BraTS 2018's 0, 1, 2, 4 "
            "(the Decathlon's relabelled copy uses 1/2/3)"
        )
    image = np.stack(channels)
    brain = (image != 0).any(axis=0)
    if not brain.any():
        raise UserError(f"{folder}: every modality is empty (all voxels 0)")
    box = tuple(
        slice(max(int(i.min()) - CROP_MARGIN, 0), int(i.max()) + CROP_MARGIN + 1) for i in np.nonzero(brain)
    )
    image, brain, label = image[(slice(None), *box)], brain[box], label[box]
    image = np.stack([_scale_modality(channel, brain) for channel in image])
    return Entry({"image": image, "mask": (label > 0).astype(np.uint8)})


def case_splits(on_disk: dict[str, Path], splits: Splits | None,
                fold_files: Sequence[Path | Traversable] = FOLD_FILES, test_fold: int = 3) -> dict[str, list[str]]:
    """Case ids per split: the fold files' (all of them, on disk or not), or the user's split file's."""
    if splits is None:
        return brats_splits(fold_files, test_fold)
    chosen = splits.choose(on_disk, "case")
    return {split: sorted(case for case, s in chosen.items() if s == split) for split in ("train", "val", "test")}


def load_brats(
    root: Path,
    cube: tuple[int, int, int],
    fold_files: Sequence[Path | Traversable] = FOLD_FILES,
    test_fold: int = 3,
    splits: Splits | None = None,
) -> TaskData:
    """Read the BraTS 2018 cases under ``root`` into the cross-validation split (or ``splits``)."""
    root = Path(root)
    on_disk = find_brats_cases(root)
    split_ids = case_splits(on_disk, splits, fold_files, test_fold)
    listed = {case for cases in split_ids.values() for case in cases}
    unlisted = sorted(set(on_disk) - listed)
    absent = len(listed - set(on_disk))
    if unlisted:
        log.warning("BraTS: %d case(s) under %s in no fold file, ignored: %s", len(unlisted), root,
                    ", ".join(unlisted[:5]) + (", ..." if len(unlisted) > 5 else ""))
    if absent:
        log.info("BraTS: %d of the %d fold cases are not under %s, skipped", absent, len(listed), root)
    data: dict[str, list[Case]] = {}
    for split, ids in split_ids.items():
        present = [case for case in ids if case in on_disk]
        if not present:
            raise UserError(
                f"{root}: none of the {len(ids)} BraTS 2018 {split} cases of the fold files is in HGG/, LGG/"
            )
        data[split] = [Case(case, *read_brats_case(on_disk[case], cube), group=case) for case in present]
    return TaskData(**data)


def case_problems(case: str, folder: Path) -> list[Problem]:
    """One case folder: exactly the five files, each a readable finite volume on the segmentation's grid,
    no modality empty, labels 0/1/2/4 with some tumour."""
    problems: list[Problem] = []
    expected = {f"{case}_{kind}{ext}" for kind in KINDS for ext in (".nii.gz", ".nii")}
    for path in sorted(folder.iterdir()):
        if path.name not in expected:
            problems.append(Problem(str(path), f"unexpected file: a BraTS 2018 case holds {case}_<kind>.nii.gz "
                                               f"for kind in {', '.join(KINDS)}"))
    files = {}
    for kind in KINDS:
        try:
            files[kind] = _case_file(folder, kind)
        except UserError as error:
            problems.append(Problem.from_error(error))
    if "seg" not in files:
        return problems
    seg = read_volume(files["seg"], problems, "label map")
    for kind in MODALITIES:
        image = read_volume(files[kind], problems) if kind in files else None
        if image is not None and seg is not None:
            check_same_grid(seg, files["seg"], image, files[kind], problems)
    if seg is not None:
        check_labels(seg, files["seg"], LABELS, problems, " (BraTS 2018; the Decathlon's relabelled copy uses 1/2/3)")
    return problems


def verify_brats(root: Path, splits: Splits | None = None) -> list[Problem]:
    """Every fault of a BraTS 2018 folder, for the cases of the split (fold files or ``splits``)."""
    root = Path(root)
    try:
        folders = brats_folders(root)
    except UserError as error:
        return [Problem.from_error(error)]
    problems: list[Problem] = []
    check_unique(((case, str(folder)) for case, folder in folders), problems, "case")
    on_disk = dict(reversed(folders))  # the first place of a duplicated id
    if splits is None:
        listed = brats_splits()
        for split, ids in listed.items():
            if not any(case in on_disk for case in ids):
                problems.append(Problem(str(root), f"none of the {len(ids)} BraTS 2018 {split} cases of the fold "
                                                   "files is in HGG/, LGG/"))
        used = sorted({case for ids in listed.values() for case in ids} & set(on_disk))
    else:
        problems += splits.problems(on_disk, "case")
        used = sorted(set(splits.assignment) & set(on_disk))
    for case in progress(used, "checking BraTS cases"):
        problems += case_problems(case, on_disk[case])
    return problems


@TASKS.register
class BrainTumourSegmentation(SegmentationTask):
    """Models Genesis BMS: whole-tumour segmentation on BraTS 2018 multi-modal MRI. Split units: case ids."""

    name = "bms"
    description = "Brain tumour segmentation in 4-channel MRI (BraTS 2018), Dice/IoU per case"
    in_channels = 4
    metrics = ("dice", "iou")
    primary_metric = "dice"
    write_phantom = staticmethod(write_brain_phantom)

    def load(self, root: Path, cube: tuple[int, int, int], splits: Splits | None = None) -> TaskData:
        return load_brats(root, cube, splits=splits)

    def verify(self, root: Path, splits: Splits | None = None) -> list[Problem]:
        return verify_brats(root, splits)
