"""Jigsaw puzzles (Noroozi & Favaro, "Unsupervised Learning of Visual Representations by
Solving Jigsaw Puzzles", ECCV 2016), in 3D.

Pretext: the cube is split into a ``grid`` of cells (2x2x2 by default); from each cell a
tile smaller than the cell (the cell minus a gap) is cut at a random position inside the
cell (jitter); the tiles are put back at the cell centres in a permuted order, chosen
from a fixed set of ``n_permutations`` permutations; the rest of the cube (the gaps) is
filled with the cube's mean per channel *(choice: a neutral value that draws no edge at
the cell borders' own intensity; 0 would be air in CT)*. Slot ``p`` of the input holds
the tile cut from cell ``perm[p]``, so ``tiles[argsort(perm)]`` restores the original
order. The pretext model is the backbone's encoder and one linear layer on its global
average pooled bottleneck, predicting the permutation's index; cross-entropy.
Transfers the encoder only (``backbone_state`` returns ``encoder.*`` keys).

Permutation set: greedy maximal mean Hamming distance over all 8! permutations (start
from one random permutation, add the candidate farthest on average from the chosen set,
ties broken at random), deterministic given ``permutation_seed``; for grids of more than
9 cells (3x3x3) random distinct permutations. ``n_permutations`` is clipped to the
number of permutations available. The set is stored in the checkpoint extras
(``{"permutations": LongTensor (K, n_cells)}``).

Settings: ``grid`` (2, 2, 2), ``n_permutations`` 100 *(choice)*, ``gap_fraction`` 0.15
(the paper cuts 64 px tiles from 75 px cells, a gap of 11/75 ~ 0.15; the tile is the
smallest cell minus ``round(0.15 * side)`` voxels, at least 1), ``permutation_seed`` 0.

Departures: the paper's context-free network processes each tile separately (a Siamese
AlexNet) and concatenates; here the reassembled cube goes through the backbone's encoder
as a whole, so the transferred encoder is trained on full-size inputs. The paper's
per-tile normalisation of mean and standard deviation (against shortcuts from colour
statistics) is not applied: CT intensities are calibrated and the target tasks use them.
``paper_optimizer``: Adam 1e-3 (the spec; the paper's Caffe SGD schedule is not reused).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from benchmark.methods._common import EncoderClassifier, encoder_state
from benchmark.methods._tiles import (
    centred_offsets,
    check_gap_fraction,
    cut_tiles,
    cut_tiles_batch,
    grid_cells,
    permutation_set,
    random_permutations,
    tile_shape,
)
from torch import nn

from benchmark.api.backbone import Backbone
from benchmark.api.method import Method
from benchmark.api.registry import METHODS

Shape3 = tuple[int, int, int]


def jigsaw_puzzle(
    cube: np.ndarray, permutation: np.ndarray, rng: np.random.Generator, grid: Shape3 = (2, 2, 2),
    gap_fraction: float = 0.15,
) -> np.ndarray:
    """Cut jittered tiles from the cells of a ``(C, Z, Y, X)`` cube and place tile ``permutation[p]``
    at the centre of cell ``p``; the gaps hold the cube's mean per channel. float32, same shape."""
    cube = np.asarray(cube, dtype=np.float32)
    starts, sizes = grid_cells(cube.shape[1:], grid)
    tile = tile_shape(sizes, gap_fraction)
    tiles = cut_tiles(cube, starts, sizes, tile, rng)
    out = np.empty_like(cube)
    out[:] = cube.reshape(cube.shape[0], -1).mean(axis=1)[:, None, None, None]
    tz, ty, tx = (int(t) for t in tile)
    for slot, (z, y, x) in enumerate(centred_offsets(starts, sizes, tile)):
        out[:, z:z + tz, y:y + ty, x:x + tx] = tiles[permutation[slot]]
    return out


def jigsaw_batch(
    cubes: torch.Tensor, permutations: torch.Tensor, generator: torch.Generator, grid: Shape3 = (2, 2, 2),
    gap_fraction: float = 0.15,
) -> torch.Tensor:
    """``jigsaw_puzzle`` for a batch ``(B, C, Z, Y, X)`` on its device, cube ``b`` shuffled by
    ``permutations[b]`` (``(B, n_cells)``); each cube's tiles get their own offsets."""
    cubes = cubes.float()
    starts, sizes = grid_cells(tuple(cubes.shape[2:]), grid)
    tile = tile_shape(sizes, gap_fraction)
    tiles = cut_tiles_batch(cubes, starts, sizes, tile, generator)
    out = cubes.mean(dim=(2, 3, 4), keepdim=True).expand_as(cubes).clone()
    batch = torch.arange(len(cubes), device=cubes.device)
    tz, ty, tx = (int(t) for t in tile)
    for slot, (z, y, x) in enumerate(centred_offsets(starts, sizes, tile)):
        out[:, :, z:z + tz, y:y + ty, x:x + tx] = tiles[batch, permutations[:, slot]]
    return out


@METHODS.register
class Jigsaw(Method):
    name = "jigsaw"
    description = "Classify which permutation shuffled a 2x2x2 grid of sub-cubes (Noroozi & Favaro 2016, 3D)"
    transfers = "encoder"

    def __init__(
        self, grid: Shape3 = (2, 2, 2), n_permutations: int = 100, gap_fraction: float = 0.15,
        permutation_seed: int = 0,
    ) -> None:
        self.grid = tuple(int(g) for g in grid)
        if len(self.grid) != 3 or min(self.grid) < 1 or np.prod(self.grid) < 2:
            raise ValueError(f"grid must be three positive sides with at least 2 cells, got {grid}")
        self.gap_fraction = check_gap_fraction(gap_fraction)
        self.permutation_seed = permutation_seed
        self.permutations = permutation_set(int(np.prod(self.grid)), n_permutations, permutation_seed)
        self.n_permutations = len(self.permutations)

    def build_pretext_model(self, backbone: Backbone, in_channels: int, width: int) -> nn.Module:
        return EncoderClassifier(backbone.build_encoder(in_channels, width), self.n_permutations)

    def make_example(
        self, cubes: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels = rng.integers(0, self.n_permutations, size=len(cubes))
        inputs = np.stack([
            jigsaw_puzzle(cube, self.permutations[label], rng, self.grid, self.gap_fraction)
            for cube, label in zip(cubes, labels, strict=True)
        ])
        return torch.from_numpy(inputs), torch.from_numpy(labels.astype(np.int64))

    def make_example_on_device(
        self, cubes: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labels, permutations = random_permutations(self.permutations, len(cubes), generator, cubes.device)
        return jigsaw_batch(cubes, permutations, generator, self.grid, self.gap_fraction), labels

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(output, target)

    def backbone_state(self, pretext_model: nn.Module) -> dict[str, torch.Tensor]:
        return encoder_state(pretext_model)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"permutations": torch.from_numpy(self.permutations.copy())}
