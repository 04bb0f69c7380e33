"""Pretraining: the pretext task in the shared training loop (``benchmark.engine.training``), and
the checkpoint it produces.

Batches come from ``benchmark.loader`` (host worker processes, or the method's batched
transforms on the device), each a function of (seed, epoch, step, rank) only. The speed
switches of the profile (bf16 autocast, channels_last_3d, torch.compile) apply to the
pretraining step; under ``torchrun`` the processes train one model with DDP
(``benchmark.distributed``).

A checkpoint is a plain dict of tensors and primitives (loadable with
``torch.load(..., weights_only=True)``)::

    {"format": 1, "method": name, "transfers": "encoder" | "encoder+decoder",
     "backbone": {"name", "settings", "in_channels", "width"},
     "state_dict": the backbone's weights keyed like its targets, "extras": method-specific data,
     "cubes_seen": int, "epochs": int}
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.api.backbone import Backbone, default_backbone
from benchmark.api.method import Method
from benchmark.api.profiles import Profile
from benchmark.data import files
from benchmark.engine import distributed
from benchmark.engine.loader import (
    EPOCH_STREAM,
    TRAIN_STREAM,
    VALIDATION_STREAM,
    device_batches,
    host_batches,
    keep_freed_memory,
)
from benchmark.engine.training import Latest, Stopping, train
from benchmark.errors import UserError
from benchmark.model.weights import check_zip_checksums

CHECKPOINT_FORMAT = 1


class Batches:
    """Where a run's pretext batches come from: the host loader, or the device transforms."""

    def __init__(self, method: Method, train_pool: np.ndarray, val_pool: np.ndarray, profile: Profile, seed: int,
                 device: torch.device) -> None:
        self.method, self.profile, self.seed, self.device = method, profile, seed, device
        keep_freed_memory()
        self.batch_size = distributed.shard(profile.pretrain_batch)
        self.rank = distributed.world().rank
        if profile.pretrain_device_transforms:
            if not method.has_device_transforms():
                raise UserError(f"method '{method.name}' has no device transforms; pretrain it without them")
            self.pools = {TRAIN_STREAM: torch.from_numpy(train_pool).to(device),
                          VALIDATION_STREAM: torch.from_numpy(val_pool).to(device)}
        else:
            self.pools = {TRAIN_STREAM: train_pool, VALIDATION_STREAM: val_pool}

    def epoch(self, stream: int, epoch: int, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of (inputs, targets) on the device. Training batches: this rank's share of
        each step; validation batches: whole, the same every epoch and on every rank."""
        if stream == TRAIN_STREAM:
            batch_size, rank = self.batch_size, self.rank
        else:
            batch_size, rank, epoch = self.profile.pretrain_batch, 0, 0
        pool = self.pools[stream]
        if isinstance(pool, torch.Tensor):
            batches = device_batches(self.method, pool, batch_size, steps, self.seed, stream, epoch, rank)
        else:
            batches = host_batches(self.method, pool, batch_size, steps, self.seed, stream, epoch, rank,
                                   self.profile.loader_workers, pin_memory=self.device.type == "cuda")
        for inputs, targets in batches:
            memory = channels_last(inputs.dim()) if self.profile.pretrain_channels_last else torch.preserve_format
            yield (inputs.to(self.device, non_blocking=True, memory_format=memory),
                   targets.to(self.device, non_blocking=True))


def pretext_loss(method: Method, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                 precision: str) -> torch.Tensor:
    """The method's loss on one batch; the forward pass under bf16 autocast when asked, the
    loss in float32."""
    with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        output = model(inputs)
    return method.loss(output.float(), targets)


def _validation_loss(
    method: Method, model: torch.nn.Module, batches: Batches, profile: Profile, device: torch.device
) -> float:
    """Mean pretext loss on the validation pool (the same draws every epoch), averaged over ranks."""
    model.eval()
    with torch.no_grad():
        losses = [float(pretext_loss(method, model, inputs, targets, profile.pretrain_precision))
                  for inputs, targets in batches.epoch(VALIDATION_STREAM, 0, profile.pretrain_val_batches)]
    return distributed.mean(float(np.mean(losses)), device)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 autocast on the CPU. With torch 2.13 (oneDNN) on this project's CPUs, the
    bf16 weight gradient of a 32- or 64-channel Conv3d on a feature map of depth 2 (the
    U-Net's deepest level at the smoke and quick cubes) is garbage, different at each call:
    values up to 1e35 times the true ones, then NaN losses. fp32, and bf16 with oneDNN
    disabled, are exact (docs/performance.md)."""
    if precision == "bf16" and device.type == "cpu":
        raise UserError("--precision bf16 on the CPU: this torch build's bf16 Conv3d weight gradients are wrong "
                        "on small feature maps (NaN losses; see docs/performance.md); use fp32 on the CPU")


def channels_last(tensor_dims: int) -> torch.memory_format:
    """The channels-last memory format of 2D (4-D tensors) or 3D (5-D tensors) data."""
    return torch.channels_last if tensor_dims == 4 else torch.channels_last_3d


def prepare_model(model: torch.nn.Module, profile: Profile, device: torch.device,
                  spatial_dims: int = 3) -> torch.nn.Module:
    """``model`` (of a ``spatial_dims`` network) on the device in the profile's memory format; returns
    the module to train with (wrapped for data parallelism, compiled, as the profile asks)."""
    model.to(device)
    if profile.pretrain_channels_last:
        model.to(memory_format=channels_last(spatial_dims + 2))
    trained = distributed.wrap(model, device)
    return torch.compile(trained) if profile.pretrain_compile else trained


def pretrain(
    method: Method,
    train_pool: np.ndarray,
    val_pool: np.ndarray,
    profile: Profile,
    seed: int,
    device: torch.device,
    progress: bool = True,
    latest: Path | None = None,
    backbone: Backbone | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train ``method``'s pretext task; return (checkpoint, per-epoch history). With ``latest``,
    resume from the state saved there and save it after every epoch (``training.train``); the
    batches are functions of (seed, epoch, step), so no random stream needs carrying.

    Early stopping on the validation loss with the profile's patience; the weights of
    the best epoch are kept. Under ``torchrun`` the processes train one model together
    (see ``benchmark.distributed``); each returns the same checkpoint. ``backbone``: the network
    pretrained (None: the method's default backbone).
    """
    backbone = backbone or default_backbone(method)
    check_precision(profile.pretrain_precision, device)
    torch.manual_seed(seed)
    in_channels = int(train_pool.shape[1])
    model = method.build_pretext_model(backbone, in_channels, profile.width)
    method.init_weights(model)
    trained = prepare_model(model, profile, device, backbone.spatial_dims)
    optimizer, scheduler = method.make_optimizer(model.parameters(), profile)
    batches = Batches(method, train_pool, val_pool, profile, seed, device)

    def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        method.on_epoch_start(model, train_pool, np.random.default_rng([seed, EPOCH_STREAM, epoch]), device)
        return batches.epoch(TRAIN_STREAM, epoch, profile.pretrain_steps_per_epoch)

    def loss(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return pretext_loss(method, trained, inputs, targets, profile.pretrain_precision)

    def validate() -> tuple[float, dict[str, float]]:
        value = _validation_loss(method, model, batches, profile, device)
        return value, {"val_loss": value}

    stopping = Stopping("val_loss", "min", profile.pretrain_epochs, profile.pretrain_patience)
    state = train(model, optimizer, epoch_batches, loss, validate, stopping, phase=f"pretraining {method.name}",
                  device=device, scheduler=scheduler, progress=progress,
                  latest=Latest(latest) if latest is not None else None)
    epochs = len(state.history)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "method": method.name,
        "transfers": method.transfers,
        "backbone": {"name": backbone.name, "settings": backbone.settings(), "in_channels": in_channels,
                     "width": profile.width},
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in method.backbone_state(model).items()},
        "extras": method.checkpoint_extras(),
        "cubes_seen": epochs * profile.pretrain_steps_per_epoch * profile.pretrain_batch,
        "epochs": epochs,
        "best_val_loss": state.best_value,
        "resumed_from_epoch": state.resumed_from_epoch,
        "earlier_seconds": state.earlier_seconds,
    }
    return checkpoint, pd.DataFrame(state.history)


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    files.write_serialised(path, lambda buffer: torch.save(checkpoint, buffer))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``)."""
    check_zip_checksums(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise UserError(f"{path}: cannot load checkpoint ({str(error).splitlines()[0]})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path}: not a benchmark checkpoint (no 'state_dict')")
    return checkpoint
