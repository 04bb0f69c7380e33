"""A trivial baseline: the best single intensity threshold, chosen on the training split.

It is the floor a learned model must clear on a task, and the check that a phantom
is not solvable by intensity alone. The task declares the rule (``Task.threshold_rule``:
for segmentation, foreground where one channel is above or below a threshold; for
classification, a central-region statistic as the score) and scores it on the test
split with its own metrics.
"""

from __future__ import annotations

from typing import Any

from benchmark.api.task import Task, TaskData


def threshold_baseline(task: Task, data: TaskData) -> dict[str, Any]:
    """The rule chosen on ``data.train`` and its test metrics."""
    rule = task.threshold_rule(data.train)
    scores, _ = task.evaluate(data.test, (rule.logits(case) for case in data.test))
    return {"rule": rule.description, "metrics": scores}
