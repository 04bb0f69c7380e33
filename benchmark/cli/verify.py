"""``benchmark verify-data``: check a downloaded dataset and list every problem."""

from __future__ import annotations

import argparse

from benchmark.api.registry import TASKS
from benchmark.api.task import Splits
from benchmark.cli import one_line
from benchmark.data.datasets import directory_source
from benchmark.data.pools import pool_layout
from benchmark.data.verify import data_problems, summary
from benchmark.errors import UserError


def command(args: argparse.Namespace) -> None:
    """Print every problem (one line each, unprintable characters of a file's names escaped) and a
    summary; UserError (non-zero exit) if any."""
    task = TASKS.create(args.task)
    splits = Splits.read(args.splits) if args.splits else None
    data = directory_source(args.data_root, splits)
    problems = data_problems(task, data)
    if args.pretrain_root:
        problems += pool_layout(args.pretrain_layout).problems(directory_source(args.pretrain_root).root)
    for problem in problems:
        print(one_line(str(problem)))
    if problems:
        raise UserError(summary(problems, f"task {task.name}", data.root))
    print(summary(problems, f"task {task.name}", data.root))
