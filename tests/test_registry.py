"""The registries: built-ins found, unknown names rejected with a hint, plugins via entry points."""

import importlib.util
import sys
from pathlib import Path

import pytest

from benchmark.api.registry import METHODS, TASKS, Registry
from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.provenance import source_fingerprint


def test_builtins_are_registered():
    assert {"genesis", "scratch-he", "scratch-glorot", "scratch-uniform"} <= set(METHODS.names())
    assert {"ncc", "ncs", "ecc", "lcs", "bms"} <= set(TASKS.names())


def test_unknown_name_lists_known_names_and_suggests_the_closest():
    with pytest.raises(UserError, match=r"unknown method 'genesys'; did you mean 'genesis'\? known: .*scratch-he"):
        METHODS.get("genesys")


def test_every_plugin_has_a_one_line_description():
    for registry in (METHODS, TASKS):
        for name in registry.names():
            description = registry.get(name).description
            assert description and "\n" not in description


def test_two_plugins_with_one_name_are_refused():
    registry = Registry("method", "benchmark.methods", "benchmark.no-such-group")

    class First:
        name, description = "same", "first"

    class Second:
        name, description = "same", "second"

    registry.register(First)
    with pytest.raises(UserError, match="two methods are named 'same'"):
        registry.register(Second)


def test_cli_list_shows_methods_and_tasks(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "methods:" in out and "tasks:" in out and "genesis" in out and "lcs" in out


def test_cli_reports_unknown_task_in_one_line(capsys):
    assert main(["run", "--method", "genesis", "--task", "lcz", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown task 'lcz'; did you mean 'lcs'?") and "\n" not in err


BASE = "from benchmark.api.method import Method\n\nclass Base(Method):\n    name = 'base'\n"
HELPER = "def scale(x):\n    return 2 * x\n"
LAZY = "def shift(x):\n    return x + 1\n"
CHILD = ("from plugin_base import Base\nfrom plugin_helper import scale\n\nclass Child(Base):\n    name = 'child'\n\n"
         "    def corrupt(self, x):\n        from plugin_lazy import shift\n\n        return shift(scale(x))\n")
PLUGIN_MODULES = ("plugin_base", "plugin_helper", "plugin_lazy", "plugin_child")


def load_module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def plugin_fingerprint(folder, base=BASE, helper=HELPER, lazy=LAZY):
    """The fingerprint of a four-file plugin written to ``folder``: a class, its base in
    another file, a helper function it imports from a third and one it imports inside a
    method from a fourth (not yet imported when the fingerprint is taken)."""
    folder.mkdir()
    for name, source in zip(PLUGIN_MODULES, (base, helper, lazy, CHILD)):
        (folder / f"{name}.py").write_text(source)
    sys.path.insert(0, str(folder))
    try:
        return source_fingerprint(load_module(folder / "plugin_child.py", "plugin_child").Child)
    finally:
        sys.path.remove(str(folder))
        for name in PLUGIN_MODULES:
            sys.modules.pop(name, None)


def test_source_fingerprint_follows_the_code_of_the_class_its_bases_and_its_helpers(tmp_path):
    first = plugin_fingerprint(tmp_path / "a")
    assert plugin_fingerprint(tmp_path / "copy") == first  # same contents elsewhere: same hash
    assert plugin_fingerprint(tmp_path / "base", base=BASE + "# edited\n") != first
    assert plugin_fingerprint(tmp_path / "helper", helper=HELPER.replace("2 *", "3 *")) != first
    assert plugin_fingerprint(tmp_path / "lazy", lazy=LAZY.replace("+ 1", "+ 2")) != first


def test_built_in_fingerprints_cover_their_helper_modules_even_those_imported_in_functions():
    import benchmark.methods.genesis
    import benchmark.tasks._candidates
    import benchmark.tasks.ncc

    from benchmark.provenance import _beside, _imported_files, _is_plugin_code

    def helpers(module):
        path = Path(module.__file__)
        return {used.name for used in _imported_files(path, _is_plugin_code) if _beside(used, path)}

    assert Path(benchmark.tasks._candidates.__file__).name in helpers(benchmark.tasks.ncc)
    assert {"genesis_torch.py", "genesis_loop.py"} <= helpers(benchmark.methods.genesis)  # imported lazily


def test_every_run_identity_names_the_code_of_its_method_and_task():
    from benchmark.engine.harness import RunSpec, plan_run

    plan = plan_run(RunSpec(method="genesis-ls", task="ncc", profile="smoke"))
    assert plan.identity["method_code"] == source_fingerprint(type(plan.method))
    assert plan.identity["task_code"] == source_fingerprint(type(plan.task))
    assert source_fingerprint(type(plan.method)) != source_fingerprint(METHODS.get("genesis"))
