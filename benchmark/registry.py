"""One small registry type for methods and tasks.

Built-in plugins register in code: every module of the built-in package (``methods``,
``tasks``) is imported and its classes decorated with ``register`` land here. Third-party
plugins are found through Python entry points (groups ``benchmark.methods`` and
``benchmark.tasks``), each pointing at a plugin class. Nothing is imported at import
time of this module; the first lookup loads everything.
"""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

from benchmark.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plugin classes of one kind; each class has ``name`` and ``description``."""

    def __init__(self, kind: str, builtin_package: str, entry_point_group: str) -> None:
        self.kind = kind
        self.builtin_package = builtin_package
        self.entry_point_group = entry_point_group
        self._classes: dict[str, type[T]] = {}
        self._origins: dict[str, str] = {}
        self._loaded = False

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: add ``cls`` under ``cls.name``."""
        self._add(cls, origin="built-in")
        return cls

    def _add(self, cls: type[T], origin: str) -> None:
        name = getattr(cls, "name", None)
        if not name or not getattr(cls, "description", None):
            raise TypeError(f"{self.kind} plugin {cls!r} needs a 'name' and a 'description'")
        known = self._classes.get(name)
        if known is not None and known is not cls:
            raise UserError(
                f"two {self.kind}s are named '{name}': {known.__module__} and {cls.__module__}"
            )
        self._classes[name] = cls
        self._origins[name] = origin

    def load(self) -> None:
        """Import the built-in modules and the entry-point plugins (once)."""
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.builtin_package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self.builtin_package}.{module.name}")
        for entry_point in entry_points(group=self.entry_point_group):
            try:
                cls = entry_point.load()
            except Exception as error:  # a broken third-party plugin must not hide the others
                raise UserError(
                    f"{self.kind} plugin entry point '{entry_point.name}' ({entry_point.value}) "
                    f"failed to load: {error}"
                ) from error
            self._add(cls, origin=f"plugin {entry_point.dist.name if entry_point.dist else entry_point.value}")

    def names(self) -> list[str]:
        self.load()
        return sorted(self._classes)

    def origin(self, name: str) -> str:
        self.get(name)
        return self._origins[name]

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; an unknown name is a UserError with a hint."""
        self.load()
        if name in self._classes:
            return self._classes[name]
        close = difflib.get_close_matches(name, self._classes, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"unknown {self.kind} '{name}'{hint} known: {', '.join(self.names())}")

    def create(self, name: str) -> T:
        return self.get(name)()


METHODS: Registry = Registry("method", "methods", "benchmark.methods")
TASKS: Registry = Registry("task", "tasks", "benchmark.tasks")


@functools.cache
def source_fingerprint(cls: type) -> str:
    """A hash of the source of a plugin class: the files of the modules defining it and its
    base classes, and of the modules beside them that those import anywhere in their code,
    functions included (same package or same folder: a plugin's helpers), followed from
    file to file; the suite's own modules (``benchmark``, covered by its version) and the
    standard library left out.

    Part of every run and checkpoint identity, so that editing a method's or a task's code,
    a plugin's above all, gives new runs instead of reusing records and checkpoints made
    by the old code. Contents only: the same code in another checkout gives the same hash.
    Computed once per class and process (a sweep plans every cell): the hash stays that of
    the code the process loaded, even if a file is edited while it runs.
    """
    files = {_source_file(base.__module__) for base in cls.__mro__ if _is_plugin_code(base.__module__)}
    files.discard(None)
    pending = list(files)
    while pending:
        path = pending.pop()
        for used in _imported_files(path):
            if used not in files and _beside(used, path):
                files.add(used)
                pending.append(used)
    contents = sorted(hashlib.sha256(path.read_bytes()).hexdigest() for path in files)
    return hashlib.sha256("".join(contents).encode()).hexdigest()[:16]


def _is_plugin_code(module_name: str) -> bool:
    top = module_name.split(".")[0]
    return top != "benchmark" and top not in sys.stdlib_module_names


def _spec(module_name: str) -> importlib.machinery.ModuleSpec | None:
    """A module's spec, found without running the module (its parent packages are imported)."""
    try:
        return importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None


def _source_file(module_name: str) -> Path | None:
    """The ``.py`` file of a module, loaded or not (None for a name that is not a module or
    has no source)."""
    loaded = sys.modules.get(module_name)
    origin = getattr(loaded, "__file__", None) if loaded else getattr(_spec(module_name), "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


def _imported_files(path: Path) -> set[Path]:
    """The source files of the plugin modules that the file at ``path`` imports, at any depth
    of its code (lazy imports inside functions included)."""
    package = ".".join(folder.name for folder in reversed(_packages_around(path)))
    names = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            except (ImportError, ValueError):  # a relative import reaching above the top package
                continue
            names.add(base)
            if _is_plugin_code(base) and getattr(_spec(base), "submodule_search_locations", None) is not None:
                names.update(f"{base}.{alias.name}" for alias in node.names)  # modules imported from a package
    found = {_source_file(name) for name in names if _is_plugin_code(name)}
    return {file for file in found if file is not None}


def _beside(used: Path, path: Path) -> bool:
    """Whether the file ``used`` is part of the same plugin as the file at ``path``: in the same
    folder, or in the same top-level package."""
    if used.parent == path.parent:
        return True
    packages = _packages_around(used), _packages_around(path)
    return all(packages) and packages[0][-1] == packages[1][-1]


def _packages_around(path: Path) -> list[Path]:
    """The package folders (with an ``__init__.py``) that contain the file, innermost first."""
    folders = []
    folder = path.parent
    while (folder / "__init__.py").exists():
        folders.append(folder)
        folder = folder.parent
    return folders
