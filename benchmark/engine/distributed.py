"""Data-parallel pretraining (PyTorch DDP) in processes launched by ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them this is one
process and every function here is a no-op. Each rank trains on its own share of each
step's batch (``pretrain_batch / world size`` cubes, drawn from its own random stream:
the with-replacement analogue of ``DistributedSampler``), gradients are averaged by
DDP, losses by ``all_reduce``, and only rank 0 writes files. Backend: nccl on CUDA
(one GPU per process, ``cuda:LOCAL_RANK``), gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from benchmark.engine.runtime import resolve_device
from benchmark.errors import UserError


@dataclass(frozen=True)
class World:
    size: int
    rank: int
    local_rank: int


def world() -> World:
    """This process's place among the ``torchrun`` processes (size 1 when not launched by it)."""
    return World(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def is_main() -> bool:
    return world().rank == 0


def start(device_name: str) -> torch.device:
    """Join the process group when launched by ``torchrun``; return this process's device."""
    device = resolve_device(device_name)
    here = world()
    if here.size == 1:
        return device
    if device.type == "cuda":
        if here.local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {here.local_rank}: only {torch.cuda.device_count()} CUDA devices here")
        torch.cuda.set_device(here.local_rank)
        device = torch.device("cuda", here.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait until every process gets here (nothing with one process)."""
    if active():
        dist.barrier()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when several processes train it."""
    if not active():
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def mean(value: float, device: torch.device) -> float:
    """The mean of ``value`` over the processes."""
    if not active():
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / dist.get_world_size()


def shard(batch_size: int) -> int:
    """This process's share of a step's ``batch_size`` cubes."""
    size = world().size
    if batch_size % size:
        raise UserError(f"pretraining batch {batch_size} does not split evenly over {size} processes")
    return batch_size // size


def identity() -> dict[str, Any]:
    """What the process count adds to a checkpoint's identity: nothing for one process.

    N processes do not compute one process's numbers, not even up to the order of floating-point
    sums: each rank draws its share of a step's batch from its own random stream (other cubes
    than one process draws) and normalises it with its own batch-norm statistics. So a
    checkpoint pretrained by N processes is another checkpoint, under another id; ``benchmark
    run`` (one process) never picks it up by itself: it is fine-tuned with ``benchmark run
    --weights <its checkpoint.pt>``, which records the file's fingerprint as the weights used."""
    size = world().size
    return {"world_size": size} if size > 1 else {}
