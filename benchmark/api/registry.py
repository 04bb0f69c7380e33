"""One small registry type for methods, tasks and backbones.

Built-in plugins register in code: every module of the built-in package (``methods``,
``tasks``, ``backbones``) is imported and its classes decorated with ``register`` land here. Third-party
plugins are found through Python entry points (groups ``benchmark.methods``,
``benchmark.tasks`` and ``benchmark.backbones``), each pointing at a plugin class. Nothing is imported at import
time of this module; the first lookup loads everything.

A plugin's settings are its constructor's keyword arguments (``benchmark.api.settings``);
``create(name, **settings)`` makes an instance with some of them changed. A preset
(``register_preset``) is a name for a class with some settings fixed: the Genesis ablations
are presets of Genesis. An instance made from a preset carries the preset's name.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from benchmark.api import settings as plugin_settings
from benchmark.errors import UserError
from benchmark.names import check_name

T = TypeVar("T")


@dataclass(frozen=True)
class Preset:
    """A registered name for a plugin class with some of its settings fixed."""

    name: str
    cls: type
    description: str
    settings: Mapping[str, Any]


class Registry(Generic[T]):
    """Named plugin classes of one kind, and presets of them; each class has ``name`` and ``description``."""

    def __init__(self, kind: str, builtin_package: str, entry_point_group: str) -> None:
        self.kind = kind
        self.builtin_package = builtin_package
        self.entry_point_group = entry_point_group
        self._classes: dict[str, type[T]] = {}
        self._presets: dict[str, Preset] = {}
        self._origins: dict[str, str] = {}
        self._loaded = False

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: add ``cls`` under ``cls.name``."""
        self._add(cls, origin="built-in")
        return cls

    def register_preset(self, name: str, cls: type[T], description: str, /, **settings: Any) -> None:
        """Add ``name``: ``cls`` with ``settings`` replacing its defaults (each a keyword of its constructor)."""
        unknown = sorted(set(settings) - set(plugin_settings.defaults(cls)))
        if unknown:
            raise TypeError(f"preset '{name}': {cls.__qualname__} has no setting {', '.join(unknown)}")
        preset = Preset(name, cls, description, dict(settings))
        self._claim(name, preset)
        self._presets[name] = preset

    def _add(self, cls: type[T], origin: str) -> None:
        name = getattr(cls, "name", None)
        if not name or not getattr(cls, "description", None):
            raise TypeError(f"{self.kind} plugin {cls!r} needs a 'name' and a 'description'")
        self._claim(name, cls)
        self._classes[name] = cls
        self._origins[name] = origin

    def _claim(self, name: str, entry: type | Preset) -> None:
        """Refuse a name that is not a valid name (it becomes part of run ids and paths) or that another
        class or preset holds (registering the same one again is harmless)."""
        module = (entry.cls if isinstance(entry, Preset) else entry).__module__
        check_name(name, f"{self.kind} name (in {module})")
        held = self._presets.get(name) or self._classes.get(name)
        if held is not None and held != entry:
            first, second = ((x.cls if isinstance(x, Preset) else x).__module__ for x in (held, entry))
            raise UserError(f"two {self.kind}s are named '{name}': {first} and {second}")

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
        return sorted({*self._classes, *self._presets})

    def origin(self, name: str) -> str:
        cls = self.get(name)
        return self._origins.get(name) or self._origins.get(getattr(cls, "name", ""), "built-in")

    def get(self, name: str) -> type[T]:
        """The class registered as ``name`` (a preset's class for a preset); an unknown name is a
        UserError with a hint."""
        self.load()
        if name in self._presets:
            return self._presets[name].cls
        if name in self._classes:
            return self._classes[name]
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UserError(f"unknown {self.kind} '{name}'{hint} known: {', '.join(self.names())}")

    def preset(self, name: str) -> Preset | None:
        """The preset registered as ``name``, or None for a plugin class."""
        self.get(name)
        return self._presets.get(name)

    def description(self, name: str) -> str:
        preset = self.preset(name)
        return preset.description if preset else self.get(name).description

    def defaults(self, name: str) -> dict[str, Any]:
        """The settings of ``name`` and their defaults (a preset's values for a preset's settings)."""
        preset = self.preset(name)
        return {**plugin_settings.defaults(self.get(name)), **(preset.settings if preset else {})}

    def create(self, name: str, /, **settings: Any) -> T:
        """An instance of ``name`` with ``settings`` replacing its defaults (and a preset's values).

        Values given as text (the command line's ``KEY=VALUE``) are parsed to the type of the
        default. An unknown key, a value that does not parse or one the constructor refuses
        (a ValueError) is a one-line UserError naming the plugin and the key.
        """
        defaults, preset = self.defaults(name), self.preset(name)
        values = dict(preset.settings) if preset else {}
        for key, value in settings.items():
            if key not in defaults:
                raise plugin_settings.unknown_key(f"{self.kind} '{name}'", key, defaults)
            try:
                values[key] = plugin_settings.convert(value, defaults[key])
            except ValueError as error:
                raise UserError(f"{self.kind} '{name}', setting {key}={value}: {error}") from error
        try:
            instance = self.get(name)(**values)
        except (ValueError, TypeError) as error:
            given = ", ".join(f"{key}={plugin_settings.format_value(value)}" for key, value in settings.items())
            raise UserError(f"{self.kind} '{name}'{', setting ' + given if given else ''}: {error}") from error
        if preset:
            instance.name, instance.description = preset.name, preset.description
        return instance


METHODS: Registry = Registry("method", "benchmark.methods", "benchmark.methods")
TASKS: Registry = Registry("task", "benchmark.tasks", "benchmark.tasks")
BACKBONES: Registry = Registry("backbone", "benchmark.backbones", "benchmark.backbones")
