"""``benchmark sweep``: run a grid of methods x tasks x fractions x seeds, resumably."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmark.cli.options import (
    assignments,
    backbone_settings,
    first_repeat,
    method_settings,
    switches,
    task_settings,
)
from benchmark.cli.preset import Preset, load_preset
from benchmark.engine.harness import plan_run
from benchmark.engine.sweep import Grid, choose_executor, run_sweep, summarise, terminate_as_interrupt
from benchmark.errors import UserError


def _listed(text: str | None, option: str, kind: Callable[[str], Any] = str) -> list[Any]:
    """The items of a comma-separated option, each converted by ``kind`` (empty when the option was not
    given). Given with no item, with an item that is not a ``kind`` or with one item twice (``0,0``;
    ``1,1.0``), it is a UserError: a grid is a set of cells, and a repeated one is a typo."""
    if text is None:
        return []
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise UserError(f"{option} {text!r}: the list has no item")
    try:
        values = [kind(item) for item in items]
    except ValueError as error:
        raise UserError(f"{option} {text}: expected a comma-separated list of numbers") from error
    repeat = first_repeat(values)
    if repeat is not None:
        raise UserError(f"{option} {text}: {items[repeat[0]]} and {items[repeat[1]]} name the same value")
    return values


def _fractions(text: str | None) -> list[float]:
    """``--fractions``: label fractions, each in (0, 1] (named here, not as one run's ``--fraction``)."""
    fractions = _listed(text, "--fractions", float)
    outside = next((fraction for fraction in fractions if not 0 < fraction <= 1), None)
    if outside is not None:
        raise UserError(f"--fractions {text}: {outside:g} is not in (0, 1]")
    return fractions


def _data_roots(items: Sequence[str]) -> dict[str, Path]:
    roots = {}
    for item in items:
        task, sep, folder = item.partition("=")
        if not sep or not task or not folder:
            raise UserError(f"--data-root {item}: expected TASK=DIR, e.g. --data-root lcs=/data/LiTS")
        roots[task] = Path(folder)
    return roots


def _weights(items: Sequence[str]) -> dict[str, Path]:
    given = assignments(items, "--weights")
    empty = next((method for method, file in given.items() if not file.strip()), None)
    if empty is not None:
        raise UserError(f"--weights {empty}=: expected METHOD=FILE, e.g. --weights medicalnet=resnet_10_23dataset.pth")
    return {method: Path(file) for method, file in given.items()}


PRESET_FIXES = {"methods": "--methods", "tasks": "--tasks", "fractions": "--fractions", "seeds": "--seeds",
                "method_arg": "--method-arg", "dims": "--dims"}
SLURM_DEFAULTS = {"timeout_min": 24 * 60, "gpus_per_node": 1, "cpus_per_task": 8}
SLURM_OPTIONS = {"slurm_partition": "slurm_partition", "slurm_time": "timeout_min", "slurm_gpus": "gpus_per_node",
                 "slurm_cpus": "cpus_per_task"}  # option -> submitit's parameter
SLURM_MINIMUMS = {"slurm_time": 1, "slurm_gpus": 0, "slurm_cpus": 1}


def _grid(args: Any, methods: Sequence[str], tasks: Sequence[str], fractions: Sequence[float],
          seeds: Sequence[int], settings: tuple[tuple[str, str], ...], dims: Sequence[str],
          protocols: Sequence[str]) -> Grid:
    """A grid of these lists under the rest of the command line (profile, data, backbones...)."""
    return Grid(methods=list(methods), tasks=list(tasks), fractions=list(fractions), seeds=list(seeds),
                profile=args.profile, data_roots=_data_roots(args.data_root), pretrain_root=args.pretrain_root,
                switches=tuple(switches(args).items()), method_settings=settings,
                task_settings=task_settings(args), subset_seed=args.subset_seed, protocols=list(protocols),
                backbones=_listed(args.backbones, "--backbones") or [""],
                backbone_settings=backbone_settings(args), weights=_weights(args.weights), dims=list(dims))


def _grids(args: Any) -> tuple[list[Grid], Preset | None]:
    """The grids to run: the preset's, one after the other, or the one the command line gives."""
    protocols = _listed(args.protocols, "--protocols")
    if args.preset:
        given = [option for key, option in PRESET_FIXES.items() if getattr(args, key) not in (None, [])]
        if given:
            raise UserError(f"--preset {args.preset} fixes the methods, tasks, fractions, seeds, method settings "
                            f"and dimensionalities: drop {', '.join(given)}")
        preset = load_preset(args.preset)
        if any(g.protocols for g in preset.grids) and protocols:
            raise UserError(f"--preset {args.preset} fixes the transfer protocols of some grids: drop --protocols")
        return [_grid(args, g.methods, g.tasks, g.fractions, g.seeds, g.method_settings, g.dims,
                      g.protocols or protocols or ["full"]) for g in preset.grids], preset
    methods, tasks = _listed(args.methods, "--methods"), _listed(args.tasks, "--tasks")
    if not methods or not tasks:
        raise UserError("--methods and --tasks are required (or --preset NAME, e.g. --preset calibration)")
    grid = _grid(args, methods, tasks, _fractions(args.fractions) or [1.0],
                 _listed(args.seeds, "--seeds", int) or [0], method_settings(args),
                 _listed(args.dims, "--dims") or [""], protocols or ["full"])
    return [grid], None


def _plan_every_grid(grids: Sequence[Grid], preset: Preset) -> None:
    """Plan every cell of every grid of the preset before any of them trains, as a single grid's sweep does: an
    unknown name, a bad setting or a missing data folder in a later grid stops the sweep now, not hours later,
    with the preset file and the grid named."""
    for number, grid in enumerate(grids, start=1):
        try:
            for spec in grid.specs():
                plan_run(spec)
        except UserError as error:
            raise UserError(f"{preset.path}: grid {number}: {error}") from error


def _slurm_parameters(args: Any, executor: str) -> dict[str, Any]:
    """submitit's parameters from the ``--slurm-*`` options, which only a SLURM sweep takes."""
    given = {option: value for option in SLURM_OPTIONS if (value := getattr(args, option)) is not None}
    if given and executor != "slurm":
        raise UserError(f"--{next(iter(given)).replace('_', '-')} applies to --executor slurm only")
    for option, least in SLURM_MINIMUMS.items():
        if given.get(option, least) < least:
            raise UserError(f"--{option.replace('_', '-')} {given[option]}: must be at least {least}")
    return {**SLURM_DEFAULTS, **{SLURM_OPTIONS[option]: value for option, value in given.items()}}


def command(args: Any) -> int:
    """``benchmark sweep``: run the grid (or a preset's grids), print the summary, return the exit status."""
    executor = choose_executor(args.jobs, args.executor)
    slurm = _slurm_parameters(args, executor)
    grids, preset = _grids(args)
    if preset is not None:
        _plan_every_grid(grids, preset)
    abouts = [g.about for g in preset.grids] if preset else [""]
    outcomes = []
    with terminate_as_interrupt():
        for number, (grid, about) in enumerate(zip(grids, abouts, strict=True), start=1):
            if preset is not None:
                print(f"preset {preset.name}, grid {number} of {len(grids)}: {', '.join(grid.methods)} on "
                      f"{', '.join(grid.tasks)}" + (f" ({about})" if about else ""))
            outcomes += run_sweep(grid, args.results, args.device, args.jobs, executor, slurm,
                                  progress=not args.no_progress)
    summary, status = summarise(outcomes, args.results)
    print(summary)
    if preset is not None and preset.report:
        print(f"judge the preset's runs: benchmark report --results {shlex.quote(str(args.results))} "
              f"{shlex.join(preset.report)}")
    return status
