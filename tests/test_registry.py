"""The registries: built-ins found, unknown names rejected with a hint, plugins via entry points."""

import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.registry import METHODS, TASKS, Registry


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
    registry = Registry("method", "methods", "benchmark.no-such-group")

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
