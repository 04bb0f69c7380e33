"""Label-fraction subsets drawn per seed by default (nested within a seed), one shared subset on request."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.cli import build_parser
from benchmark.data.cases import Case
from benchmark.data.subsets import label_subset
from benchmark.engine.harness import RunSpec, plan_run
from benchmark.engine.sweep import Grid

CASES = [Case(case_id=f"c{i}", image=np.zeros((1, 1, 1, 1), np.float32), target=i % 2, group=f"p{i // 2}")
         for i in range(40)]


def groups(cases):
    return {case.group for case in cases}


@pytest.mark.parametrize("stratify", [False, True])
def test_each_subset_seed_draws_its_own_patients_nested_across_fractions(stratify):
    by_seed = {seed: {f: groups(label_subset(CASES, f, stratify, seed)) for f in (0.25, 0.5, 1.0)}
               for seed in range(5)}
    for subsets in by_seed.values():
        assert subsets[0.25] < subsets[0.5] < subsets[1.0] == groups(CASES)  # nested within a seed
        assert len(subsets[0.25]) == 5
    assert len({frozenset(subsets[0.25]) for subsets in by_seed.values()}) > 1  # the seeds see other patients
    assert groups(label_subset(CASES, 0.25, stratify, 3)) == by_seed[3][0.25]  # reproducible


def test_the_subset_seed_follows_the_run_seed_unless_given():
    assert RunSpec(method="genesis", task="lcs", seed=3).label_subset_seed == 3
    assert RunSpec(method="genesis", task="lcs", seed=3, subset_seed=0).label_subset_seed == 0
    parser = build_parser()
    assert parser.parse_args(["run", "--method", "m", "--task", "t", "--seed", "2"]).subset_seed is None
    assert parser.parse_args(["run", "--method", "m", "--task", "t", "--subset-seed", "7"]).subset_seed == 7
    sweep = parser.parse_args(["sweep", "--methods", "m", "--tasks", "t", "--subset-seed", "1"])
    assert sweep.subset_seed == 1
    grid = Grid(methods=["genesis", "scratch-he"], tasks=["lcs"], fractions=[0.5], seeds=[0, 1], subset_seed=1)
    assert {spec.label_subset_seed for spec in grid.specs()} == {1}
    per_seed = Grid(methods=["scratch-he"], tasks=["lcs"], fractions=[0.5], seeds=[0, 1])
    assert [spec.label_subset_seed for spec in per_seed.specs()] == [0, 1]


def test_the_run_id_covers_the_subset_seed():
    own = plan_run(RunSpec(method="scratch-he", task="ncs", seed=1, fraction=0.5, profile="smoke"))
    shared = plan_run(RunSpec(method="scratch-he", task="ncs", seed=1, fraction=0.5, profile="smoke", subset_seed=0))
    assert own.identity["subset_seed"] == 1 and shared.identity["subset_seed"] == 0
    assert own.run_id != shared.run_id


def test_records_name_their_subset_seed(smoke_results):
    for path in (smoke_results / "runs").glob("*/result.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        assert record["subset"]["seed"] == record["identity"]["subset_seed"] == record["seed"]
