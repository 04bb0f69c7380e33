"""``benchmark show NAME``: a method's (or a task's, or a backbone's) description, what a method
transfers, its documentation and its settings."""

from __future__ import annotations

import argparse
import inspect
import sys

from benchmark.api.registry import BACKBONES, METHODS, TASKS, Registry
from benchmark.api.settings import defaults, format_value
from benchmark.cli import one_line

PRESET_MARK = "*"


def print_lines(text: str) -> None:
    """``text``'s lines with every unprintable character escaped: a plugin's description or setting
    (a terminal control sequence, a line separator) never reaches the terminal as it is."""
    for line in text.split("\n"):
        print(one_line(line))


def command(args: argparse.Namespace) -> None:
    print_lines(describe(args.method))


def describe(name: str) -> str:
    """Name, origin, description, what a method transfers, the first paragraph of its documentation, and
    every setting with its default (a preset's values marked, with the class's own default). ``name`` is
    a method's, or a task's that no method has."""
    is_task = name not in METHODS.names() and name in TASKS.names()
    is_backbone = name not in METHODS.names() and not is_task and name in BACKBONES.names()
    registry: Registry = TASKS if is_task else BACKBONES if is_backbone else METHODS
    cls, preset = registry.get(name), registry.preset(name)
    origin = f"{registry.origin(name)}; a preset of {cls.name}" if preset else registry.origin(name)
    lines = [f"{name}  ({origin})", f"  {registry.description(name)}"]
    if is_backbone:
        lines += [f"  encoder stages (freeze:N): {', '.join(cls.stages)}; input sides: multiples of "
                  f"{cls.size_multiple}, at least {cls.min_size}", ""]
    else:
        lines += [""] if is_task else [f"  transfers: {cls.transfers}; backbones: {', '.join(cls.backbones)}", ""]
    paragraph = first_paragraph(cls)
    if paragraph:
        lines += [paragraph, ""]
    settings = registry.defaults(name)
    if not settings:
        return "\n".join([*lines, "settings: none"])
    mark = f"; {PRESET_MARK}: set by the preset, {cls.name}'s default in brackets" if preset else ""
    lines.append(f"settings (change one with --{registry.kind}-arg KEY=VALUE{mark}):")
    width = max(map(len, settings))
    own = defaults(cls)
    for key, value in settings.items():
        note = f"  {PRESET_MARK} ({format_value(own[key])})" if preset and key in preset.settings else ""
        lines.append(f"  {key:<{width}}  {format_value(value)}{note}")
    return "\n".join(lines)


def settings_items(name: str) -> list[str]:
    """``KEY=VALUE`` for each setting of ``name`` (a preset's own values marked), for ``list --verbose``."""
    preset = METHODS.preset(name)
    fixed = preset.settings if preset else {}
    return [f"{key}={format_value(value)}{PRESET_MARK if key in fixed else ''}"
            for key, value in METHODS.defaults(name).items()]


def first_paragraph(cls: type) -> str:
    """The first paragraph of the class's own docstring, or of its module's when it has none."""
    doc = cls.__dict__.get("__doc__") or getattr(sys.modules.get(cls.__module__), "__doc__", None)
    return inspect.cleandoc(doc).split("\n\n")[0] if doc else ""
