"""Fine-tuning on a target task, validation with early stopping, and test evaluation.

Classification batches are class-balanced (half positives, half negatives: candidate
sets are heavily imbalanced). Segmentation trains on cube-sized patches drawn from
the training cases, a third of them centred on a foreground voxel (nnU-Net's
oversampling), with BCE + soft Dice loss. Every training sample is flipped along each
spatial axis with probability 1/2 (the only augmentation). Early stopping watches the
task's primary validation metric (AUC, Dice, IoU): on the small, imbalanced validation
sets of classification tasks the validation loss mostly measures calibration and
stops training long before the ranking stops improving. Segmentation cases are predicted by
sliding-window inference over the whole case (MONAI, Gaussian blending), so a
whole-volume task is evaluated on whole volumes, never on patches.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.inferers import sliding_window_inference
from torch import nn
from tqdm.auto import tqdm

from benchmark.api.profiles import Profile
from benchmark.api.task import Case, Task
from benchmark.engine import metrics

FOREGROUND_OVERSAMPLING = 1 / 3


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    dims = tuple(range(1, logits.dim()))
    intersection = (probability * target).sum(dims)
    return (1 - (2 * intersection + eps) / (probability.sum(dims) + target.sum(dims) + eps)).mean()


def task_loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target)
    return bce if kind == "classification" else bce + soft_dice_loss(logits, target)


def _random_patch(case: Case, cube: tuple[int, int, int], rng: np.random.Generator,
                  foreground: bool) -> tuple[np.ndarray, np.ndarray]:
    """A cube-sized (image, mask) patch; centred on a random foreground voxel if asked and possible."""
    shape = case.image.shape[1:]
    if foreground and case.target.any():
        voxels = np.argwhere(case.target)
        centre = voxels[rng.integers(len(voxels))]
        start = [int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip(centre, cube, shape)]
    else:
        start = [int(rng.integers(0, n - s + 1)) for s, n in zip(cube, shape)]
    window = tuple(slice(b, b + s) for b, s in zip(start, cube))
    return case.image[(slice(None), *window)], case.target[window]


def sample_batch(task: Task, cases: Sequence[Case], cube: tuple[int, int, int], batch_size: int,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One training batch of (images, targets) as float tensors."""
    if task.kind == "classification":
        labels = np.array([case.target for case in cases])
        pools = [np.flatnonzero(labels == value) for value in (0, 1)]
        pools = [p for p in pools if len(p)]
        chosen = [pools[i % len(pools)][rng.integers(len(pools[i % len(pools)]))] for i in range(batch_size)]
        images = np.stack([cases[i].image for i in chosen])
        targets = np.array([[cases[i].target] for i in chosen], dtype=np.float32)
    else:
        patches = [
            _random_patch(cases[rng.integers(len(cases))], cube, rng, rng.random() < FOREGROUND_OVERSAMPLING)
            for _ in range(batch_size)
        ]
        images = np.stack([p[0] for p in patches])
        targets = np.stack([p[1][None] for p in patches]).astype(np.float32)
    if task.kind == "segmentation":
        images, targets = random_flips(images, targets, rng)
    else:
        images, _ = random_flips(images, images[:, :1], rng)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(np.ascontiguousarray(targets))


def random_flips(images: np.ndarray, masks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flip each (image, mask) pair of a batch along each spatial axis with probability 1/2."""
    images, masks = images.copy(), masks.copy()
    for index in range(len(images)):
        axes = tuple(1 + int(a) for a in np.flatnonzero(rng.random(3) < 0.5))
        if axes:
            images[index] = np.flip(images[index], axes)
            masks[index] = np.flip(masks[index], axes)
    return images, masks


@torch.no_grad()
def predict_logits(model: nn.Module, task: Task, cases: Sequence[Case], cube: tuple[int, int, int],
                   profile: Profile, device: torch.device) -> list[torch.Tensor]:
    """Logits per case: one value per candidate, or a whole-case map by sliding window."""
    model.eval()
    batch = profile.schedule(task.kind).batch
    if task.kind == "classification":
        outputs = []
        for start in range(0, len(cases), batch * 4):
            chunk = np.stack([c.image for c in cases[start:start + batch * 4]])
            outputs.extend(model(torch.from_numpy(chunk).to(device)).cpu()[:, 0])
        return outputs
    return [
        sliding_window_inference(
            torch.from_numpy(case.image[None]).to(device), roi_size=cube, sw_batch_size=batch,
            predictor=model, overlap=profile.sliding_window_overlap, mode="gaussian",
        ).cpu()[0, 0]
        for case in cases
    ]


def _targets(task: Task, cases: Sequence[Case]) -> list[torch.Tensor]:
    if task.kind == "classification":
        return [torch.tensor(float(c.target)) for c in cases]
    return [torch.from_numpy(c.target.astype(np.float32)) for c in cases]


def evaluate_logits(task: Task, cases: Sequence[Case], logits: list[torch.Tensor]) -> tuple[dict[str, float],
                                                                                           pd.DataFrame]:
    """The task's metrics and a per-case table from predicted logits."""
    probabilities = [torch.sigmoid(x).numpy() for x in logits]
    ids = {"case_id": [c.case_id for c in cases], "group": [c.group for c in cases]}
    if task.kind == "classification":
        labels = [int(c.target) for c in cases]
        scores = [float(p) for p in probabilities]
        frame = pd.DataFrame({**ids, "label": labels, "score": scores})
        return {"auc": metrics.auc(labels, scores)}, frame
    per_case = {name: [fn(c.target, p) for c, p in zip(cases, probabilities)]
                for name, fn in metrics.PER_CASE_SEGMENTATION.items()}
    results = {name: float(np.mean(values)) for name, values in per_case.items()}
    if "mg_iou" in task.metrics:
        results["mg_iou"] = metrics.mg_iou([c.target for c in cases], probabilities)
    return {k: v for k, v in results.items() if k in task.metrics}, pd.DataFrame({**ids, **per_case})


def validate(model: nn.Module, task: Task, cases: Sequence[Case], cube: tuple[int, int, int],
             profile: Profile, device: torch.device) -> dict[str, float]:
    logits = predict_logits(model, task, cases, cube, profile, device)
    losses = [float(task_loss(task.kind, x[None, None], y[None, None])) for x, y in zip(logits, _targets(task, cases))]
    scores, _ = evaluate_logits(task, cases, logits)
    return {"val_loss": float(np.mean(losses)), f"val_{task.primary_metric}": scores[task.primary_metric]}


def finetune(model: nn.Module, task: Task, train: Sequence[Case], val: Sequence[Case],
             cube: tuple[int, int, int], profile: Profile, seed: int, device: torch.device,
             progress: bool = True) -> tuple[nn.Module, pd.DataFrame, dict[str, Any]]:
    """Train ``model`` on ``train`` with early stopping on the primary validation metric; keep the best epoch."""
    rng = np.random.default_rng([seed, 2])
    torch.manual_seed(seed)
    model.to(device)
    schedule = profile.schedule(task.kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    monitor = f"val_{task.primary_metric}"
    history, best_score, best_state, best_epoch, stale = [], -float("inf"), None, 0, 0
    bar = tqdm(total=schedule.epochs * schedule.steps_per_epoch, desc=f"fine-tune {task.name}",
               unit="step", disable=not progress, leave=False)
    for epoch in range(schedule.epochs):
        model.train()
        losses = []
        for _ in range(schedule.steps_per_epoch):
            images, targets = sample_batch(task, train, cube, schedule.batch, rng)
            loss = task_loss(task.kind, model(images.to(device)), targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4f}")
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)),
               **validate(model, task, val, cube, profile, device)}
        history.append(row)
        if row[monitor] > best_score or best_state is None:
            best_score, best_state, best_epoch, stale = row[monitor], copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= schedule.patience:
                break
    bar.close()
    model.load_state_dict(best_state)
    steps = len(history) * schedule.steps_per_epoch
    return model, pd.DataFrame(history), {"epochs": len(history), "best_epoch": best_epoch, "monitor": monitor,
                                          "samples_seen": steps * schedule.batch}
