"""Synthetic datasets of a chosen size, in the real layouts, for measuring how the suite grows with the data.

* ``write_scaled_luna``: the LUNA16 layout (``subset0..9/<uid>.mhd`` + ``.raw``,
  ``candidates_V2.csv``, ``annotations.csv``) with a fixed set of scans and any number of
  candidates spread over them: the scans depend only on (seed, scan count, shape), so datasets of
  growing candidate counts share them. About one candidate in 400 is positive (LUNA16: about
  1,500 in 755,000), placed on one of its scan's painted nodules; negatives lie anywhere else in the
  scan. Every split of the Models Genesis subset split (0-4 train, 5-6 val, 7-9 test) gets
  candidates of both classes.
* ``write_scaled_lits``: the LiTS layout with any number of the liver phantom's volumes, split
  like LiTS by volume number (about 77% train 0-99, 11.5% val 100-114, 11.5% test 115-129).
* ``write_large_lits``: the LiTS layout with one test volume of a chosen size (up to LiTS's largest,
  512 x 512 x 900 voxels) and two small volumes for the train and val splits, for measuring
  sliding-window inference; the large volume is drawn slice by slice.

Everything is reproducible from the seed (each scan and volume from its own generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from benchmark.data.imageio import write_image
from benchmark.data.phantoms.chest import (
    ANNOTATION_HEADER,
    CANDIDATE_HEADER,
    LUNG_HU,
    SOFT_HU,
    finish_ct,
    make_image,
    series_uid,
)
from benchmark.data.phantoms.liver import FIRST_BATCH_2_ID, liver_volume
from benchmark.data.phantoms.primitives import smooth_noise
from benchmark.errors import UserError

SCAN_SHAPE = (64, 128, 128)  # (z, y, x) voxels of a generated LUNA16 scan
POSITIVE_RATE = 1 / 400
NODULES_PER_SCAN = 6
# scan i goes to subset SUBSET_ORDER[i % 10]: any three scans cover the train, val and test subsets
SUBSET_ORDER = (0, 5, 7, 1, 6, 8, 2, 9, 3, 4)
SPLIT_OF_SUBSET = {0: "train", 1: "train", 2: "train", 3: "train", 4: "train", 5: "val", 6: "val",
                   7: "test", 8: "test", 9: "test"}  # the Models Genesis split of LUNA16 by subset
SPLITS = ("train", "val", "test")
LITS_FIRST = {"train": 0, "val": 100, "test": 115}  # LiTS's split by volume number
LITS_MOST = {"train": 100, "val": 15, "test": 15}
LITS_EVAL_SHARE = 15 / 130  # LiTS's share of val (and of test) volumes


@dataclass(frozen=True)
class ScaledLuna:
    """What ``write_scaled_luna`` wrote: per split, how many scans, candidates and positives."""

    scans: dict[str, int]
    candidates: dict[str, int]
    positives: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.candidates.values())


@dataclass(frozen=True)
class _Scan:
    uid: str
    subset: int
    image: sitk.Image
    nodules: np.ndarray  # (K, 3) voxel index (z, y, x) of each nodule's centre
    radii: np.ndarray  # (K,) voxels


def _check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(shape) != 3 or any(int(side) < 16 for side in shape):
        raise UserError(f"scan shape {tuple(shape)}: three sides (z, y, x) of at least 16 voxels")
    return tuple(int(side) for side in shape)


def scaled_scan(seed: int, index: int, shape: tuple[int, int, int] = SCAN_SHAPE) -> _Scan:
    """Scan ``index``: lung parenchyma in a body of soft tissue, with ``NODULES_PER_SCAN`` round nodules."""
    rng = np.random.default_rng([seed, index])
    uid = series_uid(rng)
    nz, ny, nx = shape
    pixel = round(float(rng.uniform(0.6, 0.9)), 3)
    spacing = (round(float(rng.uniform(1.0, 2.5)), 3), pixel, pixel)
    hu = LUNG_HU + 25 * smooth_noise(shape, 1.5, rng)
    y, x = np.ogrid[:ny, :nx]
    ring = ((y - ny / 2) / (0.48 * ny)) ** 2 + ((x - nx / 2) / (0.48 * nx)) ** 2
    hu[:, ring > 0.8] = SOFT_HU
    hu[:, ring > 1.0] = -1000.0
    low = np.array([4, 0.3 * ny, 0.3 * nx])
    high = np.array([nz - 5, 0.7 * ny, 0.7 * nx])
    nodules = np.rint(rng.uniform(low, high, size=(NODULES_PER_SCAN, 3)))
    radii = rng.uniform(1.5, 3.5, NODULES_PER_SCAN)
    for centre, radius in zip(nodules, radii, strict=True):
        lo = np.maximum(np.floor(centre - radius).astype(int), 0)
        hi = np.minimum(np.ceil(centre + radius).astype(int) + 1, shape)
        zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2
        box = hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        box[inside] = rng.uniform(-100, 100)
    image = make_image(finish_ct(hu, rng, float(rng.uniform(20, 40))), spacing, index % 2 == 1, rng)
    return _Scan(uid, SUBSET_ORDER[index % len(SUBSET_ORDER)], image, nodules, radii)


def index_to_world(image: sitk.Image, index_zyx: np.ndarray) -> np.ndarray:
    """World (x, y, z) mm of continuous (z, y, x) indices, (N, 3), as ``TransformContinuousIndexToPhysicalPoint``."""
    direction = np.asarray(image.GetDirection(), float).reshape(3, 3)
    scaled = index_zyx[:, ::-1] * np.asarray(image.GetSpacing(), float)
    return np.asarray(image.GetOrigin(), float) + scaled @ direction.T


def _counts(total: int, parts: int) -> np.ndarray:
    """``total`` spread as evenly as possible over ``parts``."""
    return np.full(parts, total // parts) + (np.arange(parts) < total % parts)


def _labels(per_scan: np.ndarray, splits: list[str], rng: np.random.Generator) -> list[np.ndarray]:
    """Per scan, its candidates' classes: about ``POSITIVE_RATE`` positive, both classes in every split."""
    total = int(per_scan.sum())
    labels = np.zeros(total, dtype=np.int64)
    labels[rng.choice(total, max(1, round(total * POSITIVE_RATE)), replace=False)] = 1
    by_scan = np.split(labels, np.cumsum(per_scan)[:-1])
    for split in SPLITS:
        members = [by_scan[i] for i, s in enumerate(splits) if s == split]
        if not any(m.any() for m in members):
            members[0][0] = 1
        if all(m.all() for m in members):
            members[0][-1] = 0
    return by_scan


def _points(scan: _Scan, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A continuous (z, y, x) index per candidate: near a nodule's centre for a positive, elsewhere for a
    negative (outside every nodule by a voxel)."""
    shape = np.asarray(sitk.GetArrayViewFromImage(scan.image).shape, float)
    points = rng.uniform(0.5, shape - 1.5, size=(len(labels), 3))
    positive = np.flatnonzero(labels == 1)
    chosen = rng.integers(len(scan.nodules), size=len(positive))
    points[positive] = np.clip(scan.nodules[chosen] + rng.uniform(-1, 1, (len(positive), 3)), 0.5, shape - 1.5)
    negative = labels == 0
    for _ in range(100):
        distance = np.linalg.norm(points[:, None, :] - scan.nodules[None], axis=2) - scan.radii[None] - 1
        near = negative & (distance.min(axis=1) < 0)
        if not near.any():
            break
        points[near] = rng.uniform(0.5, shape - 1.5, size=(int(near.sum()), 3))
    return points


def write_scaled_luna(root: Path, scans: int, candidates: int, seed: int,
                      shape: tuple[int, int, int] = SCAN_SHAPE) -> ScaledLuna:
    """Write ``scans`` scans and ``candidates`` candidates in the LUNA16 layout under ``root``.

    Scan i is in subset ``SUBSET_ORDER[i % 10]`` (at least 3 scans, so that every split has one);
    candidates are spread evenly over the scans (at least 2 per scan). The CSVs are written in one
    go, grouped by scan: 750,000 candidates take a few seconds."""
    shape = _check_shape(shape)
    if scans < 3:
        raise UserError(f"scans {scans}: at least 3 (one for each of the train, val and test subsets)")
    if candidates < 2 * scans:
        raise UserError(f"candidates {candidates}: at least 2 per scan ({2 * scans} for {scans} scans), so that "
                        "every split can hold both classes")
    root = Path(root)
    built = [scaled_scan(seed, index, shape) for index in range(scans)]
    splits = [SPLIT_OF_SUBSET[scan.subset] for scan in built]
    rng = np.random.default_rng([seed, 1_000_003, scans, candidates])
    per_scan = _counts(candidates, scans)
    labels = _labels(per_scan, splits, rng)
    worlds, uids, annotations = [], [], []
    for scan, scan_labels in zip(built, labels, strict=True):
        folder = root / f"subset{scan.subset}"
        folder.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(scan.image, str(folder / f"{scan.uid}.mhd"))
        order = rng.permutation(len(scan_labels))
        worlds.append(np.column_stack([index_to_world(scan.image, _points(scan, scan_labels, rng)), scan_labels])
                      [order])
        uids.append(np.full(len(scan_labels), scan.uid))
        spacing = min(scan.image.GetSpacing())
        annotations += [(scan.uid, *world, 2 * radius * spacing) for world, radius in
                        zip(index_to_world(scan.image, scan.nodules), scan.radii, strict=True)]
    rows = np.concatenate(worlds)
    table = pd.DataFrame({CANDIDATE_HEADER[0]: np.concatenate(uids), CANDIDATE_HEADER[1]: rows[:, 0],
                          CANDIDATE_HEADER[2]: rows[:, 1], CANDIDATE_HEADER[3]: rows[:, 2],
                          CANDIDATE_HEADER[4]: rows[:, 3].astype(np.int64)})
    table.to_csv(root / "candidates_V2.csv", index=False, float_format="%.4f", lineterminator="\n")
    pd.DataFrame(annotations, columns=list(ANNOTATION_HEADER)).to_csv(
        root / "annotations.csv", index=False, float_format="%.4f", lineterminator="\n")
    return ScaledLuna(
        scans={split: splits.count(split) for split in SPLITS},
        candidates={split: int(sum(len(lab) for lab, s in zip(labels, splits) if s == split)) for split in SPLITS},
        positives={split: int(sum(lab.sum() for lab, s in zip(labels, splits) if s == split)) for split in SPLITS})


def lits_numbers(volumes: int) -> dict[str, list[int]]:
    """The volume numbers of ``volumes`` LiTS-layout volumes, by split (LiTS's shares, each split at least one)."""
    if not 3 <= volumes <= sum(LITS_MOST.values()):
        raise UserError(f"volumes {volumes}: from 3 (one per split) to {sum(LITS_MOST.values())} (LiTS's numbering)")
    held_out = max(1, round(volumes * LITS_EVAL_SHARE))
    counts = {"train": volumes - 2 * held_out, "val": held_out, "test": held_out}
    return {split: list(range(LITS_FIRST[split], LITS_FIRST[split] + n)) for split, n in counts.items()}


def _lits_folder(root: Path, number: int) -> Path:
    return Path(root) / ("Training Batch 1" if number < FIRST_BATCH_2_ID else "Training Batch 2")


def write_scaled_lits(root: Path, volumes: int, seed: int) -> dict[str, list[int]]:
    """Write ``volumes`` liver-phantom volumes in the LiTS layout (volume-N as the liver phantom draws it
    for ``seed``); returns the numbers written by split."""
    numbers = lits_numbers(volumes)
    for number in (n for split in SPLITS for n in numbers[split]):
        hu, label, spacing, origin = liver_volume(np.random.default_rng([seed, number]))
        write_image(hu, _lits_folder(root, number) / f"volume-{number}.nii", spacing, origin)
        write_image(label, _lits_folder(root, number) / f"segmentation-{number}.nii", spacing, origin)
    return numbers


def large_abdomen(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An int16 HU volume (z, y, x) and its uint8 labels: a body of fat and muscle holding an ellipsoidal
    liver (label 1) with a lesion (label 2), with noise; drawn slice by slice (no float copy of the volume)."""
    nz, ny, nx = shape
    hu = np.empty(shape, dtype=np.int16)
    label = np.zeros(shape, dtype=np.uint8)
    y, x = np.ogrid[:ny, :nx]
    body = ((y - ny / 2) / (0.45 * ny)) ** 2 + ((x - nx / 2) / (0.47 * nx)) ** 2
    centre = np.array([0.55, 0.45, 0.32]) * shape + rng.normal(0, 0.02, 3) * shape
    radii = np.array([0.3, 0.25, 0.2]) * shape
    lesion = centre + np.array([0.0, 0.2, 0.2]) * radii
    for z in range(nz):
        liver = (((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2
                 + ((x - centre[2]) / radii[2]) ** 2) < 1
        tumour = (((z - lesion[0]) ** 2 + (y - lesion[1]) ** 2 + (x - lesion[2]) ** 2) < (0.3 * radii.min()) ** 2)
        plane = np.where(body < 1, np.where(body > 0.85, -100, 45), -1000).astype(np.int16)
        plane[liver] = 60
        plane[liver & tumour] = 25
        hu[z] = plane + rng.integers(-20, 21, size=(ny, nx), dtype=np.int16)
        label[z][liver] = 1
        label[z][liver & tumour] = 2
    return hu, label


def write_large_lits(root: Path, size_xyz: tuple[int, int, int], seed: int) -> dict[str, list[int]]:
    """LiTS layout: a liver-phantom volume for the train and the val split, and one test volume of
    ``size_xyz`` voxels (x, y, z, as LiTS sizes are written: 512 x 512 x 900 is its largest) at 0.8 mm."""
    if len(size_xyz) != 3 or any(side < 8 for side in size_xyz):
        raise UserError(f"volume size {'x'.join(map(str, size_xyz))}: three sides (x, y, z) of at least 8 voxels")
    for number in (LITS_FIRST["train"], LITS_FIRST["val"]):
        hu, label, spacing, origin = liver_volume(np.random.default_rng([seed, number]))
        write_image(hu, _lits_folder(root, number) / f"volume-{number}.nii", spacing, origin)
        write_image(label, _lits_folder(root, number) / f"segmentation-{number}.nii", spacing, origin)
    number = LITS_FIRST["test"]
    hu, label = large_abdomen(tuple(size_xyz[::-1]), np.random.default_rng([seed, number]))
    origin = (-0.4 * size_xyz[0], -0.4 * size_xyz[1], -0.8 * size_xyz[2])
    write_image(hu, _lits_folder(root, number) / f"volume-{number}.nii", (0.8, 0.8, 0.8), origin)
    del hu
    write_image(label, _lits_folder(root, number) / f"segmentation-{number}.nii", (0.8, 0.8, 0.8), origin)
    return {"train": [LITS_FIRST["train"]], "val": [LITS_FIRST["val"]], "test": [number]}
