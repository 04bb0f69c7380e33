"""Shared fixtures: one set of real smoke-profile runs, and hand-written run records."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.data import datasets, files
from benchmark.engine import store
from benchmark.engine.harness import RunSpec, execute


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory):
    """A results root with real smoke runs: 2 methods x 1 classification task x 2 seeds (built once)."""
    results = tmp_path_factory.mktemp("smoke-results")
    for method in ("genesis", "scratch-he"):
        for seed in (0, 1):
            execute(RunSpec(method=method, task="ncc", seed=seed, profile="smoke"), results, "cpu", progress=False)
    return results


@pytest.fixture(scope="module")
def isolated_cache(tmp_path_factory):
    """A preprocessing cache of the module's own (``BENCHMARK_CACHE``), for tests that count cache files.

    The built-in phantoms are shared with the session's cache: each sits in a folder named by the
    fingerprint of its generator and is never changed once written, so regenerating them per module
    would only cost time."""
    cache = tmp_path_factory.mktemp("cache")
    shared = datasets.cache_root() / "phantoms"
    shared.mkdir(parents=True, exist_ok=True)
    (cache / "phantoms").symlink_to(shared, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCHMARK_CACHE", str(cache))
        yield


@pytest.fixture
def write_run():
    """Write a hand-made finished run under a results root; returns its folder."""

    def write(results, method, task, seed, fraction, metrics, primary, cases=None, history=None, profile="quick",
              checkpoint_id=None, finished_at="2026-01-01T00:00:00+00:00", suffix="hand"):
        run_id = f"{task}-{method}-{profile}-s{seed}-f{fraction:g}-{suffix}"
        folder = store.run_dir(results, run_id)
        record = {"run_id": run_id, "method": method, "task": task, "seed": seed, "fraction": fraction,
                  "profile": profile, "metrics": metrics, "primary_metric": primary,
                  "data": {"kind": "phantom", "root": "/data", "fingerprint": "fp-data"},
                  "pretrain_data": None, "pretraining": {"checkpoint_id": checkpoint_id} if checkpoint_id else None,
                  "weights": None, "wall_seconds": 12.5, "peak_memory_mb": 300.0, "peak_device_memory_mb": None,
                  "device": "cpu", "finetune": {"epochs": 3, "best_epoch": 1, "samples_seen": 48},
                  "versions": {"benchmark": "0.1.0"}, "finished_at": finished_at}
        if cases is not None:  # the record gives the row counts a real one does
            cases = pd.DataFrame(cases)
            record["cases"] = {"test": len(cases)}
            files.write_csv(folder / "cases.csv", cases)
        if history is not None:
            history = pd.DataFrame(history)
            record["finetune"]["epochs"] = len(history)
            files.write_csv(folder / "history.csv", history)
        files.write_json(folder / "result.json", record)
        return folder

    return write
