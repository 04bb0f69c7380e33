"""``benchmark sweep``: run a grid of methods x tasks x fractions x seeds, resumably."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmark.cli.options import assignments, backbone_settings, method_settings, switches, task_settings
from benchmark.cli.preset import Preset, load_preset
from benchmark.engine.harness import plan_run
from benchmark.engine.sweep import Grid, run_sweep, summarise, terminate_as_interrupt
from benchmark.errors import UserError


def _names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _numbers(text: str, kind: Callable[[str], Any], option: str) -> list[Any]:
    try:
        return [kind(item) for item in _names(text)]
    except ValueError as error:
        raise UserError(f"{option} {text}: expected a comma-separated list of numbers") from error


def _data_roots(items: Sequence[str]) -> dict[str, Path]:
    roots = {}
    for item in items:
        task, sep, folder = item.partition("=")
        if not sep or not task or not folder:
            raise UserError(f"--data-root {item}: expected TASK=DIR, e.g. --data-root lcs=/data/LiTS")
        roots[task] = Path(folder)
    return roots


def _weights(items: Sequence[str]) -> dict[str, Path]:
    return {method: Path(file) for method, file in assignments(items, "--weights").items()}


PRESET_FIXES = {"methods": "--methods", "tasks": "--tasks", "fractions": "--fractions", "seeds": "--seeds",
                "method_arg": "--method-arg", "dims": "--dims"}


def _grid(args: Any, methods: Sequence[str], tasks: Sequence[str], fractions: Sequence[float],
          seeds: Sequence[int], settings: tuple[tuple[str, str], ...], dims: Sequence[str],
          protocols: Sequence[str] = ()) -> Grid:
    """A grid of these lists under the rest of the command line (profile, data, backbones, the protocols
    unless given...)."""
    return Grid(methods=list(methods), tasks=list(tasks), fractions=list(fractions), seeds=list(seeds),
                profile=args.profile, data_roots=_data_roots(args.data_root), pretrain_root=args.pretrain_root,
                switches=tuple(switches(args).items()), method_settings=settings,
                task_settings=task_settings(args), subset_seed=args.subset_seed,
                protocols=list(protocols) or _names(args.protocols), backbones=_names(args.backbones) or [""],
                backbone_settings=backbone_settings(args), weights=_weights(args.weights),
                dims=list(dims))


def _grids(args: Any) -> tuple[list[Grid], Preset | None]:
    """The grids to run: the preset's, one after the other, or the one the command line gives."""
    given = [option for key, option in PRESET_FIXES.items() if getattr(args, key)]
    if args.preset:
        if given:
            raise UserError(f"--preset {args.preset} fixes the methods, tasks, fractions, seeds, method settings "
                            f"and dimensionalities: drop {', '.join(given)}")
        preset = load_preset(args.preset)
        if any(g.protocols for g in preset.grids) and _names(args.protocols) != ["full"]:
            raise UserError(f"--preset {args.preset} fixes the transfer protocols of some grids: drop --protocols")
        return [_grid(args, g.methods, g.tasks, g.fractions, g.seeds, g.method_settings, g.dims, g.protocols)
                for g in preset.grids], preset
    if not args.methods or not args.tasks:
        raise UserError("--methods and --tasks are required (or --preset NAME, e.g. --preset calibration)")
    grid = _grid(args, _names(args.methods), _names(args.tasks),
                 _numbers(args.fractions or "1.0", float, "--fractions"),
                 _numbers(args.seeds or "0", int, "--seeds"), method_settings(args), _names(args.dims) or [""])
    return [grid], None


def _plan_every_grid(grids: Sequence[Grid]) -> None:
    """Plan every cell of every grid before any of them trains, as a single grid's sweep does: an unknown name, a
    bad setting or a missing data folder in a later grid stops the sweep now, not hours later."""
    for grid in grids:
        for spec in grid.specs():
            plan_run(spec)


def command(args: Any) -> int:
    """``benchmark sweep``: run the grid (or a preset's grids), print the summary, return the exit status."""
    grids, preset = _grids(args)
    if len(grids) > 1:
        _plan_every_grid(grids)
    slurm = {"slurm_partition": args.slurm_partition, "timeout_min": args.slurm_time,
             "gpus_per_node": args.slurm_gpus, "cpus_per_task": args.slurm_cpus}
    abouts = [g.about for g in preset.grids] if preset else [""]
    outcomes = []
    with terminate_as_interrupt():
        for number, (grid, about) in enumerate(zip(grids, abouts, strict=True), start=1):
            if preset is not None:
                print(f"preset {preset.name}, grid {number} of {len(grids)}: {', '.join(grid.methods)} on "
                      f"{', '.join(grid.tasks)}" + (f" ({about})" if about else ""))
            outcomes += run_sweep(grid, args.results, args.device, args.jobs, args.executor,
                                  {k: v for k, v in slurm.items() if v is not None}, progress=not args.no_progress)
    summary, status = summarise(outcomes, args.results)
    print(summary)
    if preset is not None and preset.report:
        print(f"judge the preset's runs: benchmark report --results {shlex.quote(str(args.results))} "
              f"{shlex.join(preset.report)}")
    return status
