"""NCS: lung nodule segmentation (LIDC-IDRI), from nodule-centred crops.

Two layouts are read. LIDC-IDRI as downloaded (``LIDC-IDRI-NNNN/.../*.dcm`` and the XML
reads; see ``benchmark.tasks._lidc``: 50% consensus masks, 1 mm, 64x64x32 crops; split by patient
number, 0001-0510 train, 0511-0610 val, the rest test). Or as most users have it
preprocessed: ``images/<patient>_<nodule>.nii.gz``
(HU) and ``masks/<patient>_<nodule>.nii.gz`` (label > 0 is nodule), 1 mm isotropic
64x64x32 (x, y, z) crops centred near the nodule, and ``splits.csv`` (``case_id,split``)
assigned at patient level. Crops at another spacing are resampled to 1 mm (linear for
the image, nearest neighbour for the mask). Each crop is centre-cropped (or padded) to
the profile's cube. A split file keyed by case id replaces ``splits.csv``.
"""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from benchmark.tasks._candidates import CandidateCrop
from benchmark.tasks._lidc import default_split, is_lidc_layout, lidc_cases, lidc_problems

from benchmark.api.registry import TASKS
from benchmark.api.segmentation import SegmentationTask
from benchmark.api.task import Case, Splits, TaskData, read_split_file
from benchmark.data.cache import Entry, cached, windowed_hu
from benchmark.data.imageio import HU_MIN, crop_centered, read_image
from benchmark.data.phantoms.chest import Segment, blob_in_box, finish_ct, lung_patch, paint_nodule
from benchmark.data.verify import SPLITS, Problem, check_labels, check_same_grid, progress, read_volume
from benchmark.errors import UserError

CROP_SHAPE = (32, 64, 64)  # (z, y, x) voxels of 1 mm
SPLIT_FRACTIONS = (0.5, 0.1, 0.4)  # patients, like the paper's 510 / 100 / 408
SUFFIXES = (".nii.gz", ".nii")


def patient_of(case_id: str) -> str:
    """``LIDC-IDRI-0001_2`` -> ``LIDC-IDRI-0001``: cases are named ``<patient>_<nodule>``."""
    return case_id.rsplit("_", 1)[0]


def _nodule_crop(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One nodule-centred crop (HU int16, mask uint8): solid, ground-glass, part-solid or calcified
    nodules, a third of them against the chest wall, most of them touched by a vessel."""
    spacing = (1.0, 1.0, 1.0)
    center = np.array(CROP_SHAPE, float) / 2 + rng.uniform(-3, 3, size=3)
    radius = float(np.exp(rng.uniform(np.log(2.5), np.log(10.0))))
    wall = None
    if rng.random() < 0.35:
        normal = np.array([rng.normal(0, 0.3), *rng.normal(0, 1, 2)])
        normal /= np.linalg.norm(normal)
        wall = (center + normal * radius * rng.uniform(0.5, 0.9), normal)
    vessels = []
    for _ in range(int(rng.integers(0, 3)) + int(wall is None)):
        heading = rng.normal(0, 1, 3)
        heading /= np.linalg.norm(heading)
        side = np.cross(heading, rng.normal(0, 1, 3))
        side /= np.linalg.norm(side)
        vessel_radius = rng.uniform(1.0, 2.2)
        through = center + side * (radius * rng.uniform(0.7, 1.1) + vessel_radius)
        vessels.append(Segment(through - 40 * heading, through + 40 * heading, vessel_radius, -1))
    hu, lung = lung_patch(CROP_SHAPE, spacing, rng, wall=wall, extra_vessels=vessels)
    mask = blob_in_box(CROP_SHAPE, spacing, center, radius, rng, lobulation=0.3) & lung
    kind = str(rng.choice(["solid", "ground-glass", "part-solid", "calcified"], p=[0.5, 0.25, 0.15, 0.1]))
    paint_nodule(hu, mask, "ground-glass" if kind == "part-solid" else kind, rng)
    if kind == "part-solid":
        core = blob_in_box(CROP_SHAPE, spacing, center, 0.5 * radius, rng) & mask
        paint_nodule(hu, core, "solid", rng)
    return finish_ct(hu, rng, float(rng.uniform(20, 40))), mask.astype(np.uint8)


def write_ncs_phantom(root: Path, seed: int) -> None:
    """~60 nodule crops from 30 patients in the preprocessed LIDC-IDRI layout."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    patients = [f"LIDC-IDRI-{n:04d}" for n in sorted(rng.choice(np.arange(1, 1013), 30, replace=False))]
    order = rng.permutation(len(patients))
    bounds = np.cumsum(np.round(np.array(SPLIT_FRACTIONS) * len(patients))).astype(int)
    split_of = {patients[i]: SPLITS[int(np.searchsorted(bounds, rank, side="right"))]
                for rank, i in enumerate(order)}
    rows = []
    for number, patient in enumerate(patients):
        patient_rng = np.random.default_rng([seed, number])
        origin = (rng.uniform(-150, 50), rng.uniform(-150, 50), rng.uniform(-300, -100))
        for nodule in range(int(patient_rng.integers(1, 4))):
            hu, mask = _nodule_crop(patient_rng)
            case_id = f"{patient}_{nodule}"
            for folder, array in (("images", hu), ("masks", mask)):
                image = sitk.GetImageFromArray(array)
                image.SetOrigin(tuple(round(float(o), 2) for o in origin))
                sitk.WriteImage(image, str(root / folder / f"{case_id}.nii.gz"), useCompression=True)
            rows.append((case_id, split_of[patient]))
    with open(root / "splits.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("case_id", "split"))
        writer.writerows(rows)


def _path(folder: Path, case_id: str) -> Path:
    """The case's file in ``folder`` (.nii.gz or .nii), or where the .nii.gz would be."""
    return next((folder / f"{case_id}{s}" for s in SUFFIXES if (folder / f"{case_id}{s}").is_file()),
                folder / f"{case_id}{SUFFIXES[0]}")


def _find(folder: Path, case_id: str) -> Path:
    path = _path(folder, case_id)
    if not path.is_file():
        raise UserError(f"{path}: file not found (listed in splits.csv)")
    return path


def crop_ids(root: Path) -> list[str]:
    """The case ids of the crops in ``root/images``."""
    folder = Path(root) / "images"
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return [case for name in names if (case := _case_of(name)) is not None]


def _case_of(name: str) -> str | None:
    return next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), None)


def crop_splits(root: Path, splits: Splits | None) -> dict[str, str]:
    """Case id -> split, from ``splits.csv`` or the user's split file; a patient in two splits is an error."""
    root = Path(root)
    source = root / "splits.csv" if splits is None else splits.path
    split_of = read_split_file(source, "case_id") if splits is None else splits.choose(crop_ids(root), "case")
    patient_split: dict[str, str] = {}
    for case_id, split in split_of.items():
        if patient_split.setdefault(patient_of(case_id), split) != split:
            raise UserError(f"{source}: patient {patient_of(case_id)} has cases in two splits")
    return split_of


def _at_1mm(image: sitk.Image, interpolator: int, fill: float) -> sitk.Image:
    """``image`` resampled to 1 mm isotropic over the same extent (unchanged if already 1 mm)."""
    spacing = np.array(image.GetSpacing())
    if np.allclose(spacing, 1.0, atol=0.01):
        return image
    size = [max(int(round(n * s)), 1) for n, s in zip(image.GetSize(), spacing, strict=True)]
    origin = image.TransformContinuousIndexToPhysicalPoint(tuple(float((1 / s - 1) / 2) for s in spacing))
    return sitk.Resample(image, size, sitk.Transform(), interpolator, origin, (1.0, 1.0, 1.0),
                         image.GetDirection(), fill, image.GetPixelID())


def uses_lidc_layout(root: Path) -> bool:
    """True for LIDC-IDRI as downloaded (patient folders), False for the preprocessed crops."""
    return not (Path(root) / "images").is_dir() and is_lidc_layout(root)


def read_crop(root: Path, case_id: str) -> tuple[np.ndarray, np.ndarray]:
    """One preprocessed crop at 1 mm: (HU windowed to [-1000, 1000], mask) arrays (z, y, x), through the
    preprocessing cache (memory-mapped; each pair is decoded and resampled once)."""
    paths = _find(root / "images", case_id), _find(root / "masks", case_id)

    def compute() -> Entry:
        image = _at_1mm(read_image(paths[0]), sitk.sitkLinear, HU_MIN)
        mask = _at_1mm(read_image(paths[1]), sitk.sitkNearestNeighbor, 0)
        if image.GetSize() != mask.GetSize():
            raise UserError(f"{paths[1]}: mask size {mask.GetSize()} differs from the image's {image.GetSize()}")
        return Entry({"hu": windowed_hu(sitk.GetArrayFromImage(image)), "mask": sitk.GetArrayFromImage(mask)})

    entry = cached(paths, {"reader": "ncs-crop", "spacing_mm": 1.0}, compute)
    return entry.arrays["hu"], entry.arrays["mask"]


def verify_lidc(root: Path, splits: Splits | None) -> list[Problem]:
    problems = lidc_problems(root)
    if problems:
        return problems
    crops = lidc_cases(root)
    if splits is not None:
        return splits.problems(crops, "case")
    present = {default_split(patient_of(case)) for case in crops}
    return [Problem(str(root), f"no nodule of 3 mm or more in the {split} split (patients "
                               "0001-0510 train, 0511-0610 val, the rest test); use --splits")
            for split in SPLITS if split not in present]


@TASKS.register
class NoduleSegmentation(SegmentationTask):
    name = "ncs"
    description = "Lung nodule segmentation on LIDC-IDRI nodule crops (segmentation, IoU)"
    in_channels = 1
    metrics = ("dice", "iou", "mg_iou")
    primary_metric = "iou"
    write_phantom = staticmethod(write_ncs_phantom)

    def load(self, root: Path, cube: tuple[int, int, int], splits: Splits | None = None) -> TaskData:
        root = Path(root)
        if uses_lidc_layout(root):
            crops = lidc_cases(root)
            split_of = splits.choose(crops, "case") if splits else {c: default_split(patient_of(c)) for c in crops}
            read = crops.__getitem__
        else:
            split_of = crop_splits(root, splits)
            read = partial(read_crop, root)
        cases: dict[str, list[Case]] = {split: [] for split in SPLITS}
        for case_id, split in sorted(split_of.items()):
            hu, label = read(case_id)
            center = tuple(n // 2 for n in hu.shape)
            target = (crop_centered(label, center, cube) > 0).astype(np.uint8)
            cases[split].append(Case(case_id, CandidateCrop(hu, center, cube), target, patient_of(case_id)))
        empty = [split for split in SPLITS if not cases[split]]
        if empty:
            raise UserError(f"{splits.path if splits else root}: no cases in the {' and '.join(empty)} split")
        return TaskData(**cases)

    def verify(self, root: Path, splits: Splits | None = None) -> list[Problem]:
        """Every listed crop has an image and a mask, readable, finite, on one grid, mask 0/1 with a nodule
        (for the raw LIDC-IDRI layout: every series and its reads readable and consistent)."""
        root = Path(root)
        if uses_lidc_layout(root):
            return verify_lidc(root, splits)
        if splits is not None and (problems := splits.problems(crop_ids(root), "case")):
            return problems
        try:
            split_of = crop_splits(root, splits)
        except UserError as error:
            return [Problem.from_error(error)]
        problems = []
        for split in SPLITS:
            if split not in split_of.values():
                problems.append(Problem(str(root / "splits.csv"), f"no cases in the {split} split"))
        for case_id in progress(sorted(split_of), "checking nodule crops"):
            paths = [_path(root / folder, case_id) for folder in ("images", "masks")]
            image = read_volume(paths[0], problems)
            mask = read_volume(paths[1], problems, "label map")
            if image is not None and mask is not None:
                check_same_grid(image, paths[0], mask, paths[1], problems)
                check_labels(mask, paths[1], (0, 1), problems, " (nodule mask: 0 background, 1 nodule)")
        return problems
