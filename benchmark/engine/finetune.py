"""Fine-tuning on a target task, validation with early stopping, and test evaluation.

Everything that differs by task kind (the batches, the loss, how a case is predicted,
the metrics) is the task's (``benchmark.api.task.Task``); this module runs the shared
training loop (``benchmark.engine.training``) with Adam at the profile's schedule for
the task's kind, its learning rate constant or annealed (``Schedule.lr_decay``). Early
stopping watches the task's primary validation metric (AUC, Dice, IoU), maximised: on the
small, imbalanced validation sets of classification tasks the validation loss mostly
measures calibration and stops training long before the ranking stops improving. A
non-finite prediction, on validation or test, stops the run.

Batches: each made from its own key ``(seed, epoch, step)`` (``benchmark.engine.loader``), by
the profile's ``loader_workers`` processes or in this one: the same numbers either way, and a
resumed run draws the batches an uninterrupted one would. Predictions stream one case at a
time into the task's metrics (and the validation loss), so neither a split's size nor a
volume's multiplies the memory of evaluation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from benchmark.api.profiles import Profile, Schedule
from benchmark.api.task import Case, Task
from benchmark.engine.loader import task_batches
from benchmark.engine.training import Latest, NonFinite, Stopping, train
from benchmark.errors import UserError

BATCH_NORM_SINGLE_VALUE = "Expected more than 1 value per channel when training"  # torch's message


@torch.no_grad()
def predict(model: nn.Module, task: Task, cases: Sequence[Case], cube: tuple[int, int, int], profile: Profile,
            device: torch.device, split: str) -> Iterator[torch.Tensor]:
    """The task's logits for each case, one at a time, in evaluation mode; ``NonFinite`` names the first
    non-finite prediction (of the ``split`` case). A task that predicts another number of cases than it
    was given is a plugin error."""
    model.eval()
    count = 0
    for count, x in enumerate(task.predict(model, cases, cube, profile, device), start=1):
        if count > len(cases):
            break
        if not bool(torch.isfinite(x).all()):
            raise NonFinite(f"the {split} prediction of case {cases[count - 1].case_id}")
        yield x
    if count != len(cases):
        raise RuntimeError(f"task '{task.name}' predicted {'more' if count > len(cases) else count} "
                           f"cases of the {len(cases)} it was given")


def validate(model: nn.Module, task: Task, cases: Sequence[Case], cube: tuple[int, int, int], profile: Profile,
             device: torch.device) -> tuple[float, dict[str, float]]:
    """The primary validation metric, and the history columns ``val_loss`` and ``val_<primary metric>``
    (the mean of ``case_loss`` over the cases), from one pass over the predictions."""
    losses: list[float] = []

    def with_losses(logits: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
        for case, x in zip(cases, logits):
            losses.append(task.case_loss(case, x))
            yield x

    score = task.evaluate(cases, with_losses(predict(model, task, cases, cube, profile, device, "validation")))[0][
        task.primary_metric]
    return score, {"val_loss": float(np.mean(losses)), f"val_{task.primary_metric}": score}


def lr_scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule) -> LRScheduler | None:
    """The schedule's learning-rate decay, stepped once an epoch; None for a constant rate."""
    if schedule.lr_decay == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=schedule.epochs)
    return None


def finetune(model: nn.Module, task: Task, train_cases: Sequence[Case], val: Sequence[Case],
             cube: tuple[int, int, int], profile: Profile, seed: int, device: torch.device,
             progress: bool = True, latest: Path | None = None) -> tuple[nn.Module, pd.DataFrame, dict[str, Any]]:
    """Train ``model`` on ``train_cases`` with early stopping on the primary validation metric; keep the best
    epoch. Returns the model, the per-epoch history and what the fit cost. With ``latest``, resume from the
    state saved there and save it after every epoch."""
    torch.manual_seed(seed)
    model.to(device)
    schedule = profile.schedule(task.kind)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=schedule.lr)
    scheduler = lr_scheduler(optimizer, schedule)
    stopping = Stopping(f"val_{task.primary_metric}", "max", schedule.epochs, schedule.patience)

    def batches(epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return task_batches(task, train_cases, cube, schedule.batch, schedule.steps_per_epoch, seed, epoch,
                            profile.loader_workers, pin_memory=device.type == "cuda")

    def loss(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        try:
            return task.loss(model(images.to(device)), targets.to(device))
        except ValueError as error:  # batch norm in training on a single value per channel
            if BATCH_NORM_SINGLE_VALUE not in str(error):
                raise
            raise UserError(f"fine-tuning {task.name}: batch normalisation cannot train on one value per channel "
                            f"(a batch of {len(images)} cube(s) of {tuple(images.shape[2:])} shrinks to a single "
                            "voxel in the network): use a larger batch (--profile-arg "
                            f"{task.kind}.batch=2) or cube") from error

    state = train(model, optimizer, batches, loss, lambda: validate(model, task, val, cube, profile, device),
                  stopping, phase=f"fine-tuning {task.name}", device=device, scheduler=scheduler,
                  progress=progress, latest=Latest(latest) if latest is not None else None)
    epochs = len(state.history)
    return model, pd.DataFrame(state.history), {
        "epochs": epochs, "best_epoch": state.best_epoch, "monitor": stopping.monitor,
        "resumed_from_epoch": state.resumed_from_epoch, "earlier_seconds": state.earlier_seconds,
        "samples_seen": epochs * schedule.steps_per_epoch * schedule.batch}


def evaluate(model: nn.Module, task: Task, cases: Sequence[Case], cube: tuple[int, int, int], profile: Profile,
             device: torch.device) -> tuple[dict[str, float], pd.DataFrame]:
    """The task's metrics on ``cases`` (the test split) and its per-case table."""
    try:
        return task.evaluate(cases, predict(model, task, cases, cube, profile, device, "test"))
    except NonFinite as error:
        raise UserError(f"fine-tuning {task.name}: {error} is not finite") from error
