"""Fine-tuning on a target task, validation with early stopping, and test evaluation.

Everything that differs by task kind (the batches, the loss, how a case is predicted,
the metrics) is the task's (``benchmark.api.task.Task``); this module runs the shared
training loop (``benchmark.engine.training``) with Adam at the profile's schedule for
the task's kind. Early stopping watches the task's primary validation metric (AUC,
Dice, IoU), maximised: on the small, imbalanced validation sets of classification tasks
the validation loss mostly measures calibration and stops training long before the
ranking stops improving. A non-finite prediction, on validation or test, stops the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from benchmark.api.profiles import Profile
from benchmark.api.task import Case, Task
from benchmark.engine.training import Latest, NonFinite, Stopping, train
from benchmark.errors import UserError


def predict(model: nn.Module, task: Task, cases: Sequence[Case], cube: tuple[int, int, int], profile: Profile,
            device: torch.device, split: str) -> list[torch.Tensor]:
    """The task's logits for each case, in evaluation mode; ``NonFinite`` names the first non-finite
    prediction (of the ``split`` case)."""
    model.eval()
    with torch.no_grad():
        logits = task.predict(model, cases, cube, profile, device)
    for case, x in zip(cases, logits):
        if not bool(torch.isfinite(x).all()):
            raise NonFinite(f"the {split} prediction of case {case.case_id}")
    return logits


def validate(model: nn.Module, task: Task, cases: Sequence[Case], cube: tuple[int, int, int], profile: Profile,
             device: torch.device) -> tuple[float, dict[str, float]]:
    """The primary validation metric, and the history columns ``val_loss`` and ``val_<primary metric>``."""
    logits = predict(model, task, cases, cube, profile, device, "validation")
    score = task.evaluate(cases, logits)[0][task.primary_metric]
    return score, {"val_loss": task.validation_loss(cases, logits), f"val_{task.primary_metric}": score}


def finetune(model: nn.Module, task: Task, train_cases: Sequence[Case], val: Sequence[Case],
             cube: tuple[int, int, int], profile: Profile, seed: int, device: torch.device,
             progress: bool = True, latest: Path | None = None) -> tuple[nn.Module, pd.DataFrame, dict[str, Any]]:
    """Train ``model`` on ``train_cases`` with early stopping on the primary validation metric; keep the best
    epoch. Returns the model, the per-epoch history and what the fit cost. With ``latest``, resume from the
    state saved there (the batch generator's included) and save it after every epoch."""
    rng = np.random.default_rng([seed, 2])
    torch.manual_seed(seed)
    model.to(device)
    schedule = profile.schedule(task.kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    stopping = Stopping(f"val_{task.primary_metric}", "max", schedule.epochs, schedule.patience)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return (task.sample_batch(train_cases, cube, schedule.batch, rng) for _ in range(schedule.steps_per_epoch))

    def loss(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return task.loss(model(images.to(device)), targets.to(device))

    state = train(model, optimizer, batches, loss, lambda: validate(model, task, val, cube, profile, device),
                  stopping, phase=f"fine-tuning {task.name}", device=device, progress=progress,
                  latest=Latest(latest, [rng]) if latest is not None else None)
    epochs = len(state.history)
    return model, pd.DataFrame(state.history), {
        "epochs": epochs, "best_epoch": state.best_epoch, "monitor": stopping.monitor,
        "resumed_from_epoch": state.resumed_from_epoch,
        "samples_seen": epochs * schedule.steps_per_epoch * schedule.batch}


def evaluate(model: nn.Module, task: Task, cases: Sequence[Case], cube: tuple[int, int, int], profile: Profile,
             device: torch.device) -> tuple[dict[str, float], pd.DataFrame]:
    """The task's metrics on ``cases`` (the test split) and its per-case table."""
    try:
        logits = predict(model, task, cases, cube, profile, device, "test")
    except NonFinite as error:
        raise UserError(f"fine-tuning {task.name}: {error} is not finite") from error
    return task.evaluate(cases, logits)
