"""The one training loop, with early stopping, of both pretraining and fine-tuning.

Each epoch: the epoch's batches, one optimiser step per batch, a finite-weights check,
the validation value (the pretext validation loss, minimised; the task's primary
validation metric, maximised), the scheduler's step (a plateau scheduler's on the validation
value, any other's once an epoch), one history row, and the
best-state bookkeeping. Training stops after ``patience`` epochs without improvement or
at ``max_epochs``; the model ends with the weights of its best epoch.

A non-finite training loss, weight, validation value or validation prediction stops the
run with a one-line ``UserError`` naming the phase, the epoch and what went non-finite:
nothing trained on it is kept. The validation function reports a non-finite prediction
by raising ``NonFinite``.

Progress: a bar over epochs (loss, validation value, best, patience left) and one line
per epoch on the ``benchmark.training`` logger, from the main process only. Everything
the loop carries from one epoch to the next is in ``TrainingState``, handed to
``on_epoch_end`` after every epoch.

Resume: given a ``latest`` path, the loop writes there, atomically after every epoch, all it
needs to go on (the model, the optimiser and scheduler states, the ``TrainingState``, the
torch random state and that of every numpy generator the caller consumes across epochs); a
loop that finds the file resumes from it. On a deterministic device a run killed at any
instant and started again ends with exactly the weights of an uninterrupted run: at most the
epoch in flight is lost. The caller deletes the file once its own result is written.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from tqdm.auto import tqdm

from benchmark.data import files
from benchmark.engine import distributed
from benchmark.engine.runtime import overlapping_max_pools
from benchmark.errors import UserError
from benchmark.model.weights import check_zip_checksums

log = logging.getLogger("benchmark.training")

Batch = tuple[torch.Tensor, torch.Tensor]


class NonFinite(Exception):
    """``what`` (e.g. "the validation prediction of case X") is not finite; the loop adds phase and epoch."""


@dataclass(frozen=True)
class Stopping:
    """When training stops: ``monitor`` (a validation column) improving in ``direction``, within
    ``max_epochs``, at most ``patience`` epochs without improvement."""

    monitor: str
    direction: Literal["min", "max"]
    max_epochs: int
    patience: int

    def improves(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best if self.direction == "min" else value > best

    def done(self, state: TrainingState) -> bool:
        """All epochs trained, or ``patience`` epochs in a row without improvement."""
        return state.epoch >= self.max_epochs or (state.stale > 0 and state.stale >= self.patience)


@dataclass
class TrainingState:
    """What the loop carries between epochs: the epochs done, the best validation value, its
    epoch and weights, the epochs since it, one history row per epoch done, and the seconds the
    epochs took (those of the processes before a resume included)."""

    epoch: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    stale: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int | None = None  # the epoch a resumed run started from, None for a fresh one
    seconds: float = 0.0
    earlier_seconds: float = 0.0  # the epochs' seconds spent before a resume (by the processes killed)


@dataclass(frozen=True)
class Latest:
    """Where the loop keeps its latest state (``path``), and the numpy generators it must carry."""

    path: Path
    generators: Sequence[np.random.Generator] = ()


def _live_state(latest: Latest, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: LRScheduler | None) -> dict:
    """The model, optimiser and scheduler states and the random streams, as a snapshot holds them (the
    live tensors, not copies: saving them needs none)."""
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": [generator.bit_generator.state for generator in latest.generators],
    }


def _restore(snapshot: dict, latest: Latest, model: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: LRScheduler | None) -> None:
    """Load a snapshot's states into the model, optimiser, scheduler and random streams."""
    model.load_state_dict(snapshot["model"])
    optimizer.load_state_dict(snapshot["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(snapshot["scheduler"])
    torch.set_rng_state(snapshot["torch_rng"])
    for generator, saved_state in zip(latest.generators, snapshot["numpy_rng"], strict=True):
        generator.bit_generator.state = saved_state


def save_latest(latest: Latest, phase: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: LRScheduler | None, state: TrainingState) -> None:
    snapshot = {
        "phase": phase, **_live_state(latest, model, optimizer, scheduler),
        "state": {"epoch": state.epoch, "best_value": state.best_value, "best_epoch": state.best_epoch,
                  "stale": state.stale, "best_state": state.best_state, "history": state.history,
                  "seconds": state.seconds},
    }
    files.write_serialised(latest.path, lambda buffer: torch.save(snapshot, buffer))


def load_latest(latest: Latest, phase: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: LRScheduler | None) -> TrainingState | None:
    """The state saved at ``latest.path`` restored into the model, optimiser, scheduler and random
    streams; None when there is none. An unreadable or foreign file is reported and ignored (the
    training starts from its beginning): it never stops a run nor feeds it wrong weights. A file that
    fails part-way through (a strict ``load_state_dict`` copies the keys that fit before it raises) is
    undone: the model, optimiser, scheduler and random streams get back the states they had."""
    if not latest.path.is_file():
        return None
    fresh = copy.deepcopy(_live_state(latest, model, optimizer, scheduler))  # what a failed restore puts back
    try:
        check_zip_checksums(latest.path)
        snapshot = torch.load(latest.path, map_location="cpu", weights_only=True)
        if snapshot["phase"] != phase or len(snapshot["numpy_rng"]) != len(latest.generators):
            raise ValueError(f"it belongs to '{snapshot['phase']}'")
        saved = snapshot["state"]
        state = TrainingState(saved["epoch"], saved["best_value"], saved["best_epoch"], saved["stale"],
                              saved["best_state"], saved["history"], resumed_from_epoch=saved["epoch"],
                              seconds=float(saved["seconds"]), earlier_seconds=float(saved["seconds"]))
        _restore(snapshot, latest, model, optimizer, scheduler)
    except Exception as error:  # a damaged file raises many types; none may stop the run
        _restore(fresh, latest, model, optimizer, scheduler)
        log.warning("%s: cannot resume from %s (%s); starting from the beginning", phase, latest.path,
                    str(error).splitlines()[0] if str(error) else type(error).__name__)
        return None
    log.info("%s: resuming from epoch %d (%s)", phase, state.epoch, latest.path)
    return state


def first_non_finite(model: nn.Module) -> str | None:
    """The first floating-point entry of ``model.state_dict()`` holding a NaN or an infinity, or None."""
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return key
    return None


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Iterable[Batch]],
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    validate: Callable[[], tuple[float, dict[str, float]]],
    stopping: Stopping,
    *,
    phase: str,
    device: torch.device,
    scheduler: LRScheduler | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[TrainingState], None] | None = None,
    latest: Latest | None = None,
) -> TrainingState:
    """Train ``model`` with early stopping; load the weights of its best epoch into it and return the state.

    ``batches(epoch)`` gives the epoch's (inputs, targets), called before the model is put in
    training mode; ``loss(inputs, targets)`` the scalar loss of one batch (the forward pass
    included); ``validate()`` the monitored value and the columns it adds to the history
    row. ``phase`` ("pretraining genesis", "fine-tuning ncs") names the run in messages.
    Under ``torchrun`` the epoch's training loss is averaged over the processes. With ``latest``,
    the loop resumes from the state saved there and saves its own after every epoch (see above).
    """
    resumed = load_latest(latest, phase, model, optimizer, scheduler) if latest is not None else None
    state = resumed or TrainingState()
    main = distributed.is_main()
    if main and device.type == "cuda":
        warn_if_not_reproducible(model, phase)
    bar = tqdm(total=stopping.max_epochs, initial=state.epoch, desc=phase, unit="epoch",
               disable=not progress or not main, leave=False)
    try:
        while not stopping.done(state):
            start = time.perf_counter()
            row = _epoch(model, optimizer, batches, loss, validate, stopping, scheduler, state, phase, device)
            _keep_best(model, stopping, state, row)
            state.history.append(row)
            state.epoch += 1
            state.seconds += time.perf_counter() - start
            if main:
                _report(bar, phase, stopping, state, row, time.perf_counter() - start)
            if latest is not None and main:
                save_latest(latest, phase, model, optimizer, scheduler, state)
            if on_epoch_end is not None:
                on_epoch_end(state)
    finally:
        bar.close()
    model.load_state_dict(state.best_state)
    return state


def warn_if_not_reproducible(model: nn.Module, phase: str) -> None:
    """Name the overlapping max-pooling layers, whose CUDA backward is not deterministic (the one
    exception ``use_deterministic_cuda`` lets through): a rerun of the same spec can differ."""
    pools = overlapping_max_pools(model)
    if pools:
        shown = ", ".join(pools[:3]) + (f" and {len(pools) - 3} more" if len(pools) > 3 else "")
        log.warning("%s: max-pooling with overlapping windows (%s) has no deterministic CUDA backward: "
                    "a rerun of this spec can give slightly different numbers", phase, shown)


def _epoch(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Callable[[int], Iterable[Batch]],
           loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           validate: Callable[[], tuple[float, dict[str, float]]], stopping: Stopping,
           scheduler: LRScheduler | None, state: TrainingState, phase: str,
           device: torch.device) -> dict[str, float]:
    """Train one epoch and validate; return its history row (``lr``: the rate the epoch trained at)."""
    epoch = state.epoch
    rate = optimizer.param_groups[0]["lr"]

    def stop(what: str) -> UserError:
        return UserError(f"{phase} stopped at epoch {epoch}: {what} is not finite")

    source = batches(epoch)
    model.train()
    losses = []
    for inputs, targets in source:
        value = loss(inputs, targets)
        losses.append(value.item())
        if not math.isfinite(losses[-1]):
            raise stop(f"the training loss ({losses[-1]})")
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    weight = first_non_finite(model)
    if weight is not None:
        raise stop(f"the weight {weight}")
    try:
        monitored, columns = validate()
    except NonFinite as error:
        raise stop(str(error)) from error
    if not math.isfinite(monitored):
        raise stop(f"the validation value {stopping.monitor} ({monitored})")
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(monitored)
    elif scheduler is not None:
        scheduler.step()
    return {"epoch": epoch, "train_loss": distributed.mean(float(np.mean(losses)), device), **columns,
            "lr": rate}


def _keep_best(model: nn.Module, stopping: Stopping, state: TrainingState, row: dict[str, float]) -> None:
    value = row[stopping.monitor]
    if stopping.improves(value, state.best_value):
        state.best_value, state.best_epoch, state.stale = value, state.epoch, 0
        state.best_state = copy.deepcopy(model.state_dict())
    else:
        state.stale += 1


def _report(bar: tqdm, phase: str, stopping: Stopping, state: TrainingState, row: dict[str, float],
            seconds: float) -> None:
    """The bar's postfix and the epoch's log line."""
    value = row[stopping.monitor]
    bar.update()
    bar.set_postfix(loss=f"{row['train_loss']:.4f}", val=f"{value:.4f}", best=f"{state.best_value:.4f}",
                    patience=stopping.patience - state.stale)
    log.info("%s epoch %d: train loss %.4f, %s %.4f, best %.4f (epoch %d), %.1f s", phase, row["epoch"],
             row["train_loss"], stopping.monitor, value, state.best_value, state.best_epoch, seconds)
