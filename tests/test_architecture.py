"""The package's shape: one installed namespace, and run identities that cover all the code
behind a number (and nothing that cannot change one)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import benchmark.backbones
import benchmark.methods
import benchmark.tasks
import pytest

import benchmark
from benchmark.provenance import NUMERIC_LAYERS, fingerprint_tree


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_no_top_level_methods_or_tasks_module(tmp_path):
    for name in ("methods", "tasks", "backbones"):
        result = _run(["-c", f"import {name}"], cwd=tmp_path)
        assert result.returncode != 0 and "No module named" in result.stderr, name


def test_the_cli_sees_the_builtins_from_a_folder_with_its_own_methods_and_tasks(tmp_path):
    for name in ("methods", "tasks", "backbones"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('the user folder was imported')\n")
    result = _run(["-m", "benchmark", "list"], cwd=tmp_path)  # -m puts the current folder first on sys.path
    assert result.returncode == 0, result.stderr
    assert "genesis" in result.stdout and "lcs" in result.stdout


def installed_copy(target: Path) -> Path:
    """A copy of the installed package laid out as a wheel installs it (plugins inside)."""
    package = target / "benchmark"
    shutil.copytree(Path(benchmark.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    for plugins in (benchmark.methods, benchmark.tasks, benchmark.backbones):
        inside = package / plugins.__name__.split(".")[1]
        if not inside.exists():  # an editable install maps them from the top-level folders
            shutil.copytree(Path(plugins.__file__).parent, inside, ignore=shutil.ignore_patterns("__pycache__"))
    return package


def _append(path: Path, text: str = "\n# an edit\n") -> None:
    path.write_text(path.read_text() + text)


@pytest.mark.parametrize("edited, changes", [
    ("engine/finetune.py", True), ("api/metrics.py", True), ("model/backbone.py", True),
    ("data/imageio.py", True), ("api/method.py", True),
    ("reporting/stats.py", False), ("cli/__init__.py", False),
])
def test_code_fingerprint_covers_the_layers_that_make_numbers(tmp_path, edited, changes):
    package = installed_copy(tmp_path)
    before = fingerprint_tree(package, NUMERIC_LAYERS)
    _append(package / edited)
    assert (fingerprint_tree(package, NUMERIC_LAYERS) != before) is changes


def _plan_ids(site: Path, cache: Path) -> tuple[str, str]:
    code = ("from benchmark.engine.harness import RunSpec, plan_run\n"
            "plan = plan_run(RunSpec('genesis', 'ncs', profile='smoke'))\n"
            "print(plan.run_id, plan.checkpoint_id)\n")
    result = _run(["-c", code], cwd=site, env={"PYTHONPATH": str(site), "BENCHMARK_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr
    run_id, checkpoint = result.stdout.split()
    return run_id, checkpoint


def test_run_and_checkpoint_ids_follow_the_code_not_the_report_or_the_tests(tmp_path):
    package = installed_copy(tmp_path)
    cache = tmp_path / "cache"
    first = _plan_ids(tmp_path, cache)
    _append(package / "reporting" / "stats.py")
    _append(package / "cli" / "__init__.py")
    assert _plan_ids(tmp_path, cache) == first
    _append(package / "engine" / "finetune.py")  # a new run, but no new pretraining
    after_finetune = _plan_ids(tmp_path, cache)
    assert after_finetune[0] != first[0] and after_finetune[1] == first[1]
    _append(package / "engine" / "loader.py")  # imported by the pretraining loop
    after_loader = _plan_ids(tmp_path, cache)
    assert after_loader[0] != after_finetune[0] and after_loader[1] != after_finetune[1]
    _append(package / "methods" / "genesis.py")
    after_genesis = _plan_ids(tmp_path, cache)
    assert after_genesis[0] != after_loader[0] and after_genesis[1] != after_loader[1]


TEXT_IO = {"open", "read_text", "write_text"}


def _text_io_without_encoding(path: Path) -> list[str]:
    """Calls of open() in a text mode, Path.read_text or Path.write_text in ``path`` without an encoding."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            modes = [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "mode")]
            mode = modes[0] if modes else None
            if isinstance(mode, ast.Constant) and "b" in str(mode.value):
                continue
        elif not (isinstance(func, ast.Attribute) and func.attr in TEXT_IO and func.attr != "open"):
            continue
        found.append(f"{path}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_every_text_file_is_read_and_written_as_utf8():
    """Without an explicit encoding Python uses the locale's, which is ASCII under the C locale (that
    GDCM's DICOM writer sets in-process) and Latin-1 on some machines: records, logs and tables would
    fail on a non-ASCII name, or be read back differently than written."""
    roots = [Path(p) for package in (benchmark, benchmark.methods, benchmark.tasks, benchmark.backbones)
             for p in package.__path__]
    offenders = [line for root in roots for path in sorted(root.rglob("*.py"))
                 for line in _text_io_without_encoding(path)]
    assert not offenders, "\n".join(offenders)
