"""``benchmark sweep``: run a grid of methods x tasks x fractions x seeds, resumably."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmark.cli.options import assignments, backbone_settings, method_settings, switches, task_settings
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


def command(args: Any) -> int:
    """``benchmark sweep``: run the grid, print the summary, return the exit status."""
    grid = Grid(methods=_names(args.methods), tasks=_names(args.tasks),
                fractions=_numbers(args.fractions, float, "--fractions"),
                seeds=_numbers(args.seeds, int, "--seeds"), profile=args.profile,
                data_roots=_data_roots(args.data_root), pretrain_root=args.pretrain_root,
                switches=tuple(switches(args).items()), method_settings=method_settings(args),
                task_settings=task_settings(args), subset_seed=args.subset_seed,
                protocols=_names(args.protocols), backbones=_names(args.backbones) or [""],
                backbone_settings=backbone_settings(args), weights=_weights(args.weights),
                dims=_names(args.dims) or [""])
    slurm = {"slurm_partition": args.slurm_partition, "timeout_min": args.slurm_time,
             "gpus_per_node": args.slurm_gpus, "cpus_per_task": args.slurm_cpus}
    with terminate_as_interrupt():
        outcomes = run_sweep(grid, args.results, args.device, args.jobs, args.executor,
                             {k: v for k, v in slurm.items() if v is not None}, progress=not args.no_progress)
    summary, status = summarise(outcomes, args.results)
    print(summary)
    return status
