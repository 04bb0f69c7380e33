"""A plugin's settings: the keyword arguments of its constructor, with their defaults.

``defaults(cls)`` lists them; ``convert`` and ``parse`` turn a value given as text (``KEY=VALUE``
on the command line) into the type of its default; ``unknown_key`` is the one-line error for a
key that is not among them. The profiles' fields (``--profile-arg``) are parsed the same way.
"""

from __future__ import annotations

import ast
import difflib
import inspect
from collections.abc import Iterable
from typing import Any

from benchmark.errors import UserError

TRUE = ("true", "yes", "on", "1")
FALSE = ("false", "no", "off", "0")


def defaults(cls: type) -> dict[str, Any]:
    """The settings of ``cls``: its constructor's keyword parameters and their defaults, in order.

    A parameter without a default is a plugin error (a TypeError): every setting needs a default,
    so that the plugin can be created by name alone.
    """
    settings = {}
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is parameter.empty or parameter.kind is parameter.POSITIONAL_ONLY:
            raise TypeError(f"{cls.__qualname__}: constructor parameter '{parameter.name}' needs a default "
                            "(every constructor argument is a setting, given by keyword)")
        settings[parameter.name] = parameter.default
    return settings


def current_values(plugin: object) -> dict[str, Any]:
    """The values of a plugin's settings: the attribute named like each constructor argument."""
    return {name: getattr(plugin, name) for name in defaults(type(plugin))}


def convert(value: Any, default: Any) -> Any:
    """``value`` in the type of ``default``: text parsed (``parse``), a number made the default's kind of
    number (``as_number``), a sequence the default's kind of sequence (a JSON list for a tuple) with its
    numbers the kind of the default's items, anything else as given (the constructor checks it)."""
    if isinstance(value, str) and not isinstance(default, str):
        return parse(value, default)
    if isinstance(default, (tuple, list)) and isinstance(value, (tuple, list)):
        if not default:
            return type(default)(value)
        return type(default)(as_number(item, kind) for item, kind in zip(value, _item_defaults(default, len(value))))
    return as_number(value, default)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_number(value: Any, default: Any) -> Any:
    """A number in the kind of a number ``default`` (2 -> 2.0 for a float; 2.0 -> 2 for an int), so that
    one value is one setting in a run's identity whichever way it was written; anything else as given.
    A ValueError for a fraction where a whole number is expected."""
    if not (is_number(value) and is_number(default)) or type(value) is type(default):
        return value
    if isinstance(default, float):
        return float(value)
    if not float(value).is_integer():
        raise ValueError(f"expected an integer, got {value}")
    return int(value)


def parse(text: str, default: Any) -> Any:
    """Text in the type of ``default``: a bool (true/false, yes/no, on/off, 1/0), an int, a float, a
    string, a tuple or list as comma-separated items (each in the type of the default's item; a
    tuple keeps its length), and a Python literal (``None``, ``3``, ``'text'``) where the default is
    None. A ValueError says what was expected."""
    if default is None:
        try:
            return ast.literal_eval(text.strip())
        except (ValueError, SyntaxError) as error:
            raise ValueError("expected a Python literal (None, a number, 'quoted text')") from error
    if isinstance(default, str):
        return text
    if isinstance(default, bool):
        word = text.strip().lower()
        if word not in TRUE + FALSE:
            raise ValueError(f"expected true or false, got '{text}'")
        return word in TRUE
    if isinstance(default, (int, float)):
        kind = type(default)
        try:
            return kind(text.strip())
        except ValueError as error:
            raise ValueError(f"expected {'an integer' if kind is int else 'a number'}, got '{text}'") from error
    if isinstance(default, (tuple, list)):
        return _parse_sequence(text, default)
    raise ValueError(f"a {type(default).__name__} cannot be given as text")


def _parse_sequence(text: str, default: tuple | list) -> tuple | list:
    items = [item.strip() for item in text.split(",")] if text.strip() else []
    if isinstance(default, tuple) and len(items) != len(default):
        raise ValueError(f"expected {len(default)} comma-separated values, got '{text}'")
    if not default:
        raise ValueError("the default is empty: the type of its items is unknown")
    return type(default)(parse(item, kind) for item, kind in zip(items, _item_defaults(default, len(items))))


def _item_defaults(default: tuple | list, count: int) -> list[Any]:
    """The default of each of ``count`` items: a tuple's own, position by position (a longer tuple's extra
    items take its last), a list's first for every item."""
    return [default[min(k, len(default) - 1)] if isinstance(default, tuple) else default[0] for k in range(count)]


def format_value(value: Any) -> str:
    """A setting's value the way it is typed after ``KEY=`` (sequences comma-separated)."""
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(item) for item in value)
    return str(value)


def unknown_key(owner: str, key: str, known: Iterable[str], noun: str = "setting") -> UserError:
    """The error for a ``key`` that is not among ``known``: the closest known key and the list."""
    known = list(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ";"
    return UserError(f"{owner}: unknown {noun} '{key}'{hint} known: {', '.join(known) or 'none'}")
