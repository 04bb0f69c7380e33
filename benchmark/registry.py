"""One small registry type for methods and tasks.

Built-in plugins register in code: every module of the built-in package (``methods``,
``tasks``) is imported and its classes decorated with ``register`` land here. Third-party
plugins are found through Python entry points (groups ``benchmark.methods`` and
``benchmark.tasks``), each pointing at a plugin class. Nothing is imported at import
time of this module; the first lookup loads everything.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
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
    base classes, and of the modules beside them that those use (same package or same
    folder: a plugin's helpers), found through their names; the suite's own modules
    (``benchmark``, covered by its version) and the standard library left out.

    Part of every run and checkpoint identity, so that editing a method's or a task's code,
    a plugin's above all, gives new runs instead of reusing records and checkpoints made
    by the old code. Contents only: the same code in another checkout gives the same hash.
    Computed once per class and process (a sweep plans every cell): the hash stays that of
    the code the process loaded, even if a file is edited while it runs.
    """
    modules = {sys.modules[base.__module__] for base in cls.__mro__ if _is_plugin_code(base.__module__)}
    pending = list(modules)
    while pending:
        module = pending.pop()
        for used in _modules_used(module):
            if used not in modules and _beside(used, module):
                modules.add(used)
                pending.append(used)
    files = {getattr(module, "__file__", None) for module in modules}
    contents = sorted(hashlib.sha256(Path(path).read_bytes()).hexdigest() for path in files if path)
    return hashlib.sha256("".join(contents).encode()).hexdigest()[:16]


def _is_plugin_code(module_name: str) -> bool:
    top = module_name.split(".")[0]
    return module_name in sys.modules and top != "benchmark" and top not in sys.stdlib_module_names


def _modules_used(module: ModuleType) -> set[ModuleType]:
    """The modules that ``module``'s names refer to: imported modules, and the modules of
    imported functions and classes."""
    used = set()
    for value in vars(module).values():
        name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        if isinstance(name, str) and _is_plugin_code(name):
            used.add(sys.modules[name])
    return used


def _beside(used: ModuleType, module: ModuleType) -> bool:
    """Whether ``used`` is part of the same plugin as ``module``: same top-level package, or a
    file in the same folder."""
    same_package = used.__name__.split(".")[0] == module.__name__.split(".")[0]
    files = [getattr(m, "__file__", None) for m in (used, module)]
    same_folder = all(files) and Path(files[0]).parent == Path(files[1]).parent
    return same_package or same_folder
