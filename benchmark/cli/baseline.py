"""``benchmark baseline``: the best single intensity threshold, the floor a learned model must clear."""

from __future__ import annotations

import argparse

from benchmark.api.profiles import get_profile
from benchmark.api.registry import TASKS
from benchmark.data.datasets import directory_source, phantom_source
from benchmark.engine.baselines import threshold_baseline


def command(args: argparse.Namespace) -> None:
    task = TASKS.create(args.task)
    data = directory_source(args.data_root) if args.data_root else phantom_source(task.write_phantom)
    cube = task.cube_shape(get_profile(args.profile).cube)
    result = threshold_baseline(task, task.load(data.root, cube))
    scores = "   ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items())
    print(f"{task.name}: threshold baseline ({result['rule']})   test {scores}")
