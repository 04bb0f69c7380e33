"""Rubik's cube (Zhuang et al., "Self-supervised Feature Learning for 3D Medical Images by
Playing a Rubik's Cube", MICCAI 2019) and Rubik's cube+ (Zhu et al., "Rubik's Cube+: A
self-supervised feature learning framework for 3D medical image analysis", Medical Image
Analysis 2020).

Pretext, per cube: split it into 2x2x2 cells; from each cell cut a sub-cube smaller than
the cell (the cell minus a gap, at a random position inside it: jitter); permute the
eight sub-cubes with one of ``n_permutations`` permutations (slot ``p`` holds the
sub-cube of cell ``perm[p]``); rotate each slot's sub-cube independently by 180 degrees
about the z axis ("horizontal": flip y and x), about the y axis ("vertical": flip z and
x) or not at all, each with probability 1/3 (as in a public implementation; the papers
give no split). Rubik's cube+ then masks each sub-cube with probability 0.5 by a
Bernoulli(0.5) voxel mask (a voxel kept with probability 0.5). A Siamese network (the
backbone's encoder, one set of weights) encodes each sub-cube; the global-average-pooled
features of the eight slots are concatenated; linear heads predict the permutation's
index (softmax, cross-entropy), which slots were rotated horizontally and which
vertically (two 8-way multi-label sigmoid outputs, BCE) and, for Rubik's cube+, which
slots were masked (8-way multi-label, BCE). Loss: the sum of the terms. Rotation and
mask labels refer to the input slots. Heads are single linear layers: a deep rotation
head is known to let the rotation task take over from the order task.

Input ``(B, 8, C, z, y, x)``; target ``(B, 17)`` (Rubik's cube) or ``(B, 25)`` (+): the
order label, then the horizontal, vertical (and mask) labels of the eight slots.
Transfers the encoder only (``backbone_state`` returns ``encoder.*`` keys); the
permutation set goes into the checkpoint extras as for jigsaw.

Sub-cube size: the encoder pools three times, so sides must be multiples of 8. The
sub-cube is the smallest cell minus a gap of ``round(gap_fraction * side)`` (at least 1)
per axis; where that side is not a multiple of 8 the cut sub-cube is resampled
(trilinear) up to the next multiple of 8 (at least 8) *(choice)*. With ``gap_fraction``
0.25: the 16x32x32 cube gives 8x16x16 cells, 6x12x12 sub-cubes resampled to 8x16x16; the
paper cube 32x64x64 gives 16x32x32 cells, 12x24x24 sub-cubes resampled to 16x24x24.

Settings: ``n_permutations`` 100, ``gap_fraction`` 0.25 *(choice)*, ``rotation_probs``
(1/3, 1/3) for (horizontal, vertical), ``mask_prob`` 0.5 and ``mask_keep`` 0.5 (+ only),
``permutation_seed`` 0. ``paper_optimizer``: Adam 1e-3 (the spec).

Departures: the papers' networks are their own 3D CNNs (3D VGG / ResNet style) with
fully connected heads; here the benchmark's encoder with single linear heads. Resampling
of non-multiple-of-8 sub-cubes is ours (the papers pick their crop sizes to fit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from benchmark.methods._common import encoder_state, pooled
from benchmark.methods._tiles import (
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

GRID = (2, 2, 2)
N_CUBES = 8
ROTATION_AXES = {"horizontal": (2, 3), "vertical": (1, 3)}  # axes of a (C, z, y, x) sub-cube flipped


def encoder_shape(tile: np.ndarray) -> tuple[int, int, int]:
    """The sub-cube shape fed to the encoder: each side rounded up to a multiple of 8 (at least 8)."""
    return tuple(int(max(8, -(-int(t) // 8) * 8)) for t in tile)  # type: ignore[return-value]


def resample(tiles: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Trilinear resampling of ``(n, C, z, y, x)`` tiles to ``shape`` (a no-op when equal)."""
    if tuple(tiles.shape[2:]) == tuple(shape):
        return tiles
    return resample_tensor(torch.from_numpy(np.ascontiguousarray(tiles)), shape).numpy()


def resample_tensor(tiles: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """``resample`` for tiles ``(..., C, z, y, x)`` on any device (the leading axes are kept)."""
    if tuple(tiles.shape[-3:]) == tuple(shape):
        return tiles
    resized = nn.functional.interpolate(tiles.flatten(0, -5), size=shape, mode="trilinear", align_corners=False)
    return resized.unflatten(0, tiles.shape[:-4])


def rotate(sub_cube: np.ndarray, kind: str) -> np.ndarray:
    """180-degree rotation of a ``(C, z, y, x)`` sub-cube: ``horizontal`` about z, ``vertical`` about y."""
    return np.flip(sub_cube, axis=ROTATION_AXES[kind])


def rubik_example(
    cube: np.ndarray, permutation: np.ndarray, rng: np.random.Generator, gap_fraction: float = 0.25,
    rotation_probs: tuple[float, float] = (1 / 3, 1 / 3), mask_prob: float = 0.0, mask_keep: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """One example from a ``(C, Z, Y, X)`` cube: ``(sub_cubes (8, C, z, y, x), labels)``.

    ``labels`` = 8 horizontal-rotation flags, 8 vertical-rotation flags, 8 mask flags, per slot.
    """
    cube = np.asarray(cube, dtype=np.float32)
    starts, sizes = grid_cells(cube.shape[1:], GRID)
    tile = tile_shape(sizes, gap_fraction)
    tiles = resample(cut_tiles(cube, starts, sizes, tile, rng), encoder_shape(tile))
    slots = tiles[np.asarray(permutation)]
    draw = rng.random(N_CUBES)
    horizontal = draw < rotation_probs[0]
    vertical = (draw >= rotation_probs[0]) & (draw < rotation_probs[0] + rotation_probs[1])
    masked = rng.random(N_CUBES) < mask_prob
    out = []
    for slot in range(N_CUBES):
        sub = slots[slot]
        if horizontal[slot]:
            sub = rotate(sub, "horizontal")
        elif vertical[slot]:
            sub = rotate(sub, "vertical")
        if masked[slot]:
            sub = sub * (rng.random(sub.shape[1:]) < mask_keep).astype(np.float32)
        out.append(sub)
    labels = np.concatenate([horizontal, vertical, masked]).astype(np.float32)
    return np.stack(out).astype(np.float32), labels


def rubik_batch(
    cubes: torch.Tensor, permutations: torch.Tensor, generator: torch.Generator, gap_fraction: float = 0.25,
    rotation_probs: tuple[float, float] = (1 / 3, 1 / 3), mask_prob: float = 0.0, mask_keep: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rubik_example`` for a batch ``(B, C, Z, Y, X)`` on its device, cube ``b`` permuted by
    ``permutations[b]``: ``(sub_cubes (B, 8, C, z, y, x), labels (B, 24))``, drawn from the
    same distributions."""
    cubes = cubes.float()
    starts, sizes = grid_cells(tuple(cubes.shape[2:]), GRID)
    tile = tile_shape(sizes, gap_fraction)
    tiles = resample_tensor(cut_tiles_batch(cubes, starts, sizes, tile, generator), encoder_shape(tile))
    slots = tiles[torch.arange(len(cubes), device=cubes.device)[:, None], permutations]
    draw = torch.rand(slots.shape[:2], generator=generator, device=cubes.device)
    horizontal = draw < rotation_probs[0]
    vertical = (draw >= rotation_probs[0]) & (draw < rotation_probs[0] + rotation_probs[1])
    for kind, chosen in (("horizontal", horizontal), ("vertical", vertical)):
        flipped = slots.flip([axis + 2 for axis in ROTATION_AXES[kind]])  # (C, z, y, x) axes -> (B, 8, ...)
        slots = torch.where(chosen[:, :, None, None, None, None], flipped, slots)
    masked = torch.rand(slots.shape[:2], generator=generator, device=cubes.device) < mask_prob
    if mask_prob > 0:
        keep = torch.rand((*slots.shape[:2], 1, *slots.shape[3:]), generator=generator, device=cubes.device)
        slots = torch.where(masked[:, :, None, None, None, None], slots * (keep < mask_keep), slots)
    return slots, torch.cat([horizontal, vertical, masked], dim=1).float()


class SiameseCubes(nn.Module):
    """One encoder over each of the 8 sub-cubes, pooled features concatenated, linear heads.

    Returns the logits concatenated: order (K), horizontal (8), vertical (8)[, mask (8)].
    """

    def __init__(self, encoder: nn.Module, n_permutations: int, masking: bool) -> None:
        super().__init__()
        self.encoder = encoder
        features = N_CUBES * self.encoder.out_channels
        self.order = nn.Linear(features, n_permutations)
        self.horizontal = nn.Linear(features, N_CUBES)
        self.vertical = nn.Linear(features, N_CUBES)
        self.mask = nn.Linear(features, N_CUBES) if masking else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, n = x.shape[:2]
        features = pooled(self.encoder(x.flatten(0, 1))[1]).reshape(batch, n * self.encoder.out_channels)
        heads = [self.order, self.horizontal, self.vertical] + ([self.mask] if self.mask is not None else [])
        return torch.cat([head(features) for head in heads], dim=1)


class RubiksCubeBase(Method):
    transfers = "encoder"
    masking: bool = False
    mask_prob: float = 0.0  # no sub-cube is masked; Rubik's cube+ sets both as settings
    mask_keep: float = 0.5

    def __init__(
        self, n_permutations: int = 100, gap_fraction: float = 0.25,
        rotation_probs: tuple[float, float] = (1 / 3, 1 / 3), permutation_seed: int = 0,
    ) -> None:
        if rotation_probs[0] < 0 or rotation_probs[1] < 0 or sum(rotation_probs) > 1:
            raise ValueError(f"rotation_probs must be two non-negative probabilities summing to <= 1, "
                             f"got {rotation_probs}")
        self.gap_fraction = check_gap_fraction(gap_fraction)
        self.rotation_probs = (float(rotation_probs[0]), float(rotation_probs[1]))
        self.permutation_seed = permutation_seed
        self.permutations = permutation_set(N_CUBES, n_permutations, permutation_seed)
        self.n_permutations = len(self.permutations)

    def build_pretext_model(self, backbone: Backbone, in_channels: int, width: int) -> nn.Module:
        return SiameseCubes(backbone.build_encoder(in_channels, width), self.n_permutations, self.masking)

    def make_example(
        self, cubes: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        orders = rng.integers(0, self.n_permutations, size=len(cubes))
        inputs, targets = [], []
        for cube, order in zip(cubes, orders, strict=True):
            sub_cubes, labels = rubik_example(cube, self.permutations[order], rng, self.gap_fraction,
                                              self.rotation_probs, self.mask_prob, self.mask_keep)
            inputs.append(sub_cubes)
            kept = labels if self.masking else labels[:2 * N_CUBES]
            targets.append(np.concatenate([[np.float32(order)], kept]))
        return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets).astype(np.float32))

    def make_example_on_device(
        self, cubes: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        orders, permutations = random_permutations(self.permutations, len(cubes), generator, cubes.device)
        sub_cubes, labels = rubik_batch(cubes, permutations, generator, self.gap_fraction, self.rotation_probs,
                                        self.mask_prob, self.mask_keep)
        kept = labels if self.masking else labels[:, :2 * N_CUBES]
        return sub_cubes, torch.cat([orders[:, None].float(), kept], dim=1)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = self.n_permutations
        order = nn.functional.cross_entropy(output[:, :k], target[:, 0].long())
        multi_label = nn.functional.binary_cross_entropy_with_logits
        terms = [multi_label(output[:, k + i:k + i + N_CUBES], target[:, 1 + i:1 + i + N_CUBES])
                 for i in range(0, output.shape[1] - k, N_CUBES)]
        return order + sum(terms)

    def backbone_state(self, pretext_model: nn.Module) -> dict[str, torch.Tensor]:
        return encoder_state(pretext_model)

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"permutations": torch.from_numpy(self.permutations.copy())}


@METHODS.register
class RubiksCube(RubiksCubeBase):
    name = "rubiks-cube"
    description = "Rubik's cube: predict sub-cube order and 180-degree rotations (Zhuang et al. 2019)"


@METHODS.register
class RubiksCubePlus(RubiksCubeBase):
    name = "rubiks-cube-plus"
    description = "Rubik's cube+: order, rotations and masked sub-cubes (Zhu et al. 2020)"
    masking = True

    def __init__(
        self, n_permutations: int = 100, gap_fraction: float = 0.25,
        rotation_probs: tuple[float, float] = (1 / 3, 1 / 3), mask_prob: float = 0.5, mask_keep: float = 0.5,
        permutation_seed: int = 0,
    ) -> None:
        super().__init__(n_permutations, gap_fraction, rotation_probs, permutation_seed)
        for name, value in (("mask_prob", mask_prob), ("mask_keep", mask_keep)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.mask_prob, self.mask_keep = mask_prob, mask_keep
