"""``benchmark verify-data``: check a downloaded dataset and list every problem."""

from __future__ import annotations

import argparse

from benchmark.api.registry import TASKS
from benchmark.api.task import Splits, Task
from benchmark.cli import one_line
from benchmark.data.datasets import DataSource, directory_source
from benchmark.data.pools import pool_layout
from benchmark.data.verify import Problem, data_problems, summary
from benchmark.engine.harness import check_pool_holds_no_test_scans
from benchmark.errors import UserError


def pool_problems(task: Task, data: DataSource, pool: DataSource, layout: str, data_is_sound: bool) -> list[Problem]:
    """The pool folder's problems and, once both folders are sound, the leakage ``benchmark run`` refuses:
    a pretraining scan that is a test scan of ``task``."""
    problems = pool_layout(layout).problems(pool.root)
    if problems or not data_is_sound:
        return problems
    try:
        check_pool_holds_no_test_scans(task, data, pool, layout)
    except UserError as error:
        return [Problem.from_error(error)]
    return []


def command(args: argparse.Namespace) -> None:
    """Print every problem (one line each, unprintable characters of a file's names escaped) and a
    summary per folder checked; UserError (non-zero exit) if any."""
    task = TASKS.create(args.task)
    splits = Splits.read(args.splits) if args.splits else None
    data = directory_source(args.data_root, splits)
    found = [(data_problems(task, data), f"task {task.name}", data.root)]
    if args.pretrain_root:
        pool = directory_source(args.pretrain_root)
        found.append((pool_problems(task, data, pool, args.pretrain_layout, not found[0][0]), "pretraining",
                      pool.root))
    for problems, _, _ in found:
        for problem in problems:
            print(one_line(str(problem)))
    if any(problems for problems, _, _ in found):
        raise UserError("; ".join(summary(*checked) for checked in found if checked[0]))
    for checked in found:
        print(summary(*checked))
