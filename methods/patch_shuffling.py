"""Patch shuffling: context restoration (Chen et al., "Self-supervised learning for medical
image analysis using image context restoration", Medical Image Analysis 2019), in 3D.

Pretext: ``T`` times, pick two non-overlapping boxes of the same size and swap their
contents; restore the original cube with MSE (or MAE or 1 - SSIM: setting ``loss``) on the sigmoid
output (``restoration_loss``). The corruption is a permutation of the voxels: the
intensity histogram is preserved exactly, so only the spatial context tells what was
moved. Transfers the encoder and the decoder.

Settings *(choices; the paper works on 2D images and uses patches of 8-16 px)*:
``swaps`` = (10, 20): T drawn uniformly in [10, 20] per cube; ``patch_fraction`` =
(1/8, 1/4): each swap draws a side per axis uniformly in
``[round(dim / 8), round(dim / 4)]`` (at least 1), so 4-8 x 8-16 x 8-16 voxels on the
paper's 32x64x64 cube (the paper's 8-16, along the thin axis scaled to its extent) and
2-4 x 4-8 x 4-8 on the 16x32x32 cube. The second box of a pair is drawn uniformly among
the positions that do not overlap the first (rejection sampling: exact). Swaps are
applied in sequence: a later pair may overlap an earlier one (as in the paper); the two
boxes of one pair never overlap (one public implementation lets them: not here).

Departures: the paper's network is a 2D encoder-decoder; here the shared 3D U-Net.
``paper_optimizer`` is the Genesis one (SGD 1.0, momentum 0.9, plateau schedule), as
for the other restoration methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from benchmark.methods._common import genesis_sgd, uniform_integers

from benchmark.api.method import Method, check_restoration_loss, restoration_loss
from benchmark.api.registry import METHODS

Shape3 = tuple[int, int, int]
Swap = tuple[np.ndarray, np.ndarray, np.ndarray]  # (start of box a, start of box b, common size)

MAX_TRIES = 10_000


def boxes_overlap(a: np.ndarray, b: np.ndarray, size: np.ndarray) -> bool:
    """Whether two boxes of side ``size`` starting at ``a`` and ``b`` share a voxel."""
    return bool(np.all(np.abs(np.asarray(a) - np.asarray(b)) < np.asarray(size)))


def patch_side_range(
    spatial_shape: Shape3, patch_fraction: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Inclusive side range per axis ``[round(dim * lo), round(dim * hi)]``, in [1, max(dim // 2, 1)]."""
    shape = np.asarray(spatial_shape, dtype=np.int64)
    high = np.clip(np.round(shape * patch_fraction[1]).astype(np.int64), 1, np.maximum(shape // 2, 1))
    low = np.clip(np.round(shape * patch_fraction[0]).astype(np.int64), 1, high)
    return low, high


def draw_swap(
    spatial_shape: Shape3, rng: np.random.Generator, low: np.ndarray, high: np.ndarray
) -> Swap:
    """One pair of non-overlapping boxes of a common random size."""
    shape = np.asarray(spatial_shape, dtype=np.int64)
    size = rng.integers(low, high + 1)
    a = rng.integers(0, shape - size + 1)
    for _ in range(MAX_TRIES):
        b = rng.integers(0, shape - size + 1)
        if not boxes_overlap(a, b, size):
            return a, b, size
    raise RuntimeError(f"no room for two disjoint {tuple(size)} boxes in a {tuple(spatial_shape)} cube")


def shuffle_patches(
    cube: np.ndarray, rng: np.random.Generator, swaps: tuple[int, int] = (10, 20),
    patch_fraction: tuple[float, float] = (1 / 8, 1 / 4),
) -> tuple[np.ndarray, list[Swap]]:
    """Swap ``T ~ U{swaps}`` pairs of same-size non-overlapping boxes in a ``(C, Z, Y, X)`` cube.

    Returns ``(shuffled, pairs)`` with the pairs in the order applied; float32, a new array.
    """
    out = np.array(cube, dtype=np.float32, copy=True)
    low, high = patch_side_range(out.shape[1:], patch_fraction)
    count = int(rng.integers(swaps[0], swaps[1] + 1))
    pairs = [draw_swap(out.shape[1:], rng, low, high) for _ in range(count)]
    for a, b, size in pairs:
        box_a = (slice(None), *(slice(int(s), int(s + n)) for s, n in zip(a, size, strict=True)))
        box_b = (slice(None), *(slice(int(s), int(s + n)) for s, n in zip(b, size, strict=True)))
        out[box_a], out[box_b] = out[box_b].copy(), out[box_a].copy()
    return out, pairs


def draw_swaps_batch(
    spatial_shape: Shape3, batch: int, generator: torch.Generator, device: torch.device,
    low: np.ndarray, high: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pair of same-size non-overlapping boxes per cube: ``(a, b, size)``, each ``(B, 3)``;
    ``b`` by rejection sampling, as ``draw_swap``."""
    shape = torch.tensor(spatial_shape, device=device)
    size = uniform_integers(torch.tensor(low, device=device).expand(batch, 3),
                             torch.tensor(high, device=device).expand(batch, 3), generator)
    zero = torch.zeros_like(size)
    a = uniform_integers(zero, shape - size, generator)
    b = torch.empty_like(a)
    todo = torch.ones(batch, dtype=torch.bool, device=device)
    for _ in range(MAX_TRIES):
        candidate = uniform_integers(zero, shape - size, generator)
        fits = todo & ((a - candidate).abs() >= size).any(dim=1)
        b[fits] = candidate[fits]
        todo &= ~fits
        if not todo.any():
            return a, b, size
    raise RuntimeError(f"no room for two disjoint boxes of the drawn sizes in a {tuple(spatial_shape)} cube")


def shuffle_patches_batch(
    cubes: torch.Tensor, generator: torch.Generator, swaps: tuple[int, int] = (10, 20),
    patch_fraction: tuple[float, float] = (1 / 8, 1 / 4),
) -> torch.Tensor:
    """``shuffle_patches`` for a batch ``(B, C, Z, Y, X)`` on its device: per cube ``T ~ U{swaps}``
    swaps applied in sequence; swap ``t`` of all cubes at once. Returns a new float32 tensor."""
    batch, channels = cubes.shape[:2]
    spatial = tuple(int(d) for d in cubes.shape[2:])
    device = cubes.device
    low, high = patch_side_range(spatial, patch_fraction)
    n_voxels = int(np.prod(spatial))
    flat = torch.cat([cubes.float().reshape(batch, channels, n_voxels),
                      torch.zeros(batch, channels, 1, device=device)], dim=2)  # the last voxel: a dump slot
    count = uniform_integers(torch.full((batch,), swaps[0], device=device),
                              torch.full((batch,), swaps[1], device=device), generator)
    offsets = torch.stack(torch.meshgrid(*(torch.arange(int(h), device=device) for h in high), indexing="ij"),
                          dim=-1).reshape(-1, 3)  # every offset of the largest box
    strides = torch.tensor([spatial[1] * spatial[2], spatial[2], 1], device=device)
    for t in range(swaps[1]):
        a, b, size = draw_swaps_batch(spatial, batch, generator, device, low, high)
        used = (offsets[None] < size[:, None]).all(dim=2) & (t < count)[:, None]  # (B, O)
        index_a = torch.where(used, ((a[:, None] + offsets[None]) * strides).sum(dim=2), n_voxels)
        index_b = torch.where(used, ((b[:, None] + offsets[None]) * strides).sum(dim=2), n_voxels)
        index_a, index_b = (i[:, None].expand(batch, channels, -1) for i in (index_a, index_b))
        values_a, values_b = flat.gather(2, index_a), flat.gather(2, index_b)
        flat.scatter_(2, index_a, values_b)
        flat.scatter_(2, index_b, values_a)
    return flat[:, :, :n_voxels].reshape(cubes.shape)


@METHODS.register
class PatchShuffling(Method):
    name = "patch-shuffling"
    description = "Context restoration: restore cubes whose patch pairs were swapped (Chen et al. 2019)"
    transfers = "encoder+decoder"

    def __init__(
        self, swaps: tuple[int, int] = (10, 20), patch_fraction: tuple[float, float] = (1 / 8, 1 / 4),
        loss: str = "mse",
    ) -> None:
        if not 0 <= swaps[0] <= swaps[1]:
            raise ValueError(f"swaps must be (low, high) with 0 <= low <= high, got {swaps}")
        if not 0.0 < patch_fraction[0] <= patch_fraction[1] <= 0.5:
            raise ValueError(f"need 0 < patch_fraction[0] <= patch_fraction[1] <= 0.5, got {patch_fraction}")
        self.swaps = (int(swaps[0]), int(swaps[1]))
        self.patch_fraction = (float(patch_fraction[0]), float(patch_fraction[1]))
        self.loss_name = check_restoration_loss(loss)

    def make_example(
        self, cubes: np.ndarray, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        targets = np.ascontiguousarray(cubes, dtype=np.float32)
        inputs = np.stack([shuffle_patches(cube, rng, self.swaps, self.patch_fraction)[0]
                           for cube in targets])
        return torch.from_numpy(inputs), torch.from_numpy(targets.copy())

    def make_example_on_device(
        self, cubes: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return shuffle_patches_batch(cubes, generator, self.swaps, self.patch_fraction), cubes.float().clone()

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return restoration_loss(output, target, self.loss_name)

    def paper_optimizer(
        self, parameters: Any
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau | None]:
        return genesis_sgd(parameters)

    def settings(self) -> dict[str, Any]:
        return {"swaps": self.swaps, "patch_fraction": self.patch_fraction, "loss": self.loss_name}
