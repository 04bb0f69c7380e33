"""The report's figures (PNG), drawn with matplotlib's object API (no pyplot, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from benchmark.data import files

DPI = 100


def method_colours(methods: list[str]) -> dict[str, tuple]:
    palette = colormaps["tab10"]
    return {method: palette(index % 10) for index, method in enumerate(sorted(methods))}


def _task_axes(tasks: list[str], height: float = 3.6) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=(4.2 * len(tasks), height), layout="constrained")
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        ax.set_title(task)
        ax.grid(alpha=0.3)
    return figure, list(axes)


def save_figure(figure: Figure, path: Path) -> None:
    files.write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))


def plot_label_efficiency(curves: pd.DataFrame, metric_names: dict[str, str], savings: dict[tuple[str, str], float],
                          path: Path) -> None:
    """Primary metric vs label fraction per method: mean over seeds with its 95% band; the legend gives
    each method's label saving (``savings[task, method]``) where there is one."""
    tasks = sorted(curves["task"].unique())
    colours = method_colours(list(curves["method"].unique()))
    figure, axes = _task_axes(tasks)
    for ax, task in zip(axes, tasks):
        for method, curve in curves[curves["task"] == task].groupby("method"):
            curve = curve.sort_values("fraction")
            saving = savings.get((task, method))
            label = method if saving is None or np.isnan(saving) else f"{method} ({saving:.0%} fewer labels)"
            ax.plot(curve["fraction"], curve["mean"], marker="o", color=colours[method], label=label)
            ax.fill_between(curve["fraction"], curve["low"], curve["high"], color=colours[method], alpha=0.2)
        ax.set_xlabel("fraction of training labels")
        ax.set_ylabel(f"test {metric_names[task]} (mean, 95% band)")
        ax.legend(fontsize="small")
    save_figure(figure, path)


def plot_convergence(histories: pd.DataFrame, primary: dict[str, str], path: Path) -> None:
    """Validation primary metric vs epoch: each seed thin, the mean over the seeds still running thick."""
    curves = histories[histories["column"] == "val_" + histories["run_id"].map(primary)]
    tasks = sorted(curves["task"].unique())
    colours = method_colours(list(curves["method"].unique()))
    figure, axes = _task_axes(tasks)
    for ax, task in zip(axes, tasks):
        for method, runs in curves[curves["task"] == task].groupby("method"):
            for _, run in runs.groupby("run_id"):
                run = run.sort_values("epoch")
                ax.plot(run["epoch"] + 1, run["value"], color=colours[method], alpha=0.35, linewidth=0.8)
            mean = runs.groupby("epoch")["value"].mean()
            ax.plot(mean.index + 1, mean.to_numpy(), color=colours[method], linewidth=2, label=method)
        ax.set_xlabel("fine-tuning epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation " + primary[curves[curves["task"] == task]["run_id"].iloc[0]])
        ax.legend(fontsize="small")
    save_figure(figure, path)


def plot_seed_boxes(scores: pd.DataFrame, path: Path) -> None:
    """Per task, one box per method over its seeds' test scores, with every seed drawn as a point."""
    tasks = sorted(scores["task"].unique())
    figure, axes = _task_axes(tasks)
    for ax, task in zip(axes, tasks):
        own = scores[scores["task"] == task]
        methods = sorted(own["method"].unique())
        values = [own[own["method"] == m]["value"].to_numpy() for m in methods]
        ax.boxplot(values)
        ax.set_xticks(range(1, len(methods) + 1), methods)
        for position, points in enumerate(values, start=1):
            ax.scatter(np.full(points.size, position), points, s=14, color="black", zorder=3)
        ax.set_ylabel(f"test {own['metric'].iloc[0]} (one point per seed)")
        ax.tick_params(axis="x", labelrotation=30)
    save_figure(figure, path)


def plot_restoration(panels: dict[str, np.ndarray], title: str, path: Path) -> None:
    """One row of 2D images (original, transformed, restored, |difference|) in [0, 1]."""
    figure = Figure(figsize=(3.2 * len(panels), 3.6), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, image) in zip(axes, panels.items()):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(name)
        ax.set_axis_off()
    figure.suptitle(title, fontsize="small")
    save_figure(figure, path)
