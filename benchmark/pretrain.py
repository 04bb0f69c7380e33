"""The pretraining loop and the checkpoint it produces.

A checkpoint is a plain dict of tensors and primitives (loadable with
``torch.load(..., weights_only=True)``)::

    {"format": 1, "method": name, "transfers": "encoder" | "encoder+decoder",
     "backbone": {"in_channels", "width", "transposed"},
     "state_dict": UNet3D-keyed backbone weights, "extras": method-specific data,
     "cubes_seen": int, "epochs": int}
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmark.errors import UserError
from benchmark.method import Method
from benchmark.profiles import Profile
from benchmark.store import write_atomic

CHECKPOINT_FORMAT = 1


def _validation_loss(
    method: Method, model: torch.nn.Module, pool: np.ndarray, profile: Profile, seed: int, device: torch.device
) -> float:
    """Mean pretext loss on the validation pool, with the same draws every epoch."""
    rng = np.random.default_rng([seed, 1])
    model.eval()
    losses = []
    with torch.no_grad():
        for _ in range(profile.pretrain_val_batches):
            inputs, targets = method.sample_batch(pool, profile.pretrain_batch, rng)
            losses.append(float(method.loss(model(inputs.to(device)), targets.to(device))))
    return float(np.mean(losses))


def pretrain(
    method: Method,
    train_pool: np.ndarray,
    val_pool: np.ndarray,
    profile: Profile,
    seed: int,
    device: torch.device,
    progress: bool = True,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train ``method``'s pretext task; return (checkpoint, per-epoch history).

    Early stopping on the validation loss with the profile's patience; the weights of
    the best epoch are kept.
    """
    rng = np.random.default_rng([seed, 0])
    torch.manual_seed(seed)
    in_channels = int(train_pool.shape[1])
    model = method.build_pretext_model(in_channels, profile.width)
    method.init_weights(model)
    model.to(device)
    optimizer, scheduler = method.make_optimizer(model.parameters(), profile)
    history, best_loss, best_state, stale = [], float("inf"), None, 0
    bar = tqdm(
        total=profile.pretrain_epochs * profile.pretrain_steps_per_epoch,
        desc=f"pretrain {method.name}", unit="step", disable=not progress, leave=False,
    )
    for epoch in range(profile.pretrain_epochs):
        method.on_epoch_start(model, train_pool, rng, device)
        model.train()
        train_losses = []
        for _ in range(profile.pretrain_steps_per_epoch):
            inputs, targets = method.sample_batch(train_pool, profile.pretrain_batch, rng)
            loss = method.loss(model(inputs.to(device)), targets.to(device))
            if not torch.isfinite(loss):
                raise RuntimeError(f"pretraining {method.name}: the loss became {float(loss)} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            train_losses.append(loss.item())
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{train_losses[-1]:.4f}")
        val_loss = _validation_loss(method, model, val_pool, profile, seed, device)
        if scheduler is not None:
            scheduler.step(val_loss)
        history.append({
            "epoch": epoch, "train_loss": float(np.mean(train_losses)), "val_loss": val_loss,
            "lr": optimizer.param_groups[0]["lr"],
        })
        if val_loss < best_loss:
            best_loss, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= profile.pretrain_patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "method": method.name,
        "transfers": method.transfers,
        "backbone": {"in_channels": in_channels, "width": profile.width, "transposed": True},
        "state_dict": {k: v.detach().cpu() for k, v in method.backbone_state(model).items()},
        "extras": method.checkpoint_extras(),
        "cubes_seen": len(history) * profile.pretrain_steps_per_epoch * profile.pretrain_batch,
        "epochs": len(history),
        "best_val_loss": best_loss,
    }
    return checkpoint, pd.DataFrame(history)


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(checkpoint, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects (``weights_only=True``)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise UserError(f"{path}: cannot load checkpoint ({str(error).splitlines()[0]})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path}: not a benchmark checkpoint (no 'state_dict')")
    return checkpoint
