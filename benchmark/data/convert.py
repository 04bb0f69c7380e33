"""Voxel-level lesion masks -> a candidates list in the LUNA16 format (``benchmark convert-emboli``).

Public pulmonary embolism sets (CAD-PE, FUMPE) give a voxel mask of the emboli per CTPA
volume, while a candidate-classification task reads a list of candidates in world
millimetres. Each connected component of a mask (26-connected) becomes one positive at
its centroid, converted to world coordinates by the volume's own transform (direction
included). Negatives (class 0) are drawn, reproducibly from a seed and the series UID,
among the voxels whose HU lie in a range (by default that of contrast-filled vessels,
where a detector's false positives sit) and that are at least a given distance from
every embolus voxel. A mask's labels must be whole numbers from 0 to ``MAX_LABEL`` (0 background,
any other value embolus: binary masks and masks labelled per embolus alike), so that a CT volume or a
probability map given as a mask is refused rather than thresholded.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage
from tqdm import tqdm

from benchmark.data import files
from benchmark.data.phantoms.chest import to_world
from benchmark.data.verify import Problem, check_same_grid, read_volume, shown_values
from benchmark.errors import UserError

SUFFIXES = (".nii.gz", ".nii", ".mhd", ".nrrd")
COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "class"]
MAX_LABEL = 255  # the largest label of an embolus mask (one label per embolus at most)


def series_files(folder: Path) -> dict[str, Path]:
    """Series UID (the file name without its suffix) -> image file, for every image in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    found = {}
    for path in sorted(folder.iterdir()):
        uid = next((path.name[: -len(s)] for s in SUFFIXES if path.name.endswith(s)), None)
        if uid is not None:
            found[uid] = path
    if not found:
        raise UserError(f"{folder}: no image files ({', '.join(SUFFIXES)})")
    return found


def mask_candidates(uid: str, volume: sitk.Image, mask: sitk.Image, negatives: int, min_distance_mm: float,
                    hu_range: tuple[float, float], seed: int) -> list[tuple]:
    """(uid, x, y, z, class) rows: one positive per embolus (component centroid), then sampled negatives."""
    emboli = sitk.GetArrayViewFromImage(mask) > 0
    labels, count = ndimage.label(emboli, structure=np.ones((3, 3, 3)))
    centroids = ndimage.center_of_mass(emboli, labels, range(1, count + 1)) if count else []
    rows = [(uid, *to_world(mask, np.array(c)), 1) for c in centroids]
    spacing_zyx = volume.GetSpacing()[::-1]
    far = ndimage.distance_transform_edt(~emboli, sampling=spacing_zyx) >= min_distance_mm if count else True
    hu = sitk.GetArrayViewFromImage(volume)
    pool = np.argwhere((hu >= hu_range[0]) & (hu <= hu_range[1]) & far)
    rng = np.random.default_rng([seed, zlib.crc32(uid.encode())])
    chosen = pool[np.sort(rng.choice(len(pool), min(negatives, len(pool)), replace=False))] if len(pool) else []
    return rows + [(uid, *to_world(volume, index), 0) for index in chosen]


def read_pair(volume_path: Path, mask_path: Path) -> tuple[sitk.Image, sitk.Image]:
    """A volume and its mask: whole, finite 3-D scalar images on the same grid; UserError otherwise."""
    problems: list[Problem] = []
    volume, mask = read_volume(volume_path, problems, "volume"), read_volume(mask_path, problems, "mask")
    if volume is not None and mask is not None:
        check_same_grid(volume, volume_path, mask, mask_path, problems)
        check_mask_labels(mask, mask_path, problems)
    if problems:
        raise UserError(str(problems[0]))
    return volume, mask


def check_mask_labels(mask: sitk.Image, path: Path, problems: list[Problem]) -> None:
    """The mask's values must be whole numbers from 0 to ``MAX_LABEL``."""
    values = np.unique(sitk.GetArrayViewFromImage(mask))
    wrong = values[(values < 0) | (values > MAX_LABEL) | (values != np.floor(values))].tolist()
    if wrong:
        problems.append(Problem(str(path), f"label values {shown_values(wrong)}: an embolus mask holds whole "
                                           f"numbers from 0 (background) to {MAX_LABEL} (> 0: embolus)"))


def check_settings(out: Path, negatives: int, min_distance_mm: float, hu_range: tuple[float, float],
                   seed: int) -> None:
    """UserError naming the first option given a value that means nothing (before any volume is read)."""
    low, high = hu_range
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise UserError(f"--hu-range {low:g} {high:g}: must be two finite numbers LOW HIGH with LOW < HIGH")
    if not (math.isfinite(min_distance_mm) and min_distance_mm > 0):
        raise UserError(f"--min-distance {min_distance_mm:g}: must be a finite number of mm above 0")
    if negatives < 0:
        raise UserError(f"--negatives {negatives}: must be 0 or more")
    if seed < 0:
        raise UserError(f"--seed {seed}: must be 0 or more")
    if Path(out).is_dir():
        raise UserError(f"{out}: is a folder; --out names the candidates CSV to write")


def convert_emboli(volumes: Path, masks: Path, out: Path, negatives: int = 50, min_distance_mm: float = 10.0,
                   hu_range: tuple[float, float] = (100.0, 600.0), seed: int = 0) -> pd.DataFrame:
    """Write the candidates of every mask in ``masks`` (its volume in ``volumes``, same name) to ``out``."""
    check_settings(out, negatives, min_distance_mm, hu_range, seed)
    mask_files, volume_files = series_files(masks), series_files(volumes)
    rows = []
    for uid, mask_path in tqdm(mask_files.items(), desc="converting masks", disable=None):
        if uid not in volume_files:
            raise UserError(f"{mask_path}: no volume named {uid} in {volumes}")
        volume, mask = read_pair(volume_files[uid], mask_path)
        rows += mask_candidates(uid, volume, mask, negatives, min_distance_mm, hu_range, seed)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    files.write_csv(Path(out), frame)
    return frame
