"""Pretraining batches: on the host through a torch ``DataLoader`` (worker processes, pinned
memory), or made directly on the training device by the method's batched transforms.

Every batch is a function of ``(seed, stream, epoch, step, rank)`` alone: its generator is
seeded from those numbers, never drawn from a stream shared by the batches. So the
batches are the same whatever the number of worker processes and in whatever order the
workers finish, and data-parallel ranks draw disjoint streams.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmark.api.method import Method

TRAIN_STREAM, VALIDATION_STREAM, EPOCH_STREAM = 0, 1, 2
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
Batch = tuple[torch.Tensor, torch.Tensor]


def batch_key(seed: int, stream: int, epoch: int, step: int, rank: int) -> list[int]:
    return [seed, stream, epoch, step, rank]


def batch_rng(seed: int, stream: int, epoch: int, step: int, rank: int = 0) -> np.random.Generator:
    return np.random.default_rng(batch_key(seed, stream, epoch, step, rank))


def batch_generator(
    seed: int, stream: int, epoch: int, step: int, rank: int, device: torch.device
) -> torch.Generator:
    """A torch generator on ``device`` seeded from the batch key."""
    state = np.random.SeedSequence(batch_key(seed, stream, epoch, step, rank)).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) >> 1)


class PretextBatches(Dataset):
    """Item ``step``: the method's pretext batch ``(inputs, targets)`` for that step."""

    def __init__(self, method: Method, pool: np.ndarray, batch_size: int, steps: int, seed: int, stream: int,
                 epoch: int, rank: int) -> None:
        self.method, self.pool, self.batch_size, self.steps = method, pool, batch_size, steps
        self.key = (seed, stream, epoch)
        self.rank = rank

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> Batch:
        seed, stream, epoch = self.key
        return self.method.sample_batch(self.pool, self.batch_size, batch_rng(seed, stream, epoch, step, self.rank))


def keep_freed_memory() -> None:
    """Ask glibc's allocator to keep freed memory for reuse rather than hand it back to the system.

    The fast transforms allocate and free arrays of about a megabyte several times per
    cube; by default glibc returns them to the system at once, and the next allocation pays
    a page fault per 4 kB page: about 40% of the Genesis transforms' time. Freed memory is
    kept up to 256 MB. Nothing happens where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # glibc's maximum
    libc.mallopt(M_TRIM_THRESHOLD, 256 * 2**20)


def _one_thread_per_worker(_worker: int) -> None:
    torch.set_num_threads(1)  # the workers share the cores with the training step
    keep_freed_memory()


def host_batches(
    method: Method, pool: np.ndarray, batch_size: int, steps: int, seed: int, stream: int, epoch: int,
    rank: int = 0, workers: int = 0, pin_memory: bool = False,
) -> DataLoader:
    """The batches of one epoch from ``workers`` processes (0: in this process), in step order.

    A new loader per epoch, so its workers start from the method's state after
    ``on_epoch_start`` and ``prepare_pool`` (DeepCluster's pseudo-labels), both run here."""
    method.prepare_pool(pool)
    dataset = PretextBatches(method, pool, batch_size, steps, seed, stream, epoch, rank)
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin_memory,
                      worker_init_fn=_one_thread_per_worker if workers else None)


def device_batches(
    method: Method, pool: torch.Tensor, batch_size: int, steps: int, seed: int, stream: int, epoch: int,
    rank: int = 0,
) -> Iterator[Batch]:
    """The batches of one epoch made on the pool's device by the method's batched transforms."""
    for step in range(steps):
        generator = batch_generator(seed, stream, epoch, step, rank, pool.device)
        yield method.sample_batch_on_device(pool, batch_size, generator)
