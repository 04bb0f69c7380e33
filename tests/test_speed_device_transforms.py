"""The batched torch corruptions of the baselines agree with their CPU versions (on CPU tensors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmark.methods._tiles import centred_offsets, grid_cells, tile_shape
from benchmark.methods.denoising import Denoising, add_noise
from benchmark.methods.inpainting import Inpainting
from benchmark.methods.jigsaw import Jigsaw
from benchmark.methods.patch_shuffling import PatchShuffling, shuffle_patches
from benchmark.methods.rubiks_cube import RubiksCubePlus, rotate
from scipy import stats

N = 300
SHAPE = (1, 8, 16, 16)


def batch_of(cube: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(cube).expand(N, *cube.shape).contiguous()


def test_denoising_noise_level_has_the_cpu_distribution():
    cube = np.full(SHAPE, 0.5, dtype=np.float32)  # far from the clipping bounds
    inputs, targets = Denoising().make_example_on_device(batch_of(cube), torch.Generator().manual_seed(0))
    assert torch.equal(targets, batch_of(cube)) and inputs.min() >= 0 and inputs.max() <= 1
    device = (inputs - targets).std(dim=(1, 2, 3, 4)).numpy()
    cpu = np.array([(add_noise(cube, np.random.default_rng(seed))[0] - cube).std() for seed in range(N)])
    assert stats.ks_2samp(device, cpu).pvalue > 1e-3
    assert device.max() < 0.11 and device.min() >= 0


def test_inpainting_device_example_is_the_cpu_one():
    cubes = np.random.default_rng(1).random((3, *SHAPE), dtype=np.float32)
    method = Inpainting()
    cpu_inputs, cpu_targets = method.make_example(cubes, np.random.default_rng(0))
    inputs, targets = method.make_example_on_device(torch.from_numpy(cubes), torch.Generator())
    torch.testing.assert_close(inputs, cpu_inputs)
    assert torch.equal(targets, cpu_targets)


def test_patch_shuffling_is_a_permutation_with_the_cpu_amount_of_change():
    cube = (np.random.default_rng(2).permutation(int(np.prod(SHAPE))) / np.prod(SHAPE)).astype(np.float32)
    cube = cube.reshape(SHAPE)
    inputs, targets = PatchShuffling().make_example_on_device(batch_of(cube), torch.Generator().manual_seed(3))
    assert torch.equal(targets, batch_of(cube))
    sorted_cube = np.sort(cube, axis=None)
    assert all(np.array_equal(np.sort(x, axis=None), sorted_cube) for x in inputs.numpy())  # values only move
    device = (inputs != targets).float().mean(dim=(1, 2, 3, 4)).numpy()
    cpu = np.array([np.mean(shuffle_patches(cube, np.random.default_rng(seed))[0] != cube) for seed in range(N)])
    assert stats.ks_2samp(device, cpu).pvalue > 1e-3


def unique_cube(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 cube of distinct values in (0, 1]: a value names the voxel it came from."""
    n = int(np.prod(shape))
    return ((np.random.default_rng(4).permutation(n) + 1) / n).astype(np.float32).reshape(shape)


def block_corner(block: np.ndarray, cube: np.ndarray) -> np.ndarray:
    """Where in ``cube`` (C, Z, Y, X) the ``block`` (C, z, y, x) was cut from, checked voxel
    by voxel; zeros in the block (masked voxels) are ignored."""
    kept = np.argwhere(block[0] != 0)[0]
    source = np.argwhere(cube[0] == block[0][tuple(kept)])[0]
    corner = source - kept
    z, y, x = corner
    tz, ty, tx = block.shape[1:]
    original = cube[:, z:z + tz, y:y + ty, x:x + tx]
    assert original.shape == block.shape
    np.testing.assert_array_equal(block[block != 0], original[block != 0])
    return corner


def offset_counts(offsets: list[np.ndarray], high: np.ndarray) -> np.ndarray:
    """Counts of each jitter offset value per axis, ``(3, max(high) + 1)``."""
    offsets_ = np.array(offsets)
    assert (offsets_ >= 0).all() and (offsets_ <= high).all()
    return np.stack([np.bincount(offsets_[:, axis], minlength=int(high.max()) + 1) for axis in range(3)])


def assert_same_counts(cpu: np.ndarray, device: np.ndarray) -> None:
    """The two rows of counts come from the same categorical distribution (chi-squared test)."""
    table = np.stack([cpu.ravel(), device.ravel()])
    table = table[:, table.sum(axis=0) > 0]
    assert stats.chi2_contingency(table).pvalue > 1e-3


def jigsaw_offsets(method: Jigsaw, inputs: np.ndarray, labels: np.ndarray, cube: np.ndarray) -> list[np.ndarray]:
    """Each placed tile's jitter offset inside its source cell, after checking the tile is a block
    of ``cube`` from the cell the permutation names, at the cell's centre, the gaps the mean."""
    starts, sizes = grid_cells(cube.shape[1:], method.grid)
    tile = tile_shape(sizes, method.gap_fraction)
    offsets = []
    for x, label in zip(inputs, labels, strict=True):
        assert x[0, -1, -1, -1] == pytest.approx(cube.mean())  # a gap voxel
        for slot, (z, y, xx) in enumerate(centred_offsets(starts, sizes, tile)):
            block = x[:, z:z + tile[0], y:y + tile[1], xx:xx + tile[2]]
            cell = method.permutations[label][slot]
            offsets.append(block_corner(block, cube) - starts[cell])
    return offsets


def test_jigsaw_device_puzzles_are_jittered_tiles_with_the_cpu_distribution():
    method = Jigsaw()
    cube = unique_cube(SHAPE)
    inputs, labels = method.make_example_on_device(batch_of(cube), torch.Generator().manual_seed(5))
    assert inputs.dtype == torch.float32 and labels.dtype == torch.int64
    assert labels.min() >= 0 and labels.max() < method.n_permutations and len(labels.unique()) > 50
    cpu_inputs, cpu_labels = method.make_example(np.stack([cube] * N), np.random.default_rng(5))
    _, sizes = grid_cells(SHAPE[1:], method.grid)
    high = sizes.min(axis=0) - tile_shape(sizes, method.gap_fraction)
    device = offset_counts(jigsaw_offsets(method, inputs.numpy(), labels.numpy(), cube), high)
    cpu = offset_counts(jigsaw_offsets(method, cpu_inputs.numpy(), cpu_labels.numpy(), cube), high)
    assert_same_counts(cpu, device)


def rubik_slots(method: RubiksCubePlus, inputs: np.ndarray, targets: np.ndarray, cube: np.ndarray) -> dict:
    """Check every slot is the named cell's tile, rotated and masked as its labels say; return the
    jitter offsets, rotation kinds (0 none, 1 horizontal, 2 vertical), mask flags and kept fractions."""
    starts, _ = grid_cells(cube.shape[1:], (2, 2, 2))
    found: dict = {"offsets": [], "rotations": [], "masked": [], "kept": []}
    for x, target in zip(inputs, targets, strict=True):
        perm = method.permutations[int(target[0])]
        horizontal, vertical, masked = target[1:].reshape(3, 8).astype(bool)
        for slot in range(8):
            sub = x[slot]
            if horizontal[slot]:
                sub = rotate(sub, "horizontal")
            elif vertical[slot]:
                sub = rotate(sub, "vertical")
            found["offsets"].append(block_corner(sub, cube) - starts[perm[slot]])
            found["rotations"].append(int(horizontal[slot]) + 2 * int(vertical[slot]))
            found["masked"].append(int(masked[slot]))
            if masked[slot]:
                found["kept"].append((sub != 0).mean())
            else:
                assert (sub != 0).all()
    return found


def test_rubik_device_sub_cubes_are_rotated_masked_tiles_with_the_cpu_distribution():
    shape = (1, 20, 20, 20)  # cells of 10, tiles of 8: no resampling, so each slot is a block of the cube
    method = RubiksCubePlus(gap_fraction=0.2)
    cube = unique_cube(shape)
    count = 150
    batch = torch.from_numpy(cube).expand(count, *shape).contiguous()
    inputs, targets = method.make_example_on_device(batch, torch.Generator().manual_seed(6))
    assert inputs.shape == (count, 8, 1, 8, 8, 8) and targets.shape == (count, 25)
    cpu_inputs, cpu_targets = method.make_example(np.stack([cube] * count), np.random.default_rng(6))
    device = rubik_slots(method, inputs.numpy(), targets.numpy(), cube)
    cpu = rubik_slots(method, cpu_inputs.numpy(), cpu_targets.numpy(), cube)
    high = np.array([2, 2, 2])
    assert_same_counts(offset_counts(cpu["offsets"], high), offset_counts(device["offsets"], high))
    assert_same_counts(np.bincount(cpu["rotations"], minlength=3), np.bincount(device["rotations"], minlength=3))
    assert_same_counts(np.bincount(cpu["masked"], minlength=2), np.bincount(device["masked"], minlength=2))
    assert np.mean(device["kept"]) == pytest.approx(0.5, abs=0.02)
    assert stats.ks_2samp(cpu["kept"], device["kept"]).pvalue > 1e-3
