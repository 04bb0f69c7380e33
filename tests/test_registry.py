"""The registries: built-ins found, unknown names rejected with a hint, plugins via entry points,
settings given by name (parsed from text) and presets."""

import importlib.util
import sys
from pathlib import Path

import pytest

from benchmark import provenance
from benchmark.api.registry import METHODS, TASKS, Registry
from benchmark.api.settings import defaults, parse
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
    assert {"genesis_transforms.py", "genesis_torch.py"} <= helpers(benchmark.methods.genesis)  # torch: lazily


def hashed_files(cls, monkeypatch) -> set[Path]:
    """The files ``source_fingerprint(cls)`` hashes."""
    hashed = []
    monkeypatch.setattr(provenance, "_hash_contents", lambda files: hashed.append(files) or "recorded")
    source_fingerprint.__wrapped__(cls)  # past the per-process cache
    return hashed[0]


def test_relative_imports_are_followed_from_the_files_folder_whatever_the_package_is_called(tmp_path):
    folder = tmp_path / "not_on_the_path"
    (folder / "sub").mkdir(parents=True)
    for name, source in (("__init__.py", ""), ("_helper.py", HELPER), ("sub/__init__.py", ""), ("sub/deep.py", LAZY),
                         ("child.py", "from ._helper import scale\nfrom .sub import deep\nfrom . import _helper\n")):
        (folder / name).write_text(source)
    from benchmark.provenance import _imported_files, _is_plugin_code

    assert _imported_files(folder / "child.py", _is_plugin_code) == {  # a package's __init__ runs when imported from
        folder / "_helper.py", folder / "sub" / "deep.py", folder / "sub" / "__init__.py", folder / "__init__.py"}


def test_a_plugins_shipped_data_files_are_part_of_its_identity(monkeypatch):
    bms = {path.name for path in hashed_files(TASKS.get("bms"), monkeypatch)}
    assert {"bms.py", "brats2018_fold1.txt", "brats2018_fold2.txt", "brats2018_fold3.txt"} <= bms


def test_a_phantoms_fingerprint_covers_the_task_helpers_its_generator_uses():
    from benchmark.tasks.ncs import write_ncs_phantom

    from benchmark.data.datasets import _source_files

    assert {"ncs.py", "_lidc.py", "liver.py", "imageio.py"} <= {path.name for path in _source_files(write_ncs_phantom)}


def test_a_data_folders_fingerprint_follows_linked_folders(tmp_path):
    from benchmark.data.datasets import directory_source

    for batch, content in (("b1", "a"), ("b2", "bb")):
        (tmp_path / batch).mkdir()
        (tmp_path / batch / "volume-0.nii").write_text(content)
    root = tmp_path / "root"
    root.mkdir()
    (root / "volumes").symlink_to(tmp_path / "b1")
    (tmp_path / "b1" / "up").symlink_to(root)  # a link back up: no endless walk
    first = directory_source(root).fingerprint
    (root / "volumes").unlink()
    (root / "volumes").symlink_to(tmp_path / "b2")
    assert directory_source(root).fingerprint != first


def test_genesis_identity_covers_its_modules_but_not_the_puzzle_helpers_nor_the_test_oracles(monkeypatch):
    genesis = {path.name for path in hashed_files(METHODS.get("genesis"), monkeypatch)}
    assert {"genesis.py", "genesis_transforms.py", "genesis_torch.py", "_common.py"} <= genesis
    assert "_tiles.py" not in genesis and "genesis_loop.py" not in genesis
    assert not any("tests" in path.parts for path in hashed_files(METHODS.get("genesis"), monkeypatch))
    assert "_tiles.py" in {path.name for path in hashed_files(METHODS.get("jigsaw"), monkeypatch)}


def test_every_run_identity_names_the_code_of_its_method_and_task():
    from benchmark.engine.harness import RunSpec, plan_run

    plan = plan_run(RunSpec(method="genesis-ls", task="ncc", profile="smoke"))
    assert plan.identity["method_code"] == source_fingerprint(type(plan.method))
    assert plan.identity["task_code"] == source_fingerprint(type(plan.task))
    # a preset runs its class's code, and its name and settings tell it apart
    assert plan.identity["method_code"] == source_fingerprint(METHODS.get("genesis"))
    assert plan.identity["method"] == "genesis-ls" and plan.identity["method_settings"]["local_shuffle_prob"] == 1.0


# ------------------------------------------------------------------ settings and presets


@pytest.mark.parametrize("text, default, expected", [
    ("true", False, True), ("No", True, False), ("1", False, True), ("off", True, False),
    ("12", 3, 12), ("-2", 3, -2), ("0.25", 0.5, 0.25), ("1e-4", 1.0, 1e-4), ("2", 0.5, 2.0),
    ("mae", "mse", "mae"), ("12,24", (10, 20), (12, 24)), ("0.1, 0.3", (0.125, 0.25), (0.1, 0.3)),
    ("4,4,2", [2, 2], [4, 4, 2]), ("None", None, None), ("3", None, 3), ("'text'", None, "text"),
])
def test_text_is_parsed_to_the_type_of_the_default(text, default, expected):
    value = parse(text, default)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text, default, message", [
    ("maybe", False, "expected true or false"), ("1.5", 3, "expected an integer"), ("abc", 0.5, "expected a number"),
    ("12", (10, 20), "expected 2 comma-separated values"), ("1,x", (1, 2), "expected an integer"),
    ("bare words", None, "expected a Python literal"),
])
def test_text_that_does_not_fit_the_default_says_what_was_expected(text, default, message):
    with pytest.raises(ValueError, match=message):
        parse(text, default)


class Dummy:
    """A dummy plugin with one setting of each kind."""

    name, description = "dummy", "a dummy plugin"

    def __init__(self, rate: float = 0.5, steps: int = 3, sizes: tuple[int, int] = (1, 2), mode: str = "a",
                 limit: int | None = None, on: bool = True) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        self.rate, self.steps, self.sizes, self.mode, self.limit, self.on = rate, steps, sizes, mode, limit, on


@pytest.fixture
def dummies():
    registry = Registry("method", "benchmark.methods", "benchmark.no-such-group")
    registry.register(Dummy)
    registry.register_preset("dummy-fast", Dummy, "a faster dummy", rate=1.0, steps=1)
    return registry


def test_create_replaces_settings_given_as_values_or_text(dummies):
    made = dummies.create("dummy", rate="0.25", steps=7, sizes="3,4", on="false", limit="5")
    assert (made.rate, made.steps, made.sizes, made.on, made.limit, made.mode) == (0.25, 7, (3, 4), False, 5, "a")
    assert dummies.create("dummy", sizes=[5, 6]).sizes == (5, 6)  # a JSON list for a tuple setting


def test_a_preset_is_its_class_with_settings_fixed_under_its_own_name(dummies):
    made = dummies.create("dummy-fast")
    assert type(made) is Dummy and (made.name, made.description) == ("dummy-fast", "a faster dummy")
    assert (made.rate, made.steps, made.mode) == (1.0, 1, "a")
    assert dummies.defaults("dummy-fast") == {**defaults(Dummy), "rate": 1.0, "steps": 1}
    assert dummies.description("dummy-fast") == "a faster dummy" and dummies.get("dummy-fast") is Dummy
    assert dummies.names() == ["dummy", "dummy-fast"]
    overridden = dummies.create("dummy-fast", steps="9")  # the user's value wins over the preset's
    assert (overridden.rate, overridden.steps) == (1.0, 9)
    assert Dummy.name == "dummy"  # the class keeps its own


def test_unknown_setting_is_a_one_line_error_with_a_hint_and_the_known_ones(dummies):
    with pytest.raises(UserError, match=r"^method 'dummy-fast': unknown setting 'rat'; did you mean 'rate'\? "
                                        r"known: rate, steps, sizes, mode, limit, on$"):
        dummies.create("dummy-fast", rat=1)


@pytest.mark.parametrize("settings, message", [
    ({"rate": "2"}, r"^method 'dummy', setting rate=2: rate must be in \[0, 1\], got 2.0$"),
    ({"steps": "many"}, r"^method 'dummy', setting steps=many: expected an integer, got 'many'$"),
])
def test_bad_setting_value_is_a_one_line_error_naming_the_method_and_the_key(dummies, settings, message):
    with pytest.raises(UserError, match=message):
        dummies.create("dummy", **settings)


def test_preset_of_an_unknown_setting_or_a_taken_name_is_refused(dummies):
    with pytest.raises(TypeError, match="preset 'dummy-x': Dummy has no setting speed"):
        dummies.register_preset("dummy-x", Dummy, "x", speed=2)
    with pytest.raises(UserError, match="two methods are named 'dummy'"):
        dummies.register_preset("dummy", Dummy, "x", rate=0.1)
    dummies.register_preset("dummy-fast", Dummy, "a faster dummy", rate=1.0, steps=1)  # the same again: harmless


def test_every_constructor_argument_needs_a_default():
    class Bad:
        def __init__(self, rate: float) -> None:
            self.rate = rate

    with pytest.raises(TypeError, match="parameter 'rate' needs a default"):
        defaults(Bad)


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "with space", "<img src=x>", ""])
def test_a_plugin_name_that_could_leave_the_results_root_is_refused_at_registration(name):
    registry = Registry("method", "benchmark.methods", "benchmark.no-such-group")

    class Plugin:
        description = "a plugin"

    Plugin.name = name
    with pytest.raises((UserError, TypeError)):
        registry.register(Plugin)
    with pytest.raises(UserError, match="not a valid name"):
        registry.register_preset(name or ".", Plugin, "a preset")
