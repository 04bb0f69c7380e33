"""One small registry type for methods and tasks.

Built-in plugins register in code: every module of the built-in package (``methods``,
``tasks``) is imported and its classes decorated with ``register`` land here. Third-party
plugins are found through Python entry points (groups ``benchmark.methods`` and
``benchmark.tasks``), each pointing at a plugin class. Nothing is imported at import
time of this module; the first lookup loads everything.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib.metadata import entry_points
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


METHODS: Registry = Registry("method", "benchmark.methods", "benchmark.methods")
TASKS: Registry = Registry("task", "benchmark.tasks", "benchmark.tasks")
