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

The built-in phantom writes the crops layout: 120 patients numbered as the downloaded
layout splits them (60 train, so that label fraction 0.05 still labels 3 patients; 12
validation; 48 test), 1-3 nodules each, about 240 crops. It is label-scarce the way real
data is: a patient's nodules share most of their appearance and the patients differ, so a
model trained on a few patients has not seen the others. Per patient it draws the usual
nodule kind (solid, ground glass, part-solid, cavitary, calcified; 9 nodules in 10 are of
it), size (3-8 mm radius) and lobulation, how often nodules touch the chest wall, the
lungs (denser or lighter, emphysema) and the scan: contrast phase (vessels at 20-60 HU, or
120-300 HU, brighter than a solid nodule), noise (10-60 HU, low-dose scans) and blur
(slice thickness and kernel). Every crop stays solvable from shape and context: the mask
is exactly the painted nodule inside the lung, the vessels beside it and the chest wall
excluded. The nodules are painted with the chest phantom's routines, as NCC's are. A phantom of
another seed is another site: its patients are numbers no lower seed drew (seeds 0-7).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from benchmark.tasks._candidates import CandidateCrop
from benchmark.tasks._lidc import (
    SPLIT_OF_PATIENT,
    default_split,
    is_lidc_layout,
    lidc_cases,
    lidc_problems,
    lidc_scans,
    scan_series_uid,
)
from scipy import ndimage

from benchmark.api.registry import TASKS
from benchmark.api.segmentation import SegmentationTask
from benchmark.api.task import Case, Splits, TaskData, read_split_file
from benchmark.data.cache import Entry, cached, windowed_hu
from benchmark.data.imageio import HU_MIN, crop_centered, read_image
from benchmark.data.phantoms.chest import Segment, blob_in_box, finish_ct, lung_patch, paint_nodule
from benchmark.data.phantoms.primitives import smooth_noise
from benchmark.data.verify import SPLITS, Problem, check_labels, check_same_grid, progress, read_volume
from benchmark.errors import UserError

CROP_SHAPE = (32, 64, 64)  # (z, y, x) voxels of 1 mm
SPLIT_FRACTIONS = (0.5, 0.1, 0.4)  # patients, like the paper's 510 / 100 / 408
PHANTOM_PATIENTS = 120  # 60 train (3 at label fraction 0.05), 12 val, 48 test
LAST_PATIENT = 1012  # LIDC-IDRI-0001 ... LIDC-IDRI-1012
SUFFIXES = (".nii.gz", ".nii")
NODULE_KINDS = ("solid", "ground-glass", "part-solid", "cavitary", "calcified")
KIND_WEIGHTS = (0.35, 0.25, 0.17, 0.13, 0.10)
OWN_KIND = 0.9  # the chance that a nodule is of its patient's usual kind


def patient_of(case_id: str) -> str:
    """``LIDC-IDRI-0001_2`` -> ``LIDC-IDRI-0001``: cases are named ``<patient>_<nodule>``."""
    return case_id.rsplit("_", 1)[0]


@dataclass(frozen=True)
class Patient:
    """What a phantom patient's crops share: the disease, the lungs and the scan protocol.

    Drawn once per patient, so that a few labelled patients do not cover the others (the
    label scarcity of real data) while every crop stays solvable from shape and context."""

    kind: str  # the usual nodule kind
    radius_mm: float  # the usual nodule radius
    lobulation: float
    wall_chance: float  # the chance that a nodule touches the chest wall
    emphysema: float  # the fraction of parenchyma destroyed into air
    lung_shift_hu: float  # denser (fibrotic, poorly inflated) or lighter lungs
    vessel_hu: float  # 20-60 HU without contrast, 120-300 HU in an arterial phase
    noise_hu: float  # low-dose screening scans are noisy
    blur_mm: tuple[float, float]  # (z, in-plane) blur: slice thickness and reconstruction kernel


def _draw_patient(rng: np.random.Generator) -> Patient:
    """One patient's traits; a third of the scans are contrast-enhanced, a third of the patients emphysematous."""
    contrast = rng.random() < 0.35
    return Patient(
        kind=str(rng.choice(NODULE_KINDS, p=KIND_WEIGHTS)),
        radius_mm=float(np.exp(rng.uniform(np.log(3.0), np.log(8.0)))),
        lobulation=float(rng.uniform(0.05, 0.5)),
        wall_chance=float(rng.uniform(0.0, 0.7)),
        emphysema=float(rng.choice([0.0, rng.uniform(0.05, 0.25)], p=[0.7, 0.3])),
        lung_shift_hu=float(rng.uniform(-60, 80)),
        vessel_hu=float(rng.uniform(120, 300) if contrast else rng.uniform(20, 60)),
        noise_hu=float(np.exp(rng.uniform(np.log(10.0), np.log(60.0)))),
        blur_mm=(float(rng.uniform(0.2, 1.0)), float(rng.uniform(0.1, 0.5))),
    )


def _vessels_beside(center: np.ndarray, radius: float, count: int, rng: np.random.Generator) -> list[Segment]:
    """Vessels passing close to the nodule (touching it, most of them): the context a model must cut away."""
    vessels = []
    for _ in range(count):
        heading = rng.normal(0, 1, 3)
        heading /= np.linalg.norm(heading)
        side = np.cross(heading, rng.normal(0, 1, 3))
        side /= np.linalg.norm(side)
        vessel_radius = rng.uniform(1.0, 2.2)
        through = center + side * (radius * rng.uniform(0.7, 1.1) + vessel_radius)
        vessels.append(Segment(through - 40 * heading, through + 40 * heading, vessel_radius, -1))
    return vessels


def _diseased_lung(hu: np.ndarray, lung: np.ndarray, patient: Patient, rng: np.random.Generator) -> None:
    """The patient's parenchyma: shifted in density, with emphysematous holes of air."""
    parenchyma = lung & (hu < -600)
    hu[parenchyma] += patient.lung_shift_hu
    if patient.emphysema > 0:
        field = smooth_noise(hu.shape, 1.5, rng)
        holes = parenchyma & (field > np.quantile(field, 1 - patient.emphysema))
        hu[holes] = -990 + 5 * rng.standard_normal(int(holes.sum()))


def _paint(hu: np.ndarray, mask: np.ndarray, kind: str, center: np.ndarray, radius: float,
           rng: np.random.Generator) -> None:
    """A nodule of ``kind`` inside ``mask``: the chest routines' kinds, a solid core in ground glass
    (part-solid), or a solid wall around an air cavity (cavitary; the outline includes the cavity)."""
    paint_nodule(hu, mask, {"part-solid": "ground-glass", "cavitary": "solid"}.get(kind, kind), rng)
    if kind in ("part-solid", "cavitary"):
        inner = blob_in_box(CROP_SHAPE, (1.0, 1.0, 1.0), center + rng.normal(0, 0.1 * radius, 3),
                            rng.uniform(0.35, 0.55) * radius, rng) & mask
        if kind == "part-solid":
            paint_nodule(hu, inner, "solid", rng)
        else:
            hu[inner] = -980 + 10 * rng.standard_normal(int(inner.sum()))


def _scanned(hu: np.ndarray, patient: Patient, rng: np.random.Generator) -> np.ndarray:
    """The patient's scanner: noise shaped by the slice-thickness and kernel blur, white noise, int16."""
    z_blur, xy_blur = patient.blur_mm
    noisy = hu + patient.noise_hu * rng.standard_normal(hu.shape, dtype=np.float32)
    return finish_ct(ndimage.gaussian_filter(noisy, (z_blur, xy_blur, xy_blur)), rng, 0.7 * patient.noise_hu)


def _nodule_crop(patient: Patient, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One nodule-centred crop (HU int16, mask uint8) of ``patient``: most nodules of the patient's
    usual kind and size, some against the chest wall, most of them touched by a vessel."""
    spacing = (1.0, 1.0, 1.0)
    center = np.array(CROP_SHAPE, float) / 2 + rng.uniform(-3, 3, size=3)
    radius = float(np.clip(patient.radius_mm * np.exp(rng.normal(0, 0.2)), 2.5, 10.0))
    wall = None
    if rng.random() < patient.wall_chance:
        normal = np.array([rng.normal(0, 0.3), *rng.normal(0, 1, 2)])
        normal /= np.linalg.norm(normal)
        wall = (center + normal * radius * rng.uniform(0.5, 0.9), normal)
    vessels = _vessels_beside(center, radius, int(rng.integers(0, 3)) + int(wall is None), rng)
    hu, lung = lung_patch(CROP_SHAPE, spacing, rng, wall=wall, extra_vessels=vessels, vessel_hu=patient.vessel_hu)
    _diseased_lung(hu, lung, patient, rng)
    mask = blob_in_box(CROP_SHAPE, spacing, center, radius, rng, lobulation=patient.lobulation) & lung
    kind = patient.kind if rng.random() < OWN_KIND else str(rng.choice(NODULE_KINDS, p=KIND_WEIGHTS))
    _paint(hu, mask, kind, center, radius, rng)
    return _scanned(hu, patient, rng), mask.astype(np.uint8)


def _patient_splits(rng: np.random.Generator, seed: int) -> dict[str, str]:
    """Patient id -> split: ``PHANTOM_PATIENTS`` patients in the paper's proportions, numbered as
    LIDC-IDRI as downloaded is split (``default_split``: 0001-0510 train, 0511-0610 val, the rest test).

    Each seed draws (with ``rng``) among the numbers no lower seed drew, so phantoms of different seeds
    share no patient: a second site of the task (seeds 0-7; the test numbers run out after that)."""
    taken: set[int] = set()
    for earlier in range(seed):
        taken |= {int(patient.rsplit("-", 1)[1]) for patient in _draw_patients(np.random.default_rng(earlier), taken)}
    try:
        return _draw_patients(rng, taken)
    except ValueError as error:
        raise UserError(f"NCS phantom seed {seed}: {error}") from error


def _draw_patients(rng: np.random.Generator, taken: set[int]) -> dict[str, str]:
    counts = np.round(np.array(SPLIT_FRACTIONS) * PHANTOM_PATIENTS).astype(int)
    firsts = [1] + [last + 1 for _, last in SPLIT_OF_PATIENT]
    lasts = [last for _, last in SPLIT_OF_PATIENT] + [LAST_PATIENT]
    split_of = {}
    for split, count, first, last in zip(SPLITS, counts, firsts, lasts, strict=True):
        free = np.array([number for number in range(first, last + 1) if number not in taken])
        if free.size < count:
            raise ValueError(f"fewer than {count} {split} patient numbers left that no lower seed drew")
        for number in sorted(rng.choice(free, count, replace=False)):
            split_of[f"LIDC-IDRI-{number:04d}"] = split
    return split_of


def _write_nifti(array: np.ndarray, origin: tuple[float, float, float], path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(tuple(round(float(o), 2) for o in origin))
    sitk.WriteImage(image, str(path), useCompression=True)


def write_ncs_phantom(root: Path, seed: int) -> None:
    """About 240 nodule crops (1-3 per patient) from 120 patients in the preprocessed LIDC-IDRI
    layout: 60 patients train, 12 validate, 48 test."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    split_of = _patient_splits(rng, seed)
    rows = []
    for patient_id, split in split_of.items():
        patient_rng = np.random.default_rng([seed, int(patient_id.rsplit("-", 1)[1])])
        patient = _draw_patient(patient_rng)
        origin = (rng.uniform(-150, 50), rng.uniform(-150, 50), rng.uniform(-300, -100))
        for nodule in range(int(patient_rng.integers(1, 4))):
            hu, mask = _nodule_crop(patient, patient_rng)
            case_id = f"{patient_id}_{nodule}"
            _write_nifti(hu, origin, root / "images" / f"{case_id}.nii.gz")
            _write_nifti(mask, origin, root / "masks" / f"{case_id}.nii.gz")
            rows.append((case_id, split))
    with open(root / "splits.csv", "w", newline="", encoding="utf-8") as handle:
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
    return one_split_per_patient(split_of, source)


def one_split_per_patient(split_of: dict[str, str], source: Path) -> dict[str, str]:
    """``split_of`` (case id -> split) as given; UserError naming ``source`` if a patient has cases in two
    splits (a patient's nodules share its scan and its anatomy: split across, they leak into the test)."""
    patient_split: dict[str, str] = {}
    for case_id, split in split_of.items():
        if patient_split.setdefault(patient_of(case_id), split) != split:
            raise UserError(f"{source}: patient {patient_of(case_id)} has cases in two splits")
    return split_of


def lidc_splits(crops: Iterable[str], splits: Splits | None) -> dict[str, str]:
    """Case id -> split for LIDC-IDRI as downloaded: by patient number (``default_split``), or from the
    user's split file, where a patient in two splits is an error."""
    if splits is None:
        return {case: default_split(patient_of(case)) for case in crops}
    return one_split_per_patient(splits.choose(crops, "case"), splits.path)


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
        if problems := splits.problems(crops, "case"):
            return problems
        try:
            one_split_per_patient(splits.assignment, splits.path)
        except UserError as error:
            return [Problem.from_error(error)]
        return []
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

    def split_scans(self, root: Path, split: str, splits: Splits | None = None) -> set[str]:
        """The series of the split's patients' scans, for LIDC-IDRI as downloaded (LUNA16's scans are
        LIDC-IDRI series, spread over its subsets); the crops layout names patients, not series, so none."""
        root = Path(root)
        if not uses_lidc_layout(root):
            return set()
        scans = lidc_scans(root)
        if splits is None:
            chosen = {patient for patient, _ in scans if default_split(patient) == split}
        else:
            chosen = {patient_of(case) for case, of in lidc_splits(lidc_cases(root), splits).items() if of == split}
        return {scan_series_uid(xml) for patient, xml in scans if patient in chosen}

    def load(self, root: Path, cube: tuple[int, int, int], splits: Splits | None = None) -> TaskData:
        root = Path(root)
        if uses_lidc_layout(root):
            crops = lidc_cases(root)
            split_of = lidc_splits(crops, splits)
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
