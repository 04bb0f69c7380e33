"""The layouts a pretraining pool is read from; a method names its own (``Method.pool_layout``).

* ``luna16``: chest CT in LUNA16's layout (``subset0..9/<seriesuid>.mhd``): cubes of the profile's
  size, subsets 0-4 for training and 5-6 for validation, never 7-9 (``benchmark.data.pool``).
  Built-in data: the chest CT phantom.
* ``chestxray14``: radiographs in ChestX-ray14's layout (``images/*.png``, ``Data_Entry_2017.csv``,
  ``train_val_list.txt``, ``test_list.txt``): patches of the cube's (Y, X) size, carried as
  ``(N, 1, 1, Y, X)``; the training list less a validation share of its patients for training, that
  share for validation, the test list never (``benchmark.data.xray``). Built-in data: digitally
  reconstructed radiographs of the chest CT phantom's patients (``phantoms.radiograph``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.data.phantoms.chest import write_chest_phantom
from benchmark.data.phantoms.radiograph import write_radiograph_phantom
from benchmark.data.pool import PRETRAIN_TRAIN_SUBSETS, PRETRAIN_VAL_SUBSETS, load_pool, pool_scan_ids
from benchmark.data.verify import Problem, pool_problems
from benchmark.data.xray import load_xray_pool, verify_xray_root
from benchmark.errors import UserError

SPLITS = ("train", "val")


@dataclass(frozen=True)
class PoolLayout:
    """How to make the built-in pool, load a split of a pool folder, and list a folder's problems."""

    name: str
    write_phantom: Callable[[Path, int], None]
    load: Callable[[Path, tuple[int, int, int], str, int, int], np.ndarray]  # (root, cube, split, per_scan, seed)
    problems: Callable[[Path], list[Problem]]
    scans: Callable[[Path], set[str]]  # the series UIDs of the scans it pretrains on (checked against test sets)


def _load_luna(root: Path, cube: tuple[int, int, int], split: str, cubes_per_scan: int, seed: int) -> np.ndarray:
    subsets = PRETRAIN_TRAIN_SUBSETS if split == "train" else PRETRAIN_VAL_SUBSETS
    return load_pool(root, cube, subsets, cubes_per_scan, seed)


def _load_xray(root: Path, cube: tuple[int, int, int], split: str, patches_per_image: int, seed: int) -> np.ndarray:
    return load_xray_pool(root, tuple(cube[1:]), split, patches_per_image, seed)


def _luna_scans(root: Path) -> set[str]:
    return set(pool_scan_ids(root, PRETRAIN_TRAIN_SUBSETS + PRETRAIN_VAL_SUBSETS))


def _xray_scans(root: Path) -> set[str]:
    """None: radiographs are no target task's test scans (the five tasks are CT and MRI volumes)."""
    return set()


def _xray_problems(root: Path) -> list[Problem]:
    return [Problem(*line.partition(": ")[::2]) for line in verify_xray_root(root)]


POOL_LAYOUTS = {
    "luna16": PoolLayout("luna16", write_chest_phantom, _load_luna, pool_problems, _luna_scans),
    "chestxray14": PoolLayout("chestxray14", write_radiograph_phantom, _load_xray, _xray_problems, _xray_scans),
}


def pool_layout(name: str) -> PoolLayout:
    if name not in POOL_LAYOUTS:
        raise UserError(f"pretraining pool layout '{name}': expected one of {', '.join(POOL_LAYOUTS)}")
    return POOL_LAYOUTS[name]
