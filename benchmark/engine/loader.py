"""Training batches: on the host through a torch ``DataLoader`` (worker processes, pinned
memory), for pretraining and fine-tuning alike, or made directly on the training device by a
pretraining method's batched transforms.

Every batch is a function of ``(seed, stream, epoch, step, rank)`` alone: its generator is
seeded from those numbers, never drawn from a stream shared by the batches. So the
batches are the same whatever the number of worker processes and in whatever order the
workers finish, and data-parallel ranks draw disjoint streams.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmark.api.method import Method
from benchmark.api.task import Case, Task

TRAIN_STREAM, VALIDATION_STREAM, EPOCH_STREAM, FINETUNE_STREAM = 0, 1, 2, 3
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


class KeyedBatches(Dataset):
    """Item ``step``: ``sample(rng)`` with the generator of the batch key ``(seed, stream, epoch, step, rank)``."""

    def __init__(self, sample: Callable[[np.random.Generator], Batch], steps: int, seed: int, stream: int,
                 epoch: int, rank: int) -> None:
        self.sample, self.steps = sample, steps
        self.key = (seed, stream, epoch, rank)

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> Batch:
        seed, stream, epoch, rank = self.key
        return self.sample(batch_rng(seed, stream, epoch, step, rank))


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


def loader(dataset: Dataset, workers: int, pin_memory: bool) -> DataLoader:
    """The batches of ``dataset`` in step order, made by ``workers`` processes (0: in this process).

    Worker processes are forked: they share the parent's cases and memory-mapped volumes
    without copying them."""
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin_memory,
                      worker_init_fn=_one_thread_per_worker if workers else None)


def host_batches(
    method: Method, pool: np.ndarray, batch_size: int, steps: int, seed: int, stream: int, epoch: int,
    rank: int = 0, workers: int = 0, pin_memory: bool = False,
) -> DataLoader:
    """The pretext batches of one epoch from ``workers`` processes (0: in this process), in step order.

    A new loader per epoch, so its workers start from the method's state after
    ``on_epoch_start`` and ``prepare_pool`` (DeepCluster's pseudo-labels), both run here."""
    method.prepare_pool(pool)
    sample = functools.partial(method.sample_batch, pool, batch_size)
    return loader(KeyedBatches(sample, steps, seed, stream, epoch, rank), workers, pin_memory)


def task_batches(
    task: Task, cases: Sequence[Case], cube: tuple[int, int, int], batch_size: int, steps: int, seed: int,
    epoch: int, workers: int = 0, pin_memory: bool = False,
) -> DataLoader:
    """The fine-tuning batches of one epoch (``task.sample_batch``), each from its own batch key."""
    sample = functools.partial(task.sample_batch, cases, cube, batch_size)
    return loader(KeyedBatches(sample, steps, seed, FINETUNE_STREAM, epoch, 0), workers, pin_memory)


def device_batches(
    method: Method, pool: torch.Tensor, batch_size: int, steps: int, seed: int, stream: int, epoch: int,
    rank: int = 0,
) -> Iterator[Batch]:
    """The batches of one epoch made on the pool's device by the method's batched transforms."""
    for step in range(steps):
        generator = batch_generator(seed, stream, epoch, step, rank, pool.device)
        yield method.sample_batch_on_device(pool, batch_size, generator)
