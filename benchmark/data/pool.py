"""The unlabeled pretraining pool: random cubes from the scans of a LUNA16-layout folder.

Models Genesis pretrains on LUNA16 subsets 0-4 (validation on 5-6) and never on 7-9,
which hold NCC's test scans; ``load_pool`` refuses those subsets so that no target
test scan can leak into pretraining. Cubes are drawn at random positions at native
spacing and rejected when dominated by soft tissue (more than 15% of the voxels at
-150 HU or above), as in the reference generator; a scan that offers no acceptable
position within a bounded number of tries contributes fewer cubes (or none). Scans are
decoded once into the preprocessing cache (windowed HU) and cropped from memory maps.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmark.data.cache import ct_volume
from benchmark.data.imageio import HU_MIN, crop_centered, scale_ct
from benchmark.errors import UserError

PRETRAIN_TRAIN_SUBSETS = (0, 1, 2, 3, 4)
PRETRAIN_VAL_SUBSETS = (5, 6)
HELD_OUT_SUBSETS = (7, 8, 9)
SOFT_TISSUE_HU = -150.0
MAX_SOFT_TISSUE_FRACTION = 0.15
TRIES_PER_CUBE = 50  # the reference gives up on a scan after 50 tries per wanted cube


def luna_scans(root: Path) -> dict[int, list[Path]]:
    """The ``.mhd`` scans of a LUNA16-layout folder by subset number (``subsetK/<uid>.mhd``)."""
    root = Path(root)
    scans: dict[int, list[Path]] = {}
    if root.is_dir():
        for folder in sorted(root.iterdir()):
            match = re.fullmatch(r"subset(\d+)", folder.name)
            if match and folder.is_dir():
                paths = sorted(folder.glob("*.mhd"))
                if paths:
                    scans[int(match.group(1))] = paths
    if not scans:
        raise UserError(f"{root}: no LUNA16 scans found (expected subset0..subset9/<seriesuid>.mhd)")
    return scans


def _scan_paths(root: Path, subsets: Sequence[int]) -> list[Path]:
    subsets = [int(s) for s in subsets]
    held_out = sorted(set(subsets) & set(HELD_OUT_SUBSETS))
    if held_out:
        raise UserError(
            f"LUNA16 subsets {', '.join(map(str, held_out))} hold NCC test scans and are never used "
            "for pretraining; use subsets 0-6"
        )
    scans = luna_scans(root)
    paths = [path for subset in sorted(set(subsets)) for path in scans.get(subset, [])]
    if not paths:
        listed = ", ".join(map(str, subsets))
        raise UserError(f"{root}: no scans in subsets {listed} (expected subsetK/<seriesuid>.mhd)")
    return paths


def pool_scan_ids(root: Path, subsets: Sequence[int]) -> list[str]:
    """The series UIDs of the scans that ``load_pool`` would draw from."""
    return [path.stem for path in _scan_paths(root, subsets)]


def soft_tissue_fraction(hu: np.ndarray) -> float:
    return float(np.mean(hu >= SOFT_TISSUE_HU))


def scan_cubes(
    hu: np.ndarray, cube: tuple[int, int, int], count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Up to ``count`` accepted HU cubes at random positions of one (z, y, x) scan.

    A scan smaller than the cube along an axis is centred on that axis and padded with air.
    """
    cubes: list[np.ndarray] = []
    for _ in range(TRIES_PER_CUBE * count):
        center = [int(rng.integers(0, n - c + 1)) + c // 2 if n >= c else n // 2
                  for n, c in zip(hu.shape, cube, strict=True)]
        window = crop_centered(hu, tuple(center), cube, pad_value=HU_MIN)
        if soft_tissue_fraction(window) <= MAX_SOFT_TISSUE_FRACTION:
            cubes.append(window)
            if len(cubes) == count:
                break
    return cubes


def load_pool(
    root: Path, cube: tuple[int, int, int], subsets: Sequence[int], cubes_per_scan: int, seed: int
) -> np.ndarray:
    """Cubes ``(N, 1, Z, Y, X)`` float32 in [0, 1] from the scans of ``subsets`` under ``root``.

    Each scan draws from its own generator (seed and series UID), so a scan's cubes do not
    depend on which other scans are present.
    """
    cubes: list[np.ndarray] = []
    for path in _scan_paths(root, subsets):
        rng = np.random.default_rng([seed, zlib.crc32(path.stem.encode())])
        cubes += scan_cubes(ct_volume(path).hu, tuple(cube), cubes_per_scan, rng)
    if not cubes:
        raise UserError(
            f"{root}: no {'x'.join(map(str, cube))} (z, y, x) cube in subsets {', '.join(map(str, subsets))} "
            f"has at most {MAX_SOFT_TISSUE_FRACTION:.0%} soft tissue; the scans are too small for this cube"
        )
    return scale_ct(np.stack(cubes))[:, None]
