"""The restoration cross-matrix (Models Genesis, fig. D-14): each pretrained restoration model
asked to undo each method's corruption of held-out cubes.

Rows: the corruption applied (each method's own ``make_example`` on the same held-out cubes,
drawn from the pretraining pool's validation subsets, never seen in pretraining). Columns:
the pretrained model restoring it. A cell holds the restoration error against the uncorrupted
target: MSE, and 3D SSIM (MONAI's ``SSIMMetric``, data range 1, 7-voxel window), each the
mean over the cubes. The column ``input`` is the error of the corrupted input itself, the
floor a model must beat. The paper's reading: a model restores its own corruption well and
the others badly, while the combined scheme restores all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from monai.metrics import SSIMMetric

from benchmark.api.backbone import default_backbone
from benchmark.api.method import Method
from benchmark.api.profiles import Profile
from benchmark.data.datasets import DataSource
from benchmark.data.pool import PRETRAIN_VAL_SUBSETS, load_pool
from benchmark.engine.checkpoints import obtain_checkpoint
from benchmark.errors import UserError
from benchmark.reporting.restoration import is_restoration_method, restoration_model

CORRUPTION_SEED = 7  # the draws of every row's corruption: the same cubes, the same draws, for every model
INPUT_COLUMN = "input"


@dataclass
class RestorationMatrix:
    errors: pd.DataFrame  # long: corruption, restored_by, mse, ssim, cubes
    slices: dict[str, dict[str, np.ndarray]]  # corruption -> column -> central slice of the first cube
    checkpoints: dict[str, str]  # restoring method -> the checkpoint id it restored with


def ssim_3d(restored: torch.Tensor, target: torch.Tensor) -> np.ndarray:
    """Per-cube 3D SSIM of ``(N, C, Z, Y, X)`` tensors in [0, 1] (channels averaged)."""
    window = min(7, *(s if s % 2 else s - 1 for s in restored.shape[2:]))
    metric = SSIMMetric(spatial_dims=3, data_range=1.0, win_size=window)
    return metric(restored.float(), target.float()).reshape(len(restored), -1).mean(dim=1).numpy()


def held_out_cubes(pool: DataSource, profile: Profile, count: int, seed: int) -> np.ndarray:
    cubes = load_pool(pool.root, profile.cube, PRETRAIN_VAL_SUBSETS, profile.cubes_per_scan, seed)
    if len(cubes) == 0:
        raise UserError(f"{pool.root}: no cube could be drawn from the validation subsets")
    return cubes[np.random.default_rng(seed).permutation(len(cubes))[:count]]


@torch.no_grad()
def restore(model: torch.nn.Module, inputs: torch.Tensor, device: torch.device, batch: int = 8) -> torch.Tensor:
    model.to(device)
    outputs = [torch.sigmoid(model(inputs[i:i + batch].to(device))).cpu() for i in range(0, len(inputs), batch)]
    return torch.cat(outputs)


def restoration_matrix(methods: Sequence[Method], pool: DataSource, profile: Profile, seed: int, results: Path,
                       device: torch.device, cubes: int = 16, progress: bool = True) -> RestorationMatrix:
    """The matrix for ``methods`` (rows and columns alike), pretraining the checkpoints not yet cached."""
    held_out = held_out_cubes(pool, profile, cubes, seed)
    for method in methods:
        if not is_restoration_method(method, held_out[:1], profile.width, default_backbone(method)):
            raise UserError(f"method '{method.name}' is not a restoration method of 3D cubes (its pretext task does "
                            "not restore its input with a whole 3D encoder-decoder)")
    models, checkpoints = {}, {}
    for method in methods:
        checkpoint, meta = obtain_checkpoint(method, pool, profile, seed, results, device, progress)
        models[method.name] = restoration_model(checkpoint, f"checkpoint of {method.name}")
        checkpoints[method.name] = meta["checkpoint_id"]
    rows, slices = [], {}
    middle = held_out.shape[2] // 2
    for method in methods:
        inputs, targets = method.make_example(held_out, np.random.default_rng(CORRUPTION_SEED))
        outputs = {INPUT_COLUMN: inputs, **{name: restore(model, inputs, device) for name, model in models.items()}}
        slices[method.name] = {"original": targets[0, 0, middle].numpy(),
                               **{name: out[0, 0, middle].numpy() for name, out in outputs.items()}}
        for name, restored in outputs.items():
            mse = ((restored - targets) ** 2).flatten(1).mean(dim=1).numpy()
            rows.append({"corruption": method.name, "restored_by": name, "mse": float(mse.mean()),
                         "ssim": float(ssim_3d(restored, targets).mean()), "cubes": len(held_out)})
    return RestorationMatrix(pd.DataFrame(rows), slices, checkpoints)


def as_matrix(errors: pd.DataFrame, value: str) -> pd.DataFrame:
    """Rows: corruption; columns: the input, then each restoring model, in the order given."""
    order = list(dict.fromkeys(errors["restored_by"]))
    table = errors.pivot(index="corruption", columns="restored_by", values=value)
    return table.loc[list(dict.fromkeys(errors["corruption"])), order]


def markdown(matrix: RestorationMatrix) -> str:
    lines = [f"# Restoration cross-matrix ({int(matrix.errors['cubes'].iloc[0])} held-out cubes)", "",
             "Rows: the corruption applied; columns: the corrupted input itself, then the model restoring it.", ""]
    for value, better in (("mse", "lower"), ("ssim", "higher")):
        table = as_matrix(matrix.errors, value)
        lines += [f"## {value.upper()} ({better} is better)", "",
                  "| corruption | " + " | ".join(table.columns) + " |",
                  "|---|" + "---|" * len(table.columns)]
        lines += [f"| {row} | " + " | ".join(f"{v:.4f}" for v in table.loc[row]) + " |" for row in table.index]
        lines.append("")
    return "\n".join(lines)


def heat_map(matrix: RestorationMatrix) -> Figure:
    """MSE above SSIM, one cell a (corruption, restoring model) pair with its value written in it."""
    rows = matrix.errors["corruption"].nunique()
    figure = Figure(figsize=(7.0, 2 * (1.4 + 0.32 * rows)), layout="constrained")
    axes = figure.subplots(2, 1)
    for ax, value, cmap in zip(axes, ("mse", "ssim"), ("viridis_r", "viridis")):
        table = as_matrix(matrix.errors, value)
        image = ax.imshow(table.to_numpy(), cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(table.columns)), table.columns, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(table.index)), table.index, fontsize=7)
        ax.set_xlabel("restored by", fontsize=8)
        ax.set_ylabel("corruption", fontsize=8)
        ax.set_title(f"{value.upper()} (n = {int(matrix.errors['cubes'].iloc[0])} cubes)", fontsize=8)
        for (i, j), v in np.ndenumerate(table.to_numpy()):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color=_text_colour(image, v))
        figure.colorbar(image, ax=ax, shrink=0.9).ax.tick_params(labelsize=7)
    return figure


def _text_colour(image: AxesImage, value: float) -> str:
    """Black on a light cell, white on a dark one (relative luminance of the cell's colour)."""
    red, green, blue, _ = image.cmap(image.norm(value))
    return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.45 else "white"


def image_grid(matrix: RestorationMatrix) -> Figure:
    rows = list(matrix.slices)
    columns = list(next(iter(matrix.slices.values())))
    figure = Figure(figsize=(7.0, 7.0 * len(rows) / len(columns)), layout="constrained")
    axes = figure.subplots(len(rows), len(columns), squeeze=False)
    for i, row in enumerate(rows):
        for j, column in enumerate(columns):
            ax = axes[i, j]
            ax.imshow(matrix.slices[row][column], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(_wrapped(column), fontsize=7)
            if j == 0:
                ax.set_ylabel(_wrapped(row), fontsize=7)
    return figure


def _wrapped(name: str, width: int = 9) -> str:
    """A long method name broken after its hyphens, so that neighbouring panels' titles do not run together."""
    return name.replace("-", "-\n") if len(name) > width else name
