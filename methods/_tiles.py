"""Puzzle helpers of the jigsaw and Rubik's cube methods (not a plugin: the registry skips ``_`` modules).

* Puzzle geometry: ``grid_cells`` splits a cube into a grid of cells, ``tile_shape`` is the
  common tile size (cell minus a gap), ``cut_tiles`` cuts one tile per cell at a random
  position inside the cell (jitter); ``cut_tiles_batch`` does it for a batch of tensors on
  their device.
* Permutation sets: ``permutation_set`` (greedy maximal mean Hamming distance, Noroozi &
  Favaro 2016), ``mean_hamming``, and ``random_permutations``, batched draws from a set on
  the device.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
from benchmark.methods._common import uniform_integers

Shape3 = tuple[int, int, int]

# exhaustive greedy selection up to 9 items (9! = 362,880 candidates); random sets above
EXHAUSTIVE_MAX_ITEMS = 9


# --------------------------------------------------------------- puzzle geometry


def grid_cells(spatial_shape: Shape3, grid: Shape3) -> tuple[np.ndarray, np.ndarray]:
    """Cells of a ``grid`` over a cube: ``(starts, sizes)``, each ``(n_cells, 3)`` int64.

    Cell edges along an axis are ``floor(i * dim / g)``; cells are numbered in C order
    (z slowest, x fastest): cell ``(iz, iy, ix)`` is number ``(iz * gy + iy) * gx + ix``.
    """
    shape, grid_ = np.asarray(spatial_shape), np.asarray(grid)
    if np.any(grid_ < 1) or np.any(grid_ > shape):
        raise ValueError(f"grid {tuple(grid)} does not fit a cube of shape {tuple(spatial_shape)}")
    edges = [np.arange(g + 1) * d // g for d, g in zip(shape, grid_, strict=True)]
    starts, sizes = [], []
    for index in itertools.product(*(range(g) for g in grid_)):
        starts.append([e[i] for e, i in zip(edges, index, strict=True)])
        sizes.append([e[i + 1] - e[i] for e, i in zip(edges, index, strict=True)])
    return np.array(starts, dtype=np.int64), np.array(sizes, dtype=np.int64)


def check_gap_fraction(gap_fraction: float) -> float:
    """``gap_fraction`` if it is in [0, 1), else a ValueError (a constructor's check)."""
    if not 0.0 <= gap_fraction < 1.0:
        raise ValueError(f"gap_fraction must be in [0, 1), got {gap_fraction}")
    return gap_fraction


def tile_shape(cell_sizes: np.ndarray, gap_fraction: float) -> np.ndarray:
    """The tile side per axis: the smallest cell side minus a gap of ``round(side * gap_fraction)``
    voxels (at least 1 when ``gap_fraction > 0``), and at least 1 voxel."""
    check_gap_fraction(gap_fraction)
    smallest = cell_sizes.min(axis=0)
    gap = np.round(smallest * gap_fraction).astype(np.int64)
    if gap_fraction > 0:
        gap = np.maximum(gap, 1)
    return np.maximum(smallest - gap, 1)


def cut_tiles(
    cube: np.ndarray, starts: np.ndarray, sizes: np.ndarray, tile: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One ``tile``-sized sub-cube per cell of a ``(C, Z, Y, X)`` cube, each at a uniform random
    offset inside its cell (jitter). Returns ``(n_cells, C, tz, ty, tx)``."""
    offsets = starts + rng.integers(0, sizes - tile + 1)
    tz, ty, tx = (int(t) for t in tile)
    return np.stack([cube[:, z:z + tz, y:y + ty, x:x + tx] for z, y, x in offsets])


def cut_tiles_batch(
    cubes: torch.Tensor, starts: np.ndarray, sizes: np.ndarray, tile: np.ndarray, generator: torch.Generator
) -> torch.Tensor:
    """``cut_tiles`` for a batch ``(B, C, Z, Y, X)`` on its device: every cube's cells get
    their own uniform offsets. Returns ``(B, n_cells, C, tz, ty, tx)``."""
    low = torch.as_tensor(starts, device=cubes.device).expand(len(cubes), *starts.shape)
    offsets = uniform_integers(low, low + torch.as_tensor(sizes - tile, device=cubes.device), generator)
    z, y, x = (offsets[..., axis, None] + torch.arange(int(side), device=cubes.device)
               for axis, side in enumerate(tile))
    batch = torch.arange(len(cubes), device=cubes.device)[:, None, None, None, None]
    channels_last = cubes.permute(0, 2, 3, 4, 1)
    tiles = channels_last[batch, z[..., :, None, None], y[..., None, :, None], x[..., None, None, :]]
    return tiles.permute(0, 1, 5, 2, 3, 4)


def centred_offsets(starts: np.ndarray, sizes: np.ndarray, tile: np.ndarray) -> np.ndarray:
    """Where a tile sits when placed at the centre of each cell: ``(n_cells, 3)``."""
    return starts + (sizes - tile) // 2


# ------------------------------------------------------------- permutation sets


@functools.lru_cache(maxsize=4)
def _all_permutations(n_items: int) -> np.ndarray:
    return np.array(list(itertools.permutations(range(n_items))), dtype=np.int8)


def _greedy_max_hamming(candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Start from one random candidate; repeatedly add the candidate with the largest total
    (equivalently mean) Hamming distance to those chosen, ties broken at random."""
    total = np.zeros(len(candidates), dtype=np.int64)
    free = np.ones(len(candidates), dtype=bool)
    chosen = [int(rng.integers(len(candidates)))]
    for _ in range(k - 1):
        free[chosen[-1]] = False
        total += (candidates != candidates[chosen[-1]]).sum(axis=1)
        score = np.where(free, total, -1)
        chosen.append(int(rng.choice(np.flatnonzero(score == score.max()))))
    return candidates[chosen].astype(np.int64)


def _random_distinct(n_items: int, k: int, rng: np.random.Generator) -> np.ndarray:
    seen: set[bytes] = set()
    out = []
    while len(out) < k:
        perm = rng.permutation(n_items)
        if perm.tobytes() not in seen:
            seen.add(perm.tobytes())
            out.append(perm)
    return np.stack(out).astype(np.int64)


@functools.lru_cache(maxsize=16)
def _permutation_set(n_items: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if n_items <= EXHAUSTIVE_MAX_ITEMS:
        candidates = _all_permutations(n_items)
        result = _greedy_max_hamming(candidates, min(k, len(candidates)), rng)
    else:  # n! candidates cannot be enumerated; random permutations are nearly maximally distant
        result = _random_distinct(n_items, k, rng)
    result.setflags(write=False)
    return result


def permutation_set(n_items: int, k: int, seed: int = 0) -> np.ndarray:
    """``K`` distinct permutations of ``n_items`` as a read-only ``(K, n_items)`` int64 array.

    Up to ``EXHAUSTIVE_MAX_ITEMS`` items: greedy maximal mean Hamming distance over all
    ``n_items!`` permutations (Noroozi & Favaro 2016), ``K`` clipped to ``n_items!``.
    Above: random distinct permutations. Deterministic given ``seed``.
    """
    if n_items < 1 or k < 1:
        raise ValueError(f"need n_items >= 1 and k >= 1, got {n_items}, {k}")
    return _permutation_set(int(n_items), int(k), int(seed))


def mean_hamming(permutations: np.ndarray) -> float:
    """Mean pairwise Hamming distance of a set of permutations (rows)."""
    distances = (permutations[:, None, :] != permutations[None, :, :]).sum(axis=2)
    n = len(permutations)
    return float(distances.sum() / (n * (n - 1))) if n > 1 else 0.0


def random_permutations(
    permutations: np.ndarray, count: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` uniform draws from a permutation set, on ``device``: ``(indices (count,),
    permutations (count, n_items))``; the batched counterpart of ``rng.integers(0, K, count)``."""
    indices = torch.randint(0, len(permutations), (count,), generator=generator, device=device)
    return indices, torch.tensor(permutations, device=device)[indices]
