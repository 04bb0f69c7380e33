"""An out-of-tree method plugin (examples/plugin), installed and found through its entry point.

The package is installed into the test environment for this module only (a copy is built,
so the source tree stays clean) and uninstalled afterwards, unless it was installed
before the tests started. The CLI runs in fresh subprocesses, so entry points are re-read.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import small_ncs_splits

PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "examples" / "plugin"
DISTRIBUTION = "benchmark-example-plugin"
METHOD = "example-rotation"


def _installed() -> bool:
    try:
        importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    already = _installed()
    if not already:
        source = tmp_path_factory.mktemp("plugin-src") / "plugin"
        shutil.copytree(PLUGIN_SOURCE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        _pip("install", "--no-deps", "--no-build-isolation", "-q", str(source))
    try:
        yield
    finally:
        if not already:
            _pip("uninstall", "-y", "-q", DISTRIBUTION)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("BENCHMARK_CACHE", str(cwd / "cache"))
    result = subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True,
                            cwd=cwd, env=env)
    assert result.returncode == 0, f"benchmark {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_list_shows_the_plugin_with_its_origin(plugin, tmp_path):
    lines = [line for line in cli("list", cwd=tmp_path).stdout.splitlines() if line.split()[:1] == [METHOD]]
    assert len(lines) == 1, lines
    assert "[encoder]" in lines[0] and f"[plugin {DISTRIBUTION}]" in lines[0]


def test_the_plugin_runs_through_the_harness(plugin, tmp_path):
    results = tmp_path / "results"
    out = cli("run", "--method", METHOD, "--task", "ncs", "--profile", "smoke", "--results", str(results),
              "--method-arg", "rotations=2", "--splits", str(small_ncs_splits(tmp_path / "ncs-splits.csv")),
              "--no-progress", cwd=tmp_path).stdout
    (record_path,) = (results / "runs").glob(f"ncs-{METHOD}-smoke-*/result.json")
    record = json.loads(record_path.read_text())
    assert record["run_id"] in out
    assert (record["method"], record["task"], record["profile"]) == (METHOD, "ncs", "smoke")
    assert record["method_settings"] == {"rotations": 2}  # its constructor's argument, from the command line
    assert record["transfer"]["transferred"] == "encoder" and record["transfer"]["loaded_keys"] > 0
    assert record["pretraining"]["cubes_seen"] > 0 and not record["pretraining"]["reused"]
    assert record["metrics"] and all(not math.isnan(v) for v in record["metrics"].values())
