"""Sweep presets: named lists of grids in a JSON file (``benchmark sweep --preset NAME|FILE``).

A preset is configuration, not code: its grids run one after the other exactly as grids given on the
command line, so the harness still knows no method or task by name. The built-in presets are the
``*.json`` files in ``presets/`` beside this module; a path ending in ``.json`` is a user's own preset,
an object of the same form:

* ``description``: what the preset is for (text);
* ``report``: the arguments ``benchmark report`` needs to judge the runs (a list of text, printed at
  the end, e.g. ``--positive-control`` labels);
* ``grid``: a list of one or more objects, each with ``methods`` and ``tasks`` (lists of registered
  names) and optionally ``fractions`` (default ``[1.0]``), ``seeds`` (default ``[0]``),
  ``method_args`` (an object of settings, as ``--method-arg KEY=VALUE``), ``dims`` (as ``--dims``:
  ``2d``, ``2.5d``, ``3d``; default each network's own), ``protocols`` (as ``--protocols``: ``full``,
  ``linear``, ``freeze:N``; default the command line's) and ``about`` (text printed when the grid
  starts).

A preset file is read as untrusted input: anything else is a one-line error naming the file and the key.
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from benchmark.api.registry import METHODS, TASKS
from benchmark.cli.options import first_repeat
from benchmark.cli.report import add_arguments as add_report_arguments
from benchmark.engine.runtime import MAX_SEED
from benchmark.errors import UserError
from benchmark.model.dims import DIMS
from benchmark.model.protocols import Protocol

PRESETS = Path(__file__).parent / "presets"
TOP_KEYS = {"description", "report", "grid"}
GRID_KEYS = {"about", "methods", "tasks", "fractions", "seeds", "method_args", "dims", "protocols"}


@dataclass(frozen=True)
class PresetGrid:
    methods: tuple[str, ...]
    tasks: tuple[str, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    method_settings: tuple[tuple[str, str], ...]
    dims: tuple[str, ...]
    about: str
    protocols: tuple[str, ...] = ()  # empty: the command line's --protocols


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    grids: tuple[PresetGrid, ...]
    report: tuple[str, ...]
    path: Path  # the file it was read from


def builtin_presets() -> list[str]:
    return sorted(path.stem for path in PRESETS.glob("*.json"))


def load_preset(text: str) -> Preset:
    """The preset named ``text`` (built in) or in the file ``text`` (ending in ``.json``)."""
    if text.endswith(".json"):
        path = Path(text)
    elif text in builtin_presets():
        path = PRESETS / f"{text}.json"
    else:
        raise UserError(f"--preset {text}: no such preset (built in: {', '.join(builtin_presets())}; "
                        "or the path of a .json file)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=functools.partial(_object, path))
    except OSError as error:
        raise UserError(f"{path}: cannot read the preset ({error.strerror or error})") from error
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError, a 4300-digit integer
        raise UserError(f"{path}: not a JSON preset ({str(error).splitlines()[0]})") from error
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return _preset(path, data)


def _object(path: Path, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different: ``json`` would keep the last of two ``fractions`` silently."""
    repeat = first_repeat([key for key, _ in pairs])
    if repeat is not None:
        raise UserError(f"{path}: the key {pairs[repeat[0]][0]!r} appears twice in one object")
    return dict(pairs)


def _preset(path: Path, data: dict[str, Any]) -> Preset:
    _only_keys(path, "the preset", data, TOP_KEYS)
    description = _text(path, "description", data.get("description", ""))
    report = data.get("report", [])
    if not isinstance(report, list):
        raise UserError(f"{path}: report: expected a list of text (arguments of 'benchmark report')")
    report = [_text(path, "report", item) for item in report]
    _check_report_arguments(path, report)
    grids = data.get("grid")
    if not isinstance(grids, list) or not grids or not all(isinstance(grid, dict) for grid in grids):
        raise UserError(f"{path}: grid: expected a list of one or more objects")
    parsed = tuple(_grid(path, f"grid {number}", grid) for number, grid in enumerate(grids, start=1))
    return Preset(path.stem, description, parsed, tuple(report), path)


class _ReportArguments(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(message)


def _check_report_arguments(path: Path, report: list[str]) -> None:
    """The preset's ``report`` arguments are ones ``benchmark report`` takes (the sweep prints them as the
    command to run next), without ``--results``, which the sweep gives."""
    parser = _ReportArguments(prog="benchmark report", add_help=False)
    add_report_arguments(parser)
    try:
        parser.parse_args(report)
    except UserError as error:
        raise UserError(f"{path}: report: not arguments of 'benchmark report' ({error})") from error
    if any(item == "--results" or item.startswith("--results=") for item in report):
        raise UserError(f"{path}: report: drop --results (the sweep's --results is the one to report)")


def _grid(path: Path, where: str, grid: dict[str, Any]) -> PresetGrid:
    _only_keys(path, where, grid, GRID_KEYS)
    methods = _names(path, f"{where}: methods", grid.get("methods"), METHODS.names())
    tasks = _names(path, f"{where}: tasks", grid.get("tasks"), TASKS.names())
    fractions = _list(path, f"{where}: fractions", grid.get("fractions", [1.0]), (int, float), "label fractions")
    if not all(0 < fraction <= 1 for fraction in fractions):
        raise UserError(f"{path}: {where}: fractions: each must be in (0, 1]")
    seeds = _list(path, f"{where}: seeds", grid.get("seeds", [0]), (int,), "seeds")
    if not all(0 <= seed <= MAX_SEED for seed in seeds):
        raise UserError(f"{path}: {where}: seeds: each must be an integer from 0 to {MAX_SEED}")
    settings = grid.get("method_args", {})
    if not isinstance(settings, dict) or not all(_is_value(value) for value in settings.values()):
        raise UserError(f"{path}: {where}: method_args: expected an object of KEY: text or number")
    dims = _list(path, f"{where}: dims", grid.get("dims", [""]), (str,), "dimensionalities")
    if not all(value in ("", *DIMS) for value in dims):
        raise UserError(f"{path}: {where}: dims: each must be one of {', '.join(DIMS)}")
    about = _text(path, f"{where}: about", grid.get("about", ""))
    protocols = _protocols(path, where, grid["protocols"]) if "protocols" in grid else ()
    return PresetGrid(methods, tasks, tuple(float(f) for f in fractions), tuple(seeds),
                      tuple((str(key), str(value)) for key, value in settings.items()), tuple(dims), about,
                      protocols)


def _protocols(path: Path, where: str, value: Any) -> tuple[str, ...]:
    names = _list(path, f"{where}: protocols", value, (str,), "transfer protocols")
    try:
        return tuple(Protocol.parse(name).name for name in names)
    except UserError as error:
        raise UserError(f"{path}: {where}: protocols: {error}") from error


def _only_keys(path: Path, where: str, table: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise UserError(f"{path}: {where}: unknown key {unknown[0]!r} (expected: {', '.join(sorted(allowed))})")


def _list(path: Path, where: str, value: Any, kinds: tuple[type, ...], what: str) -> list[Any]:
    """A non-empty list of ``kinds`` in which no value appears twice (``[0, 0]``, ``[1, 1.0]``: a grid's cells are
    a set, and a repeated one is a typo)."""
    if (not isinstance(value, list) or not value
            or not all(isinstance(item, kinds) and not isinstance(item, bool) for item in value)):
        raise UserError(f"{path}: {where}: expected a non-empty list of {what}")
    repeat = first_repeat(value)
    if repeat is not None:
        raise UserError(f"{path}: {where}: {value[repeat[0]]!r} is listed twice")
    return value


def _names(path: Path, where: str, value: Any, registered: list[str]) -> tuple[str, ...]:
    names = _list(path, where, value, (str,), "names")
    unknown = [name for name in names if name not in registered]
    if unknown:
        raise UserError(f"{path}: {where}: unknown name {unknown[0]!r}")
    return tuple(names)


def _text(path: Path, where: str, value: Any) -> str:
    """Text the sweep prints: printable characters only (no line break or terminal control sequence)."""
    if not isinstance(value, str) or not value.isprintable():
        raise UserError(f"{path}: {where}: expected text on one line of printable characters")
    return value


def _is_value(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)
