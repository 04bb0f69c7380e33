"""The batched torch corruptions of the baselines agree with their CPU versions (on CPU tensors)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from methods.denoising import Denoising, add_noise
from methods.inpainting import Inpainting
from methods.patch_shuffling import PatchShuffling, shuffle_patches

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
