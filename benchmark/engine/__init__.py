"""Engine: the harness that crosses a method with a task (plan, pretrain or reuse, fine-tune,
evaluate, record), the training loops, the batch loader, metrics, data parallelism, the
results store with its locks, and sweeps over grids of runs. Knows no method or task by
name: both come from the registries.
"""
