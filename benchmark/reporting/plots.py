"""The report's figures, drawn with matplotlib's object API (no pyplot, no display needed).

Every figure is drawn twice, for a 7-inch (two-column) and a 3.5-inch (one-column) width, with no
text smaller than ``MIN_FONT_PT`` at that size: each as PDF (vector, for print), the 7-inch one also
as PNG (``DPI``, for the HTML page).
Panels follow the paper's task order; every legend gives n. Text that comes from records
(method and task names, metric names, ids) is drawn literally: ``$`` is escaped so mathtext
never parses it, and TeX is off.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from benchmark.data import files
from benchmark.reporting import task_order
from benchmark.reporting.calibration import NEGATIVE, NEGATIVE_PER_CASE
from benchmark.reporting.stats import T_INTERVAL

DPI = 200  # the PNG is for the page; the PDF (vector) is for print
WIDTHS = {"": 7.0, "_column": 3.5}  # file-name suffix -> figure width in inches (two-column, one-column)
FORMATS = {"": ("png", "pdf"), "_column": ("pdf",)}  # file-name suffix -> the formats it is saved in
MIN_FONT_PT = 7
PANEL_HEIGHT = 2.2  # inches
LEGEND_CHAR_INCHES = 0.06  # a 7-pt character of the default font, a little wider than its average
LEGEND_ENTRY_INCHES = 0.6  # an entry's marker, line and the spacing between columns
LEGEND_LINE_INCHES = 0.15  # a 7-pt line of a legend with the spacing between entries, a little more than it takes
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 8, "text.usetex": False,
         "pdf.fonttype": 42, "svg.fonttype": "none", "axes.titleweight": "bold"}
Draw = Callable[..., Figure]


def literal(text: object) -> str:
    """``text`` as matplotlib draws it literally: ``$`` escaped, so mathtext never parses it."""
    return str(text).replace("$", r"\$")


def method_colours(methods: list[str]) -> dict[str, tuple]:
    """A colour per method, in name order: tab10's up to 10 methods, tab20's (pairs of a dark and a light
    shade) up to 20, repeating only beyond that."""
    palette = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {method: palette(index % palette.N) for index, method in enumerate(sorted(methods))}


def _n_text(counts: list[int], unit: str) -> str:
    low, high = min(counts), max(counts)
    return f"n={low} {unit}" if low == high else f"n={low}-{high} {unit}"


def panel_grid(tasks: list[str], width: float, extra_height: float = 0.5) -> tuple[Figure, list[Axes]]:
    """One panel per task (titled with its name), 3 per row at 7 inches and 2 at 3.5; spare panels hidden."""
    columns = min(len(tasks), 3 if width >= 7 else 2)
    rows = math.ceil(len(tasks) / columns)
    figure = Figure(figsize=(width, PANEL_HEIGHT * rows + extra_height), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    for ax, task in zip(axes, tasks):
        ax.set_title(literal(task))
        ax.grid(alpha=0.3)
    return figure, axes[: len(tasks)]


def shared_legend(figure: Figure, entries: dict[str, tuple], title: str = "") -> None:
    """One legend below the panels: ``entries`` maps a label to its colour; ``title`` above them.
    Labels (a method's name and arguments can be long) are wrapped to the figure's width, and the
    legend has as many columns, up to 3, as its widest entries leave room for side by side. The room
    the figure keeps below its panels holds one line; the figure grows by the legend's other lines,
    so that a tall legend does not squeeze the panels."""
    width = figure.get_figwidth()
    characters = max(12, int((width - LEGEND_ENTRY_INCHES) / LEGEND_CHAR_INCHES))
    labels = [_wrapped(label, characters) for label in entries]
    widest = sorted((max(map(len, label.splitlines()), default=0) * LEGEND_CHAR_INCHES + LEGEND_ENTRY_INCHES
                     for label in labels), reverse=True)
    columns = max((n for n in range(1, min(len(labels), 3) + 1) if sum(widest[:n]) <= width), default=1)
    title = _wrapped(title, int(width / LEGEND_CHAR_INCHES))
    per_column = math.ceil(len(labels) / columns)  # matplotlib fills a legend column by column
    lines = sum(max(label.count("\n") + 1 for label in labels[row::per_column])
                for row in range(min(per_column, len(labels)))) + (title.count("\n") + 1 if title else 0)
    figure.set_figheight(figure.get_figheight() + max(0, lines - 1) * LEGEND_LINE_INCHES)
    handles = [Line2D([], [], color=colour, marker="o", linewidth=1.5) for colour in entries.values()]
    figure.legend(handles, [literal(label) for label in labels], loc="outside lower center", ncols=columns,
                  frameon=False, title=literal(title) or None)


def _wrapped(text: str, characters: int) -> str:
    """``text`` broken into lines of at most ``characters`` (long words broken too), its own breaks kept."""
    return "\n".join(textwrap.fill(line, characters, break_long_words=True) if line else line
                     for line in text.split("\n"))


SAVE_OPTIONS = {"png": {"dpi": DPI, "metadata": {"Software": None}}, "pdf": {"metadata": {"CreationDate": None}}}


def save_figure(figure: Figure, stem: Path, kinds: tuple[str, ...]) -> list[Path]:
    """``stem``.<kind> for each of ``kinds``, written atomically, without dates or versions (reproducible)."""
    paths = []
    for kind in kinds:
        path = stem.with_name(f"{stem.name}.{kind}")
        files.write_atomic(path, lambda tmp, kind=kind: figure.savefig(tmp, format=kind, **SAVE_OPTIONS[kind]))
        paths.append(path)
    return paths


def draw_both_widths(draw: Draw, data: tuple, stem: Path) -> list[Path]:
    """Draw ``draw(*data, width=...)`` at each width of ``WIDTHS`` and save it in its ``FORMATS``; the
    7-inch PNG first."""
    written = []
    with rc_context(STYLE):
        for suffix, width in WIDTHS.items():
            written += save_figure(draw(*data, width=width), stem.with_name(stem.name + suffix), FORMATS[suffix])
    return written


def claim_text(saving: pd.Series) -> str:
    """A claimed label saving in one line: task, method and its shown lower bound (the estimate is in the table)."""
    return f"{saving['task']}, {saving['method']}: ≥ {saving['low']:.0%} fewer labels (one-sided 95% bound)"


def draw_label_efficiency(curves: pd.DataFrame, metric_names: dict[str, str], savings: pd.DataFrame,
                          width: float) -> Figure:
    """Primary metric vs label fraction per method: mean over seeds with its t interval; the claimed
    "X% fewer labels" (rows of ``savings`` with ``headline``) above the legend."""
    tasks = task_order(list(curves["task"].unique()))
    colours = method_colours(list(curves["method"].unique()))
    figure, axes = panel_grid(tasks, width)
    for ax, task in zip(axes, tasks):
        for method, curve in curves[curves["task"] == task].groupby("method"):
            curve = curve.sort_values("fraction")
            ax.plot(curve["fraction"], curve["mean"], marker="o", markersize=3, color=colours[method])
            ax.fill_between(curve["fraction"], curve["low"], curve["high"], color=colours[method], alpha=0.2)
        ax.set_xlabel("label fraction")
        ax.set_ylabel(f"test {literal(metric_names[task])}")
    claimed = savings[savings["headline"]] if not savings.empty else savings
    claims = [claim_text(row) for _, row in claimed.iterrows()] if not claimed.empty else []
    counts = curves.groupby("method")["n_seeds"].apply(list)
    shared_legend(figure, {f"{method} ({_n_text(counts[method], 'seeds per point')})": colours[method]
                           for method in sorted(colours)}, "\n".join(claims))
    figure.suptitle(f"Mean over seeds; band: 95% {T_INTERVAL}")
    return figure


def draw_convergence(histories: pd.DataFrame, curves: pd.DataFrame, primary: dict[str, str], width: float) -> Figure:
    """Validation primary metric vs epoch: each run thin; the mean thick, only over the epochs where
    every run still trains; dashed on the right axis, the number of runs still training."""
    runs = histories[histories["column"] == "val_" + histories["run_id"].map(primary)]
    tasks = task_order(list(runs["task"].unique()))
    colours = method_colours(list(runs["method"].unique()))
    figure, axes = panel_grid(tasks, width)
    for ax, task in zip(axes, tasks):
        counts = ax.twinx()
        for method, own in runs[runs["task"] == task].groupby("method"):
            for _, run in own.groupby("run_id"):
                run = run.sort_values("epoch")
                ax.plot(run["epoch"] + 1, run["value"], color=colours[method], alpha=0.35, linewidth=0.6)
            curve = curves[(curves["task"] == task) & (curves["method"] == method)].sort_values("epoch")
            ax.plot(curve["epoch"] + 1, curve["mean"], color=colours[method], linewidth=1.8)
            counts.step(curve["epoch"] + 1, curve["n_training"], where="mid", color=colours[method],
                        linestyle="--", linewidth=0.8)
        counts.set_ylim(0, None)
        counts.yaxis.set_major_locator(MaxNLocator(integer=True))
        if width >= 7:
            counts.set_ylabel("runs training (dashed)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins="auto" if width >= 7 else 4))
        first_run = runs[runs["task"] == task]["run_id"].iloc[0]
        ax.set_ylabel("validation " + literal(primary[first_run]))
    totals = curves.drop_duplicates(["task", "method"]).groupby("method")["runs"].apply(list)
    shared_legend(figure, {f"{method} ({_n_text(totals[method], 'runs')})": colours[method]
                           for method in sorted(colours)})
    figure.suptitle("Thin: each run; thick: their mean, drawn while all runs train;\n"
                    "dashed (right axis): runs still training")
    return figure


def draw_seed_boxes(scores: pd.DataFrame, width: float) -> Figure:
    """Per task, one box per method over its seeds' test scores, with every seed drawn as a point; boxes
    coloured by method and named in the legend (a method's name can be longer than a box is wide),
    each box's number of seeds below it."""
    tasks = task_order(list(scores["task"].unique()))
    colours = method_colours(list(scores["method"].unique()))
    figure, axes = panel_grid(tasks, width, extra_height=0.3)
    for ax, task in zip(axes, tasks):
        own = scores[scores["task"] == task]
        methods = sorted(own["method"].unique())
        values = [own[own["method"] == m]["value"].to_numpy() for m in methods]
        boxes = ax.boxplot(values, patch_artist=True, medianprops={"color": "black"})
        for box, method in zip(boxes["boxes"], methods):
            box.set(facecolor=colours[method], alpha=0.6)
        ax.set_xticks(range(1, len(methods) + 1), [str(v.size) for v in values])
        ax.set_xlabel("seeds (n)")
        for position, points in enumerate(values, start=1):
            ax.scatter(np.full(points.size, position), points, s=8, color="black", zorder=3)
        ax.set_ylabel(f"test {literal(own['metric'].iloc[0])}")
    counts = scores.groupby(["method", "task"]).size().groupby("method").apply(list)
    shared_legend(figure, {f"{method} ({_n_text(counts[method], 'seeds')})": colours[method]
                           for method in sorted(colours)})
    figure.suptitle("One point per seed (n = seeds)")
    return figure


def draw_restoration(panels: dict[str, np.ndarray], title: str, width: float) -> Figure:
    """2D images (original, transformed, restored, |difference|) in [0, 1]: one row at 7 inches, 2 x 2 at 3.5."""
    columns = len(panels) if width >= 7 else 2
    rows = math.ceil(len(panels) / columns)
    side = width / columns
    figure = Figure(figsize=(width, side * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, image) in zip(axes, panels.items()):
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(literal(name))
    for ax in axes:
        ax.set_axis_off()
    figure.suptitle(literal(title))
    return figure


HIGHLIGHT, OTHERS = "tab:red", "0.45"  # the highlighted variant (the combined scheme) and the others
TICK_CHARACTERS = 26  # a variant's label is wrapped into lines of at most this many characters


def draw_schemes(summary: pd.DataFrame, seeds: pd.DataFrame, order: list[str], highlight: str | None,
                 ticks: dict[str, str], title: str, others: str = "the others", *, width: float) -> Figure:
    """Per task (at the fraction of its rows), each variant's mean over seeds with its t interval and its
    seeds as dots, in ``order``; ``highlight`` in its own colour, bold, with its mean dashed across the
    panel (the others grey, named ``others`` in the legend), or every variant in its own colour when
    None. ``ticks``: the text under each variant (its label by default)."""
    tasks = task_order(list(summary["task"].unique()))
    colours = {m: HIGHLIGHT if m == highlight else OTHERS for m in order} if highlight else method_colours(order)
    figure, axes = panel_grid(tasks, width, extra_height=0.6)
    for ax, task in zip(axes, tasks):
        own = summary[summary["task"] == task].set_index("method")
        present = [m for m in order if m in own.index]
        for x, method in enumerate(present):
            row = own.loc[method]
            error = None if np.isnan(row["ci_low"]) else [[row["mean"] - row["ci_low"]], [row["ci_high"] - row["mean"]]]
            ax.errorbar(x, row["mean"], yerr=error, fmt="o", color=colours[method], capsize=3, linewidth=1.2,
                        markersize=5 if method == highlight else 4, zorder=2)
            points = seeds[(seeds["task"] == task) & (seeds["method"] == method)]["value"].to_numpy(dtype=float)
            ax.scatter(np.full(points.size, x + 0.18), points, s=6, color="black", zorder=3)
            if method == highlight:
                ax.axhline(row["mean"], color=HIGHLIGHT, linestyle="--", linewidth=0.7, alpha=0.7, zorder=1)
        labels = [literal(textwrap.fill(f"{ticks.get(m, m)} (n={int(own.loc[m, 'n_seeds'])})", TICK_CHARACTERS,
                                        break_long_words=True)) for m in present]  # escaped after wrapping
        ax.set_xticks(range(len(present)), labels, rotation=35 if width >= 7 else 60, ha="right",
                      rotation_mode="anchor")
        for text, method in zip(ax.get_xticklabels(), present):
            if method == highlight:
                text.set_fontweight("bold")
        ax.set_xlim(-0.5, len(present) - 0.5)
        ax.set_title(literal(f"{task}, fraction {own['fraction'].iloc[0]:g}"))
        ax.set_ylabel(f"test {literal(own['metric'].iloc[0])}")
    counts = summary.groupby("method")["n_seeds"].apply(list)
    if highlight:
        rest = [m for m in order if m != highlight and m in counts.index]
        entries = {f"{highlight} ({_n_text(counts[highlight], 'seeds')})": HIGHLIGHT}
        if rest:
            entries[f"{others} ({_n_text(sum((counts[m] for m in rest), []), 'seeds')})"] = OTHERS
    else:
        entries = {f"{ticks.get(m, m)} ({_n_text(counts[m], 'seeds')})": colours[m] for m in order if m in counts.index}
    shared_legend(figure, entries)
    figure.suptitle(literal(title))
    return figure


NULL_CHECKS = {NEGATIVE: ("black", "Welch"), NEGATIVE_PER_CASE: ("tab:orange", "per case")}  # colour, name


def draw_calibration(rows: pd.DataFrame, alpha: float, *, width: float) -> Figure:
    """The calibration section's picture: the negative control's p-values against the uniform
    distribution they follow when no difference exists (sorted p against i / (n + 1), with the 95%
    pointwise band of the uniform order statistics, Beta(i, n + 1 - i)), the Welch comparisons and
    the per-case tests' each in its colour with its own band, and the known effects (label budget, positive
    controls) as differences of means with their 95% Welch intervals, black where the expected effect
    was detected. Untested comparisons (one seed on a side) are left out."""
    tested = rows[rows["p"].notna()]
    nulls = {check: np.sort(tested.loc[tested["check"] == check, "p"].to_numpy(dtype=float)) for check in NULL_CHECKS}
    nulls = {check: p_values for check, p_values in nulls.items() if p_values.size}
    effects = tested[~tested["check"].isin(list(NULL_CHECKS))]
    panels = [name for name, count in (("null", len(nulls)), ("effects", len(effects))) if count]
    side_by_side = width >= 7 and len(panels) == 2
    heights = {"null": 2.6, "effects": 0.9 + 0.3 * len(effects)}
    height = max(heights[p] for p in panels) if side_by_side else sum(heights[p] for p in panels)
    figure = Figure(figsize=(width, height + 0.3), layout="constrained")
    if side_by_side:  # each panel a subfigure: the effects' long labels do not squeeze the p-value panel
        parts = figure.subfigures(1, 2, width_ratios=[1.0, 1.7])
    else:
        parts = figure.subfigures(len(panels), 1, height_ratios=[heights[p] for p in panels], squeeze=False).ravel()
    for part, panel in zip(parts, panels):
        ax = part.subplots()
        if panel == "null":
            _draw_null_p_values(ax, nulls, alpha)
        else:
            _draw_known_effects(ax, effects, label_characters=40 if width >= 7 else 24)
    return figure


def _draw_null_p_values(ax: Axes, nulls: dict[str, np.ndarray], alpha: float) -> None:
    from scipy.stats import beta

    counts = []
    for check, p_values in nulls.items():
        n = p_values.size
        order = np.arange(1, n + 1)
        expected = order / (n + 1)
        colour, name = NULL_CHECKS[check]
        ax.fill_between(expected, beta.ppf(0.025, order, n + 1 - order), beta.ppf(0.975, order, n + 1 - order),
                        color=colour, alpha=0.12, linewidth=0)
        ax.scatter(expected, p_values, s=10, color=colour, zorder=3, label=f"{name} ({n} comparisons)")
        counts.append(f"{int(np.sum(p_values < alpha))}/{n} {name}")
    ax.plot([0, 1], [0, 1], color="0.4", linewidth=0.8)
    ax.axhline(alpha, color="tab:red", linestyle=":", linewidth=0.8, label=f"p = {alpha:g}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="expected p (uniform quantile)", ylabel="observed p")
    ax.set_title(f"negative control, p < {alpha:g}:\n" + ", ".join(counts), fontsize="medium")
    ax.legend(loc="upper left", frameon=False, title="shaded: 95% band, no difference")
    ax.grid(alpha=0.3)


def _draw_known_effects(ax: Axes, effects: pd.DataFrame, label_characters: int) -> None:
    y = np.arange(len(effects))[::-1]
    low = np.nan_to_num((effects["difference"] - effects["ci_low"]).to_numpy(float))
    high = np.nan_to_num((effects["ci_high"] - effects["difference"]).to_numpy(float))
    for yy, difference, lo, hi, hit in zip(y, effects["difference"], low, high, effects["detected"]):
        ax.errorbar(difference, yy, xerr=[[lo], [hi]], fmt="o", color="black" if hit else OTHERS, capsize=2,
                    markersize=4, linewidth=1.1)
    # escaped after wrapping, so that no line break falls between a backslash and its "$"
    labels = [literal(textwrap.fill(f"{check}: {task}" + (f", {method}" if check != "label budget" else ""),
                                    label_characters, break_long_words=True))
              for check, task, method in zip(effects["check"], effects["task"], effects["method"])]
    ax.set_yticks(y, labels)
    ax.axvline(0, color="0.4", linewidth=0.8)
    ax.set_xlabel("difference, 95% Welch CI")
    ax.set_title("known effects; black: detected")
    ax.grid(alpha=0.3, axis="x")
